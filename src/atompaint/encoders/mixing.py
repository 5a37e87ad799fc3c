"""Equivariant structured channel mixing: any structlayers plugin inside a 1x1x1 steerable map.

By Schur's lemma, a linear map between two field types that commutes with the group action is,
in the irrep basis of the two types (escnn's ``FieldType.irreps`` and ``change_of_basis``), a
direct sum over irreps ``psi`` of ``M_psi (x) I_dim(psi)``, when every irrep is of real type (its
only self-intertwiners are multiples of the identity; true for all irreps of SO(3) and O(3)).
``M_psi`` is an arbitrary ``multiplicity_out(psi) x multiplicity_in(psi)`` matrix, so it can be
any structlayers plugin (dense, low-rank, ACDC, a stack, ...): every registered layer becomes an
equivariant layer with no new maths per plugin (cf. Weiler et al., "3D Steerable CNNs", NeurIPS
2018; Cesa et al., "A Program to Build E(N)-Equivariant Steerable CNNs", ICLR 2022).

:class:`PerIrrepLinear` is the plain-PyTorch computation (it is also the exported form);
:class:`IrrepMixing` wraps it as an escnn ``EquivariantModule``.  For a band-limit-2 spectral
regular field of SO(3) (``rho_0 + 3 rho_1 + 5 rho_2``, identity change of basis) with ``c``
channels, ``M_0`` is ``c x c``, ``M_1`` is ``3c x 3c`` and ``M_2`` is ``5c x 5c``: a dense mixing
costs ``c^2 (1 + 9*3 + 25*5) = 153 c^2`` multiply-adds per voxel instead of the ``(35 c)^2 = 1225 c^2``
of the dense 1x1x1 convolution escnn executes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch
from escnn import nn as enn
from torch import Tensor, nn

from structlayers.base import FlopCount, StructuredLinear, count_params, dense_weight_dtype, device_dtype, linear_flops
from structlayers.layers import Dense
from structlayers.registry import LayerSpec, accepted_options, resolve

#: The mixing name that chooses each layer's plugin by measurement (:mod:`atompaint.encoders.automix`).
AUTO = "auto"


class MixingSpec(LayerSpec):
    """Which structlayers plugin each ``M_psi`` is: a :class:`~structlayers.LayerSpec` (options
    checked against the plugin when the spec is made; ``spec.build(m_in, m_out)``), or :data:`AUTO`,
    which takes no depth or options (each candidate of :mod:`atompaint.encoders.automix` has its own)."""

    def __post_init__(self) -> None:
        if self.name != AUTO:
            super().__post_init__()
        elif self.depth is not None or self.options:
            raise ValueError("mixing 'auto' takes no mixing_depth or mixing_options; give them to each of "
                             "mixing_candidates (e.g. 'acdc:depth=2')")

    @property
    def auto(self) -> bool:
        """Whether each layer's plugin is chosen by measurement."""
        return self.name == AUTO

    def build(self, in_features: int, out_features: int, **overrides: Any) -> StructuredLinear:
        if self.auto:
            raise ValueError("mixing 'auto' is not a layer; automix chooses one per layer")
        return super().build(in_features, out_features, **overrides)


def irrep_key(irrep_id: tuple) -> str:
    """A ``state_dict``-safe name for an irrep id (``(2,)`` -> ``"irrep2"``, O(3)'s ``(1, 2)`` -> ``"irrep1_2"``)."""
    return "irrep" + "_".join(str(i) for i in irrep_id)


@dataclass(frozen=True)
class IrrepLayout:
    """Where every irrep copy of a field type sits in its irrep basis.

    ``positions[psi]`` is a ``(multiplicity, dim)`` array of channel indices (copy ``i``,
    component ``a``); ``basis`` is the type's change of basis ``Q`` (``x = Q x_irrep``) or ``None``
    when it is the identity (trivial and spectral regular fields).
    """

    size: int
    positions: dict[tuple, np.ndarray]
    basis: np.ndarray | None

    @classmethod
    def of(cls, field_type: enn.FieldType) -> IrrepLayout:
        group = field_type.fibergroup
        positions: dict[tuple, list[list[int]]] = {}
        offset = 0
        for irrep_id in field_type.irreps:
            irrep_id = tuple(irrep_id)
            d = group.irrep(*irrep_id).size
            positions.setdefault(irrep_id, []).append(list(range(offset, offset + d)))
            offset += d
        basis = field_type.change_of_basis.toarray()
        identity = basis.shape == (offset, offset) and np.allclose(basis, np.eye(offset), atol=1e-12)
        return cls(offset, {k: np.array(v, dtype=np.int64) for k, v in positions.items()},
                   None if identity else basis)

    def multiplicity(self, irrep_id: tuple) -> int:
        return len(self.positions.get(irrep_id, ()))

    def field_blocks(self) -> tuple[int, dict[tuple, tuple[int, int]]] | None:
        """``(fields, {psi: (offset, copies)})`` when the layout is ``fields`` equal fields in each of
        which the copies of every irrep ``psi`` sit together, ``copies`` of them from ``offset`` (as in
        spectral regular fields): then an irrep's channels are a strided view, no gather needed.
        ``None`` for any other layout."""
        fields = math.gcd(*(len(p) for p in self.positions.values()))
        if not fields or self.size % fields:
            return None
        field_size, blocks = self.size // fields, {}
        for irrep_id, pos in self.positions.items():
            copies, d = len(pos) // fields, pos.shape[1]
            offset = int(pos[0, 0])
            expected = (np.arange(fields)[:, None, None] * field_size + offset
                        + np.arange(copies)[None, :, None] * d + np.arange(d)[None, None, :])
            if not np.array_equal(pos.reshape(fields, copies, d), expected):
                return None
            blocks[irrep_id] = (offset, copies)
        return fields, blocks


def check_real_type(field_type: enn.FieldType) -> None:
    """Raise unless every irrep of ``field_type`` is of real type (the ``M (x) I`` form needs it)."""
    group = field_type.fibergroup
    for irrep_id in dict.fromkeys(tuple(i) for i in field_type.irreps):
        irrep = group.irrep(*irrep_id)
        if irrep.type != "R":
            raise ValueError(
                f"irrep {irrep.name} of {group.name} is of {'complex' if irrep.type == 'C' else 'quaternionic'} type: "
                "its intertwiners are not multiples of the identity, so a per-irrep mixing M (x) I would not span "
                "all equivariant maps; structured mixing supports real-type irreps only (e.g. SO(3), O(3))"
            )


def _map_dense(module: nn.Module) -> tuple[Tensor, Tensor | None]:
    """``(weight (out, in), bias)`` of a plugin or of the ``nn.Linear`` a collapse put in its place."""
    if isinstance(module, StructuredLinear):
        return module.to_dense()
    if isinstance(module, nn.Linear):
        return module.weight.detach(), None if module.bias is None else module.bias.detach()
    raise TypeError(f"cannot take the dense form of {type(module).__name__}")


def _map_flops(module: nn.Module, rows: int) -> FlopCount:
    if isinstance(module, StructuredLinear):
        return module.flop_count(rows)
    if isinstance(module, nn.Linear):
        return linear_flops(rows, module.in_features, module.out_features, module.bias is not None)
    raise TypeError(f"cannot count the FLOPs of {type(module).__name__}")


def _map_params(module: nn.Module) -> int:
    return module.params() if isinstance(module, StructuredLinear) else count_params(module)


def build_map(spec: MixingSpec, in_features: int, out_features: int, *, bias: bool) -> StructuredLinear:
    """One ``M_psi``: the spec's plugin, with a bias only where asked (never on a non-trivial irrep,
    where a constant offset would break equivariance), and linear (a pointwise nonlinearity on the
    components of a vector irrep is not equivariant)."""
    options = dict(spec.options)
    name, resolved = resolve(spec.name, spec.depth, **options)
    if "bias" in accepted_options(name, resolved):
        options["bias"] = bias and options.get("bias", True)
    layer = spec.build(in_features, out_features, **options)
    if not layer.is_linear:
        raise ValueError(f"mixing layer {spec.label!r} is not linear (activations or norms inside); "
                         "an equivariant mixing needs a linear M")
    if not bias and layer.to_dense()[1] is not None:
        raise ValueError(f"mixing layer {spec.label!r} has a bias and no 'bias' option to turn it off; "
                         "a bias on a non-trivial irrep is not equivariant")
    return layer


def _keyed_blocks(layout: IrrepLayout) -> tuple[int, dict[str, tuple[int, int]]] | None:
    found = layout.field_blocks()
    return None if found is None else (found[0], {irrep_key(k): v for k, v in found[1].items()})


class _FieldBlocks(torch.autograd.Function):
    """The per-irrep outputs ``y`` ``(B, fields, copies, d, V)`` (views of any strides) written into the
    field-uniform layout ``(B, fields, size, V)`` (each into its strided block ``(offset, copies, d)`` of
    every field, zeros in the ``(offset, width)`` ranges of irreps without a map).  Its backward pass
    hands each ``y`` a view of the output gradient; autograd's in-place copies into one buffer cloned
    the whole gradient once per irrep."""

    @staticmethod
    def forward(ctx, grid_shape: tuple[int, ...], blocks: tuple, zeros: tuple, *ys: Tensor) -> Tensor:
        b, fields, _, voxels = grid_shape
        grid = ys[0].new_empty(grid_shape)
        for offset, width in zeros:
            grid[:, :, offset:offset + width].zero_()
        for (offset, copies, d), y in zip(blocks, ys):
            grid[:, :, offset:offset + copies * d].view(b, fields, copies, d, voxels).copy_(y)
        ctx.blocks = blocks
        return grid

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, ...]:
        b, fields, _, voxels = grad.shape
        views = (grad[:, :, offset:offset + copies * d].reshape(b, fields, copies, d, voxels)
                 for offset, copies, d in ctx.blocks)
        return (None, None, None, *views)


def _linear_weights(module: nn.Module) -> tuple[Tensor, Tensor | None] | None:
    """``(weight, bias)`` of a map that is exactly ``F.linear(x, weight, bias)`` (the dense plugin,
    ``nn.Linear``), else ``None``: such a map can run on channel-major blocks, no transposes."""
    if type(module) in (Dense, nn.Linear):
        return module.weight, module.bias
    return None


class _ChannelMajor(NamedTuple):
    """An irrep's input as channel-major blocks ``(B, m_in, d * V)``, for a linear map."""

    blocks: Tensor

    def mix(self, weights: tuple[Tensor, Tensor | None]) -> Tensor:
        """``W x + b`` over the copies: ``(B, m_out, d * V)``."""
        weight, bias = weights
        y = torch.matmul(weight, self.blocks)
        return y if bias is None else y + bias[:, None]


class PerIrrepLinear(nn.Module):
    """``y = Q_out (sum_psi M_psi (x) I) Q_in^-1 x`` on plain tensors ``(B, C_in, *spatial)``.

    Each ``M_psi`` acts on rows ``(B * voxels * dim psi, multiplicity_in psi)``: one gather puts
    the copies of ``psi`` last (components before copies, so the rows need no further copy), one
    call of the plugin mixes them, one scatter writes the output copies.  Irreps of the output
    without a copy in the input are zero (Schur).  ``maps`` may hold plugins or, after
    :func:`structlayers.collapse`, the ``nn.Linear`` it chose instead.
    """

    def __init__(self, in_layout: IrrepLayout, out_layout: IrrepLayout, maps: dict[tuple, nn.Module],
                 trivial: tuple | None = None) -> None:
        super().__init__()
        self.in_features = in_layout.size
        self.out_features = out_layout.size
        self.maps = nn.ModuleDict()
        self.dims: dict[str, int] = {}
        for irrep_id, module in maps.items():
            key = irrep_key(irrep_id)
            self.maps[key] = module
            d = in_layout.positions[irrep_id].shape[1]
            self.dims[key] = d
            # (dim, multiplicity): components outer, copies inner, so a gather gives ready-made rows.
            self.register_buffer(f"{key}_in", torch.from_numpy(in_layout.positions[irrep_id].T.copy()).reshape(-1),
                                 persistent=False)
            self.register_buffer(f"{key}_out", torch.from_numpy(out_layout.positions[irrep_id].T.copy()).reshape(-1),
                                 persistent=False)
        self.trivial_key = irrep_key(trivial) if trivial is not None and trivial in maps else None
        # Field-uniform layouts (spectral regular fields) read and write each irrep as a strided view.
        self.in_blocks = _keyed_blocks(in_layout)
        self.out_blocks = _keyed_blocks(out_layout)
        if self.out_blocks is not None:
            self.out_zero = [(off, copies * out_layout.positions[i].shape[1]) for i, (off, copies)
                             in out_layout.field_blocks()[1].items() if i not in maps]
        for name, layout in (("in", in_layout), ("out", out_layout)):
            basis = layout.basis
            if basis is not None:
                matrix = np.linalg.inv(basis) if name == "in" else basis
                self.register_buffer(f"basis_{name}", torch.from_numpy(matrix).float(), persistent=False)
            else:
                setattr(self, f"basis_{name}", None)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() < 2 or x.shape[1] != self.in_features:
            raise ValueError(f"expected input (B, {self.in_features}, ...), got {tuple(x.shape)}")
        b, spatial = x.shape[0], x.shape[2:]
        if self.basis_in is not None:
            x = torch.einsum("oc,bc...->bo...", self.basis_in.to(x.dtype), x)
        if self.in_blocks is not None:
            fields, size = self.in_blocks[0], self.in_features // self.in_blocks[0]
            # Channels-last input (a grouped convolution's output) is (B, V, C) in memory: read it as such.
            last = x.dim() > 2 and not x.is_contiguous() and x.movedim(1, -1).is_contiguous()
            grid = x.movedim(1, -1).reshape(b, -1, fields, size) if last else x.reshape(b, fields, size, -1)
            rows = []
            for key, module in self.maps.items():
                offset, copies = self.in_blocks[1][key]
                d = self.dims[key]
                if last:  # (B, V, fields, copies, d) -> (B, V, d, fields, copies)
                    block = grid[..., offset:offset + copies * d].reshape(b, -1, fields, copies, d)
                    rows.append(block.permute(0, 1, 4, 2, 3))
                else:
                    block = grid[:, :, offset:offset + copies * d].reshape(b, fields, copies, d, -1)
                    if self._runs_channel_major(module):  # (B, fields * copies, d * V)
                        rows.append(_ChannelMajor(block.reshape(b, fields * copies, -1)))
                    else:  # (B, V, d, fields, copies)
                        rows.append(block.permute(0, 4, 3, 1, 2))
            return self._mix(rows, b, spatial)
        channels_last = x.reshape(b, self.in_features, -1).transpose(1, 2)
        rows = [channels_last[..., getattr(self, f"{key}_in")] for key in self.maps]
        return self._mix(rows, b, spatial)

    def forward_irreps(self, parts: tuple[Tensor, ...] | list[Tensor]) -> Tensor:
        """The same map on an input already split by irrep: ``parts[i]`` holds the copies of the
        ``i``-th irrep of :attr:`maps` as ``(B, multiplicity * dim, *spatial)`` (copy-major, in the
        irrep basis), as an irrep-wise depthwise convolution produces them; no gather, no change
        of basis on the input side."""
        if len(parts) != len(self.maps):
            raise ValueError(f"expected {len(self.maps)} irrep parts, got {len(parts)}")
        b, spatial = parts[0].shape[0], parts[0].shape[2:]
        voxels = math.prod(spatial)
        rows = []
        for (key, module), part in zip(self.maps.items(), parts):
            d = self.dims[key]
            if part.is_contiguous() and self._runs_channel_major(module):  # (B, m, d * V)
                rows.append(_ChannelMajor(part.reshape(b, -1, d * voxels)))
            # (B, m, d, V) -> (B, V, d, m): the rows of the gather in forward(), components before copies.
            elif part.is_contiguous():
                rows.append(part.reshape(b, -1, d, voxels).permute(0, 3, 2, 1))
            else:  # channels-last, as the irrep-wise convolution returns it: (B, V, m, d) in memory
                rows.append(part.movedim(1, -1).reshape(b, voxels, -1, d).transpose(2, 3))
        return self._mix(rows, b, spatial)

    def _runs_channel_major(self, module: nn.Module) -> bool:
        """Whether ``module`` runs on channel-major blocks ``(B, m_in, d * V)``: a linear map
        (:func:`_linear_weights`) into a field-uniform output.  Its input and output then move as
        contiguous slabs; rows ``(B * V * d, m)`` take a transposing copy each way."""
        return self.out_blocks is not None and _linear_weights(module) is not None

    def _mix(self, rows: list[Tensor | _ChannelMajor], b: int, spatial: torch.Size) -> Tensor:
        """Every map on its rows ``(B, V, d, m_in)`` (any strides), or on channel-major blocks
        ``(B, m_in, d * V)`` (:meth:`_runs_channel_major`); the outputs written into the output layout:
        strided block copies for field-uniform outputs, else one scatter."""
        voxels = math.prod(spatial)
        if self.out_blocks is not None:
            fields = self.out_blocks[0]
            ys, blocks = [], []
            for (key, module), x in zip(self.maps.items(), rows):
                d = self.dims[key]
                if isinstance(x, _ChannelMajor):
                    y = x.mix(_linear_weights(module)).view(b, fields, -1, d, voxels)
                else:
                    y = module(x.reshape(b * voxels * d, -1)).view(b, voxels, d, fields, -1).permute(0, 3, 4, 2, 1)
                ys.append(y)
                blocks.append((self.out_blocks[1][key][0], self.out_blocks[1][key][1], d))
            grid_shape = (b, fields, self.out_features // fields, voxels)
            y = _FieldBlocks.apply(grid_shape, tuple(blocks), tuple(self.out_zero), *ys)
            y = y.view(b, self.out_features, *spatial)
        else:
            out = rows[0].new_zeros(b, voxels, self.out_features)
            for (key, module), x in zip(self.maps.items(), rows):
                d = self.dims[key]
                y = module(x.reshape(b * voxels * d, -1))
                out[..., getattr(self, f"{key}_out")] = y.reshape(b, voxels, -1)
            y = out.transpose(1, 2).reshape(b, self.out_features, *spatial)
        if self.basis_out is not None:
            y = torch.einsum("oc,bc...->bo...", self.basis_out.to(y.dtype), y)
        return y

    def flop_count(self, voxels: int = 1) -> FlopCount:
        """Forward FLOPs on ``voxels`` positions (all examples and voxels together): each ``M_psi``
        on ``voxels * dim psi`` rows, plus the changes of basis where they are not the identity."""
        total = FlopCount()
        for key, module in self.maps.items():
            total = total + _map_flops(module, voxels * self.dims[key])
        for basis in (self.basis_in, self.basis_out):
            if basis is not None:
                total = total + linear_flops(voxels, basis.shape[1], basis.shape[0], False)
        return total

    def flops(self, voxels: int = 1) -> int:
        return self.flop_count(voxels).total

    def params(self) -> int:
        return sum(_map_params(m) for m in self.maps.values())

    def to_dense(self) -> tuple[Tensor, Tensor | None]:
        """The full ``(C_out, C_in)`` matrix and bias in the fields' own basis (float64 first, then
        the module's dtype): what the map does to each channel, equal to applying it to the identity."""
        weight = torch.zeros(self.out_features, self.in_features, dtype=torch.float64)
        bias = torch.zeros(self.out_features, dtype=torch.float64)
        has_bias = False
        for key, module in self.maps.items():
            w, b = _map_dense(module)
            d = self.dims[key]
            rows = getattr(self, f"{key}_out").cpu().view(d, -1)
            cols = getattr(self, f"{key}_in").cpu().view(d, -1)
            for a in range(d):
                weight[rows[a][:, None], cols[a][None, :]] = w.detach().double().cpu()
                if b is not None:
                    bias[rows[a]] = b.detach().double().cpu()
                    has_bias = True
        if self.basis_in is not None:
            weight = weight @ self.basis_in.double().cpu()
        if self.basis_out is not None:
            weight = self.basis_out.double().cpu() @ weight
            bias = self.basis_out.double().cpu() @ bias
        dtype = dense_weight_dtype(self)
        return weight.to(dtype), bias.to(dtype) if has_bias else None

    def to_conv(self, dims: int = 3) -> nn.Module:
        """The same map as one dense ``1x...x1`` convolution (what escnn's ``R3Conv(kernel_size=1)`` runs)."""
        weight, bias = self.to_dense()
        conv_cls = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[dims]
        conv = conv_cls(self.in_features, self.out_features, 1, bias=bias is not None, dtype=weight.dtype,
                        device=device_dtype(self)[0])
        with torch.no_grad():
            conv.weight.copy_(weight.view(*weight.shape, *[1] * dims))
            if bias is not None:
                conv.bias.copy_(bias)
        return conv

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}"


class IrrepMixing(enn.EquivariantModule):
    """An equivariant 1x1x1 map ``in_type -> out_type`` whose per-irrep blocks ``M_psi`` are
    structlayers plugins (see the module docs).

    ``bias`` adds a learnable offset to the trivial irreps of the output only (the one place a
    bias is equivariant).  ``params()`` and ``flops(voxels)`` are analytic; ``to_dense()`` is the
    full matrix; ``export()`` returns the plain :class:`PerIrrepLinear` (structured, as trained),
    ``to_conv()`` the dense ``nn.Conv3d``.
    """

    def __init__(self, in_type: enn.FieldType, out_type: enn.FieldType, spec: MixingSpec | None = None, *,
                 bias: bool = False) -> None:
        super().__init__()
        if in_type.gspace != out_type.gspace:
            raise ValueError("input and output field types live on different gspaces")
        check_real_type(in_type)
        check_real_type(out_type)
        self.in_type, self.out_type = in_type, out_type
        self.spec = spec or MixingSpec()
        in_layout, out_layout = IrrepLayout.of(in_type), IrrepLayout.of(out_type)
        trivial = tuple(in_type.fibergroup.trivial_representation.id)
        maps: dict[tuple, nn.Module] = {}
        for irrep_id in out_layout.positions:
            m_in, m_out = in_layout.multiplicity(irrep_id), out_layout.multiplicity(irrep_id)
            if m_in:
                maps[irrep_id] = build_map(self.spec, m_in, m_out, bias=bias and irrep_id == trivial)
        if not maps:
            raise ValueError(f"no irrep of the output type {out_type} appears in the input type {in_type}: "
                             "the only equivariant map is zero")
        self.linear = PerIrrepLinear(in_layout, out_layout, maps, trivial if bias else None)

    def forward(self, x: enn.GeometricTensor | tuple[Tensor, ...]) -> enn.GeometricTensor:
        """The map on a ``GeometricTensor`` of ``in_type``, or on its irrep parts (a tuple, see
        :meth:`PerIrrepLinear.forward_irreps`), which an irrep-wise depthwise convolution hands over."""
        if isinstance(x, tuple):
            return enn.GeometricTensor(self.linear.forward_irreps(x), self.out_type)
        if x.type != self.in_type:
            raise ValueError("input field type does not match the mixing's in_type")
        return enn.GeometricTensor(self.linear(x.tensor), self.out_type, x.coords)

    def evaluate_output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        return (input_shape[0], self.out_type.size, *input_shape[2:])

    def flop_count(self, voxels: int = 1) -> FlopCount:
        return self.linear.flop_count(voxels)

    def flops(self, voxels: int = 1) -> int:
        return self.linear.flops(voxels)

    def params(self) -> int:
        return self.linear.params()

    def to_dense(self) -> tuple[Tensor, Tensor | None]:
        return self.linear.to_dense()

    def to_conv(self) -> nn.Conv3d:
        return self.linear.to_conv(self.in_type.gspace.dimensionality)

    def export(self) -> PerIrrepLinear:
        import copy

        return copy.deepcopy(self.linear).eval()

    def extra_repr(self) -> str:
        return f"{self.in_type.size} -> {self.out_type.size}, M={self.spec.label}"


def dense_mixing_flops(in_type: enn.FieldType, out_type: enn.FieldType, voxels: int = 1) -> int:
    """FLOPs of the dense per-irrep mixing (``2 * sum_psi m_out m_in dim psi`` per voxel), for reference."""
    a, b = IrrepLayout.of(in_type), IrrepLayout.of(out_type)
    group = in_type.fibergroup
    return 2 * voxels * sum(a.multiplicity(k) * b.multiplicity(k) * group.irrep(*k).size for k in b.positions)


__all__ = ["AUTO", "IrrepLayout", "IrrepMixing", "MixingSpec", "PerIrrepLinear", "build_map", "check_real_type",
           "dense_mixing_flops", "irrep_key"]
