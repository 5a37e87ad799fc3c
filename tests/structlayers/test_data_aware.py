"""Data-aware approximation: the whitened error is the error on the inputs, its SVD optimum is
optimal, and a low-rank fit to it reaches that optimum."""

from __future__ import annotations

import torch

from structlayers.lab.approx.data_aware import Whitening, fit_data, relative_error, truncated_svd
from structlayers.layers.lowrank import LowRank
from structlayers.surgery.fit import FitOptions


def _inputs(n: int = 400, d: int = 12, dead: int = 2) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, d, generator=g, dtype=torch.double) @ torch.randn(d, d, generator=g, dtype=torch.double)
    x[:, :dead] = 0  # inputs that never vary in some directions: a singular second moment
    return x


def test_whitened_error_is_the_error_on_the_inputs() -> None:
    x = _inputs()
    g = torch.Generator().manual_seed(1)
    w, w_hat = (torch.randn(8, 12, generator=g, dtype=torch.double) for _ in range(2))
    whitening = Whitening.from_inputs(x)
    torch.testing.assert_close(whitening.root @ whitening.root, x.T @ x / len(x))
    on_inputs = torch.linalg.norm((w_hat - w) @ x.T) / torch.linalg.norm(w @ x.T)
    assert abs(relative_error(w_hat, w, whitening) - float(on_inputs)) < 1e-12
    assert whitening.effective_rank == 10


def test_data_svd_is_optimal_and_beats_the_plain_svd() -> None:
    x = _inputs()
    w = torch.randn(8, 12, generator=torch.Generator().manual_seed(2), dtype=torch.double)
    whitening = Whitening.from_inputs(x)
    for rank in (1, 3, 5):
        best = relative_error(truncated_svd(w, rank, whitening), w, whitening)
        assert best <= relative_error(truncated_svd(w, rank), w, whitening) + 1e-12
        assert torch.linalg.matrix_rank(truncated_svd(w, rank, whitening)) == rank
        g = torch.Generator().manual_seed(rank)
        for _ in range(20):  # no nearby rank-r matrix does better
            u = torch.linalg.svd(truncated_svd(w, rank, whitening) + 1e-2 * torch.randn(8, 12, generator=g,
                                                                                          dtype=torch.double))
            other = (u.U[:, :rank] * u.S[:rank]) @ u.Vh[:rank]
            assert relative_error(other, w, whitening) >= best - 1e-12


def test_low_rank_fit_reaches_the_data_svd() -> None:
    x = _inputs()
    w = torch.randn(8, 12, generator=torch.Generator().manual_seed(3), dtype=torch.double)
    whitening = Whitening.from_inputs(x)
    torch.manual_seed(0)
    layer = LowRank(12, 8, rank=3, bias=False).double()
    result = fit_data(layer, w, whitening, FitOptions(steps=3000))
    fitted = relative_error(layer.to_dense()[0], w, whitening)
    assert result.converged
    assert abs(fitted - relative_error(truncated_svd(w, 3, whitening), w, whitening)) < 1e-6
