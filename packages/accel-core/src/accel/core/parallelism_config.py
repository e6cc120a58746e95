"""``ParallelismConfig``: the sizes of a job's parallel dimensions and its device mesh.

``Accelerator(parallelism_config=...)`` builds one ``torch.distributed`` DeviceMesh from it
(:mod:`accel.core.device_mesh`) and composes FSDP2, HSDP and tensor parallelism on it.

Example:
    >>> from accel.core.parallelism_config import ParallelismConfig
    >>> config = ParallelismConfig(dp_shard_size=2, tp_size=2)
    >>> config.total_size, config.active_mesh_dims
    (4, ['dp_shard', 'tp'])
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from accel.core.parallel_handlers import (
    DeepSpeedSequenceParallelConfig,
    TorchContextParallelConfig,
    TorchTensorParallelConfig,
    TorchTensorParallelPlugin,
)
from accel.state import env
from accel.state.options import (
    CP_BACKENDS,
    PARALLELISM_SIZES,
    SP_BACKENDS,
    lookup,
    parallelism_env,
)

_SIZES = PARALLELISM_SIZES
_BACKENDS = {"cp_backend": CP_BACKENDS, "sp_backend": SP_BACKENDS}


def _from_env(name: str, default: str) -> tuple[str, str]:
    """Value of ``name`` from ``ACCEL_PARALLELISM_CONFIG_*`` / ``PARALLELISM_CONFIG_*``."""
    value, key = lookup(parallelism_env(name.upper()))
    if key is None or value is None:
        return default, "default"
    return value, f"environment variable {key}"


@dataclass
class ParallelismConfig:
    """Sizes of the data-replicate, data-shard, tensor, context and sequence parallel
    dimensions. Unset sizes come from ``PARALLELISM_CONFIG_<FIELD>`` (as ``accelerate
    launch --parallelism_config_*`` sets them), else 1.

    Example:
        >>> ParallelismConfig(dp_replicate_size=2).dp_dim_names
        ['dp_replicate']
    """

    dp_replicate_size: int | None = None
    dp_shard_size: int | None = None
    tp_size: int | None = None
    cp_size: int | None = None
    cp_backend: str | None = None
    sp_size: int | None = None
    sp_backend: str | None = None
    tp_handler: Any = None
    cp_handler: Any = None
    sp_handler: Any = None
    _sizes: dict[str, int] = field(default_factory=dict, init=False, repr=False)
    device_mesh: Any = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        sizes: dict[str, int] = {}
        for name in _SIZES:
            value, source = getattr(self, name), "argument"
            if value is None:
                value, source = _from_env(name, "1")
            try:
                size = int(value)
            except (TypeError, ValueError):
                raise ValueError(
                    f"ParallelismConfig.{name}={value!r} (from {source}) must be an integer >= 1"
                ) from None
            if size < 1 or isinstance(value, bool):
                raise ValueError(
                    f"ParallelismConfig.{name}={value!r} (from {source}) must be an integer >= 1"
                )
            setattr(self, name, size)
            sizes[name[: -len("_size")]] = size
        for name, allowed in _BACKENDS.items():
            value, source = getattr(self, name), "argument"
            if value is None:
                value, source = _from_env(name, allowed[0])
            if value not in allowed:
                raise ValueError(
                    f"ParallelismConfig.{name}={value!r} (from {source}) is not valid; "
                    f"expected one of {', '.join(allowed)}"
                )
            setattr(self, name, value)
        self._sizes = sizes
        self._check_layout()
        self._check_handlers()

    def _check_layout(self) -> None:
        tp, cp, sp = self._sizes["tp"], self._sizes["cp"], self._sizes["sp"]
        if cp > 1 and sp > 1:
            raise ValueError(
                f"ParallelismConfig: cp_size={cp} and sp_size={sp} cannot both be > 1 (context "
                "and sequence parallelism exclude each other)"
            )
        replicate, shard = self._sizes["dp_replicate"], self._sizes["dp_shard"]
        if (tp > 1 or cp > 1) and replicate > 1 and shard == 1:
            raise ValueError(
                f"ParallelismConfig: tp_size={tp}/cp_size={cp} with dp_replicate_size="
                f"{replicate} and dp_shard_size=1 is not a valid layout; shard the data "
                "dimension (dp_shard_size > 1) to combine it with TP/CP"
            )

    def _check_handlers(self) -> None:
        defaults = (
            ("tp_handler", "tp", TorchTensorParallelConfig),
            ("cp_handler", "cp", TorchContextParallelConfig),
            ("sp_handler", "sp", DeepSpeedSequenceParallelConfig),
        )
        for attribute, dim, kind in defaults:
            handler = getattr(self, attribute)
            if handler is None and self._sizes[dim] > 1:
                setattr(self, attribute, kind())
            elif handler is not None and not isinstance(handler, kind):
                raise TypeError(
                    f"ParallelismConfig.{attribute} must be a {kind.__name__}, got "
                    f"{type(handler).__name__}"
                )

    def _size(self, dim: str) -> int:
        """The current size of dimension ``dim`` (fields may be reassigned after creation)."""
        return int(getattr(self, f"{dim}_size"))

    def _set_size(self, dim: str, size: int) -> None:
        """Change one dimension's size (``dim`` is ``"tp"``, ``"dp_shard"``, ...)."""
        if dim not in self._sizes:
            raise ValueError(f"unknown parallel dimension {dim!r}; known: {', '.join(self._sizes)}")
        self._sizes[dim] = size
        setattr(self, f"{dim}_size", size)

    def _get_mesh(self) -> tuple[tuple[str, ...], tuple[int, ...]] | tuple[()]:
        """Names and sizes of the enabled dimensions in mesh order (``dp_replicate``,
        ``dp_shard``, ``cp``, ``sp``, ``tp``: tensor parallel ranks are neighbours).

        Example:
            >>> ParallelismConfig(tp_size=2, dp_shard_size=2)._get_mesh()
            (('dp_shard', 'tp'), (2, 2))
        """
        order = ("dp_replicate", "dp_shard", "cp", "sp", "tp")
        dims = [(name, self._sizes[name]) for name in order if name in self.active_mesh_dims]
        return tuple(zip(*dims))  # type: ignore[return-value]

    def build_device_mesh(self, device_type: str) -> Any:
        """A new DeviceMesh with the enabled dimensions and the flattened ``dp``,
        ``dp_shard_cp`` and ``dp_cp`` ones. Needs an initialized process group whose world
        size is :attr:`total_size`. ``None`` when every size is 1, and with sequence
        parallelism (DeepSpeed builds its own sequence/data-parallel groups), as in Accelerate.

        Example:
            >>> ParallelismConfig().build_device_mesh("cpu") is None
            True
            >>> ParallelismConfig(dp_shard_size=2).build_device_mesh("cpu")["dp"]  # doctest: +SKIP
        """
        layout = self._get_mesh()
        if not layout or self.sp_enabled:
            return None
        from torch.distributed.device_mesh import init_device_mesh

        names, shape = layout
        mesh = init_device_mesh(device_type, shape, mesh_dim_names=names)
        for flat_name, dims in (
            ("dp", self.dp_dim_names),
            ("dp_shard_cp", self.dp_shard_cp_dim_names),
            ("dp_cp", self.dp_cp_dim_names),
        ):
            if dims:
                mesh[tuple(dims)]._flatten(flat_name)
        return mesh

    def get_device_mesh(self, device_type: str | None = None) -> Any:
        """The mesh built for this config (built on first call, which needs ``device_type``).

        Example:
            >>> config.get_device_mesh("cpu")["tp"].size()  # doctest: +SKIP
            2
        """
        if self.device_mesh is None:
            if device_type is None:
                raise ValueError(
                    "ParallelismConfig.get_device_mesh(): no mesh was built yet; pass the "
                    "device_type (e.g. 'cuda' or 'cpu') to build it"
                )
            self.device_mesh = self.build_device_mesh(device_type)
        elif device_type is not None and self.device_mesh.device_type != device_type:
            raise ValueError(
                f"ParallelismConfig.get_device_mesh(device_type={device_type!r}): the mesh was "
                f"already built for {self.device_mesh.device_type!r}"
            )
        return self.device_mesh

    @property
    def dp_replicate_enabled(self) -> bool:
        """``dp_replicate_size > 1``.

        Example:
            >>> ParallelismConfig().dp_replicate_enabled
            False
        """
        return self._size("dp_replicate") > 1

    @property
    def dp_shard_enabled(self) -> bool:
        """``dp_shard_size > 1``.

        Example:
            >>> ParallelismConfig(dp_shard_size=2).dp_shard_enabled
            True
        """
        return self._size("dp_shard") > 1

    @property
    def tp_enabled(self) -> bool:
        """``tp_size > 1``.

        Example:
            >>> ParallelismConfig(tp_size=2).tp_enabled
            True
        """
        return self._size("tp") > 1

    @property
    def cp_enabled(self) -> bool:
        """``cp_size > 1``.

        Example:
            >>> ParallelismConfig().cp_enabled
            False
        """
        return self._size("cp") > 1

    @property
    def sp_enabled(self) -> bool:
        """``sp_size > 1``.

        Example:
            >>> ParallelismConfig(sp_size=2).sp_enabled
            True
        """
        return self._size("sp") > 1

    @property
    def total_size(self) -> int:
        """Product of all sizes: the number of processes the layout needs.

        Example:
            >>> ParallelismConfig(dp_shard_size=2, tp_size=2).total_size
            4
        """
        return self.data_parallel_size * self.non_data_parallel_size

    @property
    def data_parallel_size(self) -> int:
        """``dp_replicate_size * dp_shard_size``.

        Example:
            >>> ParallelismConfig(dp_replicate_size=2, dp_shard_size=2).data_parallel_size
            4
        """
        return self._size("dp_replicate") * self._size("dp_shard")

    @property
    def non_data_parallel_size(self) -> int:
        """``tp_size * cp_size * sp_size``: processes that see the same batch.

        Example:
            >>> ParallelismConfig(dp_shard_size=2, tp_size=2).non_data_parallel_size
            2
        """
        return self._size("tp") * self._size("cp") * self._size("sp")

    @property
    def dp_dim_names(self) -> list[str]:
        """Enabled data-parallel dimensions.

        Example:
            >>> ParallelismConfig(dp_replicate_size=2, dp_shard_size=2).dp_dim_names
            ['dp_replicate', 'dp_shard']
        """
        enabled = [("dp_replicate", self.dp_replicate_enabled), ("dp_shard", self.dp_shard_enabled)]
        return [name for name, on in enabled if on]

    @property
    def non_dp_dim_names(self) -> list[str]:
        """Enabled dimensions whose processes receive the same batch.

        Example:
            >>> ParallelismConfig(dp_shard_size=2, tp_size=2).non_dp_dim_names
            ['tp']
        """
        enabled = [("tp", self.tp_enabled), ("cp", self.cp_enabled), ("sp", self.sp_enabled)]
        return [name for name, on in enabled if on]

    @property
    def dp_shard_cp_dim_names(self) -> list[str]:
        """Enabled dimensions flattened into ``dp_shard_cp`` (what FSDP shards over with CP).

        Example:
            >>> ParallelismConfig(dp_shard_size=2, cp_size=2).dp_shard_cp_dim_names
            ['dp_shard', 'cp']
        """
        enabled = [("dp_shard", self.dp_shard_enabled), ("cp", self.cp_enabled)]
        return [name for name, on in enabled if on]

    @property
    def dp_cp_dim_names(self) -> list[str]:
        """Enabled dimensions flattened into ``dp_cp`` (loss reduction with CP).

        Example:
            >>> ParallelismConfig(dp_replicate_size=2, cp_size=2, dp_shard_size=2).dp_cp_dim_names
            ['dp_replicate', 'dp_shard', 'cp']
        """
        return self.dp_dim_names + (["cp"] if self.cp_enabled else [])

    @property
    def fsdp_dim_names(self) -> list[str]:
        """Dimensions FSDP works over: ``dp_replicate`` (when enabled) and ``dp_shard_cp``.

        Example:
            >>> ParallelismConfig(dp_shard_size=2).fsdp_dim_names
            ['dp_shard_cp']
        """
        return (["dp_replicate"] if self.dp_replicate_enabled else []) + ["dp_shard_cp"]

    @property
    def active_mesh_dims(self) -> list[str]:
        """All enabled dimensions, data-parallel first.

        Example:
            >>> ParallelismConfig(dp_shard_size=2, tp_size=2).active_mesh_dims
            ['dp_shard', 'tp']
        """
        return self.dp_dim_names + self.non_dp_dim_names

    def to_json(self) -> dict[str, Any]:
        """The fields as a JSON-ready dict (handlers as their attribute dicts).

        Example:
            >>> ParallelismConfig(tp_size=2).to_json()["tp_size"]
            2
        """
        out: dict[str, Any] = {}
        for name in (*_SIZES, *_BACKENDS, "tp_handler", "cp_handler", "sp_handler"):
            value = getattr(self, name)
            out[name] = dict(vars(value)) if hasattr(value, "__dict__") else value
        return out


def resolve_parallelism_options(
    parallelism_config: Any = None, torch_tp_plugin: Any = None, megatron_lm_plugin: Any = None
) -> ParallelismConfig | None:
    """The ``ParallelismConfig`` an ``Accelerator`` works with: the one given, else one made
    from a ``TorchTensorParallelPlugin``, else one read from ``PARALLELISM_CONFIG_*`` when the
    launcher set ``ACCEL_USE_PARALLELISM_CONFIG`` (or ``ACCELERATE_USE_PARALLELISM_CONFIG``),
    else ``None``. Refuses a Megatron-LM plugin and a wrong type.

    Example:
        >>> resolve_parallelism_options(torch_tp_plugin=TorchTensorParallelPlugin(tp_size=2)).tp_size
        2
        >>> resolve_parallelism_options({"tp_size": 2})
        Traceback (most recent call last):
        ...
        TypeError: Accelerator(parallelism_config=...) expects a ParallelismConfig, got dict
    """
    if megatron_lm_plugin is not None:
        raise ValueError(
            "Accelerator(megatron_lm_plugin=...) is not supported: accel has no Megatron-LM "
            "integration (see docs/migration.md)"
        )
    if torch_tp_plugin is not None and not isinstance(torch_tp_plugin, TorchTensorParallelPlugin):
        raise TypeError(
            "Accelerator(torch_tp_plugin=...) expects a TorchTensorParallelPlugin, got "
            f"{type(torch_tp_plugin).__name__}"
        )
    if parallelism_config is None:
        if torch_tp_plugin is not None:
            return ParallelismConfig(tp_size=torch_tp_plugin.tp_size)
        return ParallelismConfig() if env.read_flag("USE_PARALLELISM_CONFIG") else None
    if not isinstance(parallelism_config, ParallelismConfig):
        raise TypeError(
            "Accelerator(parallelism_config=...) expects a ParallelismConfig, got "
            f"{type(parallelism_config).__name__}"
        )
    if torch_tp_plugin is not None and torch_tp_plugin.tp_size != parallelism_config.tp_size:
        raise ValueError(
            f"Accelerator got torch_tp_plugin.tp_size={torch_tp_plugin.tp_size} and "
            f"parallelism_config.tp_size={parallelism_config.tp_size}; give the size once, in "
            "parallelism_config"
        )
    return parallelism_config
