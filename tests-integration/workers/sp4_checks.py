"""DeepSpeed Ulysses sequence parallelism with data parallelism on 4 gloo CPU processes:
``ParallelismConfig(sp_size=2)`` x 2 data-parallel groups, ZeRO-2 (``sp_checks.py`` does the
work; this launch runs only its comparison with the 1-process reference).

Each step the two sequence-parallel groups train one sample each, each rank holding half of
its sequence; DeepSpeed averages the gradients over the data-parallel groups, so a step equals
the 1-process reference training those two samples as one batch.
"""

from __future__ import annotations

import sp_checks  # a sibling worker script; trains the reference at import
import torch
from _harness import Checks

checks = Checks()


@checks.add
def ulysses_sp_2_dp_2_zero_2_equals_reference() -> None:
    assert sp_checks.DP == 2, sp_checks.DP
    sp_checks.train_and_compare(checks, "ulysses_sp2_dp2")


if __name__ == "__main__":
    checks.run(sp_checks.RANK)
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()
