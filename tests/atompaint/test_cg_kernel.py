"""The fused Clebsch-Gordan kernel: the same values and gradients as the plain-PyTorch form, a
registered operator (schema, fake tensors, autograd), FLOPs visible to FlopCounterMode, and a
fallback to the plain form where it is switched off."""

from __future__ import annotations

import pytest
import torch
from escnn import nn as enn
from escnn.group import directsum
from hypothesis import example, given, settings
from hypothesis import strategies as st
from torch.utils.flop_counter import FlopCounterMode

from atompaint.encoders import _cg_fused
from atompaint.encoders.fields import spectral_field_type
from atompaint.encoders.tensor_product import CGTensorProduct

needs_kernel = pytest.mark.skipif(_cg_fused.fused_kernel() is None,
                                  reason="the fused kernel did not build here (no C++ compiler?)")


def _values_and_grads(module: CGTensorProduct, x: torch.Tensor, grad: torch.Tensor):
    inp = x.clone().requires_grad_(True)
    y = module(enn.GeometricTensor(inp, module.in_type)).tensor
    weights = list(module.core.weights.values())
    return (y, *torch.autograd.grad(y, [inp, *weights], grad))


def _compare(module: CGTensorProduct, x: torch.Tensor, **tolerance) -> None:
    torch.manual_seed(1)
    grad = torch.randn(x.shape[0], module.out_type.size, *x.shape[2:], dtype=x.dtype)
    fused = _values_and_grads(module, x, grad)
    with _cg_fused.plain_form():
        plain = _values_and_grads(module, x, grad)
    for a, b in zip(fused, plain):
        torch.testing.assert_close(a, b, **tolerance)


@needs_kernel
@settings(max_examples=8, deadline=None)
@given(band=st.integers(1, 2), fields=st.integers(1, 3), batch=st.integers(1, 3),
       spatial=st.tuples(st.integers(1, 8), st.integers(1, 8), st.integers(1, 7)))
@example(band=2, fields=1, batch=1, spatial=(8, 4, 4))  # exactly one tile
@example(band=2, fields=2, batch=2, spatial=(8, 8, 7))  # a whole tile and a remainder
def test_fused_equals_plain_form_in_values_and_gradients(band, fields, batch, spatial):
    """Any batch and grid (whole tiles of 128 voxels, with a remainder, or less than one tile)."""
    ftype = spectral_field_type(fields, band)
    torch.manual_seed(0)
    module = CGTensorProduct(ftype, ftype).double()
    _compare(module, torch.randn(batch, ftype.size, *spatial, dtype=torch.float64), rtol=1e-10, atol=1e-10)


@needs_kernel
def test_fused_in_single_precision_and_interleaved_output_irreps():
    in_type = spectral_field_type(2, 2)
    gs, irrep = in_type.gspace, in_type.fibergroup.irrep
    out_type = enn.FieldType(gs, [directsum([irrep(2), irrep(1), irrep(0), irrep(1), irrep(0)])] * 2)
    torch.manual_seed(0)
    module = CGTensorProduct(in_type, out_type)
    assert module.core._scatter is not None
    _compare(module, torch.randn(3, in_type.size, 9, 8, 7), rtol=1e-4, atol=1e-4)


@needs_kernel
def test_fused_operator_registration_and_gradcheck():
    ftype = spectral_field_type(2, 1)
    torch.manual_seed(0)
    core = CGTensorProduct(ftype, ftype).double().core
    x = torch.randn(2, ftype.size, 5, dtype=torch.float64, requires_grad=True)
    weights = [w.detach().clone().requires_grad_(True) for w in core.weights.values()]
    args = (x, weights, core._spec, core._blocks.double(), ftype.size, 0)
    torch.library.opcheck(_cg_fused.cg_tensor_product, args)
    assert torch.autograd.gradcheck(lambda x, *w: _cg_fused.cg_tensor_product(x, list(w), *args[2:]),
                                    (x, *weights))


@needs_kernel
def test_flop_counter_sees_the_analytic_count_forward_and_backward():
    ftype = spectral_field_type(3, 2)
    module = CGTensorProduct(ftype, ftype)
    x = torch.randn(2, ftype.size, 4, 3, 5, requires_grad=True)
    expected = module.flop_count(2 * 4 * 3 * 5).matmul
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        module(enn.GeometricTensor(x, ftype))
    assert counter.get_total_flops() == expected
    with FlopCounterMode(display=False) as counter:
        module(enn.GeometricTensor(x, ftype)).tensor.sum().backward()
    assert counter.get_total_flops() == 3 * expected


@needs_kernel
def test_bad_input_and_switching_off(monkeypatch):
    ftype = spectral_field_type(2, 1)
    module = CGTensorProduct(ftype, ftype)
    with pytest.raises(ValueError, match="expected input"):
        module.core.fused(torch.randn(1, ftype.size + 1, 3, 3, 3))
    with pytest.raises(RuntimeError, match="weight 0 must be"):
        _cg_fused.cg_tensor_product(torch.randn(1, ftype.size, 8), [w[:1] for w in module.core.weights.values()],
                                    module.core._spec, module.core._blocks, ftype.size, 0)
    monkeypatch.setenv(_cg_fused.ENV_SWITCH, "0")
    _cg_fused.fused_kernel.cache_clear()
    try:
        assert not _cg_fused.fused_available()
    finally:
        monkeypatch.undo()
        _cg_fused.fused_kernel.cache_clear()
    assert _cg_fused.fused_available()
    with _cg_fused.plain_form():
        assert not _cg_fused.fused_available()


def test_a_failed_build_falls_back_to_the_plain_form(monkeypatch):
    """Where the kernel cannot be compiled, one warning says so and the tensor product runs its plain form."""
    from torch.utils import cpp_extension

    def no_compiler(*args, **kwargs):
        raise RuntimeError("Error building extension: no C++ compiler")

    ftype = spectral_field_type(2, 1)
    module = CGTensorProduct(ftype, ftype)
    x = torch.randn(2, ftype.size, 3, 4, 2)
    monkeypatch.setattr(cpp_extension, "load", no_compiler)
    _cg_fused.fused_kernel.cache_clear()
    try:
        with pytest.warns(RuntimeWarning, match="did not build.*no C\\+\\+ compiler.*plain-PyTorch form"):
            assert not _cg_fused.fused_available()
        with torch.no_grad():
            torch.testing.assert_close(module(enn.GeometricTensor(x, ftype)).tensor, module.core(x))
    finally:
        monkeypatch.undo()
        _cg_fused.fused_kernel.cache_clear()
