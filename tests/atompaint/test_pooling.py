"""The anti-aliased pooling as three 1D contractions equals the depthwise Gaussian ``conv3d`` it replaces."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from escnn import gspaces
from escnn import nn as enn
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.flop_counter import FlopCounterMode

from atompaint.encoders.architectures import GridPool
from atompaint.encoders.export import export_module
from atompaint.encoders.layers import aligned_blur_pool
from atompaint.encoders.pooling import blur_pool3d, gaussian_cube, gaussian_taps

FORMATS = [torch.contiguous_format, torch.channels_last_3d]


def conv_form(x: torch.Tensor, taps: torch.Tensor, stride: int, padding: int) -> torch.Tensor:
    kernel = gaussian_cube(taps).to(x.dtype)
    c = x.shape[1]
    return F.conv3d(x, kernel.expand(c, 1, *kernel.shape), stride=stride, padding=padding, groups=c)


@settings(max_examples=25, deadline=None)
@given(batch=st.integers(1, 2), channels=st.integers(2, 5), size=st.tuples(*3 * [st.integers(3, 8)]),
       stride=st.integers(1, 2), padding=st.integers(0, 1), sigma=st.sampled_from([0.33, 0.6]),
       channels_last=st.booleans(), seed=st.integers(0, 2**16))
def test_values_and_input_gradients_equal_the_depthwise_convolution(batch, channels, size, stride, padding, sigma,
                                                                    channels_last, seed):
    taps = gaussian_taps(sigma)
    if min(size) + 2 * padding < len(taps):
        return
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, channels, *size, generator=g, dtype=torch.float64)
    x = x.contiguous(memory_format=FORMATS[channels_last]).requires_grad_()
    y = blur_pool3d(x, taps, [stride] * 3, [padding] * 3)
    expected = conv_form(x, taps, stride, padding)
    torch.testing.assert_close(y, expected)
    grad = torch.randn(expected.shape, generator=g, dtype=torch.float64)
    torch.testing.assert_close(torch.autograd.grad(y, x, grad)[0], torch.autograd.grad(expected, x, grad)[0])


@pytest.mark.parametrize("memory_format", FORMATS)
def test_the_operator_passes_opcheck(memory_format):
    x = torch.randn(2, 3, 7, 6, 5, dtype=torch.float64).contiguous(memory_format=memory_format).requires_grad_()
    torch.library.opcheck(torch.ops.atompaint.blur_pool3d, (x, gaussian_taps(0.33), [2, 2, 2], [1, 1, 1]))


def test_flop_counter_sees_the_convolutions_count_forward_and_backward():
    x = torch.randn(2, 4, 9, 9, 9, requires_grad=True)
    taps = gaussian_taps(0.33).float()
    with FlopCounterMode(display=False) as counter:
        y = blur_pool3d(x, taps, [2] * 3, [1] * 3)
        y.sum().backward()
    assert counter.get_total_flops() == 2 * (2 * y.numel() * 27)


def test_the_escnn_module_and_its_export_equal_escnn_pooling():
    gspace = gspaces.rot3dOnR3()
    field_type = enn.FieldType(gspace, 3 * [gspace.irrep(1)])
    pool = aligned_blur_pool(field_type, 11)
    reference = enn.PointwiseAvgPoolAntialiased3D(field_type, sigma=0.33, stride=2, padding=pool.padding)
    x = enn.GeometricTensor(torch.randn(2, field_type.size, 11, 11, 11), field_type)
    expected = reference(x).tensor
    torch.testing.assert_close(pool(x).tensor, expected)
    torch.testing.assert_close(export_module(pool)(x.tensor), expected)
    assert pool.state_dict().keys() == reference.state_dict().keys()


def test_the_grid_pool_and_its_export_agree():
    pool = GridPool(11)
    x = torch.randn(2, 6, 11, 11, 11)
    torch.testing.assert_close(pool.export()(x), pool(x))
    torch.testing.assert_close(pool(x), conv_form(x, gaussian_taps(0.33).float(), 2, pool.padding))
