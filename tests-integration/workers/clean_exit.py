"""A script that trains a few steps, prints "done" and returns, without ``end_training``.

Started by ``accel launch --cpu --num_processes 2`` (see ``test_clean_exit.py``); the job
must exit 0 every time: what accel created (process groups, the checkpoint writer thread)
is torn down at interpreter exit by ``accel.state.teardown``. The mode is the first argument:

- ``ddp``: plain DDP training.
- ``fsdp2``: the same model sharded with FSDP2.
- ``async_save``: DDP plus ``save_state(async_save=True)`` left in flight at the end, so the
  writer's own gloo group and thread are alive when the script returns (the checkpoint goes
  to ``$ACCEL_IT_OUT/ckpt``, shared by the ranks).
- ``deepspeed``: DeepSpeed ZeRO-2 (accel-deepspeed).
- ``starved_gloo_workers``: DDP whose last step runs with torch's gloo worker threads starved
  (the process on one CPU, the workers at ``SCHED_IDLE``), then the script destroys the group
  itself. A worker then frees the last gradient all-reduce (which holds a Python object) late,
  as a loaded machine makes it do now and then; without accel's wait at exit, a rank aborted
  in about half of these runs (Linux only).

A second argument ``user_group`` has the script start the process group itself before
``Accelerator()`` (accel adopts it). A second argument ``end_training`` calls ``accelerator.end_training()`` before returning;
``destroy_process_group`` has the script destroy the group itself, as many scripts do (the
model still holds it, so its gloo worker threads live on into the exit).

Example:
    accel launch --cpu --num_processes 2 clean_exit.py ddp
"""

from __future__ import annotations

import os
import sys
import tempfile

import torch
from torch import nn

from accel.core import Accelerator

MODES = ("ddp", "fsdp2", "async_save", "deepspeed", "starved_gloo_workers")


def starve_gloo_workers() -> None:
    """Put this process on one CPU and torch's gloo worker threads below every other thread."""
    cpu = min(os.sched_getaffinity(0))
    for tid in os.listdir("/proc/self/task"):
        os.sched_setaffinity(int(tid), {cpu})  # per thread: existing threads keep their own
        with open(f"/proc/self/task/{tid}/comm") as comm:
            if comm.read().strip() == "pt_gloo_runloop":
                os.sched_setscheduler(int(tid), os.SCHED_IDLE, os.sched_param(0))


def make_accelerator(mode: str) -> Accelerator:
    if mode == "fsdp2":
        from accel.core import FullyShardedDataParallelPlugin

        return Accelerator(fsdp_plugin=FullyShardedDataParallelPlugin())
    if mode == "deepspeed":
        from accel.deepspeed import DeepSpeedPlugin

        return Accelerator(deepspeed_plugin=DeepSpeedPlugin(zero_stage=2))
    return Accelerator()


def main() -> None:
    mode = sys.argv[1] if len(sys.argv) > 1 else "ddp"
    if mode not in MODES:
        raise SystemExit(f"clean_exit.py: unknown mode {mode!r}; valid: {', '.join(MODES)}")
    if "user_group" in sys.argv[2:]:
        torch.distributed.init_process_group("gloo")
    accelerator = make_accelerator(mode)
    torch.manual_seed(0)
    data = torch.utils.data.TensorDataset(torch.randn(64, 8), torch.randn(64, 1))
    loader = torch.utils.data.DataLoader(data, batch_size=8, shuffle=True)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    for step, (inputs, targets) in enumerate(loader):
        if mode == "starved_gloo_workers" and step == len(loader) - 1:
            starve_gloo_workers()
        loss = nn.functional.mse_loss(model(inputs), targets)
        accelerator.backward(loss)
        optimizer.step()
        optimizer.zero_grad()
    if mode == "async_save":
        folder = os.path.join(os.environ.get("ACCEL_IT_OUT", tempfile.gettempdir()), "ckpt")
        accelerator.save_state(folder, async_save=True)
    if "end_training" in sys.argv[2:]:
        accelerator.end_training()
    if "destroy_process_group" in sys.argv[2:] or mode == "starved_gloo_workers":
        accelerator.wait_for_everyone()
        torch.distributed.destroy_process_group()
    print(f"done rank {accelerator.process_index}", flush=True)


if __name__ == "__main__":
    main()
