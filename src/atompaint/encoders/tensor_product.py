"""A quadratic (tensor-product) nonlinearity computed through its Clebsch-Gordan decomposition.

escnn's ``TensorProductModule`` maps every field ``x`` (representation ``rho``, dimension ``D``) to
``W (x (x) x)``, with ``W`` a learned equivariant ``D_out x D^2`` matrix per field: it forms all
``D^2`` products and multiplies them by the expanded dense ``W``: ``D^2 (1 + 2 D_out)`` FLOPs per
field and voxel (86,975 at band limit 2, ``D = D_out = 35``).

The same function class factors, in the irrep basis ``x = sum_i x_i`` (Schur's lemma and the
Clebsch-Gordan decomposition ``psi_1 (x) psi_2 = sum_J J``; e.g. Thomas et al., "Tensor field
networks", 2018, Eq. 2; Kondor et al., "Clebsch-Gordan Nets", NeurIPS 2018):

    y_J,k = sum_p W_J[k, p] z_p,   z_p = C^J_{psi_1 psi_2} (x_i (x) x_j)   for paths p = (i, j, J),

a fixed Clebsch-Gordan contraction of each pair of irrep copies followed by a learned per-irrep
mixing ``W_J (x) I_dim J``.  Only pairs ``i <= j`` are needed, because ``x (x) x`` is symmetric
(``z`` of ``(j, i)`` is an equivariant linear function of ``z`` of ``(i, j)``, which ``W`` absorbs),
paths onto irreps absent from the output are skipped, and for ``i = j`` the antisymmetric
Clebsch-Gordan components (which vanish on ``x_i (x) x_i``) are dropped.  At band limit 2 this is
about 15K FLOPs per field and voxel instead of 87K, with no product that ``W`` multiplies by a
structural zero.  The fields are not mixed with each other (as in escnn's module).

On CPU the product runs in a fused kernel (:mod:`atompaint.encoders._cg_fused`) that keeps each tile
of voxels in cache through products, contractions and projections, forward and backward; elsewhere,
and where the kernel cannot be compiled, in plain PyTorch. Both compute the same arithmetic.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np
import torch
from escnn import nn as enn
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from atompaint.encoders._cg_fused import cg_tensor_product, fused_available, plain_form
from atompaint.encoders.mixing import IrrepLayout, check_real_type, irrep_key
from structlayers.base import FlopCount

__all__ = ["CGTensorProduct", "CGTensorProductCore", "escnn_tensor_product_flops", "fused_available", "plain_form"]

#: Rows (examples x fields x voxels) per chunk when training: each chunk's intermediates (~700 numbers a
#: row at band limit 2) are recomputed in the backward pass instead of being stored.  Smaller chunks keep
#: them closer to the cache, larger ones make fewer and longer matmuls (8192 was fastest at band limit 2).
CHUNK_ROWS = 8192

#: Standard deviation of the initial weights times sqrt(number of paths): the output of a unit-variance
#: input then has about the variance escnn's generalized He initialisation gives its TensorProductModule.
INIT_GAIN = 1.0


@dataclass(frozen=True)
class _PairGroup:
    """Copies of irreps ``(psi_1, psi_2)`` multiplied together, and what their products feed."""

    left: np.ndarray  # (P, d1) positions of the left factor of each pair
    right: np.ndarray  # (P, d2)
    cg: np.ndarray  # (d1 * d2, K): the kept Clebsch-Gordan columns
    outputs: tuple[tuple[tuple, int], ...]  # (irrep J, column offset) for each kept copy of J


def _pair_groups(layout: IrrepLayout, out_irreps: set[tuple], group) -> list[_PairGroup]:
    ids = list(layout.positions)
    found: list[_PairGroup] = []
    for a, psi1 in enumerate(ids):
        for psi2 in ids[a:]:
            pos1, pos2 = layout.positions[psi1], layout.positions[psi2]
            d1, d2 = pos1.shape[1], pos2.shape[1]
            if psi1 == psi2:
                m = len(pos1)
                kinds = [("diag", [(i, i) for i in range(m)]),
                         ("off", [(i, j) for i in range(m) for j in range(i + 1, m)])]
            else:
                kinds = [("all", [(i, j) for i in range(len(pos1)) for j in range(len(pos2))])]
            for kind, pairs in kinds:
                if not pairs:
                    continue
                columns, outputs, offset = [], [], 0
                for irrep_j, multiplicity in group._tensor_product_irreps(psi1, psi2):
                    irrep_j = tuple(irrep_j)
                    if irrep_j not in out_irreps:
                        continue
                    cg = np.asarray(group._clebsh_gordan_coeff(psi1, psi2, irrep_j))  # (d1, d2, S, dJ)
                    for s in range(multiplicity):
                        block = cg[:, :, s, :]
                        if kind == "diag" and np.allclose(block + block.transpose(1, 0, 2), 0, atol=1e-9):
                            continue  # antisymmetric: zero on x_i (x) x_i
                        columns.append(block.reshape(d1 * d2, -1))
                        outputs.append((irrep_j, offset))
                        offset += block.shape[-1]
                if columns:
                    idx1 = np.array([p[0] for p in pairs])
                    idx2 = np.array([p[1] for p in pairs])
                    found.append(_PairGroup(pos1[idx1], pos2[idx2], np.concatenate(columns, axis=1), tuple(outputs)))
    return found


class CGTensorProductCore(nn.Module):
    """The plain-PyTorch computation of :class:`CGTensorProduct` on ``(B, C * D, *spatial)`` tensors."""

    def __init__(self, channels: int, in_layout: IrrepLayout, out_layout: IrrepLayout, group) -> None:
        super().__init__()
        if in_layout.basis is not None or out_layout.basis is not None:
            raise ValueError("the Clebsch-Gordan tensor product needs fields that are direct sums of irreps "
                             "(identity change of basis), like spectral regular fields")
        self.channels = channels
        self.in_size, self.out_size = in_layout.size, out_layout.size
        self.groups = _pair_groups(in_layout, set(out_layout.positions), group)
        self.dims = {irrep_key(k): v.shape[1] for k, v in out_layout.positions.items()}
        # The output irrep of each group's blocks of Clebsch-Gordan columns; an irrep's paths are ordered by group.
        self.feeds = [[irrep_key(irrep_j) for irrep_j, _ in pg.outputs] for pg in self.groups]
        # Pairs (i, i) of one copy with itself need one gather, not two.
        self.squares = [np.array_equal(pg.left, pg.right) for pg in self.groups]
        for g, pg in enumerate(self.groups):
            self.register_buffer(f"left{g}", torch.from_numpy(pg.left.reshape(-1)), persistent=False)
            self.register_buffer(f"right{g}", torch.from_numpy(pg.right.reshape(-1)), persistent=False)
            self.register_buffer(f"cg_t{g}", torch.from_numpy(pg.cg.T.copy()).float(), persistent=False)
        self.weights = nn.ParameterDict()
        for irrep_j, positions in out_layout.positions.items():
            key = irrep_key(irrep_j)
            n_paths = sum(len(pg.left) for pg, feeds in zip(self.groups, self.feeds) for k in feeds if k == key)
            if n_paths == 0:
                continue
            weight = torch.randn(channels, len(positions), n_paths) * (INIT_GAIN / math.sqrt(n_paths))
            self.weights[key] = nn.Parameter(weight)
        # The output is assembled as the concatenation of whole irrep blocks (copy, component) in this order;
        # ``_scatter`` maps it onto the output layout when that is not already the layout's own order.
        self.blocks = [(irrep_key(k), *v.shape) for k, v in out_layout.positions.items()]
        order = np.concatenate([v.reshape(-1) for v in out_layout.positions.values()])
        self.register_buffer("_scatter", None if np.array_equal(order, np.arange(order.size))
                             else torch.from_numpy(np.argsort(order)), persistent=False)
        spec, blocks = self._kernel_program(out_layout)
        self.register_buffer("_spec", spec, persistent=False)
        self.register_buffer("_blocks", blocks, persistent=False)

    def _kernel_program(self, out_layout: IrrepLayout) -> tuple[Tensor, Tensor]:
        """The fused kernel's description of this product (``_cg_kernel.cpp``, ``parse``): sizes; per
        weighted output irrep its copies, dimension, paths and output rows; per pair group its pairs,
        factor rows and feeds (irrep, first column, first path); and the Clebsch-Gordan blocks."""
        keys = list(self.weights)
        positions = {irrep_key(k): v for k, v in out_layout.positions.items()}
        spec = [self.in_size, self.out_size, len(keys), len(self.groups)]
        for key in keys:
            copies, paths = self.weights[key].shape[1:]
            spec += [copies, self.dims[key], paths, *positions[key].reshape(-1).tolist()]
        starts = dict.fromkeys(keys, 0)
        for pg, feeds in zip(self.groups, self.feeds):
            pairs, d1, d2 = pg.left.shape[0], pg.left.shape[1], pg.right.shape[1]
            spec += [pairs, d1, d2, pg.cg.shape[1], len(feeds), *pg.left.reshape(-1).tolist(),
                     *pg.right.reshape(-1).tolist()]
            for key, (_, offset) in zip(feeds, pg.outputs):
                spec += [keys.index(key), offset, starts[key]]
                starts[key] += pairs
        blocks = np.concatenate([pg.cg.T.reshape(-1) for pg in self.groups])
        return torch.tensor(spec, dtype=torch.int64), torch.from_numpy(blocks).float()

    def fused(self, x: Tensor) -> Tensor:
        """:meth:`forward` by the fused kernel (``atompaint::cg_tensor_product``); ``x`` a CPU tensor."""
        b, spatial = x.shape[0], x.shape[2:]
        if x.shape[1] != self.channels * self.in_size:
            raise ValueError(f"expected input (B, {self.channels * self.in_size}, ...), got {tuple(x.shape)}")
        voxels = b * math.prod(spatial)
        y = cg_tensor_product(x.reshape(b, x.shape[1], -1), list(self.weights.values()), self._spec,
                              self._blocks.to(x.dtype), self.channels * self.out_size,
                              self.flop_count(voxels).matmul)
        return y.reshape(b, -1, *spatial)

    def forward(self, x: Tensor) -> Tensor:
        return self.contract(x, self.feed_weights())

    def feed_weights(self) -> list[Tensor]:
        """The weights ``(C, O, P)`` of every (pair group, output irrep) feed: the group's paths in the irrep's
        weights (sliced once per forward pass, not per chunk)."""
        sliced, starts = [], dict.fromkeys(self.weights, 0)
        for pg, feeds in zip(self.groups, self.feeds):
            pairs = len(pg.left)
            for key in feeds:
                sliced.append(self.weights[key][:, :, starts[key]:starts[key] + pairs])
                starts[key] += pairs
        return sliced

    def contract(self, x: Tensor, weights: list[Tensor]) -> Tensor:
        """The tensor product of ``x`` (``(B, C * D, *spatial)``) with :meth:`feed_weights` ``weights``."""
        b, spatial = x.shape[0], x.shape[2:]
        if x.shape[1] != self.channels * self.in_size:
            raise ValueError(f"expected input (B, {self.channels * self.in_size}, ...), got {tuple(x.shape)}")
        # Layout (C, D, B V): every irrep component of a channel is a row of B V contiguous numbers, so the
        # gathers copy whole rows, the pair products broadcast along them and both contractions are matmuls
        # (batched over channels and pairs) whose long side is B V.
        c = self.channels
        fields = x.reshape(b, c, self.in_size, -1).permute(1, 2, 0, 3).reshape(c, self.in_size, -1)
        v = fields.shape[-1]
        ys: dict[str, Tensor] = {}
        feed = iter(weights)
        for g, pg in enumerate(self.groups):
            pairs, d1, d2 = pg.left.shape[0], pg.left.shape[1], pg.right.shape[1]
            left = fields.index_select(1, getattr(self, f"left{g}"))  # (C, P d1, B V)
            right = left if self.squares[g] else fields.index_select(1, getattr(self, f"right{g}"))
            outer = left.view(c, pairs, d1, 1, v) * right.view(c, pairs, 1, d2, v)  # (C, P, d1, d2, B V)
            cg_t = getattr(self, f"cg_t{g}").to(x.dtype)  # (K, d1 d2)
            z = torch.bmm(cg_t.expand(c * pairs, *cg_t.shape), outer.view(c * pairs, d1 * d2, v))
            # split(), not slices: its backward assembles the gradient of z in one buffer.
            parts = z.view(c, pairs, -1, v).split([self.dims[key] for key in self.feeds[g]], dim=2)
            for key, part, w in zip(self.feeds[g], parts, feed):
                zj = part.reshape(c, pairs, -1)  # a view (C, P, d B V): rows of d B V contiguous numbers
                ys[key] = torch.bmm(w, zj) if key not in ys else torch.baddbmm(ys[key], w, zj)
        out = torch.cat([ys[key].view(c, m * d, v) if key in ys else fields.new_zeros(c, m * d, v)
                         for key, m, d in self.blocks], dim=1)
        if self._scatter is not None:
            out = out.index_select(1, self._scatter)
        out = out.view(c, self.out_size, b, -1).permute(2, 0, 1, 3)
        return out.reshape(b, c * self.out_size, *spatial)

    def flop_count(self, voxels: int = 1) -> FlopCount:
        """FLOPs on ``voxels`` positions (examples times voxels): the pair products (elementwise),
        the Clebsch-Gordan contractions and the projections (matmuls, ``2 * MACs``)."""
        rows = voxels * self.channels
        elementwise = matmul = 0
        for pg in self.groups:
            pairs, d1, d2 = pg.left.shape[0], pg.left.shape[1], pg.right.shape[1]
            elementwise += rows * pairs * d1 * d2
            matmul += 2 * rows * pairs * d1 * d2 * pg.cg.shape[1]
        for key, weight in self.weights.items():
            outputs, paths = weight.shape[1:]
            matmul += 2 * rows * outputs * paths * self.dims[key]
        return FlopCount(matmul=matmul, elementwise=elementwise)

    def params(self) -> int:
        return sum(w.numel() for w in self.weights.values())


class CGTensorProduct(enn.EquivariantModule):
    """Drop-in for ``enn.TensorProductModule(in_type, out_type)`` computed through the Clebsch-Gordan
    decomposition (see the module docs).  Input and output are uniform types with as many fields."""

    def __init__(self, in_type: enn.FieldType, out_type: enn.FieldType) -> None:
        super().__init__()
        if not (in_type.uniform and out_type.uniform) or len(in_type) != len(out_type):
            raise ValueError("the tensor product needs uniform input and output types with as many fields")
        check_real_type(in_type)
        check_real_type(out_type)
        self.in_type, self.out_type = in_type, out_type
        gs = in_type.gspace
        single_in = enn.FieldType(gs, [in_type.representations[0]])
        single_out = enn.FieldType(gs, [out_type.representations[0]])
        self.core = CGTensorProductCore(len(in_type), IrrepLayout.of(single_in), IrrepLayout.of(single_out),
                                        in_type.fibergroup)

    def forward(self, x: enn.GeometricTensor) -> enn.GeometricTensor:
        if x.type != self.in_type:
            raise ValueError("input field type does not match the tensor product's in_type")
        t = x.tensor
        fusable = t.dim() > 2 and t.device.type == "cpu" and t.dtype in (torch.float32, torch.float64)
        if fusable and fused_available():
            return enn.GeometricTensor(self.core.fused(t), self.out_type, x.coords)
        if not (torch.is_grad_enabled() and t.dim() > 2):
            return enn.GeometricTensor(self.core(t), self.out_type, x.coords)
        # Training: voxel chunks, each recomputed in the backward pass (activation checkpointing), so the
        # pair products are never stored: less memory and less memory traffic for the same result.
        b, spatial = t.shape[0], t.shape[2:]
        flat = t.reshape(b, t.shape[1], -1)
        step = max(1, CHUNK_ROWS // (b * len(self.in_type)))
        # split(), not one slice per chunk: its backward writes every chunk's gradient into one buffer, where
        # slices would each allocate (and zero) a gradient of the whole input and then be summed.
        weights = self.core.feed_weights()
        chunks = [checkpoint(self.core.contract, part, weights, use_reentrant=False)
                  for part in flat.split(step, dim=-1)]
        return enn.GeometricTensor(torch.cat(chunks, dim=-1).reshape(b, -1, *spatial), self.out_type, x.coords)

    def evaluate_output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        return (input_shape[0], self.out_type.size, *input_shape[2:])

    def flop_count(self, voxels: int = 1) -> FlopCount:
        return self.core.flop_count(voxels)

    def params(self) -> int:
        return self.core.params()

    def export(self) -> CGTensorProductCore:
        return copy.deepcopy(self.core).eval()


def escnn_tensor_product_flops(module: enn.TensorProductModule, voxels: int = 1) -> FlopCount:
    """What escnn's ``TensorProductModule.forward`` executes on ``voxels`` positions: per field the
    ``D^2`` products of ``x (x) x`` and the ``D_out x D^2`` projection (``einsum('coi,bci...')``)."""
    d_in = module.in_type.representations[0].size
    d_out = module.out_type.representations[0].size
    rows = voxels * len(module.in_type)
    return FlopCount(matmul=2 * rows * d_out * d_in**2, elementwise=rows * d_in**2)
