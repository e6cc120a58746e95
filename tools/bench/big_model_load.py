"""Time to first output of a big checkpoint: ``accel.big_model`` vs Accelerate vs a raw read.

The model is 24 ``nn.Linear(4096, 4096)`` layers in float32 (1.6 GB; ``--quick``:
24 ``nn.Linear(512, 512)``, 25 MB) saved once, in a temporary folder, as 6 safetensors shards
with an index. Every measurement runs in a fresh subprocess; "time to first output" is
``load_checkpoint_and_dispatch`` (from an ``init_empty_weights`` model) plus the first forward
of a batch of 4, measured after the imports. Peak RSS is that subprocess's high-water mark
(``VmHWM``, not ``ru_maxrss``, which a child inherits from its parent); its increase over the
RSS right after the imports is compared with the targets.

- (a) all on CPU (``{"": "cpu"}``), cold (page cache dropped with
  ``echo 1 > /proc/sys/vm/drop_caches`` before each run; needs root, reported if refused) and
  warm (median of ``--repeat`` runs each), against a dd-style raw read of all shard files
  (unbuffered Python ``readinto`` of one reused 16 MiB buffer; cold also with ``O_DIRECT``).
- (b) half on CPU, half on disk (page cache warm): time to first output and the steady
  forward time (median of several forwards), accel with prefetch on and off. Accelerate
  copies the disk half into ``.dat`` files first (part of its time to first output).
- (c) everything on disk (``{"": "disk"}``): Accelerate refuses it ("fails").

Outputs of every run are checked bitwise against a reference computed when the checkpoint is
written; a verification pass of each library runs before anything is timed::

    OMP_NUM_THREADS=1 uv run python tools/bench/big_model_load.py [--quick | --smoke]

``--smoke`` (the test suite's run: checks every case works, the numbers are not measurements):
``--quick`` sizes, one run per case, and one long-lived child per library serves every load
that otherwise runs in its own fresh process (the same functions, in 2 interpreters instead of
11, so peak RSS is the child's highest so far); the page cache is not dropped ("cold" is warm).

Targets: all-CPU cold <= 1.3x raw read, warm <= 2x; all-CPU peak RSS increase <= model + one
shard; half on disk >= 3x faster than Accelerate to first output and steady forward >= 1.5x
faster with prefetch on; all-disk works with a peak RSS increase <= 1.2x the largest shard.
"""

from __future__ import annotations

import argparse
import json
import mmap
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from child_servers import RESULT, ChildServers, serve

LAYERS = 24
SHARDS = 6
BATCH = 4
TARGET_COLD = 1.3
TARGET_WARM = 2.0
TARGET_TTFO_HALF = 3.0
TARGET_STEADY_HALF = 1.5
TARGET_DISK_RSS = 1.2
DROP_CACHES = "/proc/sys/vm/drop_caches"
CHUNK = 16 << 20


# --------------------------------------------------------------------------- checkpoint


def write_checkpoint(folder: Path, hidden: int) -> dict[str, Any]:
    """Write the model as ``SHARDS`` safetensors shards + index into ``folder``, and the input
    batch and reference output (``reference.pt``). Returns sizes for the report.

    Example:
        >>> info = write_checkpoint(Path(tempfile.mkdtemp()), 8)  # doctest: +SKIP
    """
    import torch
    from safetensors.torch import save_file

    generator = torch.Generator().manual_seed(0)
    x = torch.randn(BATCH, hidden, generator=generator)
    y = x
    per_shard = LAYERS // SHARDS
    weight_map: dict[str, str] = {}
    total = 0
    for shard in range(SHARDS):
        name = f"model-{shard + 1:05d}-of-{SHARDS:05d}.safetensors"
        block = {}
        for layer in range(shard * per_shard, (shard + 1) * per_shard):
            weight = torch.randn(hidden, hidden, generator=generator) * hidden**-0.5
            bias = torch.randn(hidden, generator=generator) * 0.01
            y = torch.nn.functional.linear(y, weight, bias)
            block[f"{layer}.weight"], block[f"{layer}.bias"] = weight, bias
        save_file(block, folder / name, metadata={"format": "pt"})
        total += sum(t.numel() * t.element_size() for t in block.values())
        weight_map.update(dict.fromkeys(block, name))
        del block
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
    torch.save({"x": x, "y": y}, folder / "reference.pt")
    shard_sizes = [p.stat().st_size for p in sorted(folder.glob("*.safetensors"))]
    return {"model_bytes": total, "file_bytes": sum(shard_sizes), "largest_shard": max(shard_sizes)}


# --------------------------------------------------------------------------- child processes


def _rss() -> int:
    """Current resident set size of this process in bytes."""
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak_rss() -> int:
    """Peak resident set size of this process in bytes: ``VmHWM`` of ``/proc/self/status``
    (``ru_maxrss`` survives ``fork`` + ``exec``, so in a child it is at least the parent's RSS
    at spawn time); ``ru_maxrss`` (KiB on Linux) where ``/proc`` is missing."""
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def raw_read(folder: Path, direct: bool) -> dict[str, Any]:
    """Read every shard file dd-style: unbuffered Python ``readinto`` of one reused 16 MiB
    page-aligned buffer (``direct``: ``O_DIRECT``, bypassing the page cache).

    Example:
        >>> raw_read(Path(tempfile.mkdtemp()), direct=False)["bytes"]
        0
    """
    files = sorted(folder.glob("*.safetensors"))
    buffer = mmap.mmap(-1, CHUNK)
    start = time.perf_counter()
    total = 0
    for path in files:
        fd = os.open(path, os.O_RDONLY | (os.O_DIRECT if direct else 0))
        with os.fdopen(fd, "rb", buffering=0) as handle:
            while True:
                got = handle.readinto(buffer) or 0
                total += got
                if got < CHUNK:
                    break
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "bytes": total, "peak_rss": _peak_rss()}


def load_and_run(spec: dict[str, Any]) -> dict[str, Any]:
    """In a fresh process: load the checkpoint with ``spec["lib"]`` on ``spec["placement"]``,
    run the first forward and ``spec["forwards"]`` more; times, peak RSS, output check.

    Example:
        >>> load_and_run({"lib": "accel", ...})  # doctest: +SKIP
    """
    import torch
    from torch import nn

    if spec["lib"] == "accel":
        from accel.big_model import init_empty_weights, load_checkpoint_and_dispatch
    else:
        from accelerate import init_empty_weights, load_checkpoint_and_dispatch

    folder = Path(spec["folder"])
    reference = torch.load(folder / "reference.pt")
    x, expected = reference["x"], reference["y"]
    hidden = x.shape[1]
    half = LAYERS // 2
    device_map = {
        "cpu": {"": "cpu"},
        "half": {str(i): "cpu" if i < half else "disk" for i in range(LAYERS)},
        "disk": {"": "disk"},
    }[spec["placement"]]
    kwargs: dict[str, Any] = {}
    if spec.get("offload_folder"):
        kwargs["offload_folder"] = spec["offload_folder"]
    if spec["lib"] == "accel":
        kwargs["prefetch"] = spec.get("prefetch", True)
    base_rss = _rss()
    start = time.perf_counter()
    try:
        with init_empty_weights():
            model = nn.Sequential(*[nn.Linear(hidden, hidden) for _ in range(LAYERS)])
        model = load_checkpoint_and_dispatch(model, str(folder), device_map=device_map, **kwargs)
        loaded = time.perf_counter()
        with torch.no_grad():
            out = model(x)
        first = time.perf_counter()
        steady = []
        for _ in range(spec["forwards"]):
            tick = time.perf_counter()
            with torch.no_grad():
                again = model(x)
            steady.append(time.perf_counter() - tick)
    except Exception as err:  # reported as "fails" (Accelerate refuses all-disk maps)
        return {"error": f"{type(err).__name__}: {str(err).splitlines()[0][:120]}"}
    return {
        "load": loaded - start,
        "ttfo": first - start,
        "steady": statistics.median(steady) if steady else None,
        "match": bool(torch.equal(out, expected) and torch.equal(again, expected))
        if steady
        else bool(torch.equal(out, expected)),
        "base_rss": base_rss,
        "peak_rss": _peak_rss(),
    }


def verify(spec: dict[str, Any]) -> dict[str, Any]:
    """Load with ``spec["lib"]`` on every placement it supports and check each output equals
    the reference; ``{"ok": ..., "checked": [...]}``.

    Example:
        >>> verify({"lib": "accel", "folder": "..."})  # doctest: +SKIP
    """
    checked, ok = [], True
    runs = [("cpu", True), ("half", True)]
    if spec["lib"] == "accel":
        runs += [("half", False), ("disk", True), ("disk", False)]
    for placement, prefetch in runs:
        offload = tempfile.mkdtemp(dir=spec["scratch"])
        result = load_and_run(
            {**spec, "placement": placement, "prefetch": prefetch, "forwards": 1}
            | {"offload_folder": offload}
        )
        shutil.rmtree(offload, ignore_errors=True)
        good = bool(result.get("match"))
        ok &= good
        checked.append(f"{placement}{'' if prefetch else ' (no prefetch)'}: {good}")
    return {"ok": ok, "checked": checked}


SERVERS: ChildServers | None = None  # set by --smoke: one long-lived child per library
KEEP_PAGE_CACHE = False  # --smoke: other tests run beside, leave the machine's page cache alone


def child_main(spec: dict[str, Any]) -> None:
    """Entry point of a child process: run ``spec["task"]`` and print its result as JSON.

    Example:
        >>> child_main({"task": "raw", "folder": "...", "direct": False})  # doctest: +SKIP
    """
    print(RESULT + json.dumps(run_spec(spec)), flush=True)


def run_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """Run ``spec["task"]`` in this process and return its result."""
    if spec["task"] == "raw":
        return raw_read(Path(spec["folder"]), spec["direct"])
    if spec["task"] == "verify":
        return verify(spec)
    return load_and_run(spec)


# --------------------------------------------------------------------------- parent


def drop_caches() -> str | None:
    """Flush dirty pages and drop the page cache; the reason if not permitted, else ``None``.

    Example:
        >>> drop_caches() in (None,) or isinstance(drop_caches(), str)  # doctest: +SKIP
        True
    """
    if KEEP_PAGE_CACHE:
        return None
    os.sync()
    try:
        with open(DROP_CACHES, "w") as handle:
            handle.write("1\n")
    except OSError as err:
        return f"{type(err).__name__}: {err.strerror or err}"
    return None


def warm(folder: Path) -> None:
    """Read every file of ``folder`` once so it sits in the page cache.

    Example:
        >>> warm(Path(tempfile.mkdtemp()))
    """
    for path in folder.iterdir():
        if path.is_file():
            with open(path, "rb", buffering=0) as handle:
                while handle.read(CHUNK):
                    pass


def spawn(spec: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    """Run one child with ``spec`` and return its result (exit on a crash).

    Example:
        >>> spawn({"task": "raw", "folder": ".", "direct": False}, dict(os.environ))  # doctest: +SKIP
    """
    if SERVERS is not None and "lib" in spec:
        return SERVERS.ask(spec["lib"], spec)
    command = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)]
    proc = subprocess.run(command, env=env, capture_output=True, text=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        print(proc.stdout[-2000:], proc.stderr[-4000:], file=sys.stderr)
        sys.exit(f"benchmark child failed ({proc.returncode}): {spec}")
    return json.loads(lines[-1][len("RESULT ") :])


def median_run(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median time (``ttfo`` or ``seconds``), with the highest peak RSS seen.

    Example:
        >>> median_run([{"seconds": s, "peak_rss": s % 3} for s in (3, 1, 2)])
        {'seconds': 2, 'peak_rss': 2}
    """
    ordered = sorted(results, key=lambda r: r.get("ttfo", r.get("seconds")))
    return {**ordered[(len(ordered) - 1) // 2], "peak_rss": max(r["peak_rss"] for r in results)}


def gb(n: float) -> str:
    """Bytes as decimal GB with 2 decimals.

    Example:
        >>> gb(1.5e9)
        '1.50 GB'
    """
    return f"{n / 1e9:.2f} GB"


def verdict(ok: bool) -> str:
    """``ok`` or ``MISSED``.

    Example:
        >>> verdict(False)
        'MISSED'
    """
    return "ok" if ok else "MISSED"


def main(argv: list[str] | None = None) -> None:
    """Write the checkpoint, verify outputs, time every case in fresh processes, print tables.

    Example:
        >>> main(["--quick"])  # doctest: +SKIP
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="24 x Linear(512): smoke test")
    parser.add_argument(
        "--smoke", action="store_true", help="--quick in 2 long-lived children (test suite)"
    )
    parser.add_argument("--repeat", type=int, help="runs per all-CPU case (default 3, quick 1)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child_main(json.loads(args.child))
        return
    if args.serve:
        serve(run_spec)
        return
    args.quick = args.quick or args.smoke
    hidden = 512 if args.quick else 4096
    args.repeat = args.repeat or (1 if args.quick else 3)
    forwards = 3 if args.quick else 5
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    env.pop("ACCEL_OFFLOAD_PREFETCH", None)
    global SERVERS, KEEP_PAGE_CACHE
    if args.smoke:
        SERVERS, KEEP_PAGE_CACHE = ChildServers(str(Path(__file__).resolve()), env), True
    root = Path(tempfile.mkdtemp(prefix="accel-bench-big-model-"))
    try:
        free = shutil.disk_usage(root).free
        need = LAYERS * (hidden * hidden + hidden) * 4 * 1.6
        if free < need:
            sys.exit(f"not enough disk space in {root}: {gb(free)} free, ~{gb(need)} needed")
        folder, scratch = root / "ckpt", root / "scratch"
        folder.mkdir()
        scratch.mkdir()
        start = time.perf_counter()
        info = write_checkpoint(folder, hidden)
        model_bytes, largest = info["model_bytes"], info["largest_shard"]
        print(
            f"\nbig-model load: {LAYERS} x Linear({hidden}) fp32 = {gb(model_bytes)} in {SHARDS} "
            f"safetensors shards (largest {gb(largest)}), batch {BATCH}, "
            f"written in {time.perf_counter() - start:.1f} s, free disk {gb(free)}",
            flush=True,
        )
        base = {"folder": str(folder), "scratch": str(scratch)}

        for lib in ("accel", "accelerate"):
            result = spawn({**base, "task": "verify", "lib": lib}, env)
            print(f"  outputs == reference ({lib}): {', '.join(result['checked'])}", flush=True)
            if not result["ok"]:
                sys.exit(f"{lib} output differs from the reference: not timing")

        def timed(lib: str, placement: str, prefetch: bool = True, n: int = 0) -> dict[str, Any]:
            offload = tempfile.mkdtemp(dir=scratch)
            spec = {**base, "task": "load", "lib": lib, "placement": placement}
            spec |= {"prefetch": prefetch, "forwards": n, "offload_folder": offload}
            try:
                result = spawn(spec, env)
            finally:
                shutil.rmtree(offload, ignore_errors=True)
            if "error" not in result and not result["match"]:
                sys.exit(f"output mismatch in timed run {spec}")
            return result

        # (a) all on CPU, cold then warm
        cold_reason = drop_caches()
        raw_specs = {
            "raw": {**base, "task": "raw", "direct": False},
            "raw-direct": {**base, "task": "raw", "direct": True},
        }
        runs: dict[str, list[dict[str, Any]]] = {}
        for _ in range(args.repeat if cold_reason is None else 0):  # cases alternate
            for key, spec in raw_specs.items():
                drop_caches()
                runs.setdefault(f"cold {key}", []).append(spawn(spec, env))
            for lib in ("accel", "accelerate"):
                drop_caches()
                runs.setdefault(f"cold {lib}", []).append(timed(lib, "cpu", n=1))
        warm(folder)
        for _ in range(args.repeat):
            runs.setdefault("warm raw", []).append(spawn(raw_specs["raw"], env))
            for lib in ("accel", "accelerate"):
                runs.setdefault(f"warm {lib}", []).append(timed(lib, "cpu", n=1))
        rows = {key: median_run(results) for key, results in runs.items()}

        file_bytes = info["file_bytes"]
        cpu_rss_target = model_bytes + largest
        print(
            f"\n(a) all on CPU: time to first output (load + 1st forward) of {gb(file_bytes)}, "
            f"median of {args.repeat}"
        )
        print(f"  {'case':<22} {'seconds':>8} {'rate':>10} {'peak RSS':>10} {'RSS incr.':>10}")
        for key, row in rows.items():
            seconds = row.get("ttfo", row.get("seconds"))
            incr = row["peak_rss"] - row.get("base_rss", 0)
            incr_text = gb(incr) if "base_rss" in row else "-"
            print(
                f"  {key:<22} {seconds:8.3f} {file_bytes / seconds / 1e9:6.2f} GB/s "
                f"{gb(row['peak_rss']):>10} {incr_text:>10}"
            )
        if args.smoke:
            print("  (--smoke: the page cache was left alone, 'cold' runs are warm)")
        if cold_reason is not None:
            print(f"  cold runs skipped: cannot write {DROP_CACHES} ({cold_reason})")
        else:
            raw = min(rows["cold raw"]["seconds"], rows["cold raw-direct"]["seconds"])
            for lib in ("accel", "accelerate"):
                ratio = rows[f"cold {lib}"]["ttfo"] / raw
                extra = f"(target <= {TARGET_COLD}x: {verdict(ratio <= TARGET_COLD)})"
                print(
                    f"  cold {lib} / fastest raw read {ratio:5.2f}x  "
                    + (extra if lib == "accel" else "")
                )
        for lib in ("accel", "accelerate"):
            ratio = rows[f"warm {lib}"]["ttfo"] / rows["warm raw"]["seconds"]
            extra = f"(target <= {TARGET_WARM}x: {verdict(ratio <= TARGET_WARM)})"
            print(
                f"  warm {lib} / raw read      {ratio:5.2f}x  " + (extra if lib == "accel" else "")
            )
        incr = max(r["peak_rss"] - r["base_rss"] for k, r in rows.items() if k.endswith("accel"))
        print(
            f"  accel peak RSS increase {gb(incr)} vs model + one shard {gb(cpu_rss_target)} "
            f"({verdict(incr <= cpu_rss_target)})",
            flush=True,
        )

        # (b) half CPU / half disk, (c) all on disk; page cache warm
        offload_rows = {
            "half accel prefetch on": timed("accel", "half", True, forwards),
            "half accel prefetch off": timed("accel", "half", False, forwards),
            "half accelerate": timed("accelerate", "half", True, forwards),
            "disk accel prefetch on": timed("accel", "disk", True, forwards),
            "disk accel prefetch off": timed("accel", "disk", False, forwards),
            "disk accelerate": timed("accelerate", "disk", True, forwards),
        }
        print("\n(b) half CPU / half disk and (c) all on disk (page cache warm)")
        print(
            f"  {'case':<24} {'1st output':>10} {'steady fwd':>10} {'fwd rate':>10} "
            f"{'peak RSS':>9} {'RSS incr.':>9}"
        )
        for key, row in offload_rows.items():
            if "error" in row:
                print(f"  {key:<24} fails: {row['error']}")
                continue
            print(
                f"  {key:<24} {row['ttfo']:9.3f}s {row['steady'] * 1e3:8.1f}ms "
                f"{model_bytes / row['steady'] / 1e9:5.2f} GB/s {gb(row['peak_rss']):>9} "
                f"{gb(row['peak_rss'] - row['base_rss']):>9}"
            )
        ref = offload_rows["half accelerate"]
        on, off = offload_rows["half accel prefetch on"], offload_rows["half accel prefetch off"]
        if "error" not in ref:
            speedup = ref["ttfo"] / on["ttfo"]
            print(
                f"  half: accelerate / accel time to first output {speedup:5.2f}x "
                f"(target >= {TARGET_TTFO_HALF}x: {verdict(speedup >= TARGET_TTFO_HALF)})"
            )
            for label, row in (("on", on), ("off", off)):
                speedup = ref["steady"] / row["steady"]
                target = (
                    f"  (target >= {TARGET_STEADY_HALF}x: {verdict(speedup >= TARGET_STEADY_HALF)})"
                    if label == "on"
                    else ""
                )
                print(
                    f"  half: accelerate / accel steady forward, prefetch {label:<3} {speedup:5.2f}x{target}"
                )
        disk = offload_rows["disk accel prefetch on"]
        disk_incr = max(
            offload_rows[k]["peak_rss"] - offload_rows[k]["base_rss"]
            for k in ("disk accel prefetch on", "disk accel prefetch off")
        )
        disk_target = TARGET_DISK_RSS * largest
        print(
            f"  disk: accel works ({disk['ttfo']:.3f} s to first output), peak RSS increase "
            f"{gb(disk_incr)} vs 1.2 x largest shard {gb(disk_target)} "
            f"({verdict(disk_incr <= disk_target)}); accelerate: "
            + ("fails" if "error" in offload_rows["disk accelerate"] else "works")
        )
        if SERVERS is not None:
            SERVERS.close()
        print(f"  big-model benchmark done in {time.perf_counter() - start:.0f} s", flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
