"""Checkpoint IO: ``save_state``/``load_state`` with accel vs Accelerate, the blocked time of
``async_save``, and ``save_model`` write throughput vs ``dd``.

The model is 16 ``nn.Linear(4096, 4096)`` layers in float32 (1.07 GB) with an AdamW state
after one step (2.15 GB more), so a checkpoint is 3.2 GB (``--quick``: ``Linear(512, 512)``,
17 MB + 34 MB). Every library runs in its own fresh subprocess, alternating, ``--repeat``
times; the table shows medians.

- **save**: the ``save_state(folder)`` call; **save durable**: the call plus an ``os.sync()``
  right after it (accel flushes every file before it returns; Accelerate does not, so the
  sync is where its data reaches the disk). **load**: ``load_state(folder)`` in a new process
  (as a resumed job does) into a freshly prepared model and an optimizer without state; *cold*:
  the page cache dropped first (a job resumed on another machine, or much later;
  ``echo 1 > /proc/sys/vm/drop_caches`` needs root, else the table says the load was warm),
  *warm*: every file of the checkpoint read once first (a job resumed right away, on the same
  machine). accel writes big files around the page cache, so without these two steps the
  load would favour Accelerate's files, which its save left cached.
- **async blocked**: how long ``save_state(async_save=True)`` blocks training (the copy to
  CPU), first save (buffers allocated) and second save (buffers reused), against accel's own
  synchronous save; **async total**: until ``wait_for_checkpoint()`` returns.
- **save_model**: ``accelerator.save_model(model, folder)`` (one 1.07 GB safetensors file)
  vs ``dd if=/dev/zero of=file bs=16M`` of the same size, both to the same folder, without
  and with a flush to disk (``conv=fsync`` / ``os.sync()``).

Loaded weights and optimizer states are checked bitwise against the saved ones::

    OMP_NUM_THREADS=1 uv run python tools/bench/checkpoint_io.py [--quick | --smoke] [--repeat 3]

``--smoke`` (the test suite's run: checks every step works, the numbers are not measurements):
``--quick`` sizes, and one long-lived child per library serves every step that otherwise runs
in its own fresh process (the same functions, in 2 interpreters instead of 8); the page cache
is not dropped before the "cold" loads.

Targets: save and load >= 1.5x faster than Accelerate; async blocked <= 20% of the
synchronous save; save_model >= 70% of dd's throughput.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from child_servers import ChildServers, serve

TARGET_SPEEDUP = 1.5
TARGET_ASYNC_BLOCKED = 0.20
TARGET_DD = 0.70


def _build(width: int, layers: int = 16) -> tuple[Any, Any]:
    import torch

    torch.manual_seed(0)
    model = torch.nn.Sequential(*[torch.nn.Linear(width, width) for _ in range(layers)])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randn(2, width)).sum().backward()
    optimizer.step()
    optimizer.zero_grad()
    return model, optimizer


def _accelerator(library: str) -> Any:
    if library == "accel":
        from accel.core import Accelerator
    else:
        from accelerate import Accelerator
    return Accelerator(cpu=True)


def _same(a: Any, b: Any) -> bool:
    import torch

    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


# --smoke's long-lived children leave the machine's page cache alone (other tests run beside).
_KEEP_PAGE_CACHE = False


def _drop_page_cache() -> bool:
    """Empty the page cache (as a job resumed later finds it); needs root. Whether it worked."""
    if _KEEP_PAGE_CACHE:
        return False
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as handle:
            handle.write("1\n")
        return True
    except OSError:
        return False


def child_save(library: str, width: int, folder: str) -> dict[str, float]:
    """One fresh process: build, train one step, ``save_state`` (then sync)."""
    model, optimizer = _build(width)
    accelerator = _accelerator(library)
    model, optimizer = accelerator.prepare(model, optimizer)
    os.sync()
    started = time.perf_counter()
    accelerator.save_state(folder)
    saved = time.perf_counter() - started
    os.sync()
    return {"save": saved, "durable": time.perf_counter() - started}


def _read_through(folder: str) -> None:
    """Read every file of ``folder`` once, so it sits in the page cache."""
    for name in os.listdir(folder):
        with open(os.path.join(folder, name), "rb") as handle:
            while handle.read(64 << 20):
                pass


def child_load(library: str, width: int, folder: str, cache: str) -> dict[str, float]:
    """One fresh process, as a resumed job: ``load_state`` into a new model and optimizer
    (``cache="cold"``: page cache dropped first; ``"warm"``: every file read once first), then
    check every weight and optimizer value bitwise against the same training step rebuilt
    here."""
    import torch

    expected_model, expected_optimizer = _build(width)
    model, optimizer = _build(width)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
    optimizer.state.clear()
    accelerator = _accelerator(library)
    model, optimizer = accelerator.prepare(model, optimizer)
    dropped = {}
    if cache == "warm":
        _read_through(folder)
    else:
        dropped["cold"] = float(_drop_page_cache())
    started = time.perf_counter()
    accelerator.load_state(folder)
    loaded = time.perf_counter() - started
    assert _same(model.state_dict(), expected_model.state_dict()), f"{library}: weights differ"
    got, want = optimizer.state_dict(), expected_optimizer.state_dict()
    assert _same(got["state"], want["state"]), f"{library}: optimizer differs"
    return {f"load_{cache}": loaded, **dropped}


def child_async(width: int, folder: str) -> dict[str, float]:
    """One fresh process: accel's synchronous save, then two async saves (cold, warm)."""
    model, optimizer = _build(width)
    accelerator = _accelerator("accel")
    model, optimizer = accelerator.prepare(model, optimizer)
    os.sync()
    started = time.perf_counter()
    accelerator.save_state(os.path.join(folder, "sync"))
    sync_save = time.perf_counter() - started
    result = {"sync": sync_save}
    for label in ("cold", "warm"):
        target = os.path.join(folder, label)
        os.sync()
        started = time.perf_counter()
        accelerator.save_state(target, async_save=True)
        result[f"blocked_{label}"] = time.perf_counter() - started
        accelerator.wait_for_checkpoint()
        result[f"total_{label}"] = time.perf_counter() - started
    expected = {k: v.clone() for k, v in model.state_dict().items()}
    from safetensors.torch import load_file

    written = load_file(os.path.join(folder, "warm", "model.safetensors"))
    assert _same({k: written[k] for k in expected}, expected), "async save wrote other weights"
    return result


def child_save_model(width: int, folder: str) -> dict[str, float]:
    """One fresh process: save_model (page cache, then durable) vs dd of the same size."""
    model, _ = _build(width)
    accelerator = _accelerator("accel")
    model = accelerator.prepare(model)
    size = sum(p.numel() * p.element_size() for p in model.parameters())
    result: dict[str, float] = {"bytes": float(size)}
    for durable in (False, True):
        target = os.path.join(folder, f"model_{durable}")
        os.sync()
        started = time.perf_counter()
        accelerator.save_model(model, target, max_shard_size="10GB")
        if durable:
            os.sync()
        result[f"save_model_{durable}"] = time.perf_counter() - started
        shutil.rmtree(target)

        blocks = max(1, size >> 24)
        dd = ["dd", "if=/dev/zero", f"of={os.path.join(folder, 'dd.bin')}", "bs=16M"]
        dd += [f"count={blocks}", "status=none", *(["conv=fsync"] if durable else [])]
        os.sync()
        started = time.perf_counter()
        subprocess.run(dd, check=True)
        dd_seconds = time.perf_counter() - started
        result[f"dd_{durable}"] = dd_seconds * size / (blocks << 24)  # same byte count
        os.remove(os.path.join(folder, "dd.bin"))
    return result


def _child(mode: str, rest: list[str]) -> dict[str, float]:
    """Run one step (``--child`` or a ``--smoke`` server's request); its result."""
    if mode == "save":
        return child_save(rest[0], int(rest[1]), rest[2])
    if mode == "load":
        return child_load(rest[0], int(rest[1]), rest[2], rest[3])
    if mode == "async":
        return child_async(int(rest[0]), rest[1])
    return child_save_model(int(rest[0]), rest[1])


def _serve() -> None:
    """``--smoke``'s long-lived child: answers ``[mode, *args]`` requests (child_servers.py);
    exits non-zero on the first failing step."""
    global _KEEP_PAGE_CACHE
    _KEEP_PAGE_CACHE = True
    serve(lambda request: _child(request[0], request[1:]))


_SERVERS: ChildServers | None = None  # set by --smoke: one long-lived child per library


def _spawn(mode: str, *args: str) -> dict[str, float]:
    if _SERVERS is not None:
        library = args[0] if mode in ("save", "load") else "accel"  # async, save_model: accel's
        return _SERVERS.ask(library, [mode, *args])
    command = [sys.executable, __file__, "--child", mode, *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(f"{mode} {args} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _ratio_line(label: str, value: float, target: float, higher_is_better: bool) -> str:
    ok = value >= target if higher_is_better else value <= target
    sign = ">=" if higher_is_better else "<="
    return f"  {label:<44} {value:6.2f}x  (target {sign} {target}x){'' if ok else '  MISSED'}"


def main(argv: list[str] | None = None) -> None:
    """Run the checkpoint IO benchmark and print the table.

    Example:
        >>> main(["--quick", "--repeat", "1"])  # doctest: +SKIP
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="17 MB model (smoke test)")
    parser.add_argument(
        "--smoke", action="store_true", help="--quick in 2 long-lived children (test suite)"
    )
    parser.add_argument(
        "--repeat", type=int, default=None, help="saves per library (3; --quick: 1)"
    )
    parser.add_argument(
        "--loads",
        type=int,
        default=None,
        help="loads of each checkpoint per cache state (2; --quick: 1)",
    )
    parser.add_argument("--dir", default=None, help="where to write (default: a temp folder)")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        mode, *rest = args.child
        print(json.dumps(_child(mode, rest)))
        return
    if args.serve:
        _serve()
        return

    global _SERVERS
    if args.smoke:
        args.quick = True
        _SERVERS = ChildServers(__file__)
    width = 512 if args.quick else 4096
    if args.repeat is None:
        args.repeat = 1 if args.quick else 3
    if args.loads is None:
        args.loads = 1 if args.quick else 2
    root = Path(tempfile.mkdtemp(prefix="accel-ckpt-bench-", dir=args.dir))
    try:
        libraries = ("accel", "accelerate")
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in libraries}
        loads: dict[str, list[dict[str, float]]] = {name: [] for name in libraries}
        for _ in range(args.repeat):
            folders = {name: str(root / name) for name in libraries}
            for library in libraries:
                runs[library].append(_spawn("save", library, str(width), folders[library]))
            # Loads alternate between the libraries, so a slow spell of the disk or of the
            # machine's memory hits both alike.
            for _ in range(args.loads):
                for cache in ("cold", "warm"):
                    for library in libraries:
                        args_ = (library, str(width), folders[library], cache)
                        loads[library].append(_spawn("load", *args_))
            for folder in folders.values():
                shutil.rmtree(folder, ignore_errors=True)
        asyncs = []
        models = []
        for _ in range(args.repeat):
            asyncs.append(_spawn("async", str(width), str(root / "async")))
            shutil.rmtree(root / "async", ignore_errors=True)
            (root / "sm").mkdir(exist_ok=True)
            models.append(_spawn("save_model", str(width), str(root / "sm")))
            shutil.rmtree(root / "sm", ignore_errors=True)
        if _SERVERS is not None:
            _SERVERS.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)

    def median(rows: list[dict[str, float]], key: str) -> float:
        return statistics.median(r[key] for r in rows if key in r)

    table = {name: runs[name] + loads[name] for name in runs}

    gb = median(models, "bytes") / 1e9
    print(
        f"\ncheckpoint IO: model {gb:.2f} GB + AdamW state; medians of {args.repeat} saves and "
        f"{args.repeat * args.loads} loads per cache state"
    )
    cold = all(r["cold"] for rows in loads.values() for r in rows if "cold" in r)
    if args.smoke:
        print("  (--smoke: the page cache was left alone, 'cold' loads are warm)")
    elif not cold:
        print("  (not root: the page cache could not be dropped, 'cold' loads are warm)")
    print(f"  {'':<22} {'accel':>9} {'accelerate':>11}")
    for key, label in (
        ("save", "save_state"),
        ("durable", "save_state + sync"),
        ("load_cold", "load_state, cold cache"),
        ("load_warm", "load_state, warm cache"),
    ):
        a, b = median(table["accel"], key), median(table["accelerate"], key)
        print(f"  {label:<22} {a:8.2f}s {b:10.2f}s")
    for key, label in (
        ("save", "save_state (returned), accelerate/accel"),
        ("durable", "save_state (on disk), accelerate/accel"),
        ("load_cold", "load_state (cold cache), accelerate/accel"),
        ("load_warm", "load_state (warm cache), accelerate/accel"),
    ):
        ratio = median(table["accelerate"], key) / median(table["accel"], key)
        print(_ratio_line(label, ratio, TARGET_SPEEDUP, True))
    sync = median(asyncs, "sync")
    print(f"\nasync_save (accel): synchronous save {sync:.2f}s")
    for label in ("cold", "warm"):
        blocked, total = median(asyncs, f"blocked_{label}"), median(asyncs, f"total_{label}")
        print(f"  {label}: blocked {blocked:.2f}s, until on disk {total:.2f}s")
        print(
            _ratio_line(
                f"blocked / synchronous save ({label})", blocked / sync, TARGET_ASYNC_BLOCKED, False
            )
        )
    print("\nsave_model vs dd (same bytes, same folder)")
    for durable in (False, True):
        ours, dd = median(models, f"save_model_{durable}"), median(models, f"dd_{durable}")
        label = "flushed to disk" if durable else "page cache"
        print(f"  {label}: save_model {gb / ours:.2f} GB/s, dd {gb / dd:.2f} GB/s")
        print(_ratio_line(f"save_model / dd throughput ({label})", dd / ours, TARGET_DD, True))


if __name__ == "__main__":
    main()
