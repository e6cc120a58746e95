"""A strategy from another distribution, found through the ``accel.strategies`` entry point
and used through ``Accelerator``: the public strategy contract is enough to write one.

The strategy (``third_party/accel_toy_strategy.py``) is installed the way pip lays out a
wheel: the module plus an ``accel_toy_strategy-0.1.dist-info`` folder whose
``entry_points.txt`` registers it, on the path of a fresh interpreter started by
``accel launch --strategy toy`` (the option table's ``strategy`` entry, ``ACCEL_STRATEGY`` in
the child).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from background import background
from launching import base_environment

HERE = Path(__file__).parent

DRIVER = textwrap.dedent(
    """
    import json, os, sys
    import torch
    from accel.core import Accelerator, set_seed
    from accel.core.strategies import chosen_strategy

    out = sys.argv[1]
    report = {"imported_early": "accel_toy_strategy" in sys.modules}
    accelerator = Accelerator()
    strategy = accelerator.strategy
    report["strategy"] = f"{type(strategy).__module__}:{type(strategy).__name__}"
    set_seed(0)
    model = torch.nn.Linear(4, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, 1)
    data = torch.utils.data.TensorDataset(torch.randn(8, 4), torch.randn(8, 2))
    loader = torch.utils.data.DataLoader(data, batch_size=2)
    model, optimizer, loader, scheduler = accelerator.prepare(model, optimizer, loader, scheduler)
    report["wrapped"] = type(model).__name__
    report["unwrapped"] = type(accelerator.unwrap_model(model)).__name__
    for x, y in loader:
        loss = torch.nn.functional.mse_loss(model(x), y)
        accelerator.backward(loss)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
    report["backward_calls"] = strategy.backward_calls
    seen = strategy.prepared
    report["prepared"] = [
        len(seen.models), len(seen.optimizers), len(seen.schedulers), len(seen.dataloaders)
    ]
    accelerator.step = 5
    folder = accelerator.save_state(os.path.join(out, "ckpt"))
    report["files"] = sorted(os.listdir(folder))
    with open(os.path.join(folder, "toy_strategy.json")) as handle:
        report["marker"] = json.load(handle)
    saved = {k: v.clone() for k, v in accelerator.unwrap_model(model).state_dict().items()}
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(1.0)
    accelerator.step = 0
    accelerator.load_state(folder)
    restored = accelerator.unwrap_model(model).state_dict()
    report["weights_restored"] = all(torch.equal(saved[k], v) for k, v in restored.items())
    report["step_after_load"] = accelerator.step
    report["strategy_read_marker"] = strategy.loaded_marker == report["marker"]
    try:
        accelerator.save_state(os.path.join(out, "async"), async_save=True)
    except ValueError as error:
        report["async_refused"] = str(error)
    try:
        chosen_strategy("NO", environ={"ACCEL_STRATEGY": "nope"})
    except ValueError as error:
        report["unknown_name"] = str(error)
    print("REPORT " + json.dumps(report))
    """
)


def _install(site: Path) -> None:
    """Lay out the toy distribution in ``site`` as an installer would."""
    shutil.copy(HERE / "third_party" / "accel_toy_strategy.py", site / "accel_toy_strategy.py")
    info = site / "accel_toy_strategy-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: accel-toy-strategy\nVersion: 0.1\n"
    )
    (info / "entry_points.txt").write_text(
        "[accel.strategies]\ntoy = accel_toy_strategy:ToyStrategy\n"
    )
    (info / "RECORD").write_text("")


@background(seconds=4, timeout=300)
def toy_strategy_run(tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """DRIVER with the toy distribution installed in ``tmp_path/site`` (in the background)."""
    site = tmp_path / "site"
    site.mkdir(parents=True)
    _install(site)
    env = {
        k: v
        for k, v in base_environment().items()
        if not k.startswith(("ACCEL_", "ACCELERATE_", "RANK", "WORLD_SIZE", "LOCAL_RANK"))
    }
    env.update(
        PYTHONPATH=os.pathsep.join([str(site), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        OMP_NUM_THREADS="1",
    )
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    accel = Path(sys.executable).with_name("accel")
    launch = [str(accel), "launch", "--num_processes", "1", "--strategy", "toy"]
    return subprocess.run(
        [*launch, str(driver), str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


@pytest.mark.slow
def test_third_party_strategy_through_entry_point(
    toy_strategy_run: subprocess.CompletedProcess[str],
) -> None:
    result = toy_strategy_run
    assert result.returncode == 0, result.stderr[-3000:]
    line = next(x for x in result.stdout.splitlines() if x.startswith("REPORT "))
    report = json.loads(line[len("REPORT ") :])

    assert report["imported_early"] is False  # discovered lazily, only when asked for
    assert report["strategy"] == "accel_toy_strategy:ToyStrategy"
    # prepare: the strategy built the wrapper itself; the Accelerator recorded what it returned
    assert report["wrapped"] == "ToyWrapper" and report["unwrapped"] == "Linear"
    assert report["prepared"] == [1, 1, 1, 1]
    assert report["backward_calls"] == 4
    # checkpoint hooks: explicit context in, Accelerate's files plus the strategy's own out
    assert {"model.safetensors", "optimizer.bin", "scheduler.bin", "random_states_0.pkl"} <= set(
        report["files"]
    )
    assert "toy_strategy.json" in report["files"]
    assert report["marker"] == {
        "step": 5,
        "models": ["ToyWrapper"],
        "optimizers": 1,
        "schedulers": 1,
        "dataloaders": 1,
        "backward_calls": 4,
    }
    assert report["weights_restored"] is True
    assert report["step_after_load"] == 5  # context.step went back to the Accelerator
    assert report["strategy_read_marker"] is True
    assert "'toy' strategy" in report["async_refused"]
    assert "ACCEL_STRATEGY='nope'" in report["unknown_name"]
    assert "accel.strategies" in report["unknown_name"]
