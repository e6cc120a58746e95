"""Building a model on the meta device: accel's ``init_empty_weights`` vs Accelerate's.

The model is transformers-style (token and position embeddings, attention and MLP blocks, a
tied LM head, GPT-2's ``normal_(std=0.02)`` weight init). Each measurement runs in a fresh
interpreter that has already imported torch and the library (untimed), then times the build
(wall and CPU) and reports whether it imported ``torch._dynamo``: meta ``normal_`` runs
through ``torch._refs``, which imports it. The same builds run again in interpreters that
imported ``torch._dynamo`` first, where accel's skip is off. All builds must give the same
parameters and buffers (name, class, shape, dtype, device, requires_grad; a tied weight is
listed under each name, since Accelerate's context unties it and accel's keeps it), else the
run fails.
A second table times the whole ``accel estimate-memory file.py:build`` process against a
Python process that does the same with Accelerate's ``init_empty_weights`` and
``calculate_maximum_sizes`` (``accelerate estimate-memory`` only takes Hub models)::

    OMP_NUM_THREADS=1 uv run python tools/bench/meta_init.py [--quick | --smoke] [--runs N]

``--smoke`` (the test suite's run) measures each case once.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
MODEL_SOURCE = """
import torch
from torch import nn


class Block(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.qkv, self.proj = nn.Linear(width, 3 * width), nn.Linear(width, width)
        self.up, self.down = nn.Linear(width, 4 * width), nn.Linear(4 * width, width)


class TinyLM(nn.Module):
    def __init__(self, vocab=32000, width=512, layers=4, positions=1024):
        super().__init__()
        self.tokens, self.positions = nn.Embedding(vocab, width), nn.Embedding(positions, width)
        self.blocks = nn.ModuleList(Block(width) for _ in range(layers))
        self.head = nn.Linear(width, vocab, bias=False)
        self.head.weight = self.tokens.weight
        self.register_buffer("position_ids", torch.arange(positions), persistent=False)
        self.apply(self._init_weights)

    def _init_weights(self, module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)


def build():
    return TinyLM()
"""
IMPORTS = {
    "accel": "from accel.big_model import init_empty_weights",
    "accelerate": "from accelerate import init_empty_weights",
}
# A fresh interpreter: imports (untimed), the timed build, then what it built, as JSON.
CHILD = """
import json, sys, time, torch
{imports}
{preimport}
sys.path.insert(0, {folder!r})
from bench_model import build
wall, cpu = time.perf_counter(), time.process_time()
with init_empty_weights():
    model = build()
wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
tensors = [
    [name, type(t).__name__, list(t.shape), str(t.dtype), str(t.device), t.requires_grad]
    for name, t in [*model.named_parameters(remove_duplicate=False), *model.named_buffers()]
]
print(json.dumps(dict(wall=wall, cpu=cpu, dynamo="torch._dynamo" in sys.modules, tensors=tensors)))
"""
# Accelerate's side of the estimate: what ``accel estimate-memory file.py:build`` computes.
REFERENCE_ESTIMATE = """
import sys
from accelerate import init_empty_weights
from accelerate.utils import calculate_maximum_sizes
sys.path.insert(0, {folder!r})
from bench_model import build
with init_empty_weights():
    model = build()
print(calculate_maximum_sizes(model.float()))
"""


def build_once(library: str, folder: str, env: dict[str, str], dynamo_first: bool) -> dict:
    """What one fresh interpreter measured building the model with ``library``
    (``dynamo_first``: after importing ``torch._dynamo``, untimed).

    Example:
        >>> build_once("accel", folder, env, dynamo_first=False)["dynamo"]  # doctest: +SKIP
        False
    """
    preimport = "import torch._dynamo" if dynamo_first else ""
    code = CHILD.format(imports=IMPORTS[library], folder=folder, preimport=preimport)
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def process_once(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU seconds (user + system) of one run of ``command``, which must succeed.

    Example:
        >>> wall, cpu = process_once([sys.executable, "-c", "pass"], dict(os.environ))
        >>> wall > 0 and cpu >= 0
        True
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(
        command, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def ratio_line(label: str, ours: float, theirs: float, unit: str) -> str:
    """One result line: both medians and how many times faster accel is.

    Example:
        >>> ratio_line("build", 10.0, 250.0, "ms")
        'build | accel ms 10.0 | accelerate ms 250.0 | accelerate/accel = 25.0x'
    """
    return (
        f"{label} | accel {unit} {ours:.1f} | accelerate {unit} {theirs:.1f} | "
        f"accelerate/accel = {theirs / ours:.1f}x"
    )


def main(argv: list[str] | None = None) -> None:
    """Measure both tables and print them; exits non-zero if the built models differ.

    Example:
        >>> main(["--smoke"])  # doctest: +SKIP
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 runs per case")
    parser.add_argument("--smoke", action="store_true", help="1 run per case")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    runs = 1 if args.smoke else 2 if args.quick else args.runs
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ACCEL_", "ACCELERATE_"))}
    env.setdefault("OMP_NUM_THREADS", "1")
    builds: dict[tuple[str, bool], list[dict]] = {
        (name, first): [] for first in (False, True) for name in IMPORTS
    }
    processes: dict[str, list[tuple[float, float]]] = {name: [] for name in IMPORTS}
    with tempfile.TemporaryDirectory() as folder:
        Path(folder, "bench_model.py").write_text(MODEL_SOURCE)
        commands = {
            "accel": [str(BIN / "accel"), "estimate-memory", f"{folder}/bench_model.py:build"],
            "accelerate": [sys.executable, "-c", REFERENCE_ESTIMATE.format(folder=folder)],
        }
        for _ in range(runs):
            for (name, first), samples in builds.items():
                samples.append(build_once(name, folder, env, dynamo_first=first))
            for name in IMPORTS:
                processes[name].append(process_once(commands[name], env))
    if len({json.dumps(samples[0]["tensors"]) for samples in builds.values()}) != 1:
        sys.exit("meta_init: accel and accelerate built different parameters/buffers")
    print(f"\nmeta-device build of a transformers-style model, fresh interpreters, {runs} runs")
    print(f"{'library':<10} | torch._dynamo imported first | wall ms | CPU ms | imports it")
    medians = {}
    for (name, first), samples in builds.items():
        wall = statistics.median(1e3 * s["wall"] for s in samples)
        medians[name, first] = cpu = statistics.median(1e3 * s["cpu"] for s in samples)
        imports = "-" if first else "yes" if any(s["dynamo"] for s in samples) else "no"
        first_text = "yes" if first else "no"
        print(f"{name:<10} | {first_text:<28} | {wall:>7.1f} | {cpu:>6.1f} | {imports}")
    for first, label in ((False, ""), (True, ", torch._dynamo imported first")):
        line = ratio_line(
            f"TinyLM under init_empty_weights{label} (CPU)",
            medians["accel", first],
            medians["accelerate", first],
            "ms",
        )
        print(line)
    print("\nwhole process: `accel estimate-memory file.py:build` vs Python + Accelerate's API")
    print(f"{'library':<10} | wall s | CPU s")
    cpus = {}
    for name, samples in processes.items():
        wall = statistics.median(s[0] for s in samples)
        cpus[name] = statistics.median(s[1] for s in samples)
        print(f"{name:<10} | {wall:>6.2f} | {cpus[name]:>5.2f}")
    print(ratio_line("estimate-memory process (CPU)", cpus["accel"], cpus["accelerate"], "s"))


if __name__ == "__main__":
    main()
