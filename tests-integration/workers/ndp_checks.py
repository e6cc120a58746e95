"""N-D parallelism (ParallelismConfig on one DeviceMesh) on 2 or 4 gloo CPU processes.

``python -m torch.distributed.run --nproc_per_node 2 ndp_checks.py 2`` runs the 2-process
checks, ``... --nproc_per_node 4 ndp_checks.py 4`` the 4-process ones. Every rank also trains
the same model on the whole global batch in plain torch (the 1-process reference) and records
the largest difference, so pytest compares numbers without a second launch.
"""

from __future__ import annotations

import os
import sys
import tempfile

import torch
from _harness import Checks, refused

from accel.core import Accelerator, ParallelismConfig
from accel.core.parallel_handlers import TorchTensorParallelConfig
from accel.state import reset_state

MODE = sys.argv[1] if len(sys.argv) > 1 else "2"
RANK = int(os.environ["RANK"])
WORLD = int(os.environ["WORLD_SIZE"])
checks = Checks()
STEPS, PER_GROUP, LR = 3, 4, 0.1
MLP_PLAN = {"fc1": "colwise", "fc2": "rowwise"}


class MLP(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = torch.nn.Linear(8, 16)
        self.fc2 = torch.nn.Linear(16, 4)
        self.norm = torch.nn.LayerNorm(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.fc2(torch.relu(self.fc1(x))))


def data(groups: int) -> torch.utils.data.TensorDataset:
    generator = torch.Generator().manual_seed(1)
    n = STEPS * PER_GROUP * groups
    return torch.utils.data.TensorDataset(
        torch.randn(n, 8, generator=generator), torch.randn(n, 4, generator=generator)
    )


def reference(groups: int, clip: float | None = None) -> dict[str, torch.Tensor]:
    """One process, global batches of PER_GROUP * groups samples in order."""
    torch.manual_seed(0)
    model = MLP()
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    loader = torch.utils.data.DataLoader(data(groups), batch_size=PER_GROUP * groups)
    for x, y in loader:
        torch.nn.functional.mse_loss(model(x), y).backward()
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        optimizer.step()
        optimizer.zero_grad()
    return {k: v.detach() for k, v in model.state_dict().items()}


def train(config: ParallelismConfig, clip: float | None = None, shuffle: bool = False):
    reset_state()
    accelerator = Accelerator(parallelism_config=config)
    torch.manual_seed(0)
    model = MLP()
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    groups = config.data_parallel_size
    loader = torch.utils.data.DataLoader(data(groups), batch_size=PER_GROUP, shuffle=shuffle)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    seen = []
    for x, y in loader:
        seen.append(x.sum().item())
        accelerator.backward(torch.nn.functional.mse_loss(model(x), y))
        if clip is not None:
            accelerator.clip_grad_norm_(model.parameters(), clip)
        optimizer.step()
        optimizer.zero_grad()
    return accelerator, model, optimizer, seen


def largest_difference(ours: dict, expected: dict) -> float:
    assert set(ours) == set(expected), (sorted(ours), sorted(expected))
    return max((ours[k].float() - expected[k]).abs().max().item() for k in expected)


def compare(name: str, config: ParallelismConfig, clip: float | None = None) -> None:
    accelerator, model, _, _ = train(config, clip)
    full = accelerator.get_state_dict(model)
    if accelerator.is_main_process:
        difference = largest_difference(full, reference(config.data_parallel_size, clip))
        checks.record(name, difference)
        assert difference < 1e-5, f"{name}: {difference}"


def tp_config(**sizes: int) -> ParallelismConfig:
    handler = TorchTensorParallelConfig(tp_plan=MLP_PLAN)
    return ParallelismConfig(tp_handler=handler, **sizes)


def same_within_tp_groups(accelerator: Accelerator, seen: list[float]) -> None:
    everyone = [None] * WORLD
    torch.distributed.all_gather_object(everyone, (accelerator.data_parallel_shard_rank, seen))
    by_group: dict[int, list] = {}
    for group, batches in everyone:
        by_group.setdefault(group, []).append(batches)
    for group, members in by_group.items():
        assert all(m == members[0] for m in members), (group, members)
    firsts = [members[0] for members in by_group.values()]
    assert len({tuple(f) for f in firsts}) == len(firsts), "data-parallel groups saw the same data"


if MODE == "2":

    @checks.add
    def dp_shard_2_equals_reference() -> None:
        compare("dp_shard_2", ParallelismConfig(dp_shard_size=2))

    @checks.add
    def dp_shard_2_mesh_and_ranks() -> None:
        accelerator, _, _, _ = train(ParallelismConfig(dp_shard_size=2))
        mesh = accelerator.torch_device_mesh
        assert mesh.mesh_dim_names == ("dp_shard",), mesh.mesh_dim_names
        assert mesh["dp"].size() == 2 and mesh["dp_shard_cp"].size() == 2
        assert mesh["dp_cp"].size() == 2
        assert accelerator.data_parallel_shard_rank == RANK
        assert (accelerator.data_parallel_rank, accelerator.tensor_parallel_rank) == (0, 0)
        assert accelerator.is_fsdp2 and accelerator.is_composable_parallelism_enabled

    @checks.add
    def tp_2_mlp_equals_reference() -> None:
        compare("tp_2_mlp", tp_config(tp_size=2), clip=0.5)

    @checks.add
    def tp_2_batches_and_gather() -> None:
        accelerator, model, _, seen = train(tp_config(tp_size=2), shuffle=True)
        everyone = [None] * WORLD
        torch.distributed.all_gather_object(everyone, seen)
        assert everyone[0] == everyone[1], everyone  # one data-parallel group: same batches
        assert accelerator.tensor_parallel_rank == RANK
        assert str(accelerator.distributed_type) in ("MULTI_CPU", "DistributedType.MULTI_CPU")
        value = torch.arange(3.0) + 10 * accelerator.data_parallel_shard_rank
        gathered = accelerator.gather_for_metrics(value)
        assert gathered.tolist() == [0.0, 1.0, 2.0], gathered
        objects = accelerator.gather_for_metrics(["a"], use_gather_object=True)
        assert objects == ["a"], objects
        weight = dict(model.named_parameters())["fc1.weight"]
        assert type(weight).__name__ == "DTensor" and weight.to_local().shape == (8, 8)

    @checks.add
    def tp_2_save_and_resume_bitwise() -> None:
        accelerator, model, _, _ = train(tp_config(tp_size=2))
        folder = tempfile.mkdtemp(prefix="ndp-") if RANK == 0 else None
        holder = [folder]
        torch.distributed.broadcast_object_list(holder)
        folder = os.path.join(holder[0], "ckpt")
        accelerator.save_state(folder)
        before = {k: v.clone() for k, v in accelerator.get_state_dict(model).items()}
        with torch.no_grad():
            for p in model.parameters():
                p.add_(1.0)
        accelerator.load_state(folder)
        after = accelerator.get_state_dict(model)
        if accelerator.is_main_process:
            assert all(torch.equal(before[k], after[k]) for k in before), "weights differ"
            assert "model.safetensors" in os.listdir(folder), os.listdir(folder)
        accelerator.save_model(model, os.path.join(holder[0], "export"))
        if accelerator.is_main_process:
            from safetensors.torch import load_file

            exported = load_file(os.path.join(holder[0], "export", "model.safetensors"))
            assert exported["fc1.weight"].shape == (16, 8)
            assert torch.equal(exported["fc1.weight"], before["fc1.weight"])

    @checks.add
    def tp_2_bf16_runs_under_autocast() -> None:
        reset_state()
        config = tp_config(tp_size=2)
        accelerator = Accelerator(mixed_precision="bf16", parallelism_config=config)
        torch.manual_seed(0)
        model = MLP()
        optimizer = torch.optim.SGD(model.parameters(), lr=LR)
        model, optimizer = accelerator.prepare(model, optimizer)
        x, y = data(1).tensors
        accelerator.backward(torch.nn.functional.mse_loss(model(x[:PER_GROUP]), y[:PER_GROUP]))
        optimizer.step()
        full = accelerator.get_state_dict(model)
        torch.manual_seed(0)
        plain = MLP()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = plain(x[:PER_GROUP])
        torch.nn.functional.mse_loss(out.float(), y[:PER_GROUP]).backward()
        torch.optim.SGD(plain.parameters(), lr=LR).step()
        if accelerator.is_main_process:
            expected = {k: v.detach() for k, v in plain.state_dict().items()}
            difference = largest_difference(full, expected)
            checks.record("tp_2_bf16", difference)
            assert difference < 1e-2, difference  # bf16 rounds each TP shard on its own

    @checks.add
    def tp_2_already_split_model_is_kept() -> None:
        from torch.distributed.tensor.parallel import (
            ColwiseParallel,
            RowwiseParallel,
            parallelize_module,
        )

        reset_state()
        accelerator = Accelerator(parallelism_config=ParallelismConfig(tp_size=2))
        torch.manual_seed(0)
        model = MLP()
        styles = {"fc1": ColwiseParallel(), "fc2": RowwiseParallel()}
        parallelize_module(model, accelerator.torch_device_mesh["tp"], styles)
        optimizer = torch.optim.SGD(model.parameters(), lr=LR)
        model, optimizer = accelerator.prepare(model, optimizer)  # no plan needed
        x, y = data(1).tensors
        for step in range(STEPS):
            batch = slice(step * PER_GROUP, (step + 1) * PER_GROUP)
            accelerator.backward(torch.nn.functional.mse_loss(model(x[batch]), y[batch]))
            optimizer.step()
            optimizer.zero_grad()
        full = accelerator.get_state_dict(model)
        if accelerator.is_main_process:
            difference = largest_difference(full, reference(1))
            assert difference < 1e-5, difference

    @checks.add
    def tp_2_transformers_llama_equals_reference() -> None:
        from transformers import LlamaConfig, LlamaForCausalLM

        config = LlamaConfig(
            vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=False,
        )  # fmt: skip
        ids = torch.randint(0, 64, (2, 12), generator=torch.Generator().manual_seed(3))

        def run(prepare: bool) -> dict[str, torch.Tensor]:
            torch.manual_seed(0)
            model = LlamaForCausalLM(config)
            optimizer = torch.optim.SGD(model.parameters(), lr=LR)
            accelerator = None
            if prepare:
                reset_state()
                accelerator = Accelerator(parallelism_config=ParallelismConfig(tp_size=2))
                model, optimizer = accelerator.prepare(model, optimizer)
            for _ in range(2):
                loss = model(input_ids=ids, labels=ids).loss
                (accelerator.backward(loss) if accelerator else loss.backward())
                optimizer.step()
                optimizer.zero_grad()
            if accelerator is None:
                return {k: v.detach() for k, v in model.state_dict().items()}
            return accelerator.get_state_dict(model)

        ours = run(True)
        if RANK == 0:  # the full state dict is gathered on the main process
            difference = largest_difference(ours, run(False))
            checks.record("tp_2_llama", difference)
            assert difference < 1e-5, difference

    @checks.add
    def invalid_configs_raise_clearly() -> None:
        from accel.core.device_mesh import check_job

        reset_state()
        errors = {}
        for name, make in {
            "world": lambda: Accelerator(parallelism_config=ParallelismConfig(tp_size=4)),
            "cpu_cp": lambda: Accelerator(
                parallelism_config=ParallelismConfig(dp_shard_size=1, cp_size=2)
            ),
            "sp": lambda: Accelerator(parallelism_config=ParallelismConfig(sp_size=2)),
            "deepspeed": lambda: check_job(
                ParallelismConfig(tp_size=2), 2, "cpu", "DEEPSPEED", False
            ),
        }.items():
            reset_state()
            try:
                make()
                errors[name] = None
            except ValueError as error:
                errors[name] = str(error)
        assert "multiply to 4" in errors["world"] and "2 processes" in errors["world"], errors
        assert "needs CUDA" in errors["cpu_cp"], errors
        assert "sequence parallelism" in errors["sp"], errors
        assert "DeepSpeed" in errors["deepspeed"], errors
        reset_state()
        accelerator = Accelerator(parallelism_config=ParallelismConfig(tp_size=2))
        model = torch.nn.Linear(2, 2)
        refused(
            lambda: accelerator.prepare(model, torch.optim.SGD(model.parameters(), lr=0.1)),
            "needs a plan",
            accepted="TP without a plan was accepted",
        )


if MODE == "4":

    @checks.add
    def hsdp_2x2_equals_reference() -> None:
        compare("hsdp_2x2", ParallelismConfig(dp_replicate_size=2, dp_shard_size=2))
        accelerator = Accelerator()
        mesh = accelerator.torch_device_mesh
        assert mesh.mesh_dim_names == ("dp_replicate", "dp_shard"), mesh.mesh_dim_names
        assert accelerator.data_parallel_rank == RANK // 2
        assert accelerator.data_parallel_shard_rank == RANK % 2

    @checks.add
    def dp_shard_2_tp_2_equals_reference() -> None:
        compare("dp_shard_2_tp_2", tp_config(dp_shard_size=2, tp_size=2), clip=0.5)

    @checks.add
    def dp_shard_2_tp_2_save_and_resume_bitwise() -> None:
        accelerator, model, _, _ = train(tp_config(dp_shard_size=2, tp_size=2))
        holder = [tempfile.mkdtemp(prefix="ndp-") if RANK == 0 else None]
        torch.distributed.broadcast_object_list(holder)
        folder = os.path.join(holder[0], "ckpt")
        accelerator.save_state(folder)
        before = {k: v.clone() for k, v in accelerator.get_state_dict(model).items()}
        with torch.no_grad():
            for p in model.parameters():
                p.add_(1.0)
        accelerator.load_state(folder)
        after = accelerator.get_state_dict(model)
        if accelerator.is_main_process:
            assert before and all(torch.equal(before[k], after[k]) for k in before)

    @checks.add
    def dp_shard_2_tp_2_batches() -> None:
        accelerator, _, _, seen = train(tp_config(dp_shard_size=2, tp_size=2), shuffle=True)
        assert accelerator.tensor_parallel_rank == RANK % 2
        same_within_tp_groups(accelerator, seen)
        value = torch.tensor([float(accelerator.data_parallel_shard_rank)])
        assert accelerator.gather_for_metrics(value).tolist() == [0.0, 1.0]


checks.run(RANK)
reset_state(destroy_process_group=True)
