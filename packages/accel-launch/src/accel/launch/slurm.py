"""Read a SLURM allocation: how many machines, which one this is, where the main process runs.

Inside ``srun accel launch ...`` (one launcher per node), SLURM sets ``SLURM_JOB_ID``,
``SLURM_NNODES``, ``SLURM_NODEID`` and ``SLURM_JOB_NODELIST`` (``node[01-03],gpu7``). From them
``accel launch`` derives ``--num_machines``, ``--machine_rank`` and ``--main_process_ip`` (the
first host of the node list), and ``--num_processes`` from the GPUs on each node. Flags given
on the command line win. Torch-free.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Mapping
from typing import Any

_RANGE = re.compile(r"^(\d+)(?:-(\d+))?$")


def _split_top_level(text: str) -> list[str]:
    """Split on commas that are not inside brackets."""
    parts, depth, current = [], 0, []
    for char in text:
        if char == "[":
            depth += 1
        elif char == "]":
            depth -= 1
        if char == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    if depth != 0:
        raise ValueError(f"unbalanced brackets in SLURM node list {text!r}")
    parts.append("".join(current))
    return [part for part in parts if part]


def _expand_one(pattern: str) -> list[str]:
    match = re.search(r"\[([^\]]*)\]", pattern)
    if match is None:
        return [pattern]
    head, tail = pattern[: match.start()], pattern[match.end() :]
    hosts = []
    for item in match.group(1).split(","):
        bounds = _RANGE.match(item.strip())
        if bounds is None:
            raise ValueError(f"cannot read range {item!r} in SLURM node list {pattern!r}")
        low, high = bounds.group(1), bounds.group(2) or bounds.group(1)
        width = len(low)
        for number in range(int(low), int(high) + 1):
            for rest in _expand_one(tail):
                hosts.append(f"{head}{number:0{width}d}{rest}")
    return hosts


def expand_nodelist(nodelist: str) -> list[str]:
    """Host names of a SLURM node list, in order (``node[01-03,07],login`` syntax).

    Uses our own parser; if it cannot read the list, falls back to ``scontrol show
    hostnames`` when that command exists.

    Example:
        >>> expand_nodelist("node[01-03],gpu[7,9]")
        ['node01', 'node02', 'node03', 'gpu7', 'gpu9']
        >>> expand_nodelist("rack[1-2]-n[1-2]")
        ['rack1-n1', 'rack1-n2', 'rack2-n1', 'rack2-n2']
    """
    try:
        hosts: list[str] = []
        for part in _split_top_level(nodelist.strip()):
            hosts.extend(_expand_one(part))
        return hosts
    except ValueError:
        scontrol = shutil.which("scontrol")
        if scontrol is None:
            raise
        output = subprocess.run(
            [scontrol, "show", "hostnames", nodelist], capture_output=True, text=True, check=True
        ).stdout
        return output.split()


def _int(environ: Mapping[str, str], key: str) -> int | None:
    raw = environ.get(key, "").strip()
    # SLURM writes e.g. SLURM_TASKS_PER_NODE="2(x3)"; take the leading number.
    match = re.match(r"^(\d+)", raw)
    return int(match.group(1)) if match else None


def _gpus_per_node(environ: Mapping[str, str]) -> int | None:
    count = _int(environ, "SLURM_GPUS_ON_NODE")
    if count is None:
        raw = environ.get("SLURM_GPUS_PER_NODE", "")  # "4" or "a100:4"
        match = re.search(r"(\d+)$", raw)
        count = int(match.group(1)) if match else None
    return count


def slurm_settings(environ: Mapping[str, str]) -> dict[str, tuple[Any, str]]:
    """Launcher settings implied by a SLURM allocation, as ``name -> (value, source)``.

    Empty outside SLURM (no ``SLURM_JOB_ID``) or when the job has a single node and says
    nothing about GPUs. ``num_processes`` is the total over all machines, like the flag.

    Example:
        >>> env = {"SLURM_JOB_ID": "7", "SLURM_NNODES": "2", "SLURM_NODEID": "1",
        ...        "SLURM_JOB_NODELIST": "node[01-02]", "SLURM_GPUS_ON_NODE": "4"}
        >>> {k: v for k, (v, _) in slurm_settings(env).items()}
        {'num_machines': 2, 'machine_rank': 1, 'main_process_ip': 'node01', 'num_processes': 8}
    """
    if "SLURM_JOB_ID" not in environ:
        return {}
    settings: dict[str, tuple[Any, str]] = {}
    nnodes = _int(environ, "SLURM_NNODES") or _int(environ, "SLURM_JOB_NUM_NODES")
    if nnodes is not None and nnodes > 1:
        settings["num_machines"] = (nnodes, "SLURM_NNODES")
        node_id = _int(environ, "SLURM_NODEID")
        if node_id is not None:
            settings["machine_rank"] = (node_id, "SLURM_NODEID")
        nodelist = environ.get("SLURM_JOB_NODELIST") or environ.get("SLURM_NODELIST")
        if nodelist:
            hosts = expand_nodelist(nodelist)
            if hosts:
                settings["main_process_ip"] = (hosts[0], "SLURM_JOB_NODELIST")
    gpus = _gpus_per_node(environ)
    if gpus:
        settings["num_processes"] = (gpus * (nnodes or 1), "SLURM_GPUS_ON_NODE")
    return settings
