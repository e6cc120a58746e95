"""A DeepSpeed script started with plain ``python`` (one process, no launcher) trains."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import torch
    from accel.core import Accelerator
    from accel.deepspeed import DeepSpeedPlugin

    # gradient_clipping=0 turns off DeepSpeed's default clipping at 1.0
    plugin = DeepSpeedPlugin(zero_stage=2, gradient_clipping=0.0)
    accelerator = Accelerator(deepspeed_plugin=plugin)
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    reference = torch.nn.Linear(4, 1)
    reference.load_state_dict(model.state_dict())
    data = torch.utils.data.TensorDataset(torch.randn(16, 4), torch.randn(16, 1))
    loader = torch.utils.data.DataLoader(data, batch_size=4)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    plain = torch.optim.SGD(reference.parameters(), lr=0.1)
    for x, y in loader:
        accelerator.backward(torch.nn.functional.mse_loss(model(x), y))
        optimizer.step()
        loss = torch.nn.functional.mse_loss(reference(x), y)
        loss.backward()
        plain.step()
        plain.zero_grad()
    ours = accelerator.get_state_dict(model)
    for name, value in reference.state_dict().items():
        assert torch.allclose(ours[name], value, atol=1e-6), name
    assert accelerator.num_processes == 1 and model.global_steps == 4
    print("TRAINED")
    accelerator.end_training()
    """
)


@pytest.mark.slow
def test_plain_python_script_trains_on_one_process() -> None:
    environment = {
        k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")
    }
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        capture_output=True,
        text=True,
        timeout=300,
        env={**environment, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0 and "TRAINED" in result.stdout, result.stderr[-3000:]
