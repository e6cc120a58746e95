"""accel.state started by plain ``python`` with only MPI launcher variables set.

An MPI launcher (Open MPI's ``mpirun``, MPICH/Intel MPI's PMI) sets its own rank and size
variables, not torch's ``RANK``/``WORLD_SIZE``. The test starts two of these processes itself
with ``OMPI_COMM_WORLD_*`` or ``PMI_*`` plus ``MASTER_PORT``; they must form one gloo group.
"""

from __future__ import annotations

import os
from datetime import timedelta

import torch
import torch.distributed as dist
from _harness import Checks

EXPECTED_RANK = int(os.environ.get("OMPI_COMM_WORLD_RANK", os.environ.get("PMI_RANK", "-1")))
EXPECTED_LOCAL = int(
    os.environ.get("OMPI_COMM_WORLD_LOCAL_RANK", os.environ.get("MPI_LOCALRANKID", EXPECTED_RANK))
)
checks = Checks()
state = None


@checks.add
def no_torch_launcher_variables():
    present = [key for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK") if key in os.environ]
    assert not present, f"the test leaked {present} into an MPI-style launch"


@checks.add
def create_state():
    global state
    from accel.state import PartialState

    state = PartialState(timeout=timedelta(seconds=60))


@checks.add
def one_gloo_group_of_two():
    from accel.state import DistributedType

    assert dist.is_initialized() and dist.get_world_size() == 2
    assert (state.num_processes, state.process_index) == (2, EXPECTED_RANK)
    assert state.local_process_index == EXPECTED_LOCAL, state.local_process_index
    assert dist.get_rank() == EXPECTED_RANK
    assert state.distributed_type == DistributedType.MULTI_CPU, state.distributed_type
    assert state.backend == "gloo" and state.device == torch.device("cpu")
    assert state.is_main_process == (EXPECTED_RANK == 0)


@checks.add
def all_reduce_sums_both_ranks():
    value = torch.tensor([float(EXPECTED_RANK + 1)])
    dist.all_reduce(value)
    assert value.item() == 3.0, value


@checks.add
def gather_through_accel_ops():
    from accel.ops import gather

    assert gather(torch.tensor([EXPECTED_RANK * 5])).tolist() == [0, 5]


checks.run(EXPECTED_RANK)
if dist.is_initialized():
    dist.destroy_process_group()
