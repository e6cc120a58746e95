"""accel-deepspeed under a real 2-process job (gloo, CPU, DeepSpeed's CPU accelerator).

Run through ``tests-integration/launching.py``; writes ``rank<N>.json`` into ``ACCEL_IT_OUT``.
The same seeded model trains through accel's DDP path and through DeepSpeed ZeRO-1/2/3; the
weights (and the gradient norms ``clip_grad_norm_`` returns) must agree. CPU offload comes
after them (it compiles DeepSpeedCPUAdam on a cold machine), then the Ulysses
sequence-parallel checks of ``sp_checks.py``: one launch, one import of DeepSpeed per rank,
for every DeepSpeed check (each check builds its own engines after ``reset_state``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

# Imported first: it trains its 1-process reference at import, before anything else here, and
# its checks run last (Ulysses replaces transformers' sdpa attention for the whole process).
import sp_checks  # a sibling worker script
import torch
from _harness import Checks, refused
from torch import nn

from accel.core import Accelerator
from accel.deepspeed import DeepSpeedPlugin, DummyOptim, DummyScheduler, zero3_init_context
from accel.state import reset_state

RANK = int(os.environ["RANK"])
OUT = Path(os.environ["ACCEL_IT_OUT"])
checks = Checks()

STEPS = 8  # batches per process per epoch: 64 samples / (4 per batch x 2 processes)
TOLERANCE = 1e-5


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.up = nn.Linear(8, 32)
        self.down = nn.Linear(32, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(torch.tanh(self.up(x)))


def dataset() -> torch.utils.data.TensorDataset:
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(64, 8, generator=generator)
    y = x.sum(dim=1, keepdim=True) * 0.3 + 0.1 * torch.randn(64, 1, generator=generator)
    return torch.utils.data.TensorDataset(x, y)


def loader() -> torch.utils.data.DataLoader:
    return torch.utils.data.DataLoader(dataset(), batch_size=4, shuffle=False)


def fresh_model() -> Net:
    torch.manual_seed(0)
    return Net()


def shared_dir(name: str) -> Path:
    return OUT / "files" / name


def train(
    accelerator: Accelerator,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    data: torch.utils.data.DataLoader,
    clip: float | None = 1.0,
) -> list[float]:
    """Two epochs with accumulate() and clipping; returns the norms clip_grad_norm_ gave."""
    norms = []
    for _ in range(2):
        for x, y in data:
            with accelerator.accumulate(model):
                loss = nn.functional.mse_loss(model(x), y)
                accelerator.backward(loss)
                if accelerator.sync_gradients and clip is not None:
                    norm = accelerator.clip_grad_norm_(model.parameters(), clip)
                    norms.append(float(norm))
                optimizer.step()
                optimizer.zero_grad()
    return norms


def full_weights(accelerator: Accelerator, model: nn.Module) -> dict[str, torch.Tensor]:
    state = accelerator.get_state_dict(model)
    objects = [state]
    torch.distributed.broadcast_object_list(objects, src=0)  # ZeRO-3 gathers onto rank 0
    return {k: v.detach().float().cpu().clone() for k, v in objects[0].items()}


def max_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert sorted(a) == sorted(b), (sorted(a), sorted(b))
    return max(float((a[k] - b[k]).abs().max()) for k in a)


REFERENCE: dict[str, object] = {}


def ddp_reference() -> tuple[dict[str, torch.Tensor], list[float]]:
    if not REFERENCE:
        reset_state()
        accelerator = Accelerator(cpu=True, gradient_accumulation_steps=2)
        assert accelerator.distributed_type.value == "MULTI_CPU", accelerator.distributed_type
        model = fresh_model()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
        model, optimizer, data = accelerator.prepare(model, optimizer, loader())
        norms = train(accelerator, model, optimizer, data)
        REFERENCE["weights"] = full_weights(accelerator, model)
        REFERENCE["norms"] = norms
        reset_state()
    return REFERENCE["weights"], REFERENCE["norms"]  # type: ignore[return-value]


def deepspeed_accelerator(**plugin_kwargs: object) -> Accelerator:
    reset_state()
    accelerator = Accelerator(
        gradient_accumulation_steps=2, deepspeed_plugin=DeepSpeedPlugin(**plugin_kwargs)
    )
    assert accelerator.distributed_type.value == "DEEPSPEED", accelerator.distributed_type
    assert accelerator.num_processes == 2, accelerator.num_processes
    return accelerator


def check_stage_matches_ddp(stage: int) -> None:
    reference, reference_norms = ddp_reference()
    accelerator = deepspeed_accelerator(zero_stage=stage)
    model = fresh_model()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model, optimizer, data = accelerator.prepare(model, optimizer, loader())
    config = accelerator.state.deepspeed_plugin.deepspeed_config
    assert config["train_micro_batch_size_per_gpu"] == 4, config
    assert config["train_batch_size"] == 16, config
    assert config["gradient_accumulation_steps"] == 2, config
    assert len(data) == STEPS, len(data)  # the data is sharded: 8 batches each, not 16
    norms = train(accelerator, model, optimizer, data)
    weights = full_weights(accelerator, model)
    difference = max_difference(weights, reference)
    checks.record(f"zero{stage}_max_difference", difference)
    assert difference < TOLERANCE, f"ZeRO-{stage} differs from DDP by {difference}"
    assert len(norms) == len(reference_norms) == STEPS, (norms, reference_norms)
    for ours, theirs in zip(norms, reference_norms):
        assert abs(ours - theirs) < 1e-4 * max(1.0, theirs), (norms, reference_norms)
    assert accelerator.unwrap_model(model).__class__ is Net
    # the collectives keep working next to the engine
    gathered = accelerator.gather(torch.tensor([float(RANK)]))
    assert gathered.tolist() == [0.0, 1.0], gathered
    assert accelerator.reduce(torch.tensor(1.0)).item() == 2.0


@checks.add
def zero1_matches_ddp():
    check_stage_matches_ddp(1)


@checks.add
def zero2_matches_ddp():
    check_stage_matches_ddp(2)


@checks.add
def zero3_matches_ddp():
    check_stage_matches_ddp(3)


@checks.add
def scheduler_steps_once_per_optimizer_step():
    accelerator = deepspeed_accelerator(zero_stage=2)
    model = fresh_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 / (1 + step))
    model, optimizer, scheduler, data = accelerator.prepare(model, optimizer, scheduler, loader())
    train(accelerator, model, optimizer, data, clip=None)
    # 16 batches per process in two epochs, accumulation 2: 8 optimizer steps
    assert model.global_steps == 8, model.global_steps
    assert abs(scheduler.get_last_lr()[0] - 0.01 / 9) < 1e-12, scheduler.get_last_lr()


def resume_check(stage: int) -> None:
    def batches(start: int, count: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        out = []
        for step in range(start, start + count):
            generator = torch.Generator().manual_seed(1000 * step + RANK)
            x = torch.randn(4, 8, generator=generator)
            out.append((x, x.sum(dim=1, keepdim=True)))
        return out

    def run(model, optimizer, accelerator, start: int, count: int) -> None:
        for x, y in batches(start, count):
            loss = nn.functional.mse_loss(model(x), y)
            accelerator.backward(loss)
            optimizer.step()
            optimizer.zero_grad()

    folder = shared_dir(f"resume_zero{stage}")
    accelerator = deepspeed_accelerator(zero_stage=stage)
    model = fresh_model()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5)
    model, optimizer, scheduler, _ = accelerator.prepare(model, optimizer, scheduler, loader())
    run(model, optimizer, accelerator, 0, 3)
    saved = accelerator.save_state(str(folder), client_state={"epoch": 7})
    engine_dir = os.path.join(saved, "pytorch_model")
    engine_states = [n for n in os.listdir(engine_dir) if n.endswith("model_states.pt")]
    assert engine_states, os.listdir(engine_dir)
    # DeepSpeed's own file (client_state lands in it), so weights_only cannot apply.
    states = torch.load(os.path.join(engine_dir, engine_states[0]), weights_only=False)
    assert states["epoch"] == 7, sorted(states)
    run(model, optimizer, accelerator, 3, 3)
    straight = full_weights(accelerator, model)
    straight_lr = scheduler.get_last_lr()

    accelerator = deepspeed_accelerator(zero_stage=stage)
    torch.manual_seed(123)
    model = Net()  # different initial weights: everything must come from the checkpoint
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5)
    model, optimizer, scheduler, _ = accelerator.prepare(model, optimizer, scheduler, loader())
    accelerator.load_state(saved)
    assert model.global_steps == 3, model.global_steps
    run(model, optimizer, accelerator, 3, 3)
    resumed = full_weights(accelerator, model)
    difference = max_difference(resumed, straight)
    checks.record(f"resume_zero{stage}_max_difference", difference)
    assert difference == 0.0, f"resumed run differs by {difference}"
    assert scheduler.get_last_lr() == straight_lr, (scheduler.get_last_lr(), straight_lr)
    names = sorted(os.listdir(saved))
    assert "pytorch_model" in names and f"random_states_{RANK}.pkl" in names, names
    assert not any(n.startswith("optimizer") or n.startswith("scheduler") for n in names), names


@checks.add
def save_load_resumes_identically_zero2():
    resume_check(2)


@checks.add
def save_load_resumes_identically_zero3():
    resume_check(3)


@checks.add
def zero3_save_model_loads_in_plain_module():
    from safetensors.torch import load_file

    accelerator = deepspeed_accelerator(zero_stage=3)
    model = fresh_model()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model, optimizer, data = accelerator.prepare(model, optimizer, loader())
    train(accelerator, model, optimizer, data)
    # each process holds a part only
    local = sum(p.ds_tensor.numel() for p in model.module.parameters())
    total = sum(p.ds_numel for p in model.module.parameters())
    assert local < total, (local, total)
    folder = shared_dir("zero3_model")
    accelerator.save_model(model, folder)
    expected = full_weights(accelerator, model)
    accelerator.wait_for_everyone()
    plain = Net()
    plain.load_state_dict(load_file(str(folder / "model.safetensors")))
    difference = max_difference({k: v.float() for k, v in plain.state_dict().items()}, expected)
    assert difference == 0.0, difference
    reference, _ = ddp_reference()
    assert max_difference(expected, reference) < TOLERANCE


@checks.add
def zero3_init_builds_partitioned_model():
    accelerator = deepspeed_accelerator(zero_stage=3)
    torch.manual_seed(0)
    with zero3_init_context():
        model = Net()
    assert all(hasattr(p, "ds_id") for p in model.parameters())
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model, optimizer, data = accelerator.prepare(model, optimizer, loader())
    train(accelerator, model, optimizer, data)
    weights = full_weights(accelerator, model)
    assert all(torch.isfinite(v).all() for v in weights.values())
    assert weights["up.weight"].shape == (32, 8)


@checks.add
def zero3_model_refused_by_zero2():
    accelerator = deepspeed_accelerator(zero_stage=3)
    with zero3_init_context():
        model = Net()
    accelerator = deepspeed_accelerator(zero_stage=2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    refused(
        lambda: accelerator.prepare(model, optimizer, loader()),
        *("zero3_init_context", "zero_stage is 2"),
        accepted="a partitioned model was accepted by ZeRO-2",
    )


@checks.add
def partly_partitioned_model_refused():
    accelerator = deepspeed_accelerator(zero_stage=3)
    with zero3_init_context():
        inner = nn.Linear(8, 32)
    model = nn.Sequential(inner, nn.Linear(32, 1))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    refused(
        lambda: accelerator.prepare(model, optimizer, loader()),
        *("partly inside zero3_init_context", "1.weight"),
        accepted="a partly partitioned model was accepted",
    )


@checks.add
def config_file_auto_values_and_dummies():
    config = {
        "train_batch_size": "auto",
        "train_micro_batch_size_per_gpu": "auto",
        "gradient_accumulation_steps": "auto",
        "gradient_clipping": "auto",
        "zero_optimization": {"stage": 2},
        "optimizer": {
            "type": "AdamW",
            "params": {"lr": "auto", "weight_decay": "auto", "torch_adam": True},
        },
        "scheduler": {
            "type": "WarmupLR",
            "params": {
                "warmup_min_lr": "auto",
                "warmup_max_lr": "auto",
                "warmup_num_steps": "auto",
            },
        },
    }
    path = shared_dir("auto_config.json")
    if RANK == 0:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(config))
    torch.distributed.barrier()
    accelerator = deepspeed_accelerator(hf_ds_config=str(path))
    model = fresh_model()
    optimizer = DummyOptim(model.parameters(), lr=5e-3, weight_decay=0.01)
    scheduler = DummyScheduler(optimizer, warmup_num_steps=4)
    model, optimizer, scheduler, data = accelerator.prepare(model, optimizer, scheduler, loader())
    filled = accelerator.state.deepspeed_plugin.deepspeed_config
    assert filled["train_micro_batch_size_per_gpu"] == 4
    assert filled["train_batch_size"] == 16
    assert filled["gradient_accumulation_steps"] == 2
    assert filled["gradient_clipping"] == 1.0
    assert filled["optimizer"]["params"]["lr"] == 5e-3
    assert filled["optimizer"]["params"]["weight_decay"] == 0.01
    assert filled["scheduler"]["params"] == {
        "warmup_min_lr": 0,
        "warmup_max_lr": 5e-3,
        "warmup_num_steps": 4,
    }, filled["scheduler"]
    train(accelerator, model, optimizer, data, clip=None)
    assert model.global_steps == 8
    assert abs(scheduler.get_last_lr()[0] - 5e-3) < 1e-12, scheduler.get_last_lr()


@checks.add
def unresolved_auto_is_named():
    accelerator = deepspeed_accelerator(zero_stage=2)
    model = fresh_model()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    refused(
        lambda: accelerator.prepare(model, optimizer),  # no dataloader: micro batch unknown
        "train_micro_batch_size_per_gpu",
        accepted="an unresolved 'auto' was accepted",
    )


@checks.add
def two_plugins_student_and_teacher():
    reset_state()
    plugins = {
        "student": DeepSpeedPlugin(zero_stage=2),
        "teacher": DeepSpeedPlugin(zero_stage=3),
    }
    accelerator = Accelerator(deepspeed_plugins=plugins)
    student = fresh_model()
    optimizer = torch.optim.AdamW(student.parameters(), lr=1e-2)
    student, optimizer, data = accelerator.prepare(student, optimizer, loader())
    accelerator.state.select_deepspeed_plugin("teacher")
    torch.manual_seed(5)
    teacher = accelerator.prepare(Net())
    accelerator.state.select_deepspeed_plugin("student")
    assert teacher.zero_optimization_stage() == 3 and student.zero_optimization_stage() == 2
    before = full_weights(accelerator, student)
    for x, _ in data:
        with torch.no_grad():
            target = teacher(x)
        loss = nn.functional.mse_loss(student(x), target)
        accelerator.backward(loss)
        optimizer.step()
        optimizer.zero_grad()
    after = full_weights(accelerator, student)
    assert max_difference(before, after) > 0


@checks.add
def plugin_from_launcher_environment():
    os.environ["ACCEL_USE_DEEPSPEED"] = "true"
    os.environ["ACCEL_DEEPSPEED_ZERO_STAGE"] = "1"
    try:
        reset_state()
        accelerator = Accelerator()
        plugin = accelerator.state.deepspeed_plugin
        assert plugin.zero_stage == 1, plugin.zero_stage
        assert "ACCEL_DEEPSPEED_ZERO_STAGE" in plugin.sources["zero_stage"]
        model = fresh_model()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
        model, optimizer, _ = accelerator.prepare(model, optimizer, loader())
        assert model.zero_optimization_stage() == 1
    finally:
        del os.environ["ACCEL_USE_DEEPSPEED"], os.environ["ACCEL_DEEPSPEED_ZERO_STAGE"]


@checks.add
def cpu_offload_matches_ddp():
    config = {
        "train_batch_size": "auto",
        "train_micro_batch_size_per_gpu": "auto",
        "gradient_accumulation_steps": "auto",
        "zero_optimization": {"stage": 2, "offload_optimizer": {"device": "cpu"}},
        "optimizer": {"type": "AdamW", "params": {"lr": "auto", "weight_decay": "auto"}},
    }
    reference, reference_norms = ddp_reference()
    accelerator = deepspeed_accelerator(hf_ds_config=config)
    model = fresh_model()
    optimizer = DummyOptim(model.parameters(), lr=1e-2, weight_decay=0.01)
    model, optimizer, data = accelerator.prepare(model, optimizer, loader())
    assert type(model.optimizer.optimizer).__name__ == "DeepSpeedCPUAdam", type(
        model.optimizer.optimizer
    )
    norms = train(accelerator, model, optimizer, data)
    weights = full_weights(accelerator, model)
    difference = max_difference(weights, reference)
    checks.record("offload_max_difference", difference)
    assert difference < 1e-4, f"CPU offload differs from DDP by {difference}"
    assert len(norms) == len(reference_norms)


checks.include(sp_checks.checks)  # last: see the import of sp_checks


if __name__ == "__main__":
    checks.run(RANK)
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()
