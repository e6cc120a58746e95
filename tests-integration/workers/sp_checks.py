"""DeepSpeed Ulysses sequence parallelism (``ParallelismConfig(sp_size=2)``) on 2 gloo CPU
processes, ZeRO-2, a tiny transformers LLaMA built from a config in code. Runs in the DeepSpeed
launch (``deepspeed_checks.py`` imports this module and runs its checks last), or alone.

Each rank first trains the 1-process reference (plain torch, one sample per step over the whole
sequence) before Ulysses is registered (registration replaces transformers' ``sdpa`` attention
for the whole process). Then the same model trains through ``Accelerator.prepare``: the
dataloader is sharded over the 2 ranks and wrapped in DeepSpeed's adapter, so each step both
ranks work on one sample, each holding half of its sequence. Losses and weights must equal the
reference within fp32 tolerance.
"""

from __future__ import annotations

import os

import torch
from _harness import Checks

from accel.core import Accelerator, DeepSpeedSequenceParallelConfig, ParallelismConfig
from accel.deepspeed import DeepSpeedPlugin
from accel.state import reset_state

RANK = int(os.environ["RANK"])
checks = Checks()
SAMPLES, SEQ, VOCAB, LR = 4, 16, 64, 0.1
TOLERANCE = 1e-5


def fresh_model() -> torch.nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=SEQ * 2,
        tie_word_embeddings=False, attn_implementation="sdpa",
    )  # fmt: skip
    return LlamaForCausalLM(config)


def samples() -> torch.Tensor:
    return torch.randint(0, VOCAB, (SAMPLES, SEQ), generator=torch.Generator().manual_seed(3))


def collate(batch: list[tuple[torch.Tensor]]) -> dict[str, torch.Tensor]:
    ids = torch.stack([row[0] for row in batch])
    positions = torch.arange(SEQ).expand_as(ids)
    return {"input_ids": ids, "position_ids": positions, "labels": ids.clone()}


def reference() -> tuple[dict[str, torch.Tensor], list[float]]:
    """One process, one sample per step, in order, over the whole sequence."""
    model = fresh_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    losses = []
    for ids in samples():
        loss = model(input_ids=ids[None], labels=ids[None]).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    return {k: v.detach().clone() for k, v in model.state_dict().items()}, losses


REFERENCE = reference()  # before Ulysses replaces the sdpa attention of this process


def loss_share(model: torch.nn.Module, batch: dict, group: object) -> torch.Tensor:
    """This rank's share of the whole sequence's loss: its mean over its tokens, weighted by
    its part of the group's tokens. DeepSpeed sums gradients over the sequence-parallel group,
    so the shares add up to the gradient of the full loss (all-gathering the losses
    differentiably, as Accelerate's example does, gives sp_size times that gradient)."""
    shift_labels = batch["shift_labels"]
    outputs = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"])
    loss = model.module.loss_function(
        logits=outputs.logits, labels=None, shift_labels=shift_labels, vocab_size=VOCAB
    )
    tokens = (shift_labels != -100).sum()
    total = tokens.clone()
    torch.distributed.all_reduce(total, group=group)
    return loss * tokens / total


@checks.add
def ulysses_sp_2_zero_2_equals_reference() -> None:
    reset_state()
    handler = DeepSpeedSequenceParallelConfig(sp_attn_implementation="sdpa")
    accelerator = Accelerator(
        parallelism_config=ParallelismConfig(sp_size=2, sp_handler=handler),
        deepspeed_plugin=DeepSpeedPlugin(zero_stage=2, gradient_clipping=0.0),
    )
    assert accelerator.torch_device_mesh is None  # DeepSpeed owns the sequence-parallel groups
    model = fresh_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    dataset = torch.utils.data.TensorDataset(samples())
    loader = torch.utils.data.DataLoader(dataset, batch_size=1, collate_fn=collate)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    config = accelerator.state.deepspeed_plugin.deepspeed_config
    assert config["train_batch_size"] == 1, config  # one data-parallel rank: sp uses both
    assert len(loader) == SAMPLES, len(loader)
    from deepspeed.utils import groups

    group = groups._get_sequence_parallel_group()
    losses = []
    for batch in loader:
        assert batch["input_ids"].shape == (1, SEQ // 2), batch["input_ids"].shape
        share = loss_share(model, batch, group)
        accelerator.backward(share)
        optimizer.step()
        optimizer.zero_grad()
        full = share.detach().clone()
        torch.distributed.all_reduce(full, group=group)
        losses.append(full.item())
    expected_weights, expected_losses = REFERENCE
    loss_difference = max(abs(a - b) for a, b in zip(losses, expected_losses))
    weights = accelerator.get_state_dict(model)
    difference = max((weights[k] - v).abs().max().item() for k, v in expected_weights.items())
    checks.record("ulysses_loss_difference", loss_difference)
    checks.record("ulysses_weight_difference", difference)
    assert len(losses) == len(expected_losses), (losses, expected_losses)
    assert loss_difference < TOLERANCE, (losses, expected_losses)
    assert difference < TOLERANCE, difference


@checks.add
def ulysses_refuses_a_model_without_config() -> None:
    reset_state()
    accelerator = Accelerator(
        parallelism_config=ParallelismConfig(sp_size=2),
        deepspeed_plugin=DeepSpeedPlugin(zero_stage=1),
    )
    model = torch.nn.Linear(4, 4)
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.ones(4, 4)))
    try:
        accelerator.prepare(model, optimizer, loader)
    except ValueError as error:
        assert "not a transformers PreTrainedModel" in str(error), error
    else:
        raise AssertionError("a model without config was accepted under sp_size=2")


if __name__ == "__main__":
    checks.run(RANK)
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()
