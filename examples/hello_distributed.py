"""A first multi-process job with accel's state and collectives.

Run it on two CPU processes (any machine, no GPU needed):

    uv run torchrun --nproc_per_node 2 examples/hello_distributed.py

or on one, with plain ``uv run python examples/hello_distributed.py``.
"""

import torch

from accel.ops import gather, gather_object, pad_across_processes, reduce, set_seed
from accel.state import PartialState

state = PartialState()
set_seed(1234)
state.print(f"{state.num_processes} process(es), {state.distributed_type}, backend {state.backend}")

# Each process scores its own share of the prompts.
prompts = ["a cat", "a dog", "a bird", "a fish", "a horse"]
with state.split_between_processes(prompts) as mine:
    scores = torch.tensor([float(len(p)) for p in mine])
    names = [f"{p!r} on process {state.process_index}" for p in mine]

# Shares differ in length: pad them so they can be gathered, then gather everything at once.
padded = pad_across_processes({"scores": scores}, pad_index=-1)
everything = gather(padded)
valid = everything["scores"][everything["scores"] >= 0]
mean_share = reduce(torch.tensor(float(len(scores))), reduction="mean")
handled = gather_object(names)


@state.on_main_process
def report() -> None:
    print("scores of all prompts:", valid.tolist())
    print("mean share per process:", mean_share.item())
    print("who handled what:", *handled, sep="\n  ")


report()
state.wait_for_everyone()
state.destroy_process_group()
