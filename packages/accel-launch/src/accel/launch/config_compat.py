"""Accelerate's config-file entry points: ``default_config_file`` and ``load_config_from_file``.

Example:
    >>> from accel.launch.config_compat import load_config_from_file
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "c.yaml"
    >>> _ = path.write_text("distributed_type: MULTI_CPU\\nnum_processes: 2\\n")
    >>> load_config_from_file(str(path)).to_dict()["num_processes"]
    2
"""

from __future__ import annotations

import os

from accel.launch.config_file import (
    ConfigFile,
    default_config_path,
    load_config,
    resolve_config_path,
)


def _default_file() -> str:
    path, _ = resolve_config_path(None)
    return os.fspath(default_config_path() if path is None else path)


#: The config file ``accel launch`` reads when given none, as a string (computed at import,
#: as Accelerate does): ``$ACCEL_CONFIG_FILE``, else accel's default file if it exists, else
#: Accelerate's (``$HF_HOME/accelerate/default_config.yaml``) if it exists, else the path
#: ``accel config`` would write.
default_config_file: str = _default_file()


def load_config_from_file(config_file: str | os.PathLike[str] | None) -> ConfigFile:
    """Read and validate ``config_file`` (``None``: the default file). The result has
    ``to_dict()`` and the file's keys as attributes. A missing file raises
    ``FileNotFoundError`` naming it; a bad one a ``ValueError`` naming the key.

    Example:
        >>> load_config_from_file("/no/such.yaml")
        Traceback (most recent call last):
        ...
        FileNotFoundError: config file /no/such.yaml does not exist; write one with `accel config` or pass an existing file
    """
    if config_file is None:
        path, source = resolve_config_path(None)
        if path is None:
            path, source = default_config_path(), "default"
    else:
        path, source = config_file, None
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"config file {os.fspath(path)} does not exist; write one with `accel config` or "
            "pass an existing file"
        )
    return load_config(path, source=source)
