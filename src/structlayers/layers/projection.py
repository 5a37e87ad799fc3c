"""Shared pieces of the plugins' closed-form projections ``layer.project_(weight, bias)``.

``project_`` sets a layer, in place, to the member of its family nearest (in Frobenius norm) to a
dense ``(out, in)`` weight, and copies the bias: the initialisation of a structured layer from a
trained dense one (Dao et al., 2022, "Monarch", Sec. 3.3).  A family without a closed form raises
``NotImplementedError``.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import Tensor

from structlayers.base import StructuredLinear


def dense_target(layer: StructuredLinear, weight: Tensor, bias: Tensor | None) -> tuple[Tensor, Tensor | None]:
    """``weight`` and ``bias`` as float64 CPU tensors after checking their shapes against ``layer``;
    a bias for a layer built without one is an error (it would be dropped silently otherwise)."""
    expected = (layer.out_features, layer.in_features)
    if tuple(weight.shape) != expected:
        raise ValueError(f"layer {layer.name!r}: cannot project a weight of shape {tuple(weight.shape)}; "
                         f"expected {expected} (out_features, in_features)")
    if bias is not None:
        if tuple(bias.shape) != (layer.out_features,):
            raise ValueError(f"layer {layer.name!r}: bias of shape {tuple(bias.shape)}, "
                             f"expected ({layer.out_features},)")
        if getattr(layer, "bias", None) is None:
            raise ValueError(f"layer {layer.name!r} was built with bias=False; it cannot take the given bias")
    return weight.detach().double().cpu(), None if bias is None else bias.detach().double().cpu()


@torch.no_grad()
def assign_bias(layer: StructuredLinear, bias: Tensor | None) -> None:
    """Copy ``bias`` into ``layer.bias`` (zero it when ``bias`` is None and the layer has one)."""
    own = getattr(layer, "bias", None)
    if own is None:
        return
    if bias is None:
        own.zero_()
    else:
        own.copy_(bias.to(own))


def padded(matrix: Tensor, rows: int, cols: int) -> Tensor:
    """``matrix`` zero-padded at the bottom and right to ``(rows, cols)``."""
    return torch.nn.functional.pad(matrix, (0, cols - matrix.shape[1], 0, rows - matrix.shape[0]))


def truncated_factors(blocks: Tensor, rank: int) -> tuple[Tensor, Tensor]:
    """``(U sqrt(S), sqrt(S) V^T)`` of the best rank-``rank`` approximation of every matrix in the
    batch ``blocks (..., m, n)`` (Eckart-Young), shapes ``(..., m, rank)`` and ``(..., rank, n)``;
    zero columns/rows pad ranks beyond ``min(m, n)``."""
    u, s, vh = torch.linalg.svd(blocks, full_matrices=False)
    keep = min(rank, s.shape[-1])
    root = s[..., :keep].sqrt()
    left = u[..., :keep] * root[..., None, :]
    right = vh[..., :keep, :] * root[..., :, None]
    if keep < rank:
        left = torch.nn.functional.pad(left, (0, rank - keep))
        right = torch.nn.functional.pad(right, (0, 0, 0, rank - keep))
    return left, right


#: L-BFGS iterations of :func:`refine_` when a projection has no exact closed form.
REFINE_STEPS = 1000


def refine_(layer: StructuredLinear, weight: Tensor, bias: Tensor | None, steps: int = REFINE_STEPS) -> None:
    """Lower the Frobenius error of ``layer`` (out, in) against ``weight`` by L-BFGS on the observed
    entries, from the layer's current parameters (a closed-form start): for the projections whose
    closed form is exact only on unpadded shapes or for one factor.  Fitted in float64 on a copy, so
    a float32 layer gets the float64 optimum; ``steps = 0`` leaves the layer as it is."""
    if steps < 1:
        return
    from structlayers.surgery.fit import FitOptions, fit_layer  # not at import: surgery imports the layers

    work = copy.deepcopy(layer).double()
    with torch.enable_grad():  # project_ runs under no_grad
        fit_layer(work, weight.double(), None if bias is None else bias.double(), FitOptions(steps=steps))
    layer.load_state_dict(work.state_dict())


def default_blocks(n: int) -> int:
    """A block count near ``sqrt(n)``: the largest divisor of ``n`` that is at most ``sqrt(n)``
    (no padding), or ``ceil(sqrt(n))`` when that divisor is below ``sqrt(n) / 2`` (e.g. prime ``n``)."""
    root = math.sqrt(n)
    divisor = max(d for d in range(1, int(root) + 1) if n % d == 0)
    return divisor if divisor >= root / 2 else math.ceil(root)


def block_count(layer: str, in_features: int, out_features: int, nblocks: int | None, rank: int, init: str,
                inits: tuple[str, ...]) -> int:
    """The checked block count of a block-structured layer (:func:`default_blocks` when None), after
    checking its ``rank`` and ``init`` too."""
    size = max(in_features, out_features)
    blocks = default_blocks(size) if nblocks is None else nblocks
    check_positive(layer, nblocks=blocks, rank=rank)
    if blocks > size:
        raise ValueError(f"layer {layer!r}: nblocks={blocks} exceeds the layer size {size}")
    if init not in inits:
        raise ValueError(f"layer {layer!r}: unknown init {init!r}; expected one of {inits}")
    return blocks


def check_positive(layer: str, **values: int) -> None:
    for label, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"layer {layer!r}: {label} must be a positive integer, got {value!r}")


def linear_uniform_(tensor: Tensor, fan_in: int, gain: float = 1.0) -> Tensor:
    """``U(-b, b)`` with ``b = gain / sqrt(fan_in)``: ``nn.Linear``'s default entry distribution
    at ``gain = 1`` (variance ``gain^2 / (3 fan_in)``)."""
    bound = gain / math.sqrt(fan_in)
    with torch.no_grad():
        return tensor.uniform_(-bound, bound)


def linear_weight(out_features: int, in_features: int) -> Tensor:
    """A dense weight drawn like ``nn.Linear``'s default (Kaiming-uniform, a = sqrt(5)): the matrix
    that ``init="project"`` projects, so a projected layer starts near a standard dense layer."""
    weight = torch.empty(out_features, in_features, dtype=torch.float64)
    torch.nn.init.kaiming_uniform_(weight, a=math.sqrt(5))
    return weight


def init_product_(layer: StructuredLinear, first: Tensor, first_fan: int, second: Tensor, second_fan: int) -> None:
    """Initialise a layer whose weight entries are sums of ``second_fan`` products of an entry of
    ``first`` and one of ``second`` (Monarch, Kronecker): ``init="project"`` projects an
    ``nn.Linear``-initialised weight (:meth:`project_`); otherwise ``U(+-1/sqrt(first_fan))`` and
    ``U(+-sqrt(3/second_fan))`` give the weight ``nn.Linear``'s entry variance ``1 / (3 first_fan)``
    for ``first_fan`` = the (padded) input size per block.  The bias starts at zero."""
    if getattr(layer, "init", None) == "project":
        layer.project_padded_(linear_weight(layer.out_features, layer.in_features), None)  # type: ignore[attr-defined]
        return
    linear_uniform_(first, first_fan)
    linear_uniform_(second, second_fan, gain=math.sqrt(3.0))
    assign_bias(layer, None)


#: Initialisations of the diagonal-constant families (circulant, Toeplitz): ``uniform`` draws every
#: entry like ``nn.Linear``; ``identity`` is the identity plus N(0, 1e-2^2) noise, for deep stacks,
#: whose product would otherwise shrink geometrically with depth (like ACDC's N(1, 1e-2^2) diagonals).
DIAGONAL_INITS = ("uniform", "identity")


@torch.no_grad()
def init_diagonals_(values: Tensor, main: int, init: str, fan_in: int, layer: str) -> None:
    """Fill the diagonal values ``values`` (index ``main`` is the main diagonal) per ``init``."""
    if init not in DIAGONAL_INITS:
        raise ValueError(f"layer {layer!r}: unknown init {init!r}; expected one of {DIAGONAL_INITS}")
    if init == "uniform":
        linear_uniform_(values, fan_in)
    else:
        values.normal_(0.0, 1e-2)
        values[main] += 1.0
