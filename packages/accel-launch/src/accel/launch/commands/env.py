"""``accel env``: versions, devices and the config in effect, as a block to paste in a bug report.

Only running it imports torch (for its version and devices); ``accel env --help`` does not.

Example:
    >>> from accel.launch.cli import main
    >>> main(["env", "--help"])  # doctest: +ELLIPSIS
    usage: accel env ...
    0
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``env`` to ``subparsers``.

    Example:
        >>> from accel.launch.parser import AccelArgumentParser
        >>> register(AccelArgumentParser(prog="accel").add_subparsers()).prog
        'accel env'
    """
    parser = subparsers.add_parser(
        "env",
        help="print versions, devices and config",
        description="Print versions, devices and the config in effect, to paste in a bug report.",
    )
    parser.add_argument(
        "--config_file", default=None, help="config file to show (default: the one in effect)"
    )
    parser.set_defaults(func=run)
    return parser


def _versions() -> list[tuple[str, str]]:
    from importlib.metadata import distributions

    found: dict[str, str] = {}
    for dist in distributions():
        name = (dist.metadata["Name"] or "").lower().replace("_", "-")
        if name.startswith("accel-") or name in ("accelerate", "numpy", "deepspeed", "torch-xla"):
            found.setdefault(name, dist.version)
    return sorted(found.items())


def _accel_command() -> str:
    """This environment's ``accel`` script, and whether the shell finds the same one."""
    on_path = shutil.which("accel")
    here = Path(sys.executable).parent / "accel"
    if not here.is_file():
        return on_path or "not on PATH"
    if on_path is not None and Path(on_path).resolve() == here.resolve():
        return on_path
    found = f"the shell finds {on_path}" if on_path else "its folder is not on PATH"
    return f"{here} ({found})"


def _memory() -> str:
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemTotal:"):
                    return f"{int(line.split()[1]) / 1024**2:.2f} GB"
    except OSError:
        pass
    return "unknown"


def _torch_lines() -> list[tuple[str, str]]:
    try:
        import torch
    except Exception as exc:  # torch missing or broken: say so, it is what the report needs
        return [("PyTorch", f"not importable ({type(exc).__name__}: {exc})")]
    lines: list[tuple[str, str]] = [("PyTorch version", torch.__version__)]
    if torch.cuda.is_available():
        count = torch.cuda.device_count()
        kind = "ROCm" if getattr(torch.version, "hip", None) else "CUDA"
        lines.append(("PyTorch accelerator", f"{kind} {torch.version.hip or torch.version.cuda}"))
        names = ", ".join(torch.cuda.get_device_name(i) for i in range(count))
        lines.append(("GPUs", f"{count} x ({names})"))
    elif getattr(torch, "xpu", None) is not None and torch.xpu.is_available():
        lines.append(("PyTorch accelerator", f"XPU x {torch.xpu.device_count()}"))
    elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        lines.append(("PyTorch accelerator", "MPS"))
    else:
        lines.append(("PyTorch accelerator", "none (CPU only)"))
    lines.append(("CPU threads (torch)", str(torch.get_num_threads())))
    return lines


def report(config_file: str | None = None) -> str:
    """The text ``accel env`` prints.

    Example:
        >>> "Python version" in report()  # doctest: +SKIP
        True
    """
    from accel.launch.config_file import ConfigError, load_config, resolve_config_path
    from accel.state.nvml import nvml_report

    info: list[tuple[str, str]] = [
        ("Platform", platform.platform()),
        ("Python version", f"{platform.python_version()} ({sys.executable})"),
        ("`accel` command", _accel_command()),
    ]
    info += [(f"{name} version", version) for name, version in _versions()]
    info += _torch_lines()
    info.append(("NVML", nvml_report().summary()))
    info.append(("CPUs", str(os.cpu_count())))
    info.append(("System RAM", _memory()))
    path, source = resolve_config_path(config_file)
    lines = [f"- {key}: {value}" for key, value in info]
    if path is None:
        lines.append("- Config file: none found (built-in defaults)")
    else:
        lines.append(f"- Config file: {path} ({source})")
        try:
            config = load_config(path, source)
            lines += [f"\t- {key}: {value}" for key, value in config.to_dict().items()]
        except ConfigError as exc:
            lines.append(f"\t- INVALID: {exc}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Print :func:`report`.

    Example:
        >>> run(argparse.Namespace(config_file=None))  # doctest: +SKIP
        0
    """
    text = report(args.config_file)
    print("\nCopy-and-paste the text below in your GitHub issue\n")
    print(text)
    return 0
