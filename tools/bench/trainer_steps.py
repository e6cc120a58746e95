"""transformers ``Trainer`` steps/s on 2 CPU processes: accel (compat wheel) vs real Accelerate.

The same worker (this file with ``--worker``) runs under the real Accelerate in the dev
environment (``accelerate launch --multi_gpu``, ``ACCELERATE_USE_CPU=1``) and under accel's
compat wheel in ``.venv-compat`` (``accel launch``; build it with ``tools/compat/make_env.sh``).
Rank 0 reports the time of ``import transformers`` + ``Trainer`` construction and the steps/s
over the steps after a warm-up (a callback stamps each step end). One run each; the ratio is
accel / Accelerate (target >= 1.0)::

    OMP_NUM_THREADS=1 uv run python tools/bench/trainer_steps.py [--steps 60]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WARMUP = 10


def worker(out: str, steps: int) -> None:
    start = time.perf_counter()
    import torch
    from transformers import (
        GPT2Config,
        GPT2LMHeadModel,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    torch.manual_seed(0)
    model = GPT2LMHeadModel(
        GPT2Config(vocab_size=256, n_positions=64, n_embd=64, n_layer=2, n_head=2)
    )
    ids = torch.randint(0, 256, (4096, 32), generator=torch.Generator().manual_seed(1))
    data = [{"input_ids": row, "labels": row} for row in ids]
    stamps: list[float] = []

    class Stamp(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            stamps.append(time.perf_counter())

    args = TrainingArguments(
        output_dir=tempfile.mkdtemp(),
        max_steps=steps,
        per_device_train_batch_size=8,
        logging_steps=steps,
        save_strategy="no",
        use_cpu=True,
        report_to=[],
        seed=0,
        disable_tqdm=True,
    )
    trainer = Trainer(model=model, args=args, train_dataset=data, callbacks=[Stamp()])
    constructed = time.perf_counter() - start
    trainer.train()
    if args.process_index == 0:
        timed = stamps[WARMUP:]
        rate = (len(timed) - 1) / (timed[-1] - timed[0])
        Path(out).write_text(
            json.dumps(
                {
                    "steps_per_s": rate,
                    "import_construct_s": constructed,
                    "world_size": args.world_size,
                }
            )
        )


def _run(cmd: list[str], out: Path, env: dict[str, str]) -> dict:
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode != 0 or not out.exists():
        sys.exit(f"{' '.join(cmd)} failed:\n{proc.stderr[-4000:]}")
    return json.loads(out.read_text())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--worker", action="store_true")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("out", nargs="?")
    opts = parser.parse_args()
    if opts.worker:
        worker(opts.out, opts.steps)
        return
    compat = ROOT / ".venv-compat/bin"
    if not (compat / "accel").exists():
        sys.exit("trainer_steps: build .venv-compat first (tools/compat/make_env.sh)")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ACCEL", "VIRTUAL_ENV"))}
    env.update(OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    me = [str(Path(__file__).resolve()), "--worker", "--steps", str(opts.steps)]
    with tempfile.TemporaryDirectory() as tmp:
        theirs = _run(
            [
                "uv",
                "run",
                "--no-sync",
                "accelerate",
                "launch",
                "--multi_gpu",
                "--num_processes",
                "2",
                "--main_process_port",
                "29671",
                *me,
                f"{tmp}/ref.json",
            ],
            Path(tmp, "ref.json"),
            {**env, "ACCELERATE_USE_CPU": "1"},
        )
        ours = _run(
            [
                str(compat / "accel"),
                "launch",
                "--num_processes",
                "2",
                "--main_process_port",
                "29672",
                *me,
                f"{tmp}/ours.json",
            ],
            Path(tmp, "ours.json"),
            env,
        )
    assert ours["world_size"] == theirs["world_size"] == 2
    ratio = ours["steps_per_s"] / theirs["steps_per_s"]
    print(f"Trainer steps/s, 2 CPU processes ({opts.steps} steps, {WARMUP} warm-up):")
    print(
        f"  accel      {ours['steps_per_s']:7.2f}   import+construct {ours['import_construct_s']:.2f} s"
    )
    print(
        f"  accelerate {theirs['steps_per_s']:7.2f}   import+construct {theirs['import_construct_s']:.2f} s"
    )
    print(
        f"  ratio accel/accelerate {ratio:.2f}x (target >= 1.0){'' if ratio >= 1 else '  MISSED'}"
    )


if __name__ == "__main__":
    main()
