"""The YAML config file of ``accel launch``: where it lives, loading with validation, writing.

Torch-free. Accelerate's files (YAML, or the JSON that ``accelerate config default`` writes) load
unchanged; files written here load in Accelerate.

Where the file is found (:func:`resolve_config_path`), first match wins:

1. ``--config_file PATH`` (source ``"flag --config_file"``)
2. ``$ACCEL_CONFIG_FILE`` (alias ``$ACCELERATE_CONFIG_FILE``; source ``"env ACCEL_CONFIG_FILE"``)
3. ``$XDG_CONFIG_HOME/accel/default_config.yaml``, else ``~/.config/accel/default_config.yaml``,
   if it exists (source ``"accel default"``)
4. Accelerate's ``$HF_HOME/accelerate/default_config.yaml``, else
   ``$XDG_CACHE_HOME/huggingface/accelerate/...`` or ``~/.cache/huggingface/accelerate/...``,
   if it exists (source ``"accelerate default"``)
5. none (source ``"none"``): built-in defaults apply.

Example:
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "c.yaml"
    >>> _ = write_config({"distributed_type": "NO", "mixed_precision": "bf16"}, path)
    >>> load_config(path).mixed_precision
    'bf16'
"""

from __future__ import annotations

import difflib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from accel.launch import config_schema as schema
from accel.state.atomic_files import atomic_open
from accel.state.env import CONFIG_FILE, env_names, read_env, str_to_bool

SOURCE_FLAG = "flag --config_file"
SOURCE_ENV = "env ACCEL_CONFIG_FILE"
SOURCE_ACCEL_DEFAULT = "accel default"
SOURCE_ACCELERATE_DEFAULT = "accelerate default"
SOURCE_NONE = "none"

_TYPE_NAMES = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}
_TYPE_NAMES.update({list: "a list", dict: "a mapping"})


class ConfigError(ValueError):
    """A config file that cannot be used; the message names the file, key, value and the fix.

    Example:
        >>> str(ConfigError("c.yaml: bad"))
        'c.yaml: bad'
    """


class ConfigFile:
    """A validated config file.

    ``explicit`` holds only the keys written in the file (after legacy keys are converted), so a
    launcher can apply flags > environment > file > defaults; attribute access falls back to the
    schema default of a key. Nested sections are plain dicts (``{}`` when absent).

    Example:
        >>> cfg = ConfigFile({"distributed_type": "MULTI_GPU", "num_processes": 4})
        >>> cfg.num_processes, cfg.machine_rank, cfg.is_set("machine_rank")
        (4, 0, False)
    """

    def __init__(self, explicit: Mapping[str, Any], path: Path | None = None) -> None:
        self.explicit: dict[str, Any] = dict(explicit)
        self.path = path

    @property
    def compute_environment(self) -> str:
        return self.explicit.get("compute_environment", schema.LOCAL_MACHINE)

    def is_set(self, key: str) -> bool:
        """Whether ``key`` was written in the file.

        Example:
            >>> ConfigFile({"debug": True}).is_set("debug")
            True
        """
        return key in self.explicit

    def get(self, key: str, default: Any = None) -> Any:
        """The file's value of ``key``, else ``default`` (not the schema default).

        Example:
            >>> ConfigFile({}).get("num_processes", 2)
            2
        """
        return self.explicit.get(key, default)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name in ("explicit", "path"):
            raise AttributeError(name)
        if name in self.explicit:
            return self.explicit[name]
        if name in schema.TOP_LEVEL:
            if schema.TOP_LEVEL[name].types == (dict,):
                return {}
            if name == "num_processes" and self.explicit.get("distributed_type", "NO") == "NO":
                return 1
            return schema.TOP_LEVEL[name].default
        raise AttributeError(f"config file has no key {name!r}")

    def to_dict(self) -> dict[str, Any]:
        """The file as Accelerate writes it: every key of the schema with its value or default,
        without ``None`` values and empty sections.

        Example:
            >>> ConfigFile({"distributed_type": "NO"}).to_dict()["num_processes"]
            1
        """
        out: dict[str, Any] = {}
        for name in schema.keys_for(self.compute_environment):
            value = getattr(self, name)
            if value is None or value == {}:
                continue
            out[name] = value
        return out

    def launch_defaults(self) -> dict[str, Any]:
        """Flat ``{launch flag dest: value}`` of what the file sets, as ``accelerate launch``
        reads it: top-level keys as they are, nested keys with their section prefix added
        (``fsdp_config.version`` -> ``fsdp_version``).

        Example:
            >>> ConfigFile({"debug": True, "fsdp_config": {"version": 2}}).launch_defaults()
            {'debug': True, 'fsdp_version': 2}
        """
        flat: dict[str, Any] = {}
        for name, value in self.explicit.items():
            if isinstance(value, dict):
                prefix = schema.PREFIXES.get(name, "")
                for key, inner in value.items():
                    flat[key if key.startswith(prefix) else prefix + key] = inner
            else:
                flat[name] = value
        return flat

    def __repr__(self) -> str:
        return f"ConfigFile({self.explicit!r}, path={self.path!r})"


# --------------------------------------------------------------------------------------- paths


def accel_default_path(environ: Mapping[str, str] | None = None) -> Path:
    """accel's own default location (XDG): ``$XDG_CONFIG_HOME/accel/default_config.yaml``.

    Example:
        >>> accel_default_path({"XDG_CONFIG_HOME": "/x"}).as_posix()
        '/x/accel/default_config.yaml'
    """
    environ = os.environ if environ is None else environ
    base = environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "accel" / "default_config.yaml"


def accelerate_default_path(environ: Mapping[str, str] | None = None) -> Path:
    """Accelerate's default location: ``$HF_HOME/accelerate/default_config.yaml``.

    Example:
        >>> accelerate_default_path({"HF_HOME": "/hf"}).as_posix()
        '/hf/accelerate/default_config.yaml'
    """
    environ = os.environ if environ is None else environ
    hf_home = environ.get("HF_HOME")
    if not hf_home:
        cache = environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
        hf_home = os.path.join(cache, "huggingface")
    return Path(os.path.expanduser(hf_home)) / "accelerate" / "default_config.yaml"


def default_config_path(environ: Mapping[str, str] | None = None) -> Path:
    """Where ``accel config`` writes when no ``--config_file`` is given: ``$ACCEL_CONFIG_FILE``,
    else :func:`accel_default_path`. (Reading also falls back to Accelerate's location; see
    :func:`resolve_config_path`.)

    Example:
        >>> default_config_path({"ACCEL_CONFIG_FILE": "/tmp/c.yaml"}).as_posix()
        '/tmp/c.yaml'
    """
    from_env = read_env(CONFIG_FILE, None, os.environ if environ is None else environ)
    if from_env:
        return Path(os.path.expanduser(from_env))
    return accel_default_path(environ)


def resolve_config_path(
    flag_value: str | os.PathLike[str] | None, environ: Mapping[str, str] | None = None
) -> tuple[Path | None, str]:
    """The config file in effect and where it came from (one of the ``SOURCE_*`` strings).

    A path given by flag or environment is returned even if missing (loading then fails with a
    clear error); the default locations count only if the file exists.

    Example:
        >>> resolve_config_path("my.yaml", {})
        (PosixPath('my.yaml'), 'flag --config_file')
    """
    environ = os.environ if environ is None else environ
    if flag_value:
        return Path(os.path.expanduser(os.fspath(flag_value))), SOURCE_FLAG
    named = next((name for name in env_names(CONFIG_FILE) if name in environ), None)
    if named is not None and environ[named]:
        return Path(os.path.expanduser(environ[named])), f"env {named}"
    for path, source in (
        (accel_default_path(environ), SOURCE_ACCEL_DEFAULT),
        (accelerate_default_path(environ), SOURCE_ACCELERATE_DEFAULT),
    ):
        if path.is_file():
            return path, source
    return None, SOURCE_NONE


# ------------------------------------------------------------------------------------ validation


def _closest(word: str, candidates: list[str]) -> str:
    match = difflib.get_close_matches(word, candidates, n=1, cutoff=0.5)
    return f"; did you mean {match[0]!r}?" if match else ""


def _expected(key: schema.Key) -> str:
    names = " or ".join(_TYPE_NAMES.get(t, t.__name__) for t in key.types)
    if key.choices:
        names += f" (one of {', '.join(key.choices)})"
    return names


def _coerce(where: str, name: str, value: Any, key: schema.Key) -> Any:
    """``value`` converted to one of ``key.types`` or a ConfigError."""
    if value is None:
        if key.nullable:
            return None
        raise ConfigError(f"{where}: {name} must be set to {_expected(key)}, not null")
    result: Any = _NO
    for kind in key.types:
        if kind is bool:
            if isinstance(value, bool):
                result = value
            elif isinstance(value, str):
                try:
                    result = str_to_bool(value)
                except ValueError:
                    continue
        elif kind is int:
            if isinstance(value, int) and not isinstance(value, bool):
                result = value
            elif isinstance(value, str) and value.strip().lstrip("-").isdigit():
                result = int(value)
        elif kind is float:
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                result = value
        elif kind is str:
            if isinstance(value, str):
                result = value
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                result = str(value)
        elif isinstance(value, kind):  # list, dict
            result = value
        if result is not _NO:
            break
    if result is _NO:
        raise ConfigError(
            f"{where}: {name}={value!r} has type {type(value).__name__}; expected {_expected(key)}"
        )
    if key.choices and isinstance(result, str):
        allowed = {c.lower(): c for c in key.choices} if key.case_insensitive else None
        if allowed is not None and result.lower() in allowed:
            return result.lower() if name == "mixed_precision" else result
        if result not in key.choices:
            raise ConfigError(
                f"{where}: {name}={result!r} is not valid; expected one of "
                f"{', '.join(key.choices)}{_closest(result, list(key.choices))}"
            )
    return result


_NO = object()


def _check_nested(where: str, section: str, value: dict[str, Any]) -> dict[str, Any]:
    known = schema.NESTED.get(section)
    if not known:  # free-form section
        return dict(value)
    prefix = schema.PREFIXES.get(section, "")
    out: dict[str, Any] = {}
    for name, inner in value.items():
        if not isinstance(name, str):
            raise ConfigError(f"{where}: {section} has a non-string key {name!r}")
        canonical = name if name in known or name.startswith(prefix) else prefix + name
        key = known.get(canonical)
        if key is None:
            short = [k[len(prefix) :] if prefix and k.startswith(prefix) else k for k in known]
            raise ConfigError(
                f"{where}: unknown key {name!r} in {section}"
                f"{_closest(name, list(known) + short)} (valid: {', '.join(sorted(known))})"
            )
        out[name] = _coerce(where, f"{section}.{name}", inner, key)
    return out


def validate_config(data: Mapping[str, Any], where: str = "config") -> dict[str, Any]:
    """Check and normalise a raw config mapping; returns the explicit keys (legacy converted).

    Example:
        >>> validate_config({"distributed_type": "NO", "fp16": True})["mixed_precision"]
        'fp16'
    """
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"{where}: the top level must be a mapping of keys, not {type(data).__name__}"
        )
    raw = dict(data)
    # YAML 1.1 reads an unquoted `NO` / `no` as false; for these keys it can only mean "no".
    for name, spelling in (("distributed_type", "NO"), ("mixed_precision", "no")):
        if raw.get(name) is False:
            raw[name] = spelling
    env = raw.get("compute_environment", schema.LOCAL_MACHINE)
    env = _coerce(where, "compute_environment", env, schema.COMMON["compute_environment"])
    env = env or schema.LOCAL_MACHINE
    valid = schema.keys_for(env)
    out: dict[str, Any] = {}
    for name in [n for n in raw if n in schema.LEGACY]:
        value = _coerce(where, name, raw.pop(name), schema.LEGACY[name])
        if name == "fp16" and value and "mixed_precision" not in raw:
            raw["mixed_precision"] = "fp16"
        elif name == "dynamo_backend" and value and value.upper() != "NO":
            nested = dict(raw.get("dynamo_config") or {})
            nested.setdefault("dynamo_backend", value)
            raw["dynamo_config"] = nested
    for name, value in raw.items():
        if not isinstance(name, str):
            raise ConfigError(f"{where}: keys must be strings, got {name!r}")
        key = valid.get(name)
        if key is None:
            hint = ""
            if name in schema.TOP_LEVEL:
                hint = f" (only valid with compute_environment: {schema.AMAZON_SAGEMAKER if env == schema.LOCAL_MACHINE else schema.LOCAL_MACHINE})"
            else:
                hint = _closest(name, list(valid) + list(schema.NESTED))
            raise ConfigError(f"{where}: unknown key {name!r}{hint}")
        value = _coerce(where, name, value, key)
        if isinstance(value, dict):
            value = _check_nested(where, name, value)
        out[name] = value
    for name in ("num_processes", "num_machines"):
        if isinstance(out.get(name), int) and out[name] < 1 and out[name] != -1:
            raise ConfigError(f"{where}: {name}={out[name]} must be at least 1")
    if isinstance(out.get("main_process_port"), int) and not 0 < out["main_process_port"] < 65536:
        raise ConfigError(
            f"{where}: main_process_port={out['main_process_port']} is not a TCP port (1-65535)"
        )
    machines, rank = out.get("num_machines", 1) or 1, out.get("machine_rank", 0) or 0
    if not 0 <= rank < machines:
        raise ConfigError(
            f"{where}: machine_rank={rank} must be in 0..{machines - 1} (num_machines={machines})"
        )
    return out


# --------------------------------------------------------------------------------------- load/write


def _parse(path: Path, text: str) -> Any:
    if path.suffix == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}:{exc.lineno}: invalid JSON: {exc.msg}") from None
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}{line}: invalid YAML: {problem}") from None


def load_config(path: str | os.PathLike[str], source: str | None = None) -> ConfigFile:
    """Read and validate the config file at ``path``; ``source`` (e.g. ``"env ACCEL_CONFIG_FILE"``)
    is named in errors. Raises :class:`ConfigError` (a ``ValueError``) on any problem.

    Example:
        >>> try:
        ...     load_config("/nonexistent.yaml")
        ... except ConfigError as exc:
        ...     print(exc)
        config file /nonexistent.yaml does not exist
    """
    path = Path(path)
    origin = f" (from {source})" if source and source != SOURCE_FLAG else ""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist{origin}") from None
    except IsADirectoryError:
        raise ConfigError(
            f"config file {path}{origin} is a directory; pass the YAML file itself (for example "
            f"{path / 'default_config.yaml'})"
        ) from None
    except PermissionError as exc:
        raise ConfigError(f"config file {path}{origin} cannot be read: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {path}{origin} is not UTF-8 text: {exc}") from None
    data = _parse(path, text)
    if data is None:
        raise ConfigError(
            f"{path}{origin}: the file is empty; run `accel config default` to write one"
        )
    return ConfigFile(validate_config(data, where=f"{path}{origin}"), path=path)


def write_config(config: ConfigFile | Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """Validate ``config`` and write it atomically to ``path`` (YAML; JSON if the name ends in
    ``.json``), in the full form of :meth:`ConfigFile.to_dict`. Returns the path.

    Example:
        >>> import tempfile, pathlib
        >>> p = write_config({"distributed_type": "NO"}, pathlib.Path(tempfile.mkdtemp()) / "c.yaml")
        >>> "num_processes: 1" in p.read_text()
        True
    """
    path = Path(path)
    if path.is_dir():
        raise ConfigError(
            f"cannot write the config file to {path}: it is a directory; pass a file path (for "
            f"example {path / 'default_config.yaml'})"
        )
    if not isinstance(config, ConfigFile):
        config = ConfigFile(validate_config(config, where=str(path)), path=path)
    data = config.to_dict()
    if path.suffix == ".json":
        text = json.dumps(data, indent=2, sort_keys=True) + "\n"
    else:
        import yaml

        text = yaml.safe_dump(data, sort_keys=True)
    with atomic_open(path, "w") as handle:
        handle.write(text)
    return path
