"""``accel estimate-memory MODEL``: memory to load and train a model, offline.

MODEL is a local transformers config (a folder holding ``config.json``, or the file), a timm
config or architecture name (``--library_name timm``), or a factory
``package.module:function`` / ``path/to/file.py:function`` returning an ``nn.Module``. The
model is built on the meta device (no memory, no download). ``--help`` does not import torch.

Example:
    >>> from accel.launch.parser import AccelArgumentParser
    >>> parser = register(AccelArgumentParser(prog="accel").add_subparsers())
    >>> parser.parse_args(["cfg/", "--dtypes", "int4"]).dtypes
    ['int4']
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

DTYPES = ("float32", "float16", "bfloat16", "int8", "int4")
LIBRARIES = ("transformers", "timm", "torch")


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``estimate-memory`` to ``subparsers``.

    Example:
        >>> from accel.launch.parser import AccelArgumentParser
        >>> register(AccelArgumentParser(prog="accel").add_subparsers()).prog
        'accel estimate-memory'
    """
    parser = subparsers.add_parser(
        "estimate-memory",
        help="estimate the memory a model needs",
        description=(
            "Estimate the memory needed to load a model (per dtype) and to train it with Adam, "
            "from its structure only. Works offline: nothing is downloaded."
        ),
    )
    parser.add_argument(
        "model_name",
        metavar="MODEL",
        help="a folder holding config.json, a config.json file, a timm architecture name, or "
        "a factory 'package.module:function' / 'path/to/file.py:function' returning an nn.Module",
    )
    parser.add_argument(
        "--library_name",
        choices=LIBRARIES,
        default=None,
        help="how to build MODEL (default: torch for factories, else transformers)",
    )
    parser.add_argument(
        "--dtypes",
        nargs="+",
        choices=DTYPES,
        default=list(DTYPES),
        metavar="DTYPE",
        help=f"dtypes to estimate, among {', '.join(DTYPES)} (default: all)",
    )
    parser.add_argument(
        "--trust_remote_code",
        action="store_true",
        help="let transformers run custom model code found in the local MODEL folder (no "
        "network is used either way)",
    )
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Print the estimate table; 2 on bad input, 1 when a needed library is missing."""
    from accel.big_model.estimate import (
        EstimateError,
        create_empty_model,
        estimate_memory,
        format_table,
    )
    from accel.state.progress import progress_bar

    try:
        with progress_bar(desc="Estimating memory", total=2, unit="step", leave=False) as bar:
            bar.set_postfix_str(f"building {args.model_name} on the meta device")
            model = create_empty_model(
                args.model_name,
                library_name=args.library_name,
                trust_remote_code=args.trust_remote_code,
            )
            bar.update(1)
            bar.set_postfix_str("measuring sizes")
            rows = estimate_memory(model, args.dtypes)
            bar.update(1)
    except EstimateError as err:
        print(f"accel estimate-memory: error: {err}", file=sys.stderr)
        return 2
    except ImportError as err:
        print(f"accel estimate-memory: error: {err}", file=sys.stderr)
        return 1
    print(format_table(rows, f"Memory Usage for loading `{args.model_name}`"))
    return 0
