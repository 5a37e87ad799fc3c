"""The layer-plugin contract, checked for every built-in layer over random configurations."""

import io
from typing import Any

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

import structlayers
from structlayers.base import NotCollapsibleError

# (name, options) covering every layer, both backends, groups, shuffles and dimension changes.
CONFIGS: list[tuple[str, dict[str, Any]]] = [
    ("dense", {}),
    ("dense", {"bias": False}),
    ("lowrank", {"rank": 2}),
    ("acdc", {}),
    ("acdc", {"backend": "dense", "bias": False}),
    ("acdc", {"groups": 2, "inner_shuffle": "riffle", "init": "uniform"}),
    ("acdc", {"groups": 2, "pow2_blocks": True, "inner_shuffle": "random", "seed": 3}),
    ("afdf", {}),
    ("afdf", {"backend": "dense", "groups": 2, "init": "identity"}),
    ("blockdiag", {"groups": 2}),
    ("stack", {"depth": 3}),
    ("stack", {"depth": 4, "shuffle": "random", "backend": "dense", "seed": 1}),
    ("stack", {"depth": 2, "shuffle": "none", "factor": "afdf"}),
    ("stack", {"depth": 3, "factor": "blockdiag", "groups": 2}),
    ("stack", {"depth": 2, "inner_shuffle": "riffle", "groups": 2, "pow2_blocks": True}),
]
IDS = [f"{n}-{i}" for i, (n, _) in enumerate(CONFIGS)]
sizes = st.integers(2, 24)


def build(name: str, options: dict[str, Any], n_in: int, n_out: int) -> structlayers.StructuredLinear:
    if name == "lowrank":
        options = {**options, "rank": min(options["rank"], n_in, n_out)}
    return structlayers.create(name, n_in, n_out, **options).double()


@pytest.mark.parametrize("name,options", CONFIGS, ids=IDS)
@given(n_in=sizes, n_out=sizes, batch=st.lists(st.integers(1, 3), min_size=0, max_size=2))
def test_shapes_dense_form_and_identity(name: str, options: dict, n_in: int, n_out: int, batch: list[int]) -> None:
    layer = build(name, options, n_in, n_out)
    x = torch.randn(*batch, n_in, dtype=torch.float64)
    y = layer(x)
    assert y.shape == (*batch, n_out)
    weight, bias = layer.to_dense()
    assert weight.shape == (n_out, n_in)
    b = bias if bias is not None else torch.zeros(n_out, dtype=torch.float64)
    # to_dense is computed from the structure, not from forward: compare with the layer on I.
    torch.testing.assert_close(layer(torch.eye(n_in, dtype=torch.float64)) - b, weight.T, atol=1e-10, rtol=1e-8)
    torch.testing.assert_close(y, x @ weight.T + b, atol=1e-10, rtol=1e-8)


@pytest.mark.parametrize("name,options", CONFIGS, ids=IDS)
def test_params_are_analytic_and_exact(name: str, options: dict) -> None:
    for n_in, n_out in [(12, 12), (10, 6), (5, 11)]:
        layer = build(name, options, n_in, n_out)
        assert layer.params() == sum(p.numel() for p in layer.parameters())


@pytest.mark.parametrize("name,options", CONFIGS, ids=IDS)
def test_state_dict_round_trip_is_exact(name: str, options: dict) -> None:
    torch.manual_seed(1)
    layer = build(name, options, 9, 7)
    buffer = io.BytesIO()
    torch.save(layer.state_dict(), buffer)
    torch.manual_seed(2)  # a different random shuffle and initialisation before loading
    fresh = build(name, {k: v for k, v in options.items() if k != "seed"}, 9, 7)
    buffer.seek(0)
    fresh.load_state_dict(torch.load(buffer))
    x = torch.randn(4, 9, dtype=torch.float64)
    assert torch.equal(fresh(x), layer(x))


@pytest.mark.parametrize("name,options", CONFIGS, ids=IDS)
def test_gradients_reach_every_parameter(name: str, options: dict) -> None:
    layer = build(name, {**options, "init": "uniform"} if name in ("acdc", "afdf") else options, 10, 8)
    layer(torch.randn(5, 10, dtype=torch.float64)).pow(2).sum().backward()
    for pname, p in layer.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"no gradient reached {pname}"


def test_random_shuffle_is_a_buffer_and_fixed_by_seed() -> None:
    a = structlayers.create("stack", 16, 16, depth=3, shuffle="random", seed=5)
    b = structlayers.create("stack", 16, 16, depth=3, shuffle="random", seed=5)
    assert "shuffles.0.index" in a.state_dict()
    assert torch.equal(a.shuffles[0].index, b.shuffles[0].index)
    assert not torch.equal(a.shuffles[0].index, a.shuffles[1].index)


def test_stack_counts_every_factor() -> None:
    stack = structlayers.create("stack", 64, 64, depth=16)
    single = structlayers.create("acdc", 64, 64)
    assert stack.params() == 16 * single.params()
    assert stack.flops((32,)) == 16 * single.flops((32,))
    assert len(stack.factors) == 16


def test_nonlinear_stack_has_no_dense_form_but_runs() -> None:
    stack = structlayers.create("stack", 8, 8, depth=3, activation="relu", norm="batchnorm")
    assert stack(torch.randn(4, 8)).shape == (4, 8)
    assert not stack.is_linear
    with pytest.raises(NotCollapsibleError, match="not linear"):
        stack.to_dense()


def test_initialisations() -> None:
    ident = structlayers.create("acdc", 16, 16, init="identity", bias=False)
    torch.testing.assert_close(ident(torch.eye(16)), torch.eye(16), atol=1e-5, rtol=1e-5)
    normal = structlayers.create("acdc", 4096, 4096, sigma=0.1)
    assert abs(normal.A.mean().item() - 1) < 0.01 and abs(normal.A.std().item() - 0.1) < 0.01
    uniform = structlayers.create("acdc", 4096, 4096, init="uniform")
    assert uniform.A.min() >= -1 and uniform.A.max() <= 1 and uniform.A.std() > 0.5


@pytest.mark.parametrize(
    "name,options,match",
    [
        ("acdc", {"init": "gaussian"}, "init"),
        ("acdc", {"backend": "cuda-fft"}, "backend"),
        ("acdc", {"inner_shuffle": "perfect"}, "inner_shuffle"),
        ("acdc", {"groups": 0}, "groups"),
        ("acdc", {"groups": 100}, "groups"),
        ("stack", {"shuffle": "butterfly"}, "shuffle"),
        ("stack", {"depth": 0}, "depth"),
        ("stack", {"factor": "dense"}, "cannot be stacked"),
        ("stack", {"factor": "nope"}, "unknown layer"),
        ("stack", {"activation": "swish"}, "activation"),
        ("lowrank", {"rank": 50}, "rank"),
        ("acdc", {"colour": "red"}, "no option"),
    ],
)
def test_bad_options_name_the_layer_and_option(name: str, options: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match) as err:
        structlayers.create(name, 16, 16, **options)
    assert name in str(err.value) or "layer" in str(err.value)


def test_bad_sizes_and_inputs() -> None:
    with pytest.raises(ValueError, match="in_features"):
        structlayers.create("acdc", 0, 4)
    with pytest.raises(ValueError, match="expects input"):
        structlayers.create("acdc", 8, 8)(torch.randn(3, 7))
    with pytest.raises(ValueError, match="unknown layer 'acdcx'"):
        structlayers.create("acdcx", 8, 8)


def test_torch_compile_matches_eager() -> None:
    """The fast paths (custom autograd functions, buffers) compile; outputs and gradients agree."""
    layer = structlayers.create("stack", 32, 24, depth=2, init="uniform")
    x = torch.randn(4, 32)
    compiled = torch.compile(layer)
    y = compiled(x)
    y.pow(2).sum().backward()
    grads = [p.grad.clone() for p in layer.parameters()]
    layer.zero_grad()
    ref = layer(x)
    ref.pow(2).sum().backward()
    torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-5)
    for g, p in zip(grads, layer.parameters()):
        torch.testing.assert_close(g, p.grad, rtol=1e-4, atol=1e-5)


class _DeviceAudit(TorchDispatchMode):
    """Records every op that receives a CPU tensor with dimensions while the layer runs elsewhere."""

    def __init__(self) -> None:
        super().__init__()
        self.offenders: set[str] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[override]
        for leaf in tree_leaves((args, kwargs or {})):
            if isinstance(leaf, torch.Tensor) and leaf.device.type == "cpu" and leaf.dim() > 0:
                self.offenders.add(str(func))
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("name,options", CONFIGS + [("stack", {"depth": 3, "backend": "auto"})], ids=IDS + ["auto"])
def test_layers_run_on_another_device_without_touching_cpu_tensors(name: str, options: dict) -> None:
    """The device-agnostic check that CPU-only CI can make for the CUDA path: on the ``meta`` device,
    forward (with and without a graph) and backward pass no CPU tensor (an index, a twiddle table,
    a mask) to any op, which on a GPU would fail or copy host-to-device on every call."""
    layer = build(name, options, 10, 7).float().to("meta")
    if options.get("backend") == "auto":
        for f in layer.factors:
            f.backend = "fft"  # the autotuner times real kernels; meta tensors have none
    x = torch.empty(3, 10, device="meta")
    audit = _DeviceAudit()
    with audit:
        with torch.no_grad():
            y = layer(x)
        layer(x.requires_grad_()).sum().backward()
    assert y.shape == (3, 7) and y.device.type == "meta"
    assert all(p.grad is not None and p.grad.device.type == "meta" for p in layer.parameters())
    assert not audit.offenders, f"ops given CPU tensors: {sorted(audit.offenders)}"
