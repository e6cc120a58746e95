"""save_model, save and trackers under a real 2-process job (gloo, CPU, FSDP2).

Run through ``tests-integration/launching.py``; writes ``rank<N>.json`` into ``ACCEL_IT_OUT``.
Every rank calls ``save_model`` (the state dict is gathered from the shards first); rank 0
writes, and reloads the files to compare with an unsharded copy of the model.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from _harness import Checks
from torch import nn

from accel.big_model import load_checkpoint_in_model
from accel.core import Accelerator, FullyShardedDataParallelPlugin
from accel.state import reset_state

RANK = int(os.environ["RANK"])
OUT = Path(os.environ["ACCEL_IT_OUT"])
checks = Checks()


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.up = nn.Linear(8, 16)
        self.down = nn.Linear(16, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(torch.relu(self.up(x)))


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([Block(), Block()])
        self.head = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.head(x)


def shared_dir(name: str) -> Path:
    """A folder every rank names the same (under the report directory)."""
    return OUT / "files" / name


@checks.add
def fsdp_save_model_reloads():
    torch.manual_seed(0)
    reference = Net()
    model = Net()
    model.load_state_dict(reference.state_dict())
    accelerator = Accelerator(
        fsdp_plugin=FullyShardedDataParallelPlugin(
            auto_wrap_policy="transformer_based_wrap", transformer_cls_names_to_wrap=["Block"]
        )
    )
    assert accelerator.is_fsdp2 and accelerator.num_processes == 2
    model, _ = accelerator.prepare(model, torch.optim.SGD(model.parameters(), lr=0.0))
    for safe in (True, False):
        folder = shared_dir(f"fsdp_{safe}")
        accelerator.save_model(model, folder, max_shard_size="600B", safe_serialization=safe)
        accelerator.wait_for_everyone()
        if RANK == 0:
            index = "model.safetensors.index.json" if safe else "pytorch_model.bin.index.json"
            assert (folder / index).exists(), sorted(os.listdir(folder))
            fresh = Net()
            for p in fresh.parameters():
                nn.init.zeros_(p)
            load_checkpoint_in_model(fresh, str(folder))
            x = torch.randn(3, 8)
            torch.testing.assert_close(fresh(x), reference(x), rtol=0, atol=0)
        accelerator.wait_for_everyone()


def _fsdp_training(state_dict_type: str):
    """A fresh FSDP2 accelerator, model and AdamW from the same seed, and a step function."""
    reset_state()
    torch.manual_seed(0)
    model = Net()
    accelerator = Accelerator(
        fsdp_plugin=FullyShardedDataParallelPlugin(
            auto_wrap_policy="transformer_based_wrap",
            transformer_cls_names_to_wrap=["Block"],
            state_dict_type=state_dict_type,
        )
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.05)
    model, optimizer = accelerator.prepare(model, optimizer)

    def train(steps: int, seed: int) -> None:
        generator = torch.Generator().manual_seed(seed * 10 + RANK)
        for _ in range(steps):
            loss = model(torch.randn(4, 8, generator=generator)).pow(2).mean()
            accelerator.backward(loss)
            optimizer.step()
            optimizer.zero_grad()

    return accelerator, model, train


@checks.add
def fsdp_save_state_resumes_identically():
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    full = StateDictOptions(full_state_dict=True, cpu_offload=True)
    for kind in ("FULL_STATE_DICT", "SHARDED_STATE_DICT"):
        accelerator, model, train = _fsdp_training(kind)
        train(3, seed=1)
        folder = accelerator.save_state(shared_dir(f"fsdp_state_{kind}"))
        train(3, seed=2)
        expected = get_model_state_dict(model, options=full)

        accelerator, model, train = _fsdp_training(kind)
        accelerator.load_state(folder)
        train(3, seed=2)
        got = get_model_state_dict(model, options=full)
        if RANK == 0:
            assert expected and expected.keys() == got.keys()
            for key in expected:
                assert torch.equal(expected[key], got[key]), (kind, key)
            # the saved weights are full: a plain module loads them
            from safetensors.torch import load_file

            plain = Net()
            plain.load_state_dict(load_file(os.path.join(folder, "model.safetensors")))
        accelerator.wait_for_everyone()
    reset_state()


@checks.add
def save_and_trackers_main_process_only():
    accelerator = Accelerator(log_with="jsonl", project_dir=str(shared_dir("project")))
    accelerator.save({"rank": RANK}, shared_dir("obj.pt"))
    accelerator.init_trackers("run", config={"world": accelerator.num_processes})
    accelerator.log({"rank": RANK}, step=RANK)
    for tracker in accelerator.trackers:
        tracker.finish()
    accelerator.wait_for_everyone()
    assert torch.load(shared_dir("obj.pt")) == {"rank": 0}
    lines = (shared_dir("project") / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["values"] for line in lines] == [{"rank": 0}]
    accelerator.wait_for_everyone()


def _wandb_children() -> list[str]:
    """Command lines of this process's child processes that belong to wandb."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit():
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                if ppid == os.getpid() and "wandb" in cmdline:
                    found.append(cmdline)
        except OSError:
            continue
    return found


@checks.add
def wandb_and_mlflow_main_process_only():
    folder = shared_dir("trackers")
    folder.mkdir(parents=True, exist_ok=True)
    os.environ.update(WANDB_MODE="offline", WANDB_SILENT="true", WANDB_CONSOLE="off")
    for var in ("WANDB_DIR", "WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        os.environ[var] = str(folder)
    accelerator = Accelerator(log_with=["wandb", "mlflow"], project_dir=str(folder))
    accelerator.init_trackers("run2", config={"world": accelerator.num_processes})
    accelerator.log({"rank": RANK}, step=RANK)
    if RANK != 0:  # no run, no library import, no wandb-core service off the main process
        assert accelerator.trackers == []
        assert "wandb" not in sys.modules and "mlflow" not in sys.modules
        assert _wandb_children() == []
    for tracker in accelerator.trackers:
        tracker.finish()
    assert _wandb_children() == [], "finish must stop the wandb-core service"
    accelerator.wait_for_everyone()
    if RANK == 0:
        assert len(list((folder / "wandb").glob("offline-run-*"))) == 1
        from mlflow import MlflowClient

        os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
        client = MlflowClient(tracking_uri=(folder / "mlruns").absolute().as_uri())
        (run,) = client.search_runs([client.get_experiment_by_name("run2").experiment_id])
        assert run.data.params == {"world": "2"}
        history = client.get_metric_history(run.info.run_id, "rank")
        assert [(m.step, m.value) for m in history] == [(0, 0.0)]
    accelerator.wait_for_everyone()


checks.run(RANK)
reset_state()
if dist.is_initialized():
    dist.destroy_process_group()
