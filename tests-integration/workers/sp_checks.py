"""DeepSpeed Ulysses sequence parallelism (``ParallelismConfig(sp_size=2)``) on gloo CPU
processes, ZeRO-2, a tiny transformers LLaMA built from a config in code. Runs in the DeepSpeed
launch (``deepspeed_checks.py`` imports this module and runs its checks last), or alone; on 4
processes (``sp_size=2`` x 2 data-parallel groups) ``sp4_checks.py`` runs its reference check.

Each rank first trains the 1-process reference (plain torch, the samples the data-parallel
groups share per step as one batch, over the whole sequence) before Ulysses is registered
(registration replaces transformers' ``sdpa`` attention for the whole process). Then the same
model trains through ``Accelerator.prepare``: the dataloader is sharded over the ranks and
wrapped in DeepSpeed's adapter, so each step the 2 ranks of a sequence-parallel group work on
one sample, each holding half of its sequence. Losses and weights must equal the reference
within fp32 tolerance. Then: ``save_state``/``load_state`` resume bitwise, and
``gather_for_metrics`` returns every rank's sequence chunk (Accelerate's layout) and refuses an
uneven last batch.
"""

from __future__ import annotations

import os

import torch
from _harness import Checks, refused

from accel.core import Accelerator, DeepSpeedSequenceParallelConfig, ParallelismConfig
from accel.deepspeed import DeepSpeedPlugin
from accel.state import reset_state

RANK = int(os.environ["RANK"])
WORLD = int(os.environ["WORLD_SIZE"])
SP = 2
DP = WORLD // SP  # data-parallel groups: DeepSpeed puts consecutive ranks in one sp group
checks = Checks()
SAMPLES, SEQ, VOCAB, LR = 4 * DP, 16, 64, 0.1
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


def step_samples() -> list[list[int]]:
    """The samples of each step under ``SP x DP``: the dataloader deals sample ``i`` to rank
    ``i % WORLD``; on its ``k``-th refill the adapter hands sequence-parallel group ``g`` the
    batch of its rank ``j`` at micro step ``j``, so one step covers one sample per group."""
    return [
        [k * WORLD + SP * group + j for group in range(DP)]
        for k in range(SAMPLES // WORLD)
        for j in range(SP)
    ]


def reference() -> tuple[dict[str, torch.Tensor], list[float]]:
    """One process, the samples of each step as one batch, over the whole sequence (equal
    lengths: the mean over all tokens is the mean of the groups' per-sample means)."""
    model = fresh_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    losses = []
    data = samples()
    for indices in step_samples():
        ids = data[indices]
        loss = model(input_ids=ids, labels=ids).loss
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


def sp_accelerator() -> Accelerator:
    reset_state()
    handler = DeepSpeedSequenceParallelConfig(sp_attn_implementation="sdpa")
    accelerator = Accelerator(
        parallelism_config=ParallelismConfig(sp_size=SP, sp_handler=handler),
        deepspeed_plugin=DeepSpeedPlugin(zero_stage=2, gradient_clipping=0.0),
    )
    assert accelerator.torch_device_mesh is None  # DeepSpeed owns the sequence-parallel groups
    return accelerator


def loader_of(data: torch.Tensor) -> torch.utils.data.DataLoader:
    dataset = torch.utils.data.TensorDataset(data)
    return torch.utils.data.DataLoader(dataset, batch_size=1, collate_fn=collate)


def sp_group() -> object:
    from deepspeed.utils import groups

    return groups._get_sequence_parallel_group()


def train_step(accelerator: Accelerator, model, optimizer, batch: dict) -> float:
    """One optimizer step on this rank's chunk; returns the step's loss over all its samples."""
    share = loss_share(model, batch, sp_group())
    accelerator.backward(share)
    optimizer.step()
    optimizer.zero_grad()
    full = share.detach().clone()
    torch.distributed.all_reduce(full)  # the sp shares add up per sample; mean over dp groups
    return full.item() / DP


def train_and_compare(record: Checks, prefix: str) -> None:
    """Ulysses on all ranks of this launch equals the 1-process reference; records the
    differences in ``record`` as ``<prefix>_loss_difference`` and ``<prefix>_weight_difference``."""
    accelerator = sp_accelerator()
    model = fresh_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader_of(samples()))
    config = accelerator.state.deepspeed_plugin.deepspeed_config
    assert config["train_batch_size"] == DP, config  # sp ranks share a sample
    assert len(loader) == SAMPLES // DP, len(loader)
    losses = []
    for batch in loader:
        assert batch["input_ids"].shape == (1, SEQ // SP), batch["input_ids"].shape
        losses.append(train_step(accelerator, model, optimizer, batch))
    expected_weights, expected_losses = REFERENCE
    loss_difference = max(abs(a - b) for a, b in zip(losses, expected_losses))
    weights = accelerator.get_state_dict(model)
    difference = max((weights[k] - v).abs().max().item() for k, v in expected_weights.items())
    record.record(f"{prefix}_loss_difference", loss_difference)
    record.record(f"{prefix}_weight_difference", difference)
    assert len(losses) == len(expected_losses), (losses, expected_losses)
    assert loss_difference < TOLERANCE, (losses, expected_losses)
    assert difference < TOLERANCE, difference


@checks.add
def ulysses_sp_2_zero_2_equals_reference() -> None:
    train_and_compare(checks, "ulysses")


def resume_run(seed: int, folder: str, load: bool) -> tuple[list[float], dict]:
    """A Ulysses ZeRO-2 run with AdamW (optimizer state to restore): either all steps with
    ``save_state(folder)`` after ``RESUME_POINT`` of them, or ``load_state(folder)`` first and
    the rest (``load_state`` positions the dataloader). Returns the losses after that point and
    the final weights."""
    accelerator = sp_accelerator()
    torch.manual_seed(seed)
    model = fresh_model() if seed == 0 else fresh_model().apply(scramble)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader_of(samples()))
    if load:
        accelerator.load_state(folder)
        assert model.global_steps == RESUME_POINT, model.global_steps
    losses = []
    for batch in loader:
        loss = train_step(accelerator, model, optimizer, batch)
        if load or model.global_steps > RESUME_POINT:
            losses.append(loss)
        if not load and model.global_steps == RESUME_POINT:
            accelerator.save_state(folder)
        if not load and model.global_steps == 1:  # the other chunk of this batch is pending
            refused(
                lambda: accelerator.save_state(folder + "_mid_batch"),
                *("sp_size=2", "multiple of 2 steps"),
                accepted="save_state between the chunks of one batch was accepted",
            )
    weights = {k: v.detach().clone() for k, v in accelerator.get_state_dict(model).items()}
    return losses, weights


RESUME_POINT = SP  # of 4 steps: the adapter has dealt all the chunks of its first refill


def scramble(module: torch.nn.Module) -> None:
    """Other initial weights: everything after ``load_state`` must come from the checkpoint."""
    for parameter in module.parameters(recurse=False):
        torch.nn.init.normal_(parameter.data, std=0.5)


@checks.add
def ulysses_save_load_state_resumes_bitwise() -> None:
    folder = os.path.join(os.environ["ACCEL_IT_OUT"], "files", "ulysses_state")
    straight_losses, straight = resume_run(0, folder, load=False)
    resumed_losses, resumed = resume_run(1, folder, load=True)
    assert len(resumed_losses) == len(straight_losses) == 2, (resumed_losses, straight_losses)
    difference = max((resumed[k] - v).abs().max().item() for k, v in straight.items())
    checks.record("ulysses_resume_weight_difference", difference)
    assert resumed_losses == straight_losses, (resumed_losses, straight_losses)
    assert difference == 0.0, difference


@checks.add
def ulysses_gather_for_metrics_returns_every_chunk() -> None:
    """Accelerate's layout: each step every rank's chunk, in rank order along dim 0, so
    predictions and labels gathered alike stay paired token by token, and the chunks of one
    epoch reassemble every sample exactly once."""
    accelerator = sp_accelerator()
    model = fresh_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader_of(samples()))
    data = samples()
    seen, seen_logits = [], []
    with torch.no_grad():  # in train mode: DeepSpeed turns Ulysses off in eval mode
        for batch in loader:
            inputs = {"input_ids": batch["input_ids"], "position_ids": batch["position_ids"]}
            logits = accelerator.gather_for_metrics(model(**inputs).logits)
            labels = accelerator.gather_for_metrics(batch["shift_labels"])
            assert labels.shape == (WORLD, SEQ // SP), labels.shape
            assert logits.shape == (WORLD, SEQ // SP, VOCAB), logits.shape
            seen.extend(labels.view(DP, SEQ))  # a group's consecutive ranks: one sample's chunks
            seen_logits.extend(logits.view(DP, SEQ, VOCAB))
    order = [i for step in step_samples() for i in step]
    expected = torch.nn.functional.pad(data[:, 1:], (0, 1), value=-100)[order]
    assert len(seen) == SAMPLES, len(seen)
    assert torch.equal(torch.stack(seen), expected), (torch.stack(seen), expected)
    with torch.no_grad():  # eval mode calls the original attention: the whole sequence here
        whole = fresh_model().eval()(input_ids=data[order]).logits
    difference = (torch.stack(seen_logits) - whole).abs().max().item()
    checks.record("ulysses_gather_logits_difference", difference)
    assert difference < TOLERANCE, difference


@checks.add
def ulysses_gather_for_metrics_refuses_an_uneven_end() -> None:
    accelerator = sp_accelerator()
    uneven = samples()[: WORLD + 1]  # the last batch repeats samples to even out
    model = fresh_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader_of(uneven))
    refused = 0
    with torch.no_grad():
        for batch in loader:
            try:
                accelerator.gather_for_metrics(batch["shift_labels"])
            except ValueError as error:
                assert "sp_size" in str(error) and "drop_last" in str(error), error
                refused += 1
    assert refused == SP, refused  # the steps of the last refill


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
    refused(
        lambda: accelerator.prepare(model, optimizer, loader),
        "not a transformers PreTrainedModel",
        accepted="a model without config was accepted under sp_size=2",
    )


if __name__ == "__main__":
    checks.run(RANK)
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()
