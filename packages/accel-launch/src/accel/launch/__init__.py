"""accel.launch: the ``accel`` command, the YAML config file, and process launching.

Names load on first use, so ``import accel.launch`` stays cheap and torch-free.

Example:
    >>> from accel.launch import load_config, write_basic_config
    >>> callable(write_basic_config)
    True
"""

from __future__ import annotations

from accel.state.lazy import lazy_exports
from accel.state.versions import require_siblings

require_siblings("accel-launch")  # one release of accel installed, or a clear ImportError

_EXPORTS = {
    "ConfigError": ".config_file",
    "ConfigFile": ".config_file",
    "default_config_path": ".config_file",
    "load_config": ".config_file",
    "resolve_config_path": ".config_file",
    "write_config": ".config_file",
    "write_basic_config": ".basic_config",
    "notebook_launcher": ".notebook",
    "debug_launcher": ".notebook",
    "default_config_file": ".config_compat",
    "load_config_from_file": ".config_compat",
    "launch_command_parser": ".commands.launch",
    "launch_command": ".commands.launch",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)
