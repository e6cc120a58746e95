"""Pure parts of ``accel launch``: settings resolution, SLURM, worker environments, argv."""

from __future__ import annotations

import subprocess
import sys

import pytest

from accel.launch.elastic import TorchrunPlan, torchrun_argv
from accel.launch.protocol import protocol_env
from accel.launch.settings import SettingError, flatten_config, resolve
from accel.launch.slurm import expand_nodelist, slurm_settings
from accel.launch.spawn import WorkerGroup, describe_exit, shell_exit_code, worker_env

MP = "mixed_precision"

# (flag, environment, config file, expected value, expected source)
PRECEDENCE = [
    (None, {}, {}, "no", "default"),
    (None, {}, {MP: "fp16"}, "fp16", "config mixed_precision"),
    (None, {"ACCELERATE_MIXED_PRECISION": "bf16"}, {MP: "fp16"}, "bf16", "env ACCELERATE_MIXED_PRECISION"),
    (None, {"ACCEL_MIXED_PRECISION": "bf16", "ACCELERATE_MIXED_PRECISION": "fp16"}, {}, "bf16", "env ACCEL_MIXED_PRECISION"),
    ("fp16", {"ACCEL_MIXED_PRECISION": "bf16"}, {MP: "bf16"}, "fp16", "flag --mixed_precision"),
    ("no", {"ACCEL_MIXED_PRECISION": "bf16"}, {}, "no", "flag --mixed_precision"),
    (None, {"ACCEL_MIXED_PRECISION": "BF16"}, {}, "bf16", "env ACCEL_MIXED_PRECISION"),
]  # fmt: skip


@pytest.mark.parametrize(("flag", "environ", "config", "value", "source"), PRECEDENCE)
def test_flags_beat_environment_beat_config_beat_defaults(flag, environ, config, value, source):
    resolved = resolve({MP: flag}, environ, config)
    assert (resolved.values[MP], resolved.sources[MP]) == (value, source)


def test_slurm_values_rank_with_the_environment():
    slurm = {"num_machines": (2, "SLURM_NNODES")}
    assert resolve({}, {}, {"num_machines": 4}, slurm).values["num_machines"] == 2
    assert resolve({"num_machines": 3}, {}, {}, slurm).values["num_machines"] == 3
    assert resolve({}, {}, {}, slurm).sources["num_machines"] == "env SLURM_NNODES"


@pytest.mark.parametrize(
    ("flags", "environ", "config", "needle"),
    [
        ({"num_processes": 0}, {}, {}, "--num_processes=0 must be at least 1"),
        ({}, {"ACCEL_MIXED_PRECISION": "fp17"}, {}, "ACCEL_MIXED_PRECISION='fp17'"),
        ({}, {"ACCEL_DEBUG_MODE": "maybe"}, {}, "ACCEL_DEBUG_MODE='maybe'"),
        ({}, {}, {"main_process_port": 70000}, "config key main_process_port=70000"),
        ({}, {"OMP_NUM_THREADS": "x"}, {}, "OMP_NUM_THREADS='x' must be an integer"),
        ({"gpu_ids": "0,a"}, {}, {}, "--gpu_ids='0,a'"),
    ],
)
def test_bad_values_name_their_source(flags, environ, config, needle):
    with pytest.raises(SettingError, match=None) as info:
        resolve(flags, environ, config)
    assert needle in str(info.value)


def test_accelerate_config_sections_and_distributed_type_flatten():
    config = {
        "distributed_type": "FSDP",
        "fsdp_config": {"fsdp_version": 2, "reshard_after_forward": False},
        "dynamo_config": {"dynamo_backend": "INDUCTOR"},
        "deepspeed_config": {"zero_stage": 2},
    }
    flat = flatten_config(config)
    assert flat["use_fsdp"] is True and flat["fsdp_reshard_after_forward"] is False
    assert flat["dynamo_backend"] == "INDUCTOR" and flat["zero_stage"] == 2
    assert "use_fsdp" not in flatten_config(config, mode_from_flags=True)
    assert resolve({}, {}, flat).values["dynamo_backend"] == "inductor"
    assert flatten_config({"distributed_type": "MULTI_CPU"}) == {"cpu": True}


def test_from_source_lists_what_the_config_supplied():
    resolved = resolve({"debug": True}, {}, {"debug": False, MP: "fp16"})
    assert resolved.from_source("config") == {MP: "fp16"}


@pytest.mark.parametrize(
    ("nodelist", "hosts"),
    [
        ("node01", ["node01"]),
        ("node[01-03]", ["node01", "node02", "node03"]),
        ("a[1,3-4],b7", ["a1", "a3", "a4", "b7"]),
        ("127.0.0.[1-2]", ["127.0.0.1", "127.0.0.2"]),
        ("r[1-2]-n[09-10]", ["r1-n09", "r1-n10", "r2-n09", "r2-n10"]),
        ("localhost,localhost", ["localhost", "localhost"]),
    ],
)
def test_expand_nodelist(nodelist, hosts):
    assert expand_nodelist(nodelist) == hosts


def test_slurm_settings_from_an_allocation():
    env = {
        "SLURM_JOB_ID": "42",
        "SLURM_NNODES": "3",
        "SLURM_NODEID": "2",
        "SLURM_JOB_NODELIST": "gpu[07-09]",
        "SLURM_GPUS_ON_NODE": "4",
    }
    got = {name: value for name, (value, _) in slurm_settings(env).items()}
    assert got == {
        "num_machines": 3,
        "machine_rank": 2,
        "main_process_ip": "gpu07",
        "num_processes": 12,
    }
    assert slurm_settings({"SLURM_NNODES": "2"}) == {}  # not inside a job
    assert slurm_settings({"SLURM_JOB_ID": "1", "SLURM_NNODES": "1"}) == {}


def test_protocol_env_carries_every_setting():
    values = resolve(
        {"cpu": True, MP: "bf16", "use_fsdp": True, "fsdp_offload_params": "true"}, {}, {}
    ).values
    env = protocol_env(values)
    assert env["ACCEL_USE_CPU"] == "true" and env["ACCEL_MIXED_PRECISION"] == "bf16"
    assert env["ACCEL_USE_FSDP"] == "true" and env["ACCEL_FSDP_VERSION"] == "2"
    assert env["ACCEL_FSDP_OFFLOAD_PARAMS"] == "true" and env["OMP_NUM_THREADS"] == "1"
    assert env["ACCEL_DYNAMO_BACKEND"] == "NO"
    assert "CUDA_VISIBLE_DEVICES" not in env
    ds = protocol_env(resolve({"use_deepspeed": True, "zero_stage": 3}, {}, {}).values)
    assert ds["ACCEL_USE_DEEPSPEED"] == "true" and ds["ACCEL_DEEPSPEED_ZERO_STAGE"] == "3"
    gpus = protocol_env(resolve({"gpu_ids": "1,2"}, {"OMP_NUM_THREADS": "4"}, {}).values)
    assert gpus["CUDA_VISIBLE_DEVICES"] == "1,2" and gpus["OMP_NUM_THREADS"] == "4"


def test_worker_env_matches_torchrun_variables():
    group = WorkerGroup(["x"], {"KEEP": "1"}, nproc=2, node_rank=1, nnodes=2, run_id="abc")
    env = worker_env(group, 1, 1234, restart=2)
    assert env["KEEP"] == "1"
    assert (env["RANK"], env["LOCAL_RANK"], env["WORLD_SIZE"]) == ("3", "1", "4")
    assert (env["GROUP_RANK"], env["LOCAL_WORLD_SIZE"], env["ROLE_RANK"]) == ("1", "2", "3")
    assert env["TORCHELASTIC_RUN_ID"] == "abc" and env["TORCHELASTIC_RESTART_COUNT"] == "2"
    assert env["TORCHELASTIC_USE_AGENT_STORE"] == "False"
    assert env["MASTER_PORT"] == "1234"
    single = worker_env(WorkerGroup(["x"], {}, nproc=1, distributed=False), 0, 1, 0)
    assert "RANK" not in single


def test_exit_descriptions():
    assert describe_exit(-15) == "signal SIGTERM" and shell_exit_code(-15) == 143
    assert describe_exit(4) == "exit code 4" and shell_exit_code(4) == 4


def test_torchrun_argv_static_and_c10d():
    static = torchrun_argv(
        TorchrunPlan(["t.py", "--a"], nproc=2, nnodes=2, master_addr="h", same_network=True)
    )
    assert "--master_addr" in static and static[-2:] == ["t.py", "--a"]
    c10d = torchrun_argv(TorchrunPlan(["pkg"], nproc=1, nnodes=2, rdzv_backend="c10d", module=True))
    assert c10d[c10d.index("--rdzv_endpoint") + 1] == "127.0.0.1:29500"
    assert c10d[-2:] == ["--module", "pkg"]


def test_launcher_modules_do_not_import_torch():
    code = (
        "import sys\n"
        "import accel.launch.commands.launch, accel.launch.spawn, accel.launch.settings\n"
        "import accel.launch.slurm, accel.launch.protocol, accel.launch.elastic\n"
        "import accel.launch.notebook\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
