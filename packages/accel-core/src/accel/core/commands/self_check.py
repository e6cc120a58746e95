"""The script ``accel test`` launches: each check prints one line; any failure exits 1."""

from __future__ import annotations

import sys
import traceback

import torch

from accel.core import Accelerator, PartialState, broadcast, gather, reduce, set_seed


def check_group(state: PartialState) -> str:
    ones = reduce(torch.ones(1), reduction="sum")
    assert int(ones.item()) == state.num_processes, f"sum of ones is {ones.item()}"
    return f"{state.num_processes} process(es), {state.distributed_type.value}, {state.device}"


def check_collectives(state: PartialState) -> str:
    rank = state.process_index
    mine = {"id": torch.tensor([rank]), "pair": [torch.full((2,), float(rank))]}
    everyone = gather(mine)
    assert everyone["id"].tolist() == list(range(state.num_processes)), everyone["id"]
    shared = broadcast({"w": torch.full((3,), float(rank))}, from_process=0)
    assert shared["w"].tolist() == [0.0] * 3, shared["w"]
    return "gather, reduce and broadcast agree across processes"


def check_training() -> str:
    set_seed(0)
    accelerator = Accelerator(gradient_accumulation_steps=2)
    inputs, targets = torch.randn(64, 8), torch.randn(64, 1)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(inputs, targets), batch_size=8
    )
    model = torch.nn.Linear(8, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    for x, y in loader:
        with accelerator.accumulate(model):
            loss = torch.nn.functional.mse_loss(model(x), y)
            accelerator.backward(loss)
            optimizer.step()
            optimizer.zero_grad()
    weights = accelerator.unwrap_model(model).weight.detach()
    spread = (gather(weights[None]) - weights).abs().max().item()
    assert spread == 0.0, f"weights differ across processes by {spread}"
    return f"{len(loader)} steps of training, weights identical on every process"


def main() -> int:
    state = PartialState()
    failed = False
    checks = [
        ("process group", lambda: check_group(state)),
        ("collectives", lambda: check_collectives(state)),
        ("training", check_training),
    ]
    for name, check in checks:
        try:
            detail = check()
            state.print(f"  ok    {name}: {detail}")
        except Exception:
            failed = True
            print(f"  FAIL  {name} on process {state.process_index}:", file=sys.stderr)
            traceback.print_exc()
    state.wait_for_everyone()
    state.destroy_process_group()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
