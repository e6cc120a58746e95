"""A 2-process job that shows progress, logs an accel warning and prints many lines.

argv: checkpoint folder. Rank 0 writes a sharded checkpoint of 8 layers; every rank loads it
into a 7-layer model (so accel warns about the unused weights), then prints 1,000 lines to
stdout. ``FAIL_RANK`` makes that rank exit with status 3 at the end.
"""

from __future__ import annotations

import os
import sys

from torch import nn

from accel.big_model import init_empty_weights, load_checkpoint_and_dispatch
from accel.big_model.checkpoint import save_sharded_safetensors
from accel.state import PartialState


def layers(count: int) -> nn.Sequential:
    return nn.Sequential(*[nn.Linear(64, 64) for _ in range(count)])


state = PartialState()
folder = sys.argv[1]
if state.is_main_process:
    save_sharded_safetensors(layers(8).state_dict(), folder, max_shard_size="20KB")
state.wait_for_everyone()
with init_empty_weights():
    model = layers(7)
load_checkpoint_and_dispatch(model, folder, device_map={"": "cpu"})
state.wait_for_everyone()
for i in range(1000):
    print(f"rank{state.process_index} line {i} " + "x" * 60)
sys.stdout.flush()
state.wait_for_everyone()
state.destroy_process_group()
sys.exit(3 if os.environ.get("FAIL_RANK") == str(state.process_index) else 0)
