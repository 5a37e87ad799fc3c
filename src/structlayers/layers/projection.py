"""The plugins' closed-form projections ``layer.project_(weight, bias)`` and their shared pieces.

``project_`` sets a layer, in place, to the member of its family nearest (in Frobenius norm) to a
dense ``(out, in)`` weight, and copies the bias: the initialisation of a structured layer from a
trained dense one (Dao et al., 2022, "Monarch", Sec. 3.3) and the start of
``replace(init_from="project" | "fit")``.  A family without a closed form raises
``NotImplementedError``.

Conventions: a layer maps row vectors, ``y = x M (+ b)`` with ``M = weight.T``; a square layer of size
``N >= max(in, out)`` pads ``x`` with zeros and keeps the first ``out`` outputs, so only the top-left
``(in, out)`` block of its ``N x N`` map is observed (:func:`observed_target`).  The other entries are
free: the alternating projections (:func:`diagonal_transform_als`) fill them with the current
approximation's own entries at every sweep (least squares over the observed entries only, by
imputation), instead of pulling them towards zero.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import Tensor

from structlayers.base import StructuredLinear
from structlayers.configs import Words
from structlayers.layers.init import LINEAR_ALIASES


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


def observed_target(weight: Tensor, size: int) -> tuple[Tensor, Tensor]:
    """``(target, mask)``: the ``(size, size)`` float64 map holding ``weight.T`` in its top-left
    block (zeros elsewhere), and the boolean mask of that block."""
    out_f, in_f = weight.shape
    target = torch.zeros(size, size, dtype=torch.float64)
    target[:in_f, :out_f] = weight.detach().double().cpu().T
    mask = torch.zeros(size, size, dtype=torch.bool)
    mask[:in_f, :out_f] = True
    return target, mask


def padded_bias(bias: Tensor | None, size: int) -> Tensor:
    """``bias`` (or zeros) as a float64 vector of length ``size`` (zeros past its end)."""
    out = torch.zeros(size, dtype=torch.float64)
    if bias is not None:
        out[: bias.numel()] = bias.detach().double().cpu()
    return out


def block_diagonal(target: Tensor, groups: int) -> Tensor:
    """The ``(groups, b, b)`` diagonal blocks of ``target`` (``N x N``, ``N = groups * b``): the
    Frobenius-nearest block-diagonal matrix keeps them and drops everything else."""
    b = target.shape[0] // groups
    return torch.stack([target[g * b:(g + 1) * b, g * b:(g + 1) * b] for g in range(groups)])


def diagonal_transform_als(
    transform: Tensor,
    inverse: Tensor,
    target: Tensor,
    mask: Tensor,
    *,
    shuffle: Tensor | None = None,
    real_part: bool = False,
    sweeps: int = 20,
    tol: float = 0.0,
) -> tuple[Tensor, Tensor]:
    """Diagonals ``(a, d)`` of ``M = diag(a) T P diag(d) T^-1`` fitted to ``target`` on ``mask`` by
    alternating least squares, each half-step exact and in closed form:

    - ``d`` for fixed ``a``: ``T^-1`` is unitary, so ``||L diag(d) T^-1 - G|| = ||L diag(d) - G T^-H||``
      separates over columns: ``d_k = <l_k, (G T^-H)_k> / ||l_k||^2`` with ``L = diag(a) T P``;
    - ``a`` for fixed ``d``: ``M = diag(a) K`` separates over rows: ``a_i = <K_i, G_i> / ||K_i||^2``.

    Starting from ``a = 1`` the first ``d`` is the exact projection onto ``T diag(d) T^-1`` (for the
    DCT, the matrices it diagonalises).  ``real_part``: the layer outputs ``Re(x M)`` (AFDF), so the
    ``a`` step fits ``Re(a_i K_i)`` (two real unknowns per row) and the ``d`` step
    ``Re(L diag(d) T^-1)`` (:func:`_real_part_diagonal`).  ``shuffle`` is the index of the inner
    permutation (``z[..., index]``).  Entries outside ``mask`` are re-imputed each sweep, which
    converges slowly (a map with ``out < in`` needs ~100-200 sweeps): ``tol > 0`` stops once a sweep
    lowers the squared error on ``mask`` by less than ``tol`` relative.
    """
    n = target.shape[0]
    dtype = transform.dtype
    perm = torch.eye(n, dtype=torch.float64)[:, shuffle] if shuffle is not None else None
    tp = transform @ perm.to(dtype) if perm is not None else transform
    inv_h = inverse.conj().T
    g = target.clone()
    a = torch.ones(n, dtype=dtype)
    d = torch.ones(n, dtype=dtype)
    previous = math.inf
    for _ in range(max(1, sweeps)):
        lmat = a[:, None] * tp
        if real_part:
            d = _real_part_diagonal(lmat, inverse, g)
        else:
            rhs = g.to(dtype) @ inv_h
            d = (lmat.conj() * rhs).sum(0) / (lmat.abs() ** 2).sum(0).clamp_min(1e-30)
        k = tp * d[None, :] @ inverse
        if real_part:
            kr, ki = k.real, k.imag
            # min || ar * kr - ai * ki - g ||^2 per row: a 2 x 2 normal system.
            s_rr, s_ii, s_ri = (kr * kr).sum(1), (ki * ki).sum(1), (kr * ki).sum(1)
            b_r, b_i = (kr * g).sum(1), -(ki * g).sum(1)
            det = (s_rr * s_ii - s_ri**2).clamp_min(1e-30)
            ar = (s_ii * b_r + s_ri * b_i) / det
            ai = (s_ri * b_r + s_rr * b_i) / det
            a = torch.complex(ar, ai)
            current = (a[:, None] * k).real
        else:
            a = (k.conj() * g.to(dtype)).sum(1) / (k.abs() ** 2).sum(1).clamp_min(1e-30)
            current = (a[:, None] * k).real if dtype.is_complex else a[:, None] * k
        g = torch.where(mask, target, current)
        if tol > 0:
            error = float((current - target)[mask].square().sum())
            if previous < math.inf and previous - error <= tol * previous:
                break
            previous = error
    return a, d


def _real_part_diagonal(lmat: Tensor, rmat: Tensor, g: Tensor) -> Tensor:
    """Complex ``d`` minimising ``||Re(L diag(d) R) - G||_F``: linear least squares in
    ``(Re d, Im d)`` whose ``2N x 2N`` normal equations come from ``N x N`` products.  With
    ``u_k = vec(l_k r_k^T)``: ``S1 = (L^T L) * (R R^T)`` holds ``<u_k, u_l>`` and
    ``S2 = (L^T conj L) * (R R^H)`` holds ``<u_k, conj u_l>``, and the real inner products of real and
    imaginary parts are their half sums and differences.  The system is singular when ``d`` has
    directions with no effect on the real part (bins ``k`` and ``-k`` of a DFT); a tiny ridge picks
    the smallest solution."""
    n = lmat.shape[1]
    s1 = (lmat.T @ lmat) * (rmat @ rmat.T)
    s2 = (lmat.T @ lmat.conj()) * (rmat @ rmat.conj().T)
    rr, ii, ri = (s1 + s2).real / 2, (s2 - s1).real / 2, (s1 - s2).imag / 2
    # Unknowns (p, q) with d = p + i q: Re(u d) = p Re u - q Im u.
    gram = torch.cat([torch.cat([rr, -ri], 1), torch.cat([-ri.T, ii], 1)], 0)
    proj = torch.diagonal(lmat.T @ g.to(lmat.dtype) @ rmat.T)
    rhs = torch.cat([proj.real, -proj.imag])
    ridge = 1e-10 * float(torch.diagonal(gram).mean().clamp_min(1e-30))
    sol = torch.linalg.solve(gram + ridge * torch.eye(2 * n, dtype=gram.dtype), rhs)
    return torch.complex(sol[:n], sol[n:])


def relative_error(approx: Tensor, target: Tensor, mask: Tensor | None = None) -> float:
    """``||approx - target|| / ||target||`` over ``mask`` (everything when ``None``)."""
    diff, ref = approx - target, target
    if mask is not None:
        diff, ref = diff[mask], ref[mask]
    return float(torch.linalg.norm(diff) / torch.linalg.norm(ref).clamp_min(1e-30))


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


def block_count(layer: str, in_features: int, out_features: int, nblocks: int | None, rank: int) -> int:
    """The checked block count of a block-structured layer (:func:`default_blocks` when None), after
    checking its ``rank`` too."""
    size = max(in_features, out_features)
    blocks = default_blocks(size) if nblocks is None else nblocks
    check_positive(layer, nblocks=blocks, rank=rank)
    if blocks > size:
        raise ValueError(f"layer {layer!r}: nblocks={blocks} exceeds the layer size {size}")
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


#: Initialisations of the diagonal-constant families (circulant, Toeplitz; words of
#: :mod:`structlayers.layers.init`): ``linear`` draws every entry like ``nn.Linear``; ``identity`` is
#: the identity plus N(0, 1e-2^2) noise, for deep stacks, whose product would otherwise shrink
#: geometrically with depth (like ACDC's N(1, 1e-2^2) diagonals).
DIAGONAL_INITS = Words(("linear", "identity"), LINEAR_ALIASES)


@torch.no_grad()
def init_diagonals_(values: Tensor, main: int, init: str, fan_in: int) -> None:
    """Fill the diagonal values ``values`` (index ``main`` is the main diagonal) per ``init``, a
    word of :data:`DIAGONAL_INITS` (checked by the layer)."""
    if init == "linear":
        linear_uniform_(values, fan_in)
    else:
        values.normal_(0.0, 1e-2)
        values[main] += 1.0
