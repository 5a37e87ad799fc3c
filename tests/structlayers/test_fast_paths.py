"""Every fast path against its dense reference: the FFT DCT / DCT-III, the fused ACDC middle
(``spectral_diag``), the fused ACDC layer and stack, AFDF's real-FFT inference path and
``backend="auto"`` -- forward and gradients, float32 and float64, even, odd and power-of-two N.
Plus the bench machinery (timing statistics, bytes model, measured collapse cost, the CLI)."""

from __future__ import annotations

import json
import platform
import subprocess
import sys

import numpy as np
import pytest
import scipy.fft
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from structlayers.cli import main
from structlayers.collapse import collapse
from structlayers.lab.bench.allocator import keep_freed_memory, keep_freed_memory_env
from structlayers.lab.bench.harness import BenchConfig, run_bench
from structlayers.lab.bench.machine import bytes_moved
from structlayers.registry import LayerSpec, create
from structlayers.transforms.dct import dct, dct_matrix, fft_tables, idct, permute, spectral_diag
from structlayers.utils import autotune
from structlayers.utils.costs import measured_cost
from structlayers.utils.timing import Timing, time_interleaved

SIZES = [1, 2, 3, 7, 8, 12, 15, 64, 100]
TOL = {torch.float32: dict(rtol=1e-4, atol=1e-5), torch.float64: dict(rtol=1e-10, atol=1e-11)}
DTYPES = [torch.float32, torch.float64]


def _grads(module: torch.nn.Module, x: torch.Tensor, g: torch.Tensor) -> list[torch.Tensor]:
    x = x.detach().clone().requires_grad_(True)
    module.zero_grad(set_to_none=True)
    module(x).backward(g)
    return [x.grad] + [p.grad for p in module.parameters()]


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 130), rows=st.integers(1, 4), double=st.booleans())
def test_dct_matches_scipy(n: int, rows: int, double: bool) -> None:
    dtype = torch.float64 if double else torch.float32
    x = torch.randn(rows, n, dtype=torch.float64)
    ref = scipy.fft.dct(x.numpy(), type=2, norm="ortho")
    y = dct(x.to(dtype))
    np.testing.assert_allclose(y.double().numpy(), ref, **TOL[dtype])
    np.testing.assert_allclose(idct(y).double().numpy(), x.numpy(), **TOL[dtype])
    np.testing.assert_allclose(idct(x.to(dtype)).double().numpy(), scipy.fft.idct(x.numpy(), type=2, norm="ortho"),
                               **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", SIZES)
def test_dct_gradients_are_dense_transposes(n: int, dtype: torch.dtype) -> None:
    c = dct_matrix(n, dtype)
    x = torch.randn(3, 2, n, dtype=dtype, requires_grad=True)
    g = torch.randn(3, 2, n, dtype=dtype)
    (gx,) = torch.autograd.grad(dct(x), x, g)
    torch.testing.assert_close(gx, g @ c.T, **TOL[dtype])
    (gx,) = torch.autograd.grad(idct(x), x, g)
    torch.testing.assert_close(gx, g @ c, **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("blocks", [None, 3])
def test_spectral_diag_matches_dense(n: int, dtype: torch.dtype, blocks: int | None) -> None:
    t = fft_tables(n, torch.device("cpu"), dtype)
    shape = (5, n) if blocks is None else (5, blocks, n)
    x = torch.randn(*shape, dtype=dtype, requires_grad=True)
    d = torch.randn(shape[1:], dtype=dtype, requires_grad=True)
    g = torch.randn(*shape, dtype=dtype)
    out = permute(spectral_diag(permute(x, t["order"], t["inverse"]), d, t), t["inverse"], t["order"])
    c = dct_matrix(n, dtype)
    xr, dr = x.detach().clone().requires_grad_(True), d.detach().clone().requires_grad_(True)
    ref = ((xr @ c) * dr) @ c.T
    torch.testing.assert_close(out, ref, **TOL[dtype])
    out.backward(g)
    ref.backward(g)
    torch.testing.assert_close(x.grad, xr.grad, **TOL[dtype])
    torch.testing.assert_close(d.grad, dr.grad, **TOL[dtype])


def test_permute_gradient_is_inverse_gather() -> None:
    idx = torch.randperm(9)
    inv = torch.argsort(idx)
    x = torch.randn(4, 9, requires_grad=True)
    g = torch.randn(4, 9)
    permute(x, idx, inv).backward(g)
    torch.testing.assert_close(x.grad, g[:, inv])


ACDC_CASES = [
    dict(),
    dict(groups=3),
    dict(bias=False),
    dict(inner_shuffle="riffle", seed=0),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(12, 12), (7, 7), (16, 16), (10, 6), (5, 9)])
@pytest.mark.parametrize("options", ACDC_CASES)
@pytest.mark.parametrize("name", ["acdc", "afdf"])
def test_fft_layers_match_dense_backend(name: str, options: dict, shape: tuple[int, int], dtype: torch.dtype) -> None:
    if options.get("groups", 1) > max(shape):
        pytest.skip("more groups than features")
    torch.manual_seed(0)
    fast = create(name, *shape, init="uniform", **options).to(dtype)
    with torch.no_grad():
        if fast.bias is not None:
            fast.bias.normal_()
    dense = create(name, *shape, init="uniform", backend="dense", **options).to(dtype)
    dense.load_state_dict(fast.state_dict(), strict=False)
    x = torch.randn(2, 3, shape[0], dtype=dtype)
    g = torch.randn(2, 3, shape[1], dtype=dtype)
    weight, bias = fast.to_dense()
    ref = x @ weight.T + (bias if bias is not None else 0)
    torch.testing.assert_close(fast(x), ref, **TOL[dtype])
    _assert_graph_free_path_matches(fast, x)
    for a, b in zip(_grads(fast, x, g), _grads(dense, x, g)):
        torch.testing.assert_close(a, b, **TOL[dtype])


def _assert_graph_free_path_matches(layer: torch.nn.Module, x: torch.Tensor) -> None:
    """Without a graph to record, the fast paths skip autograd and work in place (AFDF even runs
    another algorithm, real FFTs only): the same result, and the caller's input untouched."""
    before = x.clone()
    recorded = layer(x)
    with torch.no_grad():
        torch.testing.assert_close(layer(x), recorded, **TOL[x.dtype])
    assert torch.equal(x, before)


STACK_CASES = [
    dict(),
    dict(shuffle="random"),
    dict(groups=2, shuffle="none"),
    dict(bias=False),
    dict(inner_shuffle="riffle"),
    dict(activation="relu"),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(12, 12), (9, 9), (16, 10)])
@pytest.mark.parametrize("options", STACK_CASES)
def test_fused_stack_matches_dense_backend(options: dict, shape: tuple[int, int], dtype: torch.dtype) -> None:
    torch.manual_seed(0)
    fast = create("stack", *shape, depth=3, init="uniform", seed=3, **options).to(dtype)
    with torch.no_grad():
        for f in fast.factors:
            if f.bias is not None:
                f.bias.normal_()
    dense = create("stack", *shape, depth=3, init="uniform", seed=3, backend="dense", **options).to(dtype)
    dense.load_state_dict(fast.state_dict(), strict=False)
    x = torch.randn(4, shape[0], dtype=dtype)
    g = torch.randn(4, shape[1], dtype=dtype)
    fusable = not options.get("activation") and not options.get("inner_shuffle")
    assert fast._fusable(fast.pad(x)) == fusable
    torch.testing.assert_close(fast(x), dense(x), **TOL[dtype])
    _assert_graph_free_path_matches(fast, x)
    if fast.is_linear:
        weight, bias = fast.to_dense()
        torch.testing.assert_close(fast(x), x @ weight.T + (bias if bias is not None else 0), **TOL[dtype])
    for a, b in zip(_grads(fast, x, g), _grads(dense, x, g)):
        torch.testing.assert_close(a, b, **TOL[dtype])


@pytest.mark.parametrize("blocks", [1, 3])
@pytest.mark.parametrize("n", [1, 2, 5, 8, 9, 16])
def test_real_diag_product_is_the_real_part_of_the_complex_form(n: int, blocks: int) -> None:
    """AFDF's inference path (real FFTs only) against ``Re(ifft(d fft(x a)))``."""
    from structlayers.transforms.dft import DFT

    g = torch.Generator().manual_seed(n)
    x = torch.randn(4, n * blocks, generator=g, dtype=torch.float64)
    a, d = (torch.randn(n * blocks, 2, generator=g, dtype=torch.float64) for _ in range(2))
    a, d = torch.view_as_complex(a), torch.view_as_complex(d)
    ref = torch.fft.ifft(d.view(blocks, n) * torch.fft.fft((x * a).view(4, blocks, n), norm="ortho"), norm="ortho")
    out = DFT(n, blocks).double().real_diag_product(x, a, d)
    torch.testing.assert_close(out, ref.real.reshape(4, n * blocks), rtol=1e-12, atol=1e-12)


def test_fused_stack_follows_shuffles_loaded_from_a_state_dict() -> None:
    """The fused path's between-factor permutations are derived from the shuffle buffers once;
    loading another stack's shuffles must rebuild them."""
    source = create("stack", 12, 12, depth=4, shuffle="random", seed=1)
    target = create("stack", 12, 12, depth=4, shuffle="random", seed=2)
    x = torch.randn(5, 12)
    assert not torch.allclose(source(x), target(x))
    target.load_state_dict(source.state_dict())
    torch.testing.assert_close(target(x), source(x), rtol=0, atol=0)
    weight, bias = source.to_dense()
    torch.testing.assert_close(target(x), x @ weight.T + bias, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("backend", ["fft", "auto"])
def test_dct_fast_tables_follow_dtype_and_device_moves(backend: str) -> None:
    from structlayers.transforms.dct import DCT

    module = DCT(12, backend=backend)
    assert module.fast_tables()["w"].dtype == torch.float32
    module.double()
    tables = module.fast_tables()
    assert tables["w"].dtype == torch.float64 and tables["order"].dtype == torch.long
    assert all(tables[k] is getattr(module, f"_{k}") for k in tables)
    x = torch.randn(3, 12, dtype=torch.float64)
    expected = torch.from_numpy(scipy.fft.dct(x.numpy(), norm="ortho"))
    torch.testing.assert_close(module(x, backend="fft"), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", ["acdc", "afdf", "stack"])
def test_auto_backend_measures_once_and_matches(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    autotune.clear()
    torch.manual_seed(0)
    layer = create(name, 16, 16, backend="auto")
    fixed = create(name, 16, 16, backend="fft")
    fixed.load_state_dict(layer.state_dict(), strict=False)
    x = torch.randn(6, 16)
    torch.testing.assert_close(layer(x), fixed(x), rtol=1e-4, atol=1e-5)
    decisions = autotune.cache()
    assert len(decisions) == 1
    (key, choice), = decisions.items()
    assert choice in autotune.CANDIDATES and key.rows == 6 and key.size == 16
    calls = []
    monkeypatch.setattr(autotune, "time_interleaved", lambda *a, **k: calls.append(1))
    layer(x)
    assert not calls, "a cached decision must not be measured again"
    factor = layer.factors[0] if name == "stack" else layer
    expected = factor.transform_flops(6)
    factor_fixed = create(factor.name, 16, 16, backend=choice).transform_flops(6)
    assert expected == factor_fixed


def test_timing_statistics_and_interleaving() -> None:
    t = Timing((1.0, 2.0, 3.0, 4.0, 100.0))
    assert t.median == 3.0 and t.best == 1.0
    assert t.quantile(0.25) == 2.0 and t.quantile(0.75) == 4.0
    assert t.spread == pytest.approx(2.0 / 3.0)
    order: list[str] = []
    fns = [lambda name=name: order.append(name) for name in "abc"]
    timings = time_interleaved(fns, torch.device("cpu"), warmup=1, repeats=12)
    assert [len(x.samples) for x in timings] == [12, 12, 12]
    rounds = [order[i:i + 3] for i in range(0, len(order), 3)]
    assert rounds[0] == ["a", "b", "c"] and all(sorted(r) == ["a", "b", "c"] for r in rounds[1:])
    # Random orders: every callable follows each of the others at some point.
    follows = {(r[i], r[i + 1]) for r in rounds[1:] for i in range(2)}
    assert follows == {(p, q) for p in "abc" for q in "abc" if p != q}
    again: list[str] = []
    time_interleaved([lambda name=name: again.append(name) for name in "abc"], torch.device("cpu"),
                     warmup=1, repeats=12)
    assert again == order  # seeded


def test_min_per_turn_records_the_fastest_call_of_each_turn(monkeypatch: pytest.MonkeyPatch) -> None:
    from structlayers.utils import timing

    durations = iter([5.0, 9.0, 1.0, 7.0, 3.0, 4.0] * 4)  # probe, then turns of 3 calls: minima 1 and 3
    monkeypatch.setattr(timing, "time_once", lambda fn, device: next(durations))
    (t,) = timing.time_interleaved([lambda: None], torch.device("cpu"), warmup=0, repeats=2, min_time=15.0,
                                   per_turn="min")
    assert t.samples == (1.0, 3.0)
    with pytest.raises(ValueError, match="per_turn"):
        timing.time_interleaved([lambda: None], torch.device("cpu"), per_turn="median")


def test_bytes_moved_of_linear() -> None:
    lin = torch.nn.Linear(8, 4)
    assert bytes_moved(lin, 10, 8, 4, 4, backward=False) == 4 * (10 * 12 + 36)
    assert bytes_moved(lin, 10, 8, 4, 4, backward=True) == 4 * (10 * 12 + 36 + 10 * (4 + 16) + 72)


def test_measured_cost_is_cached_and_drives_collapse() -> None:
    layer = create("acdc", 32, 32)
    s, d = measured_cost(layer, 8, "structured"), measured_cost(layer, 8, "dense")
    assert s > 0 and d > 0
    assert measured_cost(layer, 8, "structured") == s
    with pytest.raises(ValueError):
        measured_cost(layer, 8, "other")
    model, report = collapse(torch.nn.Sequential(layer), batch_shape=(8,), cost=measured_cost)
    assert report.choices[0].chosen == ("dense" if d < s else "structured")
    x = torch.randn(8, 32)
    torch.testing.assert_close(model(x), layer(x), rtol=1e-4, atol=1e-5)


def test_bench_cli_writes_table_json_and_plot(tmp_path, capsys) -> None:
    out, plot = tmp_path / "bench.json", tmp_path / "bench.png"
    code = main(["bench", "--layers", "acdc", "stack", "--sizes", "8", "16", "--batch-size", "4", "--depth", "2",
                 "--repeats", "2", "--large-repeats", "1", "--collapse-repeats", "2", "--warmup", "0",
                 "--bandwidth-mb", "4", "--gemm-size", "64", "--allocator", "system",
                 "--out", str(out), "--plot", str(plot)])
    assert code == 0
    text = capsys.readouterr().out
    assert "vs linear" in text and "bound ms" in text and "stack depth 2" in text
    data = json.loads(out.read_text())
    rows = data["rows"]
    assert {(r["layer"], r["size"], r["mode"]) for r in rows} >= {("acdc", 8, "fwd"), ("stack", 16, "fwd+bwd"),
                                                                  ("nn.Linear", 16, "fwd")}
    for r in rows:
        assert r["ms"] > 0 and r["bound_ms"] > 0 and r["speedup"] > 0 and len(r["samples"]) == 2
        if r["layer"] == "nn.Linear":
            assert r["speedup"] == 1.0
        if r["mode"] == "fwd" and r["layer"] != "nn.Linear":
            assert r["collapsed"] in ("dense", "structured") and r["collapse_ratio"] > 0
    assert data["machine"]["bandwidth"] > 0 and "structlayers bench" in data["environment"]["command"]
    assert data["environment"]["allocator"] == "system malloc (unchanged)"
    assert plot.stat().st_size > 0


def test_bench_rejects_unknown_layer(capsys) -> None:
    assert main(["bench", "--layers", "nope", "--sizes", "8", "--bandwidth-mb", "1", "--gemm-size", "8"]) == 2
    assert "unknown layer" in capsys.readouterr().err


def test_bench_target_lines_judge_the_issue_targets_from_paired_rounds() -> None:
    from structlayers.lab.bench.harness import BenchResult, BenchRow
    from structlayers.lab.bench.machine import Machine

    def row(layer: str, size: int, mode: str, samples: tuple[float, ...], speedup: float = 1.0, **kw) -> BenchRow:
        return BenchRow(layer, size, 128, mode, 1e3 * samples[0], 0.0, 1.0, speedup, 1.0, 1.0, samples=samples, **kw)

    acdc = (1.0, 2.0, 1.0)  # the machine slows down in round 2: paired ratios cancel it
    result = BenchResult(BenchConfig(sizes=(1024, 4096)), Machine("cpu", 1e10, 1e11), rows=[
        row("acdc", 4096, "fwd", acdc, 12.0, collapsed="structured", collapse_ratio=1.02),
        row("acdc", 4096, "fwd+bwd", acdc, 5.0),
        row("stack", 4096, "fwd", tuple(16 * 1.2 * t for t in acdc)),
        row("afdf", 4096, "fwd", tuple(1.5 * t for t in acdc), collapsed="structured", collapse_ratio=1.07),
        row("acdc", 1024, "fwd", acdc, 2.5),
        row("stack", 1024, "fwd", tuple(16 * 1.3 * t for t in acdc)),
    ])
    lines = result.target_lines()
    assert "[met] acdc N=4096 fwd vs nn.Linear >= 10x: 12.00x" in lines
    assert "[NOT met] acdc N=4096 fwd+bwd vs nn.Linear >= 6x: 5.00x" in lines
    assert "[met] acdc N=1024 fwd vs nn.Linear >= 2x: 2.50x" in lines
    assert "[NOT met] stack depth 16 N=4096 fwd / (16 x acdc) <= 1.10: 1.20" in lines
    assert "[info] stack depth 16 N=1024 fwd / (16 x acdc): 1.30" in lines
    assert "[met] afdf / acdc N=4096 fwd <= 2: 1.50" in lines
    assert "[NOT met] collapsed form / faster form <= 1.05 (worst layer): 1.07" in lines


def test_bench_layers_are_layer_specs_named_by_their_text() -> None:
    """A layer with options is timed as given and named by its text form; a bare ``stack`` gets
    ``depth`` factors, and ``backend`` / ``seed`` reach the layers that take them."""
    from structlayers.lab.bench.harness import BenchResult
    from structlayers.lab.bench.machine import Machine

    config = BenchConfig(layers=("monarch:nblocks=2", "stack", "acdc:depth=3"), backend="dense", depth=2)
    assert config.names == ["monarch:nblocks=2", "stack", "acdc:depth=3"]
    built = [config.built(spec) for spec in config.layers]
    assert built[0] == LayerSpec("monarch", None, {"nblocks": 2})
    assert built[1] == LayerSpec("stack", 2, {"backend": "dense", "seed": 0})
    assert built[2] == LayerSpec("acdc", 3, {"backend": "dense", "seed": 0})
    record = BenchResult(config, Machine("cpu", 1e10, 1e11)).to_json()
    assert json.loads(record)["config"]["layers"] == config.names
    assert BenchResult.from_json(record).config == config


def test_bench_rejects_unknown_allocator_setting() -> None:
    with pytest.raises(ValueError, match="unknown allocator setting"):
        run_bench(BenchConfig(layers=("acdc",), sizes=(8,), allocator="tcmalloc"))


def test_bench_times_compiled_modules() -> None:
    config = BenchConfig(layers=("acdc",), sizes=(8,), batches=(4,), repeats=2, warmup=1, backward=False,
                         collapse=False, compile=True, allocator="system", bandwidth_mb=1, gemm_size=8)
    result = run_bench(config)
    row = result.find("acdc", 8, "fwd")
    assert row is not None and row.ms > 0 and len(row.samples) == 2


_PAGE_FAULTS = """
import resource, sys, torch
from structlayers.lab.bench.allocator import keep_freed_memory
# "keep": the defaults; "trim": glibc's initial thresholds (128 KiB), fixed so that they cannot adapt.
settings = keep_freed_memory() if sys.argv[1] == "keep" else keep_freed_memory(128 << 10, 128 << 10, map_large=True)
assert settings.applied
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(3):
    [torch.ones(1 << 17) for _ in range(8)]
start = faults()
for _ in range(50):
    [torch.ones(1 << 17) for _ in range(8)]
print((faults() - start) / 50)
"""


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc mallopt")
def test_keep_freed_memory_stops_page_faults_of_repeated_allocations() -> None:
    """Eight 512 KiB tensors a call (an ACDC forward's buffers at N=1024): with glibc's initial
    thresholds they are mapped and unmapped (re-faulted) every call; kept, they are reused."""
    def faults_per_call(setting: str) -> float:
        run = subprocess.run([sys.executable, "-c", _PAGE_FAULTS, setting], capture_output=True, text=True, check=True)
        return float(run.stdout.strip())

    assert faults_per_call("keep") < 2
    assert faults_per_call("trim") > 100


_LARGE_FAULTS = """
import resource, sys, torch
from structlayers.lab.bench.allocator import keep_freed_memory
assert keep_freed_memory(map_large=sys.argv[1] == "map").applied
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    torch.ones(10 << 20)
start = faults()
for _ in range(5):
    torch.ones(10 << 20)
print((faults() - start) / 5)
"""


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc mallopt")
def test_keep_freed_memory_reuses_allocations_over_glibcs_largest_mmap_threshold() -> None:
    """A 40 MiB tensor a call (a seed-004 activation): glibc maps it fresh each time above its largest
    mmap threshold (32 MiB) unless no allocation may be mapped, keep_freed_memory's default."""
    def faults_per_call(setting: str) -> float:
        run = subprocess.run([sys.executable, "-c", _LARGE_FAULTS, setting], capture_output=True, text=True,
                             check=True)
        return float(run.stdout.strip())

    mapped = faults_per_call("map")  # about one per 4 KiB page: 10K
    assert mapped > 5000
    assert faults_per_call("heap") < mapped / 4


def test_keep_freed_memory_env_names_the_same_settings() -> None:
    assert keep_freed_memory_env() == {"MALLOC_MMAP_THRESHOLD_": str(32 << 20), "MALLOC_TRIM_THRESHOLD_": str(1 << 30),
                                       "MALLOC_MMAP_MAX_": "0"}
    assert keep_freed_memory_env(map_large=True)["MALLOC_MMAP_MAX_"] == "65536"


def test_keep_freed_memory_rejects_negative_sizes() -> None:
    with pytest.raises(ValueError, match="non-negative"):
        keep_freed_memory(mmap_threshold=-1)


@pytest.mark.parametrize("options", [dict(), dict(groups=2), dict(inner_shuffle="random", seed=1)])
def test_to_dense_by_fast_transform_matches_matrix_products(options: dict) -> None:
    torch.manual_seed(0)
    layer = create("acdc", 10, 10, init="uniform", **options)
    c = layer.dct.matrix_dense()
    a, d = layer.A.detach().double(), layer.D.detach().double()
    shuffle = layer.inner.matrix() if layer.inner is not None else torch.eye(10, dtype=torch.float64)
    expected = (a[:, None] * c) @ shuffle @ (d[:, None] * c.T)
    eye = torch.eye(10, dtype=torch.float64)
    torch.testing.assert_close(layer.square_reference(eye), expected, rtol=1e-12, atol=1e-12)
    stack_options = {k: v for k, v in options.items() if k != "seed"}
    stack = create("stack", 10, 7, depth=3, init="uniform", seed=2, **stack_options)
    with torch.no_grad():
        for f in stack.factors:
            f.bias.normal_()
    m, b = torch.eye(stack.size, dtype=torch.float64), torch.zeros(stack.size, dtype=torch.float64)
    for i, f in enumerate(stack.factors):
        if i:
            p = stack.shuffles[i - 1].matrix()
            m, b = m @ p, b @ p
        w, fb = f.to_dense()
        m, b = m @ w.double().T, b @ w.double().T + fb.double()
    weight, bias = stack.to_dense()
    torch.testing.assert_close(weight.double(), m[:10, :7].T, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(bias.double(), b[:7], rtol=1e-5, atol=1e-6)


def test_paired_ratio_cancels_drift_shared_by_both_callables() -> None:
    from structlayers.utils.timing import Timing

    load = [1.0, 3.0, 1.0, 5.0, 2.0]  # the machine slows down and recovers
    fast = Timing(tuple(1e-3 * f for f in load))
    slow = Timing(tuple(1.1e-3 * f for f in load))
    assert slow.paired_ratio(fast) == pytest.approx(1.1)
    assert fast.paired_ratio(fast) == 1.0
