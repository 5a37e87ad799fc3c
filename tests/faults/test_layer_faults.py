"""Fault probes of the layers themselves: sizes whose parameters or dense forms cannot fit (refused
up front with the estimate), bf16 parameters, export of every plugin in every form, a plugin
shared by two places of a model, and TorchScript."""

from __future__ import annotations

import pytest
import torch

import structlayers
from structlayers.memory import AllocationTooLargeError
from structlayers.registry import available


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


@pytest.mark.parametrize("name", sorted(available()))
def test_bfloat16_parameters_work_for_every_layer(name: str) -> None:
    """``layer.to(torch.bfloat16)``: bfloat16 in, bfloat16 out, close to float32, and bfloat16
    gradients for every parameter (FFT layers compute in float32 and cast back)."""
    options = {"depth": 2} if name == "stack" else {}
    torch.manual_seed(0)
    layer = structlayers.create(name, 12, 10, **options)
    x = torch.randn(3, 12)
    with torch.no_grad():
        reference = layer(x)
    half = layer.to(torch.bfloat16)
    y = half(x.to(torch.bfloat16))
    assert y.dtype == torch.bfloat16
    torch.testing.assert_close(y.float(), reference, atol=0.05 * float(reference.abs().max()), rtol=0.05)
    y.float().square().sum().backward()
    for pname, p in half.named_parameters():
        assert p.grad is not None and p.grad.dtype == torch.bfloat16 and torch.isfinite(p.grad).all(), pname
