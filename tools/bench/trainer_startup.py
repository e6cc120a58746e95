"""``import transformers`` + ``Trainer`` construction: accel's compat wheel vs real Accelerate.

Both sides run in environments holding exactly the same locked third-party packages
(``tools/compat/requirements.txt``): ``.venv-compat`` (accel + the compat wheel) and
``.venv-compat-ref`` (the real accelerate 1.15.0), built by ``tools/compat/make_env.sh`` and
``tools/compat/make_env.sh --reference``. Each run is a fresh 1-process Python that imports
transformers, builds a tiny GPT-2 and a ``Trainer``; the runs alternate between the two sides.
Reported: the median CPU time of the process (user+sys: steadier than wall time on a shared
machine) and the median wall time, and the ratio accel / Accelerate (target <= 1.0)::

    OMP_NUM_THREADS=1 uv run python tools/bench/trainer_startup.py [--runs 3] [--profile]

``--profile`` also prints the functions of accel / accelerate that cost the most CPU during
one accel run (cProfile, cumulative).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SIDES = {"accel": ROOT / ".venv-compat", "accelerate": ROOT / ".venv-compat-ref"}

WORKER = """
import json, sys, time
wall, cpu = time.perf_counter(), time.process_time()
import torch
from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainingArguments
model = GPT2LMHeadModel(GPT2Config(vocab_size=256, n_positions=64, n_embd=64, n_layer=2, n_head=2))
row = torch.zeros(8, dtype=torch.long)
args = TrainingArguments(output_dir=sys.argv[1], max_steps=1, use_cpu=True, report_to=[],
                         disable_tqdm=True)
trainer = Trainer(model=model, args=args, train_dataset=[{"input_ids": row, "labels": row}])
print("RESULT " + json.dumps({"cpu": time.process_time() - cpu,
                              "wall": time.perf_counter() - wall,
                              "accelerate": __import__("accelerate").__version__}))
"""


def run_once(python: Path, out: Path, profile: Path | None = None) -> dict:
    """One fresh process: CPU and wall seconds of import + construction, and the version."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ACCEL", "VIRTUAL_ENV"))}
    env.update(OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_VERBOSITY="error")
    prefix = ["-m", "cProfile", "-o", str(profile)] if profile else []
    script = out / "worker.py"
    script.write_text(WORKER)
    proc = subprocess.run(
        [str(python), *prefix, str(script), str(out / "trainer")],
        capture_output=True, text=True, env=env, cwd=out, check=False,
    )  # fmt: skip
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        sys.exit(f"trainer_startup: {python} failed:\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][7:])


def print_profile(path: Path, limit: int = 15) -> None:
    """The accel / accelerate functions with the most cumulative time in ``path``."""
    import pstats

    stats = pstats.Stats(str(path))
    rows = [
        (data[3], f"{Path(file).name}:{line}({name})")
        for (file, line, name), data in stats.stats.items()  # type: ignore[attr-defined]
        if "/accel/" in file or "/accelerate/" in file
    ]
    print(f"accel / accelerate functions by cumulative time (top {limit}):")
    for seconds, where in sorted(rows, reverse=True)[:limit]:
        print(f"  {seconds:6.3f} s  {where}")


def main(argv: list[str] | None = None) -> int:
    """Alternate runs on both sides, print medians and the ratio."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per side (default 3)")
    parser.add_argument("--profile", action="store_true", help="cProfile one accel run")
    opts = parser.parse_args(argv)
    if opts.runs < 1:
        parser.error(f"--runs {opts.runs}: need at least 1")
    missing = [f"{p} ({'--reference' if n == 'accelerate' else 'no flag'})"
               for n, p in SIDES.items() if not (p / "bin" / "python").exists()]  # fmt: skip
    if missing:
        sys.exit(f"trainer_startup: build {', '.join(missing)} with tools/compat/make_env.sh")
    import tempfile

    results: dict[str, list[dict]] = {name: [] for name in SIDES}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(opts.runs):
            for name, venv in SIDES.items():
                results[name].append(run_once(venv / "bin" / "python", Path(tmp)))
        if opts.profile:
            run_once(SIDES["accel"] / "bin" / "python", Path(tmp), Path(tmp) / "prof")
            print_profile(Path(tmp) / "prof")
    median = {
        name: {k: statistics.median(r[k] for r in runs) for k in ("cpu", "wall")}
        for name, runs in results.items()
    }
    print(f"import transformers + Trainer construction, 1 process, median of {opts.runs}:")
    for name, runs in results.items():
        print(f"  {name:10} ({runs[0]['accelerate']:>17})  cpu {median[name]['cpu']:6.2f} s"
              f"   wall {median[name]['wall']:6.2f} s")  # fmt: skip
    ratio = median["accel"]["cpu"] / median["accelerate"]["cpu"]
    verdict = "" if ratio <= 1.0 else "  MISSED"
    print(f"  ratio accel/accelerate (cpu) {ratio:.2f}x (target <= 1.0){verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
