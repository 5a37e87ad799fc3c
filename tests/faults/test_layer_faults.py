"""Fault probes of the layers themselves: sizes whose parameters or dense forms cannot fit (refused
up front with the estimate), bf16 parameters, export of every plugin in every form, a plugin
shared by two places of a model, and TorchScript."""

from __future__ import annotations

import pytest

import structlayers
from structlayers.memory import AllocationTooLargeError


@pytest.mark.parametrize(("build", "message"), [
    (lambda: structlayers.create("kronecker", 2**24, 2**24).to_dense(),
     "the dense form of layer 'kronecker' (16777216 -> 16777216) needs about"),
    (lambda: structlayers.create("toeplitz", 2**25, 2**25).to_dense(),
     "the dense form of layer 'toeplitz' (33554432 -> 33554432) needs about"),
    (lambda: structlayers.create("monarch", 2**16, 2**16).to_dense(),
     "the dense form of layer 'monarch' (65536 -> 65536) needs about"),
    (lambda: structlayers.create("lowrank_diag", 2**20, 2**20, rank=4).to_dense(),
     "the dense form of layer 'lowrank_diag' (1048576 -> 1048576) needs about"),
    (lambda: structlayers.create("lowrank", 2**21, 2**21, rank=8).to_dense(),
     "the dense form of layer 'lowrank' (2097152 -> 2097152) needs about"),
    (lambda: structlayers.create("monarch", 2**22, 2**22),
     "layer 'monarch' (4194304 -> 4194304) with 17179869184 parameters needs about"),
    (lambda: structlayers.create("lowrank_diag", 10**6, 10**6, rank=10**6),
     "layer 'lowrank_diag' (1000000 -> 1000000) with 2000000000000 parameters needs about"),
    (lambda: structlayers.create("blockdiag", 2**21, 2**21, groups=1),
     "layer 'blockdiag' (2097152 -> 2097152) with 4398046511104 parameters needs about"),
])
def test_sizes_beyond_the_memory_are_refused_with_the_estimate(build, message: str) -> None:
    with pytest.raises(AllocationTooLargeError) as err:
        build()
    assert message in str(err.value) and "available on cpu" in str(err.value)
