"""Compressed encoders: structured equivariant mixing, separable steerable convolutions, the
Clebsch-Gordan tensor product, their accounting, export and collapse, and band-limit-2 encoders
invariant under all 24 rotations of the cube."""

from __future__ import annotations

import argparse
import copy
import json
import warnings

import numpy as np
import pytest
import torch
from escnn import gspaces
from escnn import nn as enn
from escnn.group import directsum
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.flop_counter import FlopCounterMode

import structlayers
from atompaint.encoders import EncoderConfig, build_encoder
from atompaint.encoders.architectures import plan_shallow, plan_vgg
from atompaint.encoders.costs import COST_KINDS, encoder_cost
from atompaint.encoders.fields import plan_channels, spectral_field_type, trivial_field_type
from atompaint.encoders.mixing import IrrepMixing, MixingSpec, dense_mixing_flops
from atompaint.encoders.separable import IrrepwiseR3Conv, SeparableR3Conv, depthwise_type
from atompaint.encoders.tensor_product import CGTensorProduct, escnn_tensor_product_flops
from atompaint.encoders.testing import check_mixing
from structlayers.registry import available

warnings.filterwarnings("ignore", message=".*py3nj.*")


# -- the mixing ----------------------------------------------------------------------------------


@pytest.mark.parametrize("layer", sorted(available()))
def test_mixing_contract_for_every_registered_plugin(layer):
    report = check_mixing(layer)
    assert report.checks[-1] == "collapse" and "equivariance" in report.checks


def test_mixing_contract_with_stacks_and_options():
    check_mixing("acdc", depth=3, gradcheck=False)
    check_mixing("lowrank", rank=2, bias=False)
    check_mixing("blockdiag", groups=2, in_type=spectral_field_type(3, 1), out_type=spectral_field_type(3, 1))


def test_mixing_between_scalars_and_fields_is_zero_where_schur_says_so():
    """A map from scalar channels can only reach the scalar part of a spectral field."""
    mixing = IrrepMixing(trivial_field_type(3), spectral_field_type(2, 1)).double()
    weight, _ = mixing.to_dense()
    scalar_rows = [0, 10]  # irrep 0 of each of the two fields (rho_0 + 3 rho_1 = 10 numbers)
    assert weight[scalar_rows].abs().sum() > 0
    assert weight[[r for r in range(weight.shape[0]) if r not in scalar_rows]].abs().sum() == 0


@pytest.mark.parametrize("spec", [MixingSpec("acdc", 2), MixingSpec("dense")], ids=["acdc", "dense"])
def test_mixing_reads_and_writes_field_uniform_layouts_as_strided_blocks_and_falls_back_otherwise(spec):
    """Spectral fields take the strided path (no gather, scatter or zero-filled buffer; dense maps on
    channel-major blocks), a gated type (scalar gates, then fields) the gather/scatter one; both equal
    the dense matrix, and so do channels-last irrep parts (as the irrep-wise convolution hands them over)."""
    from atompaint.encoders.layers import gate_field_type
    from atompaint.encoders.mixing import IrrepLayout

    spectral, gated = spectral_field_type(3, 2), gate_field_type(spectral_field_type(2, 1))
    fields, blocks = IrrepLayout.of(spectral).field_blocks()
    assert fields == 3 and blocks == {(0,): (0, 1), (1,): (1, 3), (2,): (10, 5)}
    assert IrrepLayout.of(gated).field_blocks() is None
    torch.manual_seed(0)
    for in_type, out_type in ((spectral, spectral_field_type(2, 2)), (gated, spectral_field_type(2, 1)),
                              (spectral_field_type(2, 1), gated), (trivial_field_type(3), spectral)):
        mixing = IrrepMixing(in_type, out_type, spec, bias=True).double()
        linear = mixing.linear
        assert (linear.in_blocks is None) == (in_type is gated) and (linear.out_blocks is None) == (out_type is gated)
        x = torch.randn(2, in_type.size, 3, 4, 5, dtype=torch.float64)
        weight, bias = mixing.to_dense()
        expected = torch.einsum("oc,bc...->bo...", weight, x) + bias[:, None, None, None]
        torch.testing.assert_close(linear(x), expected)
        torch.testing.assert_close(linear(x.contiguous(memory_format=torch.channels_last_3d)), expected)
        if linear.basis_in is None:
            parts = [x[:, getattr(linear, f"{key}_in").view(linear.dims[key], -1).T.reshape(-1)] for key in linear.maps]
            channels_last = [p.contiguous(memory_format=torch.channels_last_3d) for p in parts]
            torch.testing.assert_close(linear.forward_irreps(parts), expected)
            torch.testing.assert_close(linear.forward_irreps(channels_last), expected)


def test_dense_mixing_on_channel_major_blocks_has_the_gradients_of_the_row_form(monkeypatch):
    """Dense maps into spectral fields run on channel-major blocks (no transposes); their input and
    weight gradients equal those of the rows ``(B * V * d, m)`` the other plugins take."""
    from atompaint.encoders.mixing import PerIrrepLinear

    torch.manual_seed(0)
    mixing = IrrepMixing(spectral_field_type(3, 2), spectral_field_type(2, 2), MixingSpec("dense"), bias=True).double()
    linear = mixing.linear
    assert all(linear._runs_channel_major(m) for m in linear.maps.values())
    x = torch.randn(2, linear.in_features, 3, 4, 5, dtype=torch.float64)
    parts = [x[:, getattr(linear, f"{key}_in").view(linear.dims[key], -1).T.reshape(-1)] for key in linear.maps]
    g = torch.randn(2, linear.out_features, 3, 4, 5, dtype=torch.float64)

    def gradients():
        results = []
        for run in (lambda: linear(x), lambda: linear.forward_irreps(parts)):
            inputs = [x] + parts
            for t in inputs:
                t.requires_grad_(True)
            mixing.zero_grad()
            grads = torch.autograd.grad(run(), inputs + list(mixing.parameters()), g, allow_unused=True)
            results.append([t for t in grads if t is not None])
        return results

    channel_major = gradients()
    monkeypatch.setattr(PerIrrepLinear, "_runs_channel_major", lambda self, module: False)
    rows = gradients()
    for a, b in zip(channel_major, rows, strict=True):
        assert len(a) == len(b) > len(linear.maps)  # the input's and every weight's
        for u, v in zip(a, b, strict=True):
            torch.testing.assert_close(u, v)


def test_first_hermite_values_and_gradients():
    from atompaint.encoders.layers import first_hermite

    x = torch.linspace(-4, 4, 41, dtype=torch.float64).requires_grad_(True)
    expected = np.sqrt(2) * np.pi ** (-0.25) * x * torch.exp(-x**2 / 2)
    torch.testing.assert_close(first_hermite(x), expected)
    assert torch.autograd.gradcheck(first_hermite, (x,))
    (grad,) = torch.autograd.grad(first_hermite(x).sum(), x)
    (grad_expected,) = torch.autograd.grad(expected.sum(), x)
    torch.testing.assert_close(grad, grad_expected)


@pytest.mark.parametrize("function", ["hermite", "elu", "leaky_hardshrink"])
def test_fused_fourier_activation_equals_autograd(function, monkeypatch):
    """The training path of the Fourier activation (voxel blocks, ``f'`` saved) gives the outputs and
    input gradients of :func:`fourier_pointwise` under autograd, with blocks of 4 of the 6 fields and 10
    of the 27 voxels (the last ones shorter)."""
    from atompaint.encoders import layers

    activation = layers.FourierActivation(2, 1, 1, function)
    monkeypatch.setattr(layers, "FOURIER_BLOCK_VOXELS", 10)
    monkeypatch.setattr(layers, "FOURIER_BLOCK_SAMPLES", 4 * 10 * activation.A.shape[0])
    assert [(r.start, b.start) for r, b in layers._fourier_blocks(6, activation.A.shape[0], 27)][:4] == [
        (0, 0), (0, 10), (0, 20), (4, 0)]
    torch.manual_seed(0)
    x = (2 * torch.randn(3, activation.in_type.size, 3, 3, 3)).requires_grad_()
    g = torch.randn(3, activation.out_type.size, 3, 3, 3)
    fused = activation(enn.GeometricTensor(x, activation.in_type)).tensor
    (grad,) = torch.autograd.grad(fused, x, g)
    plain = layers.fourier_pointwise(x, activation.A, activation.Ainv, activation._function, 2)
    (grad_plain,) = torch.autograd.grad(plain, x, g)
    torch.testing.assert_close(fused, plain)
    torch.testing.assert_close(grad, grad_plain)


def test_fused_fourier_activation_runs_in_its_inputs_precision_under_autocast():
    from atompaint.encoders import layers

    activation = layers.FourierActivation(2, 1, 1, "elu")
    torch.manual_seed(0)
    x = torch.randn(3, activation.in_type.size, 3, 3, 3)
    g = torch.randn(3, activation.out_type.size, 3, 3, 3)
    plain = layers.fourier_pointwise(x.requires_grad_(), activation.A, activation.Ainv, activation._function, 2)
    (grad_plain,) = torch.autograd.grad(plain, x, g)
    half = x.detach().bfloat16().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = activation(enn.GeometricTensor(half, activation.in_type)).tensor
    (grad,) = torch.autograd.grad(y, half, g.bfloat16())
    assert y.dtype == grad.dtype == torch.bfloat16
    torch.testing.assert_close(y.float(), plain, rtol=0.05, atol=0.05)
    torch.testing.assert_close(grad.float(), grad_plain, rtol=0.05, atol=0.1)


@pytest.mark.parametrize("kind", ["spectral", "gated"])
def test_fused_batch_norm_equals_escnns(kind):
    """Outputs, running statistics and gradients (input, weight, bias) of the fused batch norm equal
    escnn's module, in training and in eval mode; a non-uniform type takes escnn's own forward."""
    from atompaint.encoders.layers import IIDBatchNorm, gate_field_type

    field_type = spectral_field_type(3, 2) if kind == "spectral" else gate_field_type(spectral_field_type(2, 1))
    torch.manual_seed(0)
    ours, theirs = IIDBatchNorm(field_type), enn.IIDBatchNorm3d(field_type)
    with torch.no_grad():
        for p in theirs.parameters():
            p.uniform_(0.5, 1.5)
    ours.load_state_dict(theirs.state_dict())
    for training in (True, True, False):
        ours.train(training), theirs.train(training)
        x = torch.randn(4, field_type.size, 3, 4, 5, dtype=torch.float64) * 2 + 1
        results = []
        for module in (ours, theirs):
            module.double()
            xi = x.clone().requires_grad_(True)
            y = module(enn.GeometricTensor(xi, field_type)).tensor
            y.pow(3).sum().backward()
            results.append((y.detach(), xi.grad, [p.grad.clone() for p in module.parameters()]))
            module.zero_grad()
        torch.testing.assert_close(results[0][0], results[1][0])
        torch.testing.assert_close(results[0][1], results[1][1])
        for a, b in zip(results[0][2], results[1][2]):
            torch.testing.assert_close(a, b)
        for (name, a), b in zip(ours.named_buffers(), theirs.buffers()):
            torch.testing.assert_close(a.double(), b.double(), msg=name)


def test_mixing_flops_match_the_dense_formula_and_beat_escnn():
    a, b = spectral_field_type(16, 2), spectral_field_type(16, 2)
    mixing = IrrepMixing(a, b)
    assert mixing.flops(10) == dense_mixing_flops(a, b, 10) == 2 * 10 * 16**2 * (1 + 9 * 3 + 25 * 5)
    escnn_pointwise = 2 * 10 * a.size * b.size
    assert 8 * mixing.flops(10) < escnn_pointwise < 8.01 * mixing.flops(10)  # 153 c^2 vs 1225 c^2 per voxel


def test_mixing_on_o3_fields_and_a_clear_error_for_complex_irreps():
    o3 = gspaces.flipRot3dOnR3()
    rho = o3.fibergroup.bl_regular_representation(1)
    ftype = enn.FieldType(o3, 2 * [rho])
    report = check_mixing("dense", in_type=ftype, out_type=ftype, gradcheck=False)
    assert "equivariance" in report.checks
    so2 = gspaces.rot2dOnR2(N=-1, maximum_frequency=2)
    vectors = enn.FieldType(so2, 2 * [so2.irrep(1)])
    with pytest.raises(ValueError, match="complex type"):
        IrrepMixing(vectors, vectors)


def test_mixing_rejects_nonlinear_blocks():
    with pytest.raises(ValueError, match="not linear"):
        IrrepMixing(spectral_field_type(2, 1), spectral_field_type(2, 1), MixingSpec("acdc", 2, {"activation": "relu"}))


@settings(max_examples=15, deadline=None)
@given(c_in=st.integers(1, 4), c_out=st.integers(1, 4), band=st.integers(0, 2), seed=st.integers(0, 2**16))
def test_mixing_is_exactly_equivariant_under_random_rotations(c_in, c_out, band, seed):
    torch.manual_seed(seed)
    a, b = spectral_field_type(c_in, band), spectral_field_type(c_out, band)
    mixing = IrrepMixing(a, b, MixingSpec("acdc", 2), bias=True).double()
    x = enn.GeometricTensor(torch.randn(2, a.size, 1, 2, 1, dtype=torch.float64), a)
    element = a.fibergroup.sample()
    with torch.no_grad():
        torch.testing.assert_close(mixing(x.transform_fibers(element)).tensor,
                                   mixing(x).transform_fibers(element).tensor, atol=1e-10, rtol=1e-10)


# -- separable convolutions ------------------------------------------------------------------------


def _smooth_field(ftype, centres, values, n, sigma):
    """Gaussians at ``centres`` (in escnn's grid frame: tensor axes are z, y, x) with fiber ``values``."""
    axis = torch.arange(n, dtype=torch.float64) - n // 2
    grid = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), -1)[..., [2, 1, 0]]
    weights = torch.exp(-((grid[None] - centres[:, None, None, None]) ** 2).sum(-1) / (2 * sigma**2))
    return enn.GeometricTensor(torch.einsum("kc,kxyz->cxyz", values, weights)[None].float(), ftype)


def _equivariance_error(conv, in_type, out_type, trials=4, n=5, sigma=3.0, seed=0):
    """Relative error of ``conv(rho(g) f) = rho(g) conv(f)`` at the centre voxel, for smooth fields
    ``f`` rotated analytically by random rotations ``g`` (only the sampling of the kernel errs)."""
    g = torch.Generator().manual_seed(seed)
    errors = []
    for _ in range(trials):
        centres = torch.randn(6, 3, generator=g, dtype=torch.float64)
        values = torch.randn(6, in_type.size, generator=g, dtype=torch.float64)
        element = in_type.fibergroup.sample()
        rotation = torch.from_numpy(np.asarray(element.to("MAT"))).double()
        rho_in = torch.from_numpy(in_type.representation(element)).double()
        rho_out = torch.from_numpy(out_type.representation(element)).double()
        with torch.no_grad():
            y = conv(_smooth_field(in_type, centres, values, n, sigma)).tensor[0, :, 1, 1, 1]
            moved = _smooth_field(in_type, centres @ rotation, values @ rho_in.T, n, sigma)
            y_moved = conv(moved).tensor[0, :, 1, 1, 1]
        errors.append(float((y_moved.double() - rho_out @ y.double()).norm() / y.norm()))
    return float(np.mean(errors))


def test_separable_conv_is_equivariant_under_random_rotations_like_escnn():
    torch.manual_seed(0)
    a, b = spectral_field_type(2, 2), spectral_field_type(3, 2)
    # float32: escnn shares basis modules between convolutions, so .double() on one would leak.
    separable = SeparableR3Conv(a, b, 3, mixing=MixingSpec("acdc", 2)).eval()
    dense = enn.R3Conv(a, b, 3).eval()

    class Plain(torch.nn.Module):  # a non-equivariant convolution of the same shape, as a control
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv3d(a.size, b.size, 3)

        def forward(self, x):
            return enn.GeometricTensor(self.conv(x.tensor), b)

    err_sep = _equivariance_error(separable, a, b)
    err_dense = _equivariance_error(dense, a, b)
    err_plain = _equivariance_error(Plain(), a, b)
    assert err_sep < 0.25 and err_sep < 2 * err_dense + 0.05, (err_sep, err_dense)
    assert err_plain > 0.6 > 2 * err_sep


def test_separable_conv_lifts_scalars_and_counts_like_its_parts():
    conv = SeparableR3Conv(trivial_field_type(5), spectral_field_type(2, 2), 3, padding=1, mixing=MixingSpec("acdc"))
    assert depthwise_type(trivial_field_type(5), spectral_field_type(2, 2)).size == 5 * 35
    y = conv(enn.GeometricTensor(torch.randn(2, 5, 5, 5, 5), conv.in_type))
    assert y.shape == (2, 70, 5, 5, 5) and y.tensor.abs().sum() > 0
    plain = conv.export()
    torch.testing.assert_close(plain(torch.ones(1, 5, 5, 5, 5)),
                               conv.eval()(enn.GeometricTensor(torch.ones(1, 5, 5, 5, 5), conv.in_type)).tensor)
    with pytest.raises(ValueError, match="uniform"):
        depthwise_type(enn.FieldType(conv.in_type.gspace, [conv.in_type.gspace.trivial_repr,
                                                            spectral_field_type(1, 1).representations[0]]),
                       spectral_field_type(1, 1))


@settings(max_examples=10, deadline=None)
@given(c_in=st.integers(1, 3), c_out=st.integers(1, 3), band=st.integers(1, 2), seed=st.integers(0, 2**16))
def test_irrepwise_separable_conv_is_exactly_equivariant_at_1x1x1(c_in, c_out, band, seed):
    """On single voxels the steerable kernels act at the origin only: exact equivariance for random rotations."""
    torch.manual_seed(seed)
    a, b = spectral_field_type(c_in, band), spectral_field_type(c_out, band)
    conv = SeparableR3Conv(a, b, 1, mixing=MixingSpec("acdc", 2), depthwise="irrep", bias=True).eval()
    assert conv.irrepwise
    x = enn.GeometricTensor(torch.randn(3, a.size, 1, 1, 1), a)
    element = a.fibergroup.sample()
    with torch.no_grad():
        torch.testing.assert_close(conv(x.transform_fibers(element)).tensor, conv(x).transform_fibers(element).tensor,
                                   atol=1e-5, rtol=1e-5)


def test_irrepwise_separable_conv_is_equivariant_under_random_rotations_and_counts_what_runs():
    torch.manual_seed(0)
    a, b = spectral_field_type(2, 2), spectral_field_type(3, 2)
    irrepwise = SeparableR3Conv(a, b, 3, mixing=MixingSpec("acdc", 2), depthwise="irrep").eval()
    per_field = SeparableR3Conv(a, b, 3, mixing=MixingSpec("acdc", 2)).eval()
    err_irrep, err_field = _equivariance_error(irrepwise, a, b), _equivariance_error(per_field, a, b)
    assert err_irrep < 0.25 and err_irrep < 2 * err_field + 0.05, (err_irrep, err_field)
    # The depthwise step as executed: per field and output voxel (1 + 3 * 3^2 + 5 * 5^2) * 27 = 4,131 MACs
    # instead of 35^2 * 27 = 33,075; the mixing's plugins count themselves.
    x = enn.GeometricTensor(torch.randn(2, a.size, 5, 5, 5), a)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        y = irrepwise(x)
    mixing = irrepwise.mixing.flop_count(2 * 27)
    assert counter.get_total_flops() == 2 * (2 * 2 * 27 * 4131) + mixing.total
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        per_field.depthwise(x)
    assert counter.get_total_flops() == 2 * (2 * 2 * 27 * 35**2 * 27)
    depthwise_params = sum(c.module.weights.numel() for c in irrepwise.depthwise.core.convs.values())
    assert sum(p.numel() for p in irrepwise.parameters()) == depthwise_params + irrepwise.mixing.params()
    # The fused path equals the two steps run one after the other, and the plain export.
    with torch.no_grad():
        torch.testing.assert_close(y.tensor, irrepwise.mixing(irrepwise.depthwise(x)).tensor)
        torch.testing.assert_close(irrepwise.export()(x.tensor), y.tensor)
    # state_dict round trip into a differently initialised copy.
    torch.manual_seed(1)
    other = SeparableR3Conv(a, b, 3, mixing=MixingSpec("acdc", 2), depthwise="irrep").eval()
    with torch.no_grad():
        assert not torch.allclose(other(x).tensor, y.tensor)
        other.load_state_dict(irrepwise.state_dict())
        torch.testing.assert_close(other(x).tensor, y.tensor)


def test_irrepwise_depthwise_keeps_the_per_field_form_for_scalar_inputs():
    conv = SeparableR3Conv(trivial_field_type(3), spectral_field_type(2, 2), 3, depthwise="irrep")
    assert not conv.irrepwise and isinstance(conv.depthwise, enn.R3Conv)
    with pytest.raises(ValueError, match="isotropic"):
        IrrepwiseR3Conv(trivial_field_type(3), 3)
    with pytest.raises(ValueError, match="depthwise"):
        SeparableR3Conv(spectral_field_type(1, 1), spectral_field_type(1, 1), 3, depthwise="channel")
    with pytest.raises(ValueError, match="depthwise"):
        EncoderConfig(depthwise="channel")
    # A strided irrep-wise convolution on O(3) fields (irreps with two indices) keeps shapes and layout.
    o3 = gspaces.flipRot3dOnR3()
    ftype = enn.FieldType(o3, 2 * [o3.irrep(0, 0), o3.irrep(1, 1), o3.irrep(1, 2)])
    conv = IrrepwiseR3Conv(ftype, 3, stride=2, padding=1)
    x = enn.GeometricTensor(torch.randn(1, ftype.size, 5, 5, 5), ftype)
    assert conv(x).shape == conv.evaluate_output_shape(x.shape) == (1, ftype.size, 3, 3, 3)


# -- the Clebsch-Gordan tensor product -------------------------------------------------------------


def _weight_jacobian(module, params, x, ftype):
    """Outputs on ``x`` as linear functions of the weights: one column per weight."""
    columns = []
    saved = [p.detach().clone() for p in params]
    with torch.no_grad():
        for p in params:
            for k in range(p.numel()):
                for q in params:
                    q.zero_()
                p.view(-1)[k] = 1
                columns.append(module(enn.GeometricTensor(x, ftype)).tensor.reshape(-1).clone())
        for p, s in zip(params, saved):
            p.copy_(s)
    return torch.stack(columns, 1)


@pytest.mark.parametrize("band", [1, 2])
def test_cg_tensor_product_spans_escnn_function_class(band):
    """The quadratic maps reachable by the two parametrisations are the same space."""
    ftype = spectral_field_type(1, band)
    torch.manual_seed(0)
    cg = CGTensorProduct(ftype, ftype).double()
    escnn_tp = enn.TensorProductModule(ftype, ftype).double().train()
    x = torch.randn(120 if band == 2 else 40, ftype.size, 1, 1, 1, dtype=torch.float64)
    try:
        ours = _weight_jacobian(cg, list(cg.core.weights.values()), x, ftype)
        theirs = _weight_jacobian(escnn_tp, [escnn_tp.weights], x, ftype)
    finally:
        escnn_tp.float()  # escnn shares basis modules between instances: undo the conversion

    def rank(m):
        return int(torch.linalg.matrix_rank(m, rtol=1e-6))

    assert rank(ours) == cg.params() == rank(theirs) == rank(torch.cat([ours, theirs], 1))
    assert cg.params() < escnn_tp.weights.numel()  # escnn also keeps weights that multiply x_i x_j - x_j x_i = 0


def test_cg_tensor_product_is_equivariant_cheaper_and_chunked_in_training():
    ftype = spectral_field_type(3, 2)
    torch.manual_seed(0)
    cg = CGTensorProduct(ftype, ftype).double()
    x = enn.GeometricTensor(torch.randn(2, ftype.size, 3, 2, 2, dtype=torch.float64), ftype)
    element = ftype.fibergroup.sample()
    with torch.no_grad():
        # escnn's Clebsch-Gordan coefficients are numerical (no py3nj): exact to about 1e-7.
        torch.testing.assert_close(cg(x.transform_fibers(element)).tensor, cg(x).transform_fibers(element).tensor,
                                   atol=1e-6, rtol=1e-6)
        reference = cg(x).tensor
    escnn_tp = enn.TensorProductModule(ftype, ftype)
    assert cg.flop_count(1).total * 6 < escnn_tensor_product_flops(escnn_tp, 1).total  # 14K vs 87K per field
    from atompaint.encoders import tensor_product
    from atompaint.encoders._cg_fused import plain_form

    old, tensor_product.CHUNK_ROWS = tensor_product.CHUNK_ROWS, 7  # many chunks of the plain form
    try:
        with plain_form():
            inp = x.tensor.clone().requires_grad_(True)
            y = cg(enn.GeometricTensor(inp, ftype)).tensor
            torch.testing.assert_close(y, reference)
            y.pow(2).sum().backward()
            grad_chunked = inp.grad.clone()
    finally:
        tensor_product.CHUNK_ROWS = old
    inp = x.tensor.clone().requires_grad_(True)
    with plain_form():
        cg(enn.GeometricTensor(inp, ftype)).tensor.pow(2).sum().backward()
    torch.testing.assert_close(grad_chunked, inp.grad)



def test_cg_tensor_product_places_interleaved_output_irreps():
    """Output irreps in an order other than the blocks the product assembles (l = 2, 1, 0, 1, 0) land in
    their own positions: the map stays equivariant."""
    in_type = spectral_field_type(2, 1)
    gs, irrep = in_type.gspace, in_type.fibergroup.irrep
    out_rep = directsum([irrep(2), irrep(1), irrep(0), irrep(1), irrep(0)])
    out_type = enn.FieldType(gs, [out_rep] * 2)
    torch.manual_seed(0)
    cg = CGTensorProduct(in_type, out_type).double()
    assert cg.core._scatter is not None
    x = enn.GeometricTensor(torch.randn(2, in_type.size, 2, 1, 1, dtype=torch.float64), in_type)
    element = gs.fibergroup.sample()
    with torch.no_grad():
        torch.testing.assert_close(cg(x.transform_fibers(element)).tensor, cg(x).transform_fibers(element).tensor,
                                   atol=1e-6, rtol=1e-6)

# -- channel rules and plans -----------------------------------------------------------------------


def test_channel_rules_of_the_notes():
    sizes = [s.size_out for s in plan_shallow(21)]
    strides = [s.stride for s in plan_shallow(21)][1:]
    assert plan_channels(7, 58, sizes, strides, "inverse-size") == [7, 15, 19, 44, 58]  # 7 * 19 / size, capped
    assert plan_channels(2, 16, sizes, strides, "double") == [2, 4, 4, 8, 8]
    assert plan_channels(2, 16, [21, 11, 5, 3], [2, 2, 2], "double") == [2, 4, 8, 16]
    with pytest.raises(ValueError, match="schedule"):
        EncoderConfig(schedule="cubic")


def test_kernel_size_5_and_the_deep_shallow_variant():
    assert [(s.size_out, s.kernel_size) for s in plan_vgg(21, 1, 5)] == [(17, 5), (17, 5), (9, 5), (9, 5), (5, 5),
                                                                         (1, 5)]
    deep = plan_shallow(21, repeats=3)
    assert [s.size_out for s in deep if s.padding == 0] == [19, 9, 7, 3, 1]
    assert len(deep) == 5 + 2 * 4 and deep[0].padding == 0
    with pytest.raises(ValueError, match="kernel_size"):
        EncoderConfig(kernel_size=4)


# -- whole encoders: accounting, export, collapse --------------------------------------------------

SMALL = dict(in_channels=2, width=1, max_channels=2, band_limit=1, grid_size=1, input_size=7)


@pytest.mark.parametrize("depthwise", ["field", "irrep"])
def test_cost_breakdown_matches_flop_counter_and_parameters(depthwise):
    torch.manual_seed(0)
    encoder = build_encoder(EncoderConfig(architecture="resnet", conv="separable", mixing="acdc:depth=2",
                                          depthwise=depthwise, tensor_product="clebsch-gordan", **SMALL)).eval()
    cost = encoder_cost(encoder)
    assert set(cost.flops) == set(COST_KINDS)
    assert cost.total_params == sum(p.numel() for p in encoder.parameters())
    assert all(cost.flops[k].total > 0 for k in ("conv", "mixing", "fourier", "tensor product", "norm", "pool"))
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        encoder(torch.zeros(1, 2, 7, 7, 7))
    # FlopCounterMode sees the matmuls of escnn's modules and, through structlayers, the whole analytic
    # count of every mixing plugin (its FFTs and scalings included).
    mixing = cost.flops["mixing"]
    assert cost.total.matmul + mixing.fft + mixing.elementwise == counter.get_total_flops()
    dense = build_encoder(EncoderConfig(architecture="resnet", **SMALL))
    assert encoder_cost(dense).flops["conv"].total > cost.flops["conv"].total


@pytest.mark.parametrize("depthwise", ["field", "irrep"])
@pytest.mark.parametrize("architecture", ["resnet", "vgg"])
def test_export_and_collapse_of_compressed_encoders(architecture, depthwise):
    torch.manual_seed(0)
    config = EncoderConfig(architecture=architecture, conv="separable", mixing="acdc:depth=2",
                           depthwise=depthwise, dense_stem=False, tensor_product="clebsch-gordan", **SMALL)
    encoder = build_encoder(config).eval()
    x = torch.rand(2, 2, 7, 7, 7)
    with torch.no_grad():
        reference = encoder.fields(x)
        exported = encoder.export()
        assert not any("escnn" in type(m).__module__ for m in exported.modules())
        torch.testing.assert_close(exported.fields(x), reference, rtol=1e-5, atol=1e-6)
        for model in (encoder, exported):
            collapsed, report = structlayers.collapse(model, x)
            chosen = {c.chosen for c in report.choices}
            assert report.choices and chosen <= {"dense", "structured"}
            torch.testing.assert_close(collapsed.fields(x), reference, rtol=1e-5, atol=1e-6)
        everything_dense, report = structlayers.collapse(exported, x, cost=lambda _l, _r, f: f == "structured")
        assert all(c.chosen == "dense" for c in report.choices)
        torch.testing.assert_close(everything_dense.fields(x), reference, rtol=1e-5, atol=1e-6)
    copy.deepcopy(encoder)


# -- band limit 2 with the 96-point grid: invariance under the 24 rotations of the cube -------------


def _cube_rotations(n: int) -> list[torch.Tensor]:
    """The 24 rotations of an ``n^3`` grid as permutations of its flattened voxels."""
    start = torch.arange(n**3).view(n, n, n)
    found = {tuple(start.flatten().tolist()): start}
    frontier = [start]
    while frontier:
        nxt = []
        for cube in frontier:
            for dims in ((0, 1), (1, 2)):
                r = torch.rot90(cube, 1, dims)
                key = tuple(r.flatten().tolist())
                if key not in found:
                    found[key] = r
                    nxt.append(r)
        frontier = nxt
    assert len(found) == 24
    return [v.flatten() for v in found.values()]


BAND2 = {
    "resnet-gamma-separable-acdc-cg": dict(architecture="resnet", block="gamma", conv="separable",
                                           mixing="acdc:depth=2", tensor_product="clebsch-gordan"),
    "resnet-gamma-separable-irrep-acdc-cg": dict(architecture="resnet", block="gamma", conv="separable",
                                                 depthwise="irrep", mixing="acdc:depth=2", dense_stem=False,
                                                 tensor_product="clebsch-gordan"),
    "resnet-alpha-separable": dict(architecture="resnet", block="alpha", conv="separable", dense_stem=False),
    "shallow-deep-dense": dict(architecture="shallow", repeats=2, schedule="double"),
    "vgg-k5-separable-lowrank": dict(architecture="vgg", kernel_size=5, conv="separable", mixing="lowrank",
                                     input_size=9),
}


@pytest.fixture(scope="module", params=list(BAND2), ids=list(BAND2))
def band2_encoder(request):
    """Band limit 2 with the default 96-point grid; escnn caches the grid and the Clebsch-Gordan
    coefficients on disk, and each encoder is built once per session."""
    torch.manual_seed(0)
    options = {"in_channels": 2, "width": 1, "max_channels": 2, "band_limit": 2, "input_size": 7,
               **BAND2[request.param]}
    encoder = build_encoder(EncoderConfig(**options)).eval()
    assert encoder.config.resolved_grid_size == 4  # 24 * 4 = 96 samples
    return encoder


def test_band2_encoders_are_invariant_under_all_24_cube_rotations(band2_encoder):
    n = band2_encoder.config.input_size
    x = torch.rand(2, 2, n, n, n, generator=torch.Generator().manual_seed(3))
    flat = x.flatten(2)
    with torch.no_grad():
        y = band2_encoder(x)
        assert y.abs().max() > 1e-3
        for perm in _cube_rotations(n):
            rotated = flat[..., perm].view_as(x)
            torch.testing.assert_close(band2_encoder(rotated), y, atol=1e-4, rtol=1e-3)


def test_band2_encoders_are_invariant_in_training_mode(band2_encoder):
    """The training paths (batch statistics, the fused Fourier activation, the chunked tensor product)
    under autograd: invariant under cube rotations too, and their input gradients rotate with the input."""
    encoder = copy.deepcopy(band2_encoder).train()
    n = encoder.config.input_size
    x = torch.rand(2, 2, n, n, n, generator=torch.Generator().manual_seed(3)).requires_grad_()
    y = encoder(x)
    (grad,) = torch.autograd.grad(y.square().sum(), x)
    for perm in _cube_rotations(n)[1:4]:
        rotated = x.detach().flatten(2)[..., perm].view_as(x).requires_grad_()
        y_rotated = encoder(rotated)
        torch.testing.assert_close(y_rotated, y, atol=1e-4, rtol=1e-3)
        (grad_rotated,) = torch.autograd.grad(y_rotated.square().sum(), rotated)
        torch.testing.assert_close(grad_rotated.flatten(2), grad.flatten(2)[..., perm], atol=1e-4, rtol=1e-3)


# -- the command line --------------------------------------------------------------------------------


def test_train_and_count_flags_reach_the_encoder_config(tmp_path, capsys):
    import yaml

    from atompaint.cli import main
    from atompaint.cli.commands import train as train_cmd
    from atompaint.cli.commands._encoder_flags import encoder_overrides

    parser = argparse.ArgumentParser()
    train_cmd.add_arguments(parser)
    args = parser.parse_args(["neighbor-loc", "--config", "x.yaml", "--conv", "separable", "--mixing", "acdc",
                              "--mixing-depth", "3", "--mixing-option", "shuffle=random", "--no-dense-stem",
                              "--tensor-product", "clebsch-gordan", "--depthwise", "irrep"])
    assert encoder_overrides(args) == {
        "encoder.conv": "separable", "encoder.mixing": "acdc", "encoder.mixing_depth": 3,
        "encoder.mixing_options": {"shuffle": "random"}, "encoder.dense_stem": False, "encoder.depthwise": "irrep",
        "encoder.tensor_product": "clebsch-gordan"}
    assert encoder_overrides(parser.parse_args(["neighbor-loc", "--config", "x.yaml"])) == {}

    config = {"name": "tiny", "task": "neighbor-loc", "head": {"hidden": [8]},
              "encoder": {"architecture": "shallow", "width": 1, "max_channels": 2, "band_limit": 1, "grid_size": 1,
                          "mixing": "lowrank"},
              "data": {"image": {"length_voxels": 7, "channels": [["C"], ["*"]]}}}
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["count", str(path), "--memory-batch-size", "0", "--json", "-"]) == 0
    columns = json.loads(capsys.readouterr().out)["columns"]
    assert [c["label"] for c in columns] == ["dense", "separable", "separable + lowrank"]
    dense, separable, lowrank = columns
    assert dense["encoder_flops_by_type"]["mixing"] == 0 < separable["encoder_flops_by_type"]["mixing"]
    assert separable["encoder_flops_by_type"]["conv"] < dense["encoder_flops_by_type"]["conv"]
    assert sum(dense["encoder_flops_by_type"].values()) == dense["encoder"]["flops"]
    assert lowrank["encoder"]["params"] < separable["encoder"]["params"] < dense["encoder"]["params"]
    assert main(["count", str(path), "--memory-batch-size", "0", "--mixing", "acdc", "--mixing-depth", "2"]) == 0
    assert "separable + acdc x2" in capsys.readouterr().out
    assert main(["count", str(path), "--memory-batch-size", "0", "--depthwise", "irrep", "--json", "-"]) == 0
    irrep_columns = json.loads(capsys.readouterr().out)["columns"]
    assert irrep_columns[1]["encoder_form"].startswith("separable (irrep-wise depthwise)")
    assert irrep_columns[1]["encoder_flops_by_type"]["conv"] < separable["encoder_flops_by_type"]["conv"]
    assert main(["count", str(path), "--memory-batch-size", "0", "--mixing", "nosuchlayer"]) == 2
