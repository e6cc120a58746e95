"""discover_world: rank and sizes from torchrun and MPI launchers."""

from __future__ import annotations

import os

import pytest

from accel.state.world import WorldInfo, discover_world


def test_plain_python_is_one_process():
    assert discover_world({}) == WorldInfo(0, 1, 0, 1, "single process")
    assert discover_world({}).is_multi_node is False


def test_defaults_to_os_environ():
    os.environ.update(RANK="2", WORLD_SIZE="4", LOCAL_RANK="0", LOCAL_WORLD_SIZE="2")
    assert discover_world() == WorldInfo(2, 4, 0, 2, "RANK/WORLD_SIZE")


@pytest.mark.parametrize(
    "environ, expected",
    [
        (
            {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"},
            (1, 2, 1, 2),
        ),
        (
            {"RANK": "5", "WORLD_SIZE": "8", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "4"},
            (5, 8, 1, 4),
        ),
        # no LOCAL_* : single node assumed, local rank = rank
        ({"RANK": "3", "WORLD_SIZE": "4"}, (3, 4, 3, 4)),
        # LOCAL_WORLD_SIZE only: local rank derived
        ({"RANK": "5", "WORLD_SIZE": "8", "LOCAL_WORLD_SIZE": "4"}, (5, 8, 1, 4)),
        ({"WORLD_SIZE": "1"}, (0, 1, 0, 1)),
        ({"RANK": "0"}, (0, 1, 0, 1)),
    ],
)
def test_torchrun_variables(environ, expected):
    info = discover_world(environ)
    assert (info.rank, info.world_size, info.local_rank, info.local_world_size) == expected
    assert info.source == "RANK/WORLD_SIZE"


def test_torchrun_beats_mpi():
    environ = {"RANK": "1", "WORLD_SIZE": "2", "OMPI_COMM_WORLD_SIZE": "8"}
    assert discover_world(environ).world_size == 2


@pytest.mark.parametrize(
    "prefix_vars, source",
    [
        (
            (
                "OMPI_COMM_WORLD_RANK",
                "OMPI_COMM_WORLD_SIZE",
                "OMPI_COMM_WORLD_LOCAL_RANK",
                "OMPI_COMM_WORLD_LOCAL_SIZE",
            ),
            "Open MPI",
        ),
        (("PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID", "MPI_LOCALNRANKS"), "MPICH/Intel MPI"),
        (
            (
                "MV2_COMM_WORLD_RANK",
                "MV2_COMM_WORLD_SIZE",
                "MV2_COMM_WORLD_LOCAL_RANK",
                "MV2_COMM_WORLD_LOCAL_SIZE",
            ),
            "MVAPICH2",
        ),
    ],
)
def test_mpi_launchers(prefix_vars, source):
    rank, size, local_rank, local_size = prefix_vars
    info = discover_world({rank: "5", size: "8", local_rank: "1", local_size: "4"})
    assert info == WorldInfo(5, 8, 1, 4, source)
    assert info.is_multi_node is True
    # without local variables: one node, local rank = rank
    info = discover_world({rank: "3", size: "4"})
    assert info == WorldInfo(3, 4, 3, 4, source)
    assert info.is_multi_node is False


@pytest.mark.parametrize(
    "environ, match",
    [
        ({"RANK": "2", "WORLD_SIZE": "2"}, r"rank 2 \(from RANK/WORLD_SIZE\) is outside \[0, 2\)"),
        ({"RANK": "-1", "WORLD_SIZE": "2"}, r"rank -1 .* outside \[0, 2\)"),
        ({"RANK": "0", "WORLD_SIZE": "0"}, r"world size 0 .* at least 1"),
        (
            {"RANK": "1", "WORLD_SIZE": "4", "LOCAL_RANK": "2", "LOCAL_WORLD_SIZE": "2"},
            r"local rank 2 .* outside \[0, 2\)",
        ),
        ({"RANK": "0", "WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "0"}, r"local world size 0 .* 1"),
        ({"OMPI_COMM_WORLD_SIZE": "0"}, r"world size 0 \(from Open MPI\)"),
        ({"PMI_RANK": "4", "PMI_SIZE": "4"}, r"rank 4 \(from MPICH/Intel MPI\)"),
        ({"OMPI_COMM_WORLD_RANK": "9", "OMPI_COMM_WORLD_SIZE": "2"}, r"from Open MPI"),
        ({"MV2_COMM_WORLD_RANK": "2", "MV2_COMM_WORLD_SIZE": "2"}, r"from MVAPICH2"),
    ],
)
def test_out_of_range_errors(environ, match):
    with pytest.raises(ValueError, match=match):
        discover_world(environ)


def test_non_integer_variable_errors_with_its_name():
    with pytest.raises(ValueError, match="WORLD_SIZE='two'"):
        discover_world({"WORLD_SIZE": "two"})


def test_multi_node_property():
    assert WorldInfo(0, 4, 0, 2, "x").is_multi_node is True
    assert WorldInfo(0, 4, 0, 4, "x").is_multi_node is False
