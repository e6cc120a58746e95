"""``accel estimate-memory``: offline model building, Accelerate's numbers, CLI behaviour."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from argparse import Namespace
from pathlib import Path

import pytest
import torch
from torch import nn

from accel.big_model.commands.estimate_memory import register
from accel.big_model.estimate import (
    EstimateError,
    create_empty_model,
    estimate_memory,
    estimate_training_usage,
    format_bytes,
)

ACCEL = Path(sys.executable).with_name("accel")
GPT2 = {"model_type": "gpt2", "n_layer": 2, "n_embd": 64, "n_head": 2, "vocab_size": 1000}

FACTORY = """
from torch import nn

def build():
    return nn.Sequential(nn.Embedding(1000, 64), nn.Linear(64, 256), nn.Linear(256, 64))

def not_a_module():
    return 3
"""


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [str(ACCEL), "estimate-memory", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=cwd,
    )


@pytest.fixture
def config_dir(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(GPT2))
    return tmp_path


@pytest.fixture
def factory_file(tmp_path):
    path = tmp_path / "models.py"
    path.write_text(FACTORY)
    return path


def test_training_usage_formula_matches_accelerate():
    estimate = pytest.importorskip("accelerate.commands.estimate")
    for precision in ("float32", "float16", "bfloat16", "int8", "int4"):
        assert estimate_training_usage(123456, precision) == estimate.estimate_training_usage(
            123456, precision
        )


def test_numbers_match_accelerate_for_a_local_transformers_config(config_dir, monkeypatch):
    pytest.importorskip("transformers")
    estimate = pytest.importorskip("accelerate.commands.estimate")
    import transformers
    from accelerate import init_empty_weights

    def accelerate_build(model_name, library_name, trust_remote_code=False, access_token=None):
        # Accelerate's own construction, minus the Hub lookup that needs the network.
        config = transformers.AutoConfig.from_pretrained(model_name)
        with init_empty_weights():
            return transformers.AutoModel.from_config(config, dtype=torch.float32)

    monkeypatch.setattr(estimate, "create_empty_model", accelerate_build)
    dtypes = ["float32", "float16", "int8", "int4"]  # Accelerate's choices
    args = Namespace(
        model_name=str(config_dir),
        library_name="transformers",
        trust_remote_code=False,
        dtypes=dtypes,
    )
    theirs = estimate.gather_data(args)
    ours = estimate_memory(create_empty_model(str(config_dir)), dtypes)
    for row, (dtype, largest, total, training) in zip(ours, theirs):
        assert (row.dtype, row.largest_layer, row.total_size) == (dtype, largest, total)
        best = max(training.values())
        assert row.training_size == (None if best == -1 else best)


def test_factory_in_a_file_and_in_a_module(factory_file, monkeypatch):
    model = create_empty_model(f"{factory_file}:build")
    assert model[1].weight.device.type == "meta"
    rows = {r.dtype: r for r in estimate_memory(model)}
    total = (1000 * 64 + 64 * 256 + 256 + 256 * 64 + 64) * 4
    assert rows["float32"].total_size == total
    assert rows["float32"].training_size == 4 * total
    assert rows["bfloat16"].total_size == total / 2
    assert rows["int4"].training_size is None
    assert rows["float32"].largest_layer == 1000 * 64 * 4
    monkeypatch.syspath_prepend(str(factory_file.parent))
    assert type(create_empty_model("models:build")).__name__ == "Sequential"


def test_model_built_in_half_precision_is_counted_as_float32():
    rows = estimate_memory(nn.Linear(10, 10).half(), ["float32"])
    assert rows[0].total_size == 440


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("{tmp}/missing", "does not exist"),
        ("{tmp}", "without a config.json"),
        ("{tmp}/models.py", "not a JSON config"),
        ("{tmp}/models.py:nope", "has no attribute 'nope'"),
        ("{tmp}/models.py:not_a_module", "not a torch nn.Module"),
        ("{tmp}/absent.py:build", "does not exist"),
        ("no_such_module_xyz:build", "cannot import module"),
    ],
)
def test_bad_targets(factory_file, target, message):
    with pytest.raises(EstimateError, match=message):
        create_empty_model(target.format(tmp=factory_file.parent))


def test_json_that_is_not_a_transformers_config(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"hidden": 3}))
    with pytest.raises(EstimateError, match="no 'model_type'"):
        create_empty_model(str(tmp_path))


# --------------------------------------------------------------------------- the command


def test_cli_help_does_not_import_torch():
    code = (
        "import sys\n"
        "from accel.launch.cli import main\n"
        "try:\n"
        "    main(['estimate-memory', '--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "--trust_remote_code" in result.stdout and "MODEL" in result.stdout


def run_in_process(capsys, *args: str) -> tuple[int, str, str]:
    """``accel estimate-memory ARGS`` in this process: the command's own parser and ``run``.

    The ``accel`` front end (parsing, exit status) is proven by the real runs of
    ``test_cli_factory_and_errors``; here each message costs no new interpreter.
    """
    capsys.readouterr()
    parser = register(argparse.ArgumentParser(prog="accel").add_subparsers())
    namespace = parser.parse_args(list(args))
    status = namespace.func(namespace)
    out = capsys.readouterr()
    return status, out.out, out.err


def test_cli_table_for_a_transformers_config(config_dir, capsys):
    pytest.importorskip("transformers")
    status, stdout, stderr = run_in_process(capsys, str(config_dir), "--dtypes", "float32", "int4")
    assert status == 0, stderr
    rows = estimate_memory(create_empty_model(str(config_dir)), ["float32"])
    lines = stdout.splitlines()
    assert "Training using Adam" in stdout
    float32 = next(line for line in lines if "float32" in line)
    assert format_bytes(rows[0].total_size) in float32
    assert format_bytes(rows[0].training_size) in float32
    assert "N/A" in next(line for line in lines if "int4" in line)


def test_cli_factory_and_errors(factory_file, capsys):
    # The real command, once for a bad target (exit 2, one line, no traceback) and once for a
    # bad option: the wiring from `accel` to the subcommand and back to the exit status.
    bad = run_cli(str(factory_file.parent / "missing"))
    assert bad.returncode == 2
    assert "does not exist" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    assert "Traceback" not in bad.stderr
    wrong_dtype = run_cli(f"{factory_file}:build", "--dtypes", "fp8")
    assert wrong_dtype.returncode == 2
    assert "fp8" in wrong_dtype.stderr, wrong_dtype.stderr
    # The other outcomes of the same `run`, in process.
    status, stdout, stderr = run_in_process(
        capsys, f"{factory_file}:build", "--library_name", "torch"
    )
    assert status == 0, stderr
    assert "bfloat16" in stdout
    for target, words in [
        (str(factory_file.parent / "missing"), "does not exist"),
        (f"{factory_file}:nope", "has no attribute"),
    ]:
        status, stdout, stderr = run_in_process(capsys, target)
        assert status == 2
        assert words in stderr and len(stderr.strip().splitlines()) == 1
        assert "Traceback" not in stderr
    with pytest.raises(SystemExit) as exited:
        run_in_process(capsys, f"{factory_file}:build", "--dtypes", "fp8")
    assert exited.value.code == 2
