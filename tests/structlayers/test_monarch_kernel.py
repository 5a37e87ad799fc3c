"""Monarch's bmm kernel and its hand-written backward against the dense matrix and autograd."""

from __future__ import annotations

import pytest
import torch

from structlayers.layers.monarch import Monarch, _MonarchMultiply

SHAPES = [(16, 16, 4, 1), (24, 16, 4, 2), (10, 13, 3, 1), (12, 30, 4, 3), (9, 9, 3, 2)]


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize(("n_in", "n_out", "nblocks", "rank"), SHAPES)
def test_forward_and_gradients_match_the_dense_matrix(n_in: int, n_out: int, nblocks: int, rank: int,
                                                      bias: bool) -> None:
    torch.manual_seed(0)
    layer = Monarch(n_in, n_out, nblocks=nblocks, rank=rank, bias=bias).double()
    x = torch.randn(3, 2, n_in, dtype=torch.double, requires_grad=True)
    grad = torch.randn(3, 2, n_out, dtype=torch.double)
    layer(x).backward(grad)
    params = [x, layer.R, layer.L] + ([layer.bias] if bias else [])
    got = [p.grad.clone() for p in params]
    for p in params:
        p.grad = None
    # Reference: the same parameters through an einsum of the dense matrix, autograd's backward.
    b, r, p, s = nblocks, rank, layer.in_block, layer.out_block
    left, right = layer.L.view(b, b, r, s), layer.R.view(b, p, b, r)
    dense = torch.einsum("jirt,iujr->tjiu", left, right).reshape(s * b, b * p)[:n_out, :n_in]
    ref = x @ dense.T + layer.bias if bias else x @ dense.T
    ref.backward(grad)
    with torch.no_grad():
        torch.testing.assert_close(layer(x), ref)
    for a, e in zip(got, [p.grad for p in params]):
        torch.testing.assert_close(a, e)


@pytest.mark.parametrize(("nblocks", "rank", "in_block", "out_block"), [(4, 1, 4, 4), (3, 2, 3, 5), (2, 3, 4, 2)])
def test_gradcheck(nblocks: int, rank: int, in_block: int, out_block: int) -> None:
    torch.manual_seed(1)
    x = torch.randn(5, nblocks * in_block, dtype=torch.double, requires_grad=True)
    right = torch.randn(nblocks, in_block, nblocks * rank, dtype=torch.double, requires_grad=True)
    left = torch.randn(nblocks, nblocks * rank, out_block, dtype=torch.double, requires_grad=True)
    bias = torch.randn(nblocks * out_block, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradcheck(_MonarchMultiply.apply, (x, right, left, bias))
    assert torch.autograd.gradcheck(lambda *a: _MonarchMultiply.apply(*a, None), (x, right, left))


def test_empty_batch() -> None:
    layer = Monarch(16, 16, nblocks=4)
    assert layer(torch.randn(0, 16)).shape == (0, 16)
    x = torch.randn(0, 16, requires_grad=True)
    layer(x).sum().backward()
    assert x.grad is not None and x.grad.shape == (0, 16)
