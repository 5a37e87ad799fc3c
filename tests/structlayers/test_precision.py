"""Half-precision inputs and autocast on every registered layer: dtype in = dtype out, the error
against float64 within the stated tolerance, the FFT in float32 and the dense transforms native."""

from __future__ import annotations

import pytest
import torch

import structlayers
from structlayers.testing import PRECISION_TOLERANCE
from structlayers.utils import autotune
from structlayers.utils.precision import compute_dtype

CONFIGS = [(name, {}) for name in sorted(structlayers.available())] + [
    ("acdc", {"backend": "dense", "groups": 2}), ("afdf", {"backend": "dense"}),
    ("stack", {"depth": 4, "backend": "dense"}), ("stack", {"depth": 3, "factor": "afdf", "inner_shuffle": "riffle"}),
    ("stack", {"depth": 2, "activation": "relu", "norm": "layernorm"}),
]


def relative_error(y: torch.Tensor, reference: torch.Tensor) -> float:
    return float(torch.linalg.norm(y.double() - reference) / torch.linalg.norm(reference))


@pytest.mark.parametrize(("name", "options"), CONFIGS, ids=lambda v: str(v))
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
def test_half_precision_inputs_and_autocast(name: str, options: dict, dtype: torch.dtype) -> None:
    layer = structlayers.create(name, 48, 40, **options).eval()
    x = torch.randn(6, 48)
    with torch.no_grad():
        reference = layer.double()(x.double())
        layer.float()
        y = layer(x.to(dtype))
        with torch.autocast("cpu", dtype):
            y_auto = layer(x)
    assert y.dtype == dtype and y_auto.dtype == dtype
    assert relative_error(y, reference) <= PRECISION_TOLERANCE[dtype]
    assert relative_error(y_auto, reference) <= PRECISION_TOLERANCE[dtype]


@pytest.mark.parametrize("name", ["acdc", "afdf", "stack"])
def test_a_model_cast_to_bfloat16_trains(name: str) -> None:
    layer = structlayers.create(name, 32, 32).to(torch.bfloat16)
    x = torch.randn(4, 32, dtype=torch.bfloat16, requires_grad=True)
    y = layer(x)
    y.float().square().sum().backward()
    assert y.dtype == torch.bfloat16 and x.grad.dtype == torch.bfloat16
    assert all(p.grad is not None and p.grad.dtype == torch.bfloat16 for p in layer.parameters())


def test_dense_backend_runs_natively_and_the_fft_in_float32(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[torch.dtype] = []
    real_rfft = torch.fft.rfft
    monkeypatch.setattr(torch.fft, "rfft", lambda t, *a, **k: seen.append(t.dtype) or real_rfft(t, *a, **k))
    dense = structlayers.create("acdc", 16, 16, backend="dense")
    fft = structlayers.create("acdc", 16, 16, backend="fft")
    x = torch.randn(3, 16)
    assert dense.low_precision_native(3, x.device, torch.bfloat16)
    assert not fft.low_precision_native(3, x.device, torch.bfloat16)
    with torch.no_grad(), torch.autocast("cpu", torch.bfloat16):
        assert compute_dtype(x) == torch.bfloat16
        fft(x)
        matrix_product = dense.dct(x, "dense")  # the DCT matmul itself runs in bfloat16 under autocast
    assert seen and set(seen) == {torch.float32}
    assert matrix_product.dtype == torch.bfloat16


def test_auto_backend_times_the_low_precision_forms(monkeypatch: pytest.MonkeyPatch) -> None:
    """The decision under autocast is its own (dtype bfloat16) and picks the faster form; the timing
    is replaced by a fixed outcome, so the test does not depend on this machine's speed."""
    from structlayers.utils.timing import Timing

    autotune.clear()
    ran: list[torch.dtype] = []

    def fake_time(fns, device, **kwargs):
        for fn in fns:
            ran.append(fn().dtype)
        return [Timing((2.0,)), Timing((1.0,))]  # fft slower, dense faster

    monkeypatch.setattr(autotune, "time_interleaved", fake_time)
    layer = structlayers.create("acdc", 16, 16, backend="auto")
    with torch.no_grad(), torch.autocast("cpu", torch.bfloat16):
        y = layer(torch.randn(5, 16))
    assert y.dtype == torch.bfloat16
    assert ran == [torch.float32, torch.bfloat16]  # the FFT form in float32, the dense one native
    (key, choice), = autotune.cache().items()
    assert key.dtype == "torch.bfloat16" and choice == "dense"
    autotune.clear()
