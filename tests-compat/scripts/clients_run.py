"""Big-model loading, PEFT and TRL on a tiny GPT-2 built from a config (no hub).

``python clients_run.py out.json workdir PART...`` with PART among:
- ``offload``: save the model, reload it with ``device_map="auto"``, a small CPU budget and an
  offload folder; report where layers went and the greedy tokens of both models.
- ``peft``: train a LoRA adapter with ``Trainer``, save it, reload it on a fresh base model;
  report the losses and whether the reloaded adapter gives the trained logits.
- ``trl``: ``SFTTrainer`` for a few steps on an in-memory ``datasets.Dataset``.

Example:
    python clients_run.py out.json /tmp/work offload
"""

from __future__ import annotations

import json
import os
import sys

import torch
from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainingArguments

PROMPT = torch.tensor([[1, 2, 3, 4, 5]])


def tiny() -> GPT2LMHeadModel:
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=64, n_positions=32, n_embd=32, n_layer=4, n_head=2)
    config.bos_token_id = config.eos_token_id = config.pad_token_id = 0
    return GPT2LMHeadModel(config).eval()


def greedy(model: torch.nn.Module) -> list[int]:
    with torch.no_grad():
        out = model.generate(PROMPT, max_new_tokens=8, do_sample=False)
    return out[0].tolist()


def offload(workdir: str) -> dict:
    plain = tiny()
    path = os.path.join(workdir, "tiny")
    plain.save_pretrained(path)
    big = GPT2LMHeadModel.from_pretrained(
        path,
        device_map="auto",
        max_memory={"cpu": "60KB"},
        offload_folder=os.path.join(workdir, "offload"),
    )
    placement = sorted(set(big.hf_device_map.values()), key=str)
    return {"placement": [str(p) for p in placement], "plain": greedy(plain), "big": greedy(big)}


class Tokens(torch.utils.data.Dataset):
    def __init__(self) -> None:
        self.ids = torch.randint(1, 64, (16, 12), generator=torch.Generator().manual_seed(1))

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[i], "labels": self.ids[i]}


def args(workdir: str, **extra: object) -> TrainingArguments:
    return TrainingArguments(
        output_dir=workdir,
        max_steps=4,
        per_device_train_batch_size=4,
        learning_rate=1e-2,
        logging_steps=1,
        save_strategy="no",
        use_cpu=True,
        report_to=[],
        seed=0,
        disable_tqdm=True,
        **extra,
    )


def peft(workdir: str) -> dict:
    from peft import LoraConfig, PeftModel, get_peft_model

    config = LoraConfig(r=4, lora_alpha=8, target_modules=["c_attn"], fan_in_fan_out=True)
    model = get_peft_model(tiny().train(), config)
    trainer = Trainer(model=model, args=args(os.path.join(workdir, "peft")), train_dataset=Tokens())
    trainer.train()
    adapter = os.path.join(workdir, "adapter")
    trainer.save_model(adapter)
    model.eval()
    reloaded = PeftModel.from_pretrained(tiny(), adapter).eval()
    with torch.no_grad():
        same = torch.equal(model(PROMPT).logits, reloaded(PROMPT).logits)
        changed = not torch.equal(tiny()(PROMPT).logits, reloaded(PROMPT).logits)
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    return {
        "losses": losses,
        "reloaded_equal": same,
        "adapter_changes_output": changed,
        "files": sorted(os.listdir(adapter)),
    }


def tokenizer() -> object:
    """A word-level tokenizer over the tiny model's 64 ids, built in code (no hub)."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    vocab = {f"t{i}": i for i in range(64)}
    core = Tokenizer(WordLevel(vocab, unk_token="t63"))
    return PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token="t0", eos_token="t0", unk_token="t63"
    )


def trl(workdir: str) -> dict:
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    data = Dataset.from_dict(
        {"input_ids": [[1 + (i * 7 + j) % 60 for j in range(12)] for i in range(16)]}
    )
    config = SFTConfig(
        output_dir=os.path.join(workdir, "sft"),
        max_steps=3,
        per_device_train_batch_size=4,
        logging_steps=1,
        save_strategy="no",
        use_cpu=True,
        report_to=[],
        seed=0,
        disable_tqdm=True,
        dataset_text_field=None,
    )
    trainer = SFTTrainer(
        model=tiny().train(), args=config, train_dataset=data, processing_class=tokenizer()
    )
    trainer.train()
    return {"losses": [e["loss"] for e in trainer.state.log_history if "loss" in e]}


def main() -> None:
    out, workdir, *parts = sys.argv[1:]
    os.makedirs(workdir, exist_ok=True)
    runs = {"offload": offload, "peft": peft, "trl": trl}
    result = {part: runs[part](workdir) for part in parts}
    with open(out, "w") as fh:
        json.dump(result, fh)


if __name__ == "__main__":
    main()
