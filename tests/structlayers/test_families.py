"""The structured families beyond ACDC (monarch, butterfly, kronecker, circulant, toeplitz,
lowrank_diag): their matrices against independent constructions, their closed-form projections,
and AFDF's complex cascade."""

from __future__ import annotations

import math

import pytest
import scipy.linalg
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import structlayers
from structlayers.layers.monarch import Monarch


def dense(layer: structlayers.StructuredLinear) -> torch.Tensor:
    return layer.to_dense()[0].double()


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.linalg.norm(a - b) / torch.linalg.norm(b))


# --- monarch -------------------------------------------------------------------------------------


def test_monarch_is_the_papers_product_of_block_diagonals_and_a_transpose_permutation() -> None:
    """M = P L P^T R for n = m^2, built from explicit block-diagonal and permutation matrices."""
    torch.manual_seed(0)
    m = 4
    layer = structlayers.create("monarch", m * m, m * m, nblocks=m, bias=False).double()
    r = torch.block_diag(*layer.R.detach().transpose(1, 2))          # (n, n): block i maps slice i
    left = torch.block_diag(*layer.L.detach().transpose(1, 2))
    perm = torch.arange(m * m).view(m, m).T.reshape(-1)              # reshape (m, m), transpose, flatten
    p = torch.eye(m * m, dtype=torch.float64)[perm]
    torch.testing.assert_close(dense(layer), p @ left @ p.T @ r)
    assert layer.params() == 2 * (m * m) ** 1.5


@pytest.mark.parametrize(("shape", "options"), [((16, 16), {}), ((64, 64), {"nblocks": 8}),
                                                ((24, 36), {"nblocks": 6, "rank": 2}),
                                                ((32, 32), {"nblocks": 4, "rank": 2})])
def test_monarch_projection_recovers_a_monarch_matrix(shape: tuple[int, int], options: dict) -> None:
    torch.manual_seed(1)
    teacher = structlayers.create("monarch", *shape, **options).double()
    weight, _ = teacher.to_dense()
    bias = torch.randn(shape[1], dtype=torch.float64)
    student = Monarch.from_dense(weight, bias, **options).double()
    got, got_bias = student.to_dense()
    assert relative(got, weight) < 1e-5
    torch.testing.assert_close(got_bias, bias)


def test_monarch_projection_is_the_blockwise_eckart_young_optimum() -> None:
    torch.manual_seed(2)
    target = torch.randn(24, 16, dtype=torch.float64)
    layer = structlayers.create("monarch", 16, 24, nblocks=4, rank=2, bias=False).double()
    layer.project_(target, None)
    # every (j, i) block of 6 x 4 (rows t * 4 + j, columns i * 4 + u) keeps its two largest singular values
    blocks = target.view(6, 4, 4, 4).permute(1, 2, 0, 3)
    tail = (torch.linalg.svdvals(blocks)[..., 2:] ** 2).sum()
    assert float(torch.linalg.norm(dense(layer) - target) ** 2) == pytest.approx(float(tail), rel=1e-10)


def test_monarch_project_init_and_uniform_init_have_linear_like_scale() -> None:
    torch.manual_seed(3)
    linear = torch.nn.Linear(256, 256).weight.std().item()
    uniform = structlayers.create("monarch", 256, 256).to_dense()[0].std().item()
    assert uniform == pytest.approx(linear, rel=0.1)
    projected = structlayers.create("monarch", 256, 256, init="project")
    assert 0 < projected.to_dense()[0].std().item() < linear


# --- kronecker -----------------------------------------------------------------------------------


def test_kronecker_is_a_sum_of_kronecker_products_and_projects_exactly() -> None:
    torch.manual_seed(4)
    layer = structlayers.create("kronecker", 12, 15, nblocks=3, rank=2).double()
    a, b = layer.A.detach(), layer.B.detach()
    assert a.shape == (2, 3, 3) and b.shape == (2, 5, 4)
    expected = torch.kron(a[0], b[0]) + torch.kron(a[1], b[1])
    torch.testing.assert_close(dense(layer), expected)
    student = structlayers.create("kronecker", 12, 15, nblocks=3, rank=2).double()
    student.project_(expected, None)
    assert relative(dense(student), expected) < 1e-10


def test_kronecker_projection_is_the_svd_of_the_rearranged_matrix() -> None:
    torch.manual_seed(5)
    target = torch.randn(16, 16, dtype=torch.float64)
    layer = structlayers.create("kronecker", 16, 16, nblocks=4, rank=3, bias=False).double()
    layer.project_(target, None)
    rearranged = target.view(4, 4, 4, 4).permute(0, 2, 1, 3).reshape(16, 16)
    tail = (torch.linalg.svdvals(rearranged)[3:] ** 2).sum()
    assert float(torch.linalg.norm(dense(layer) - target) ** 2) == pytest.approx(float(tail), rel=1e-10)


# --- circulant and toeplitz ----------------------------------------------------------------------


def test_circulant_and_toeplitz_match_scipy() -> None:
    torch.manual_seed(6)
    circ = structlayers.create("circulant", 9, 9).double()
    torch.testing.assert_close(dense(circ), torch.from_numpy(scipy.linalg.circulant(circ.c.detach().numpy())))
    toep = structlayers.create("toeplitz", 5, 7).double()   # W is 7 x 5
    t = toep.t.detach().numpy()
    column, row = t[4:], t[4::-1]                            # W[i, 0] = t[i + 4], W[0, j] = t[4 - j]
    torch.testing.assert_close(dense(toep), torch.from_numpy(scipy.linalg.toeplitz(column, row)))


@settings(max_examples=25, deadline=None)
@given(n_in=st.integers(1, 20), n_out=st.integers(1, 20), family=st.sampled_from(["circulant", "toeplitz"]))
def test_diagonal_families_project_their_own_matrices_exactly(n_in: int, n_out: int, family: str) -> None:
    layer = structlayers.create(family, n_in, n_out).double()
    weight, bias = layer.to_dense()
    other = structlayers.create(family, n_in, n_out).double()
    other.project_(weight, bias)
    torch.testing.assert_close(dense(other), weight)


@settings(max_examples=25, deadline=None)
@given(b=st.integers(1, 5), p=st.integers(1, 5), s=st.integers(1, 5), rank=st.integers(1, 3),
       family=st.sampled_from(["monarch", "kronecker"]))
def test_block_families_project_their_own_matrices_exactly(b: int, p: int, s: int, rank: int, family: str) -> None:
    layer = structlayers.create(family, b * p, b * s, nblocks=b, rank=rank, bias=False).double()
    weight, _ = layer.to_dense()
    other = structlayers.create(family, b * p, b * s, nblocks=b, rank=rank, bias=False).double()
    other.project_(weight, None)
    assert float(torch.linalg.norm(dense(other) - weight)) <= 1e-9 * max(1.0, float(torch.linalg.norm(weight)))


@pytest.mark.parametrize("family", ["circulant", "toeplitz"])
def test_identity_init_keeps_deep_stacks_from_vanishing(family: str) -> None:
    torch.manual_seed(9)
    one = structlayers.create(family, 16, 16, init="identity", bias=False).double()
    assert relative(dense(one), torch.eye(16, dtype=torch.float64)) < 0.05
    deep = structlayers.create(family, 16, 16, depth=16, shuffle="random", seed=0, init="identity").double()
    plain = structlayers.create(family, 16, 16, depth=16, shuffle="random", seed=0).double()
    assert float(torch.linalg.norm(dense(deep))) > 1.0 > 1e3 * float(torch.linalg.norm(dense(plain)))


def test_circulant_projection_averages_wrapped_diagonals() -> None:
    target = torch.arange(16, dtype=torch.float64).view(4, 4)
    layer = structlayers.create("circulant", 4, 4, bias=False).double()
    layer.project_(target, None)
    expected = [float(target[torch.arange(4), (torch.arange(4) - k) % 4].mean()) for k in range(4)]
    torch.testing.assert_close(layer.c.detach(), torch.tensor(expected, dtype=torch.float64))


# --- butterfly -----------------------------------------------------------------------------------


def test_butterfly_with_hadamard_twiddles_is_the_hadamard_transform() -> None:
    layer = structlayers.create("butterfly", 16, 16, bias=False).double()
    with torch.no_grad():
        layer.twiddle.copy_(torch.tensor([[1.0, 1.0], [1.0, -1.0]]) / math.sqrt(2))
    torch.testing.assert_close(dense(layer), torch.from_numpy(scipy.linalg.hadamard(16) / 4.0))
    assert layer.params() == 2 * 16 * 4


def test_butterfly_ortho_init_is_orthogonal_and_pads_to_a_power_of_two() -> None:
    layer = structlayers.create("butterfly", 12, 12, increasing_stride=False).double()
    square = layer.square_reference(torch.eye(16, dtype=torch.float64))
    torch.testing.assert_close(square @ square.T, torch.eye(16, dtype=torch.float64))


# --- low rank plus diagonal ----------------------------------------------------------------------


def test_lowrank_diag_projection_descends_to_a_realisable_target() -> None:
    torch.manual_seed(7)
    teacher = structlayers.create("lowrank_diag", 24, 24, rank=3).double()
    weight, _ = teacher.to_dense()
    errors = []
    for iterations in (1, 5, 200):
        student = structlayers.create("lowrank_diag", 24, 24, rank=3).double()
        student.project_(weight, None, iterations=iterations)
        errors.append(relative(dense(student), weight))
    assert errors[0] >= errors[1] >= errors[2] and errors[2] < 1e-5


# --- projection argument checks ------------------------------------------------------------------


@pytest.mark.parametrize("family", ["monarch", "kronecker", "circulant", "toeplitz", "lowrank_diag"])
def test_project_checks_shapes_and_bias(family: str) -> None:
    layer = structlayers.create(family, 8, 6, bias=False)
    with pytest.raises(ValueError, match=r"expected \(6, 8\)"):
        layer.project_(torch.zeros(8, 6), None)
    with pytest.raises(ValueError, match="bias=False"):
        layer.project_(torch.zeros(6, 8), torch.zeros(6))


# --- AFDF cascades -------------------------------------------------------------------------------


def _stacks(depth: int) -> tuple[structlayers.StructuredLinear, structlayers.StructuredLinear]:
    torch.manual_seed(8)
    complex_ = structlayers.create("afdf", 10, 10, depth=depth, cascade="complex", shuffle="riffle", seed=0,
                                   inner_shuffle="riffle").double()
    real = structlayers.create("afdf", 10, 10, depth=depth, cascade="real", shuffle="riffle", seed=0,
                               inner_shuffle="riffle").double()
    real.load_state_dict(complex_.state_dict())
    return complex_, real


def _hand_written(stack: structlayers.StructuredLinear, x: torch.Tensor, complex_cascade: bool) -> torch.Tensor:
    z = x.to(torch.complex128)
    for i, f in enumerate(stack.factors):
        if i:
            z = z[..., stack.shuffles[i - 1].index]
        a, d = torch.view_as_complex(f.A.detach()), torch.view_as_complex(f.D.detach())
        z = torch.fft.fft(z * a, norm="ortho")[..., f.inner.index]
        z = torch.fft.ifft(z * d, norm="ortho") + f.bias.detach()
        if not complex_cascade:
            z = z.real.to(torch.complex128)
    return z.real


@pytest.mark.parametrize("cascade", ["complex", "real"])
def test_afdf_cascades_forward_and_to_dense_match_a_hand_written_stack(cascade: str) -> None:
    complex_, real = _stacks(3)
    stack = complex_ if cascade == "complex" else real
    x = torch.randn(4, 10, dtype=torch.float64)
    expected = _hand_written(stack, x, cascade == "complex")
    torch.testing.assert_close(stack(x), expected)
    weight, bias = stack.to_dense()
    torch.testing.assert_close(x @ weight.T + bias, expected)


def test_afdf_cascades_differ_in_stacks_only() -> None:
    complex_, real = _stacks(3)
    assert relative(dense(complex_), dense(real)) > 1e-3
    one_complex, one_real = _stacks(1)
    torch.testing.assert_close(dense(one_complex), dense(one_real))
    # every factor after the first multiplies a complex input by A: 4 more FLOPs per entry
    assert complex_.flops(1) - real.flops(1) == 2 * 4 * complex_.size
    with pytest.raises(ValueError, match="cascade"):
        structlayers.create("afdf", 8, 8, depth=2, cascade="sideways")


# --- the bench -----------------------------------------------------------------------------------


def test_bench_times_every_default_layer_including_the_new_families() -> None:
    from structlayers.lab.bench.harness import DEFAULT_LAYERS, BenchConfig, run_bench

    assert {"monarch", "butterfly", "kronecker", "circulant", "toeplitz", "lowrank_diag"} <= set(DEFAULT_LAYERS)
    config = BenchConfig(sizes=(12,), batches=(4,), depth=2, repeats=1, large_repeats=1, collapse_repeats=1,
                         warmup=0, min_time=0.0, collapse_min_time=0.0, bandwidth_mb=1, gemm_size=16,
                         allocator="system")
    result = run_bench(config)
    for layer in DEFAULT_LAYERS:
        fwd = result.find(layer, 12, "fwd")
        assert fwd is not None and fwd.ms > 0 and fwd.collapsed in ("structured", "dense")
        assert result.find(layer, 12, "fwd+bwd") is not None
