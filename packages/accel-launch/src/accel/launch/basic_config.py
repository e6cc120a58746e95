"""``write_basic_config``: a config for this machine with only a few settings (torch-free).

Example:
    >>> import tempfile, pathlib
    >>> path = write_basic_config("bf16", pathlib.Path(tempfile.mkdtemp()) / "c.yaml")
    >>> "mixed_precision: bf16" in path.read_text()
    True
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from accel.launch.config_file import ConfigError, default_config_path, write_config
from accel.launch.gpu_probe import count_gpus
from accel.state.options import MIXED_PRECISIONS


def basic_config(mixed_precision: str = "no", num_gpus: int | None = None) -> dict[str, Any]:
    """The mapping :func:`write_basic_config` writes: all GPUs found, else one CPU process.

    Example:
        >>> basic_config("no", num_gpus=4)["distributed_type"]
        'MULTI_GPU'
    """
    mixed_precision = mixed_precision.lower()
    if mixed_precision not in MIXED_PRECISIONS:
        raise ConfigError(
            f"mixed_precision={mixed_precision!r} is not valid; expected one of {', '.join(MIXED_PRECISIONS)}"
        )
    gpus = count_gpus() if num_gpus is None else num_gpus
    config: dict[str, Any] = {
        "compute_environment": "LOCAL_MACHINE",
        "mixed_precision": mixed_precision,
    }
    if gpus > 0:
        config.update(num_processes=gpus, use_cpu=False)
        config["distributed_type"] = "MULTI_GPU" if gpus > 1 else "NO"
    else:
        config.update(num_processes=1, use_cpu=True, distributed_type="NO")
    config.update(debug=False, enable_cpu_affinity=False)
    return config


def write_basic_config(
    mixed_precision: str = "no", save_location: str | os.PathLike[str] | None = None
) -> Path | bool:
    """Write :func:`basic_config` to ``save_location`` (default: :func:`default_config_path`).

    As in Accelerate, an existing file is left alone: a message is printed and ``False``
    returned. Otherwise the written path is returned.

    Example:
        >>> import tempfile, pathlib
        >>> target = pathlib.Path(tempfile.mkdtemp()) / "c.yaml"
        >>> write_basic_config(save_location=target) == target
        True
        >>> write_basic_config(save_location=target)  # doctest: +ELLIPSIS
        Configuration already exists at ...
        False
    """
    path = Path(save_location) if save_location is not None else default_config_path()
    config = basic_config(mixed_precision)
    if path.is_dir():
        raise ConfigError(
            f"cannot write the config file to {path}: it is a directory; pass a file path (for "
            f"example {path / 'default_config.yaml'})"
        )
    if path.exists():
        print(
            f"Configuration already exists at {path}, will not override. "
            "Run `accel config` or pass a different location."
        )
        return False
    return write_config(config, path)
