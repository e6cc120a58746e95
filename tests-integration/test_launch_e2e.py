"""An ``Accelerator`` training script started by ``accel launch`` (2 CPU processes).

Checks that the settings the launcher resolves reach the ``Accelerator`` through the
environment protocol, and that the two processes train as one DDP job.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from background import background
from launching import clean_environment

ACCEL = Path(sys.executable).parent / "accel"

TRAIN = """
import json, os, sys
import torch
from accel.core import Accelerator

accelerator = Accelerator()
torch.manual_seed(0)
model = torch.nn.Linear(4, 1)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
data = torch.utils.data.TensorDataset(torch.randn(32, 4), torch.randn(32, 1))
loader = torch.utils.data.DataLoader(data, batch_size=4)
model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
steps = 0
for x, y in loader:
    with accelerator.accumulate(model):
        loss = torch.nn.functional.mse_loss(model(x).float(), y)
        accelerator.backward(loss)
        optimizer.step()
        optimizer.zero_grad()
        steps += 1
weights = accelerator.unwrap_model(model).weight.detach().flatten()
gathered = accelerator.gather(weights[None])
report = {
    "num_processes": accelerator.num_processes,
    "process_index": accelerator.process_index,
    "distributed_type": str(accelerator.distributed_type),
    "mixed_precision": accelerator.mixed_precision,
    "gradient_accumulation_steps": accelerator.gradient_accumulation_steps,
    "steps": steps,
    "weights_equal": bool(torch.allclose(gathered[0], gathered[1])),
}
out = os.environ["ACCEL_IT_OUT"]
with open(os.path.join(out, f"rank{accelerator.process_index}.json"), "w") as handle:
    json.dump(report, handle)
accelerator.wait_for_everyone()
"""


@background(seconds=9, timeout=240)
def e2e_launch(tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """``accel launch`` of TRAIN in ``tmp_path``, in the background (see background.py)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent(TRAIN))
    env = clean_environment({"ACCEL_IT_OUT": str(tmp_path), "HF_HOME": str(tmp_path / "hf")})
    env["XDG_CONFIG_HOME"] = str(tmp_path / "xdg")
    env.pop("OMP_NUM_THREADS", None)  # the launcher sets 1
    command = [str(ACCEL), "launch", "--cpu", "--num_processes", "2"]
    command += ["--mixed_precision", "bf16", "--gradient_accumulation_steps", "2", str(script)]
    return subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=240, cwd=tmp_path
    )


@pytest.mark.slow
def test_accelerator_under_accel_launch(e2e_launch: subprocess.CompletedProcess[str]):
    result = e2e_launch
    tmp_path = Path(result.args[-1]).parent  # the job's folder, where the script is
    assert result.returncode == 0, result.stderr[-4000:]
    reports = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    for rank, report in enumerate(reports):
        assert report["process_index"] == rank
        assert report["num_processes"] == 2
        assert report["distributed_type"] == "MULTI_CPU"
        assert report["mixed_precision"] == "bf16"
        assert report["gradient_accumulation_steps"] == 2, report
        assert report["steps"] == 4  # 32 samples / 2 processes / batch 4
        assert report["weights_equal"]
