import numpy as np
import pytest
import scipy.fft
import torch
import torch_dct
from hypothesis import given
from hypothesis import strategies as st

from structlayers.transforms.dct import DCT, dct, dct_flops, dct_matrix, idct


@given(n=st.integers(1, 130), rows=st.integers(1, 4))
def test_fast_dct_matches_scipy_ortho(n: int, rows: int) -> None:
    x = np.random.default_rng(n).standard_normal((rows, n))
    ref = scipy.fft.dct(x, type=2, norm="ortho", axis=-1)
    np.testing.assert_allclose(dct(torch.from_numpy(x)).numpy(), ref, atol=1e-10)
    np.testing.assert_allclose(dct(torch.from_numpy(x).float()).numpy(), ref, atol=1e-5)
    np.testing.assert_allclose(idct(torch.from_numpy(ref)).numpy(), x, atol=1e-10)


@pytest.mark.parametrize("backend", ["fft", "dense"])
@pytest.mark.parametrize("n,blocks", [(8, 1), (7, 1), (16, 4), (5, 3)])
def test_dct_module_backends_match_scipy(backend: str, n: int, blocks: int) -> None:
    x = torch.randn(3, 2, n * blocks)
    m = DCT(n, blocks, backend)
    ref = scipy.fft.dct(x.double().numpy().reshape(3, 2, blocks, n), norm="ortho", axis=-1).reshape(3, 2, n * blocks)
    np.testing.assert_allclose(m(x).numpy(), ref, atol=1e-5)
    torch.testing.assert_close(m.inverse(m(x)), x, atol=1e-5, rtol=1e-5)


def test_dct_matches_torch_dct_reference() -> None:
    x = torch.randn(5, 64, dtype=torch.float64)
    torch.testing.assert_close(dct(x), torch_dct.dct(x, norm="ortho"))


def test_dense_dct_is_a_buffer_in_state_dict_not_a_parameter() -> None:
    m = DCT(16, backend="dense")
    assert list(m.parameters()) == []
    assert "matrix" in m.state_dict()
    torch.testing.assert_close(m.state_dict()["matrix"], dct_matrix(16, torch.float32))


def test_dct_matrix_is_orthonormal() -> None:
    c = dct_matrix(33)
    torch.testing.assert_close(c @ c.T, torch.eye(33, dtype=torch.float64))


def test_dct_gradients_are_the_inverse_transform() -> None:
    x = torch.randn(3, 10, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(dct, (x,))
    assert torch.autograd.gradcheck(idct, (x,))
    assert torch.autograd.gradgradcheck(dct, (x,))


def test_double_precision_after_conversion_is_exact() -> None:
    m = DCT(12).double()
    x = torch.randn(2, 12, dtype=torch.float64)
    np.testing.assert_allclose(m(x).numpy(), scipy.fft.dct(x.numpy(), norm="ortho"), atol=1e-12)


def test_dct_flop_model_hand_derived() -> None:
    # dense: 2 n^2 per row; fft: 2.5 n log2 n + 3 n per row.
    assert dct_flops(64, 10, "dense") == 10 * 2 * 64 * 64
    assert dct_flops(64, 10, "fft") == 10 * (int(2.5 * 64 * 6) + 3 * 64)
    with pytest.raises(ValueError, match="backend"):
        dct_flops(8, 1, "fast")


def test_bad_inputs_give_clear_errors() -> None:
    with pytest.raises(ValueError, match="real floating-point"):
        dct(torch.arange(4))
    with pytest.raises(ValueError, match="last dimension"):
        DCT(8)(torch.randn(2, 9))
