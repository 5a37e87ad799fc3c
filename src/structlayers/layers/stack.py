"""Stacks of structured factors with fixed shuffles between them: ``y = f_K(P ... P f_2(P f_1(x)))``.

All factors act on one padded square size ``N >= max(in, out)``: the input is zero-padded once, the
output truncated once (see :mod:`structlayers.layers.square` for why padding).  Optional
activations / normalisations between factors make the stack nonlinear (then it cannot collapse).
"""

from __future__ import annotations

import copy
import inspect
from typing import Annotated, Any

import torch
from torch import Tensor, nn

from structlayers.base import (
    Cascading,
    FlopCount,
    Fusable,
    NotCollapsibleError,
    StructuredLinear,
    dense_weight_dtype,
    rows_of,
)
from structlayers.configs import Words
from structlayers.layers.projection import REFINE_STEPS, observed_target, padded_bias, refine_, relative_error
from structlayers.layers.square import SHUFFLE_WORDS, SquareLayer, square_size
from structlayers.registry import accepted_options, create, get, option_types, register
from structlayers.transforms.dct import permute_scale
from structlayers.transforms.shuffle import Permutation, make_permutation
from structlayers.utils.memory import check_allocation
from structlayers.utils.precision import compute_dtype

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh}
NORMS = {"batchnorm": nn.BatchNorm1d, "layernorm": nn.LayerNorm}
#: The words of the ``activation`` and ``norm`` options.
ACTIVATION_WORDS, NORM_WORDS = Words(tuple(ACTIVATIONS)), Words(tuple(NORMS))


class _FeatureBatchNorm(nn.BatchNorm1d):
    """BatchNorm over the last dimension of ``(..., N)`` inputs."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.reshape(-1, x.shape[-1])).reshape(x.shape)


def _check_factor(factor: str) -> None:
    """Refuse a ``factor`` that is not a registered layer that can be stacked."""
    if not get(factor).stackable:
        raise ValueError(f"layer 'stack': factor {factor!r} cannot be stacked "
                         "(it is not a square structured factor)")


_JUNCTIONS = ("_junction_between", "_junction_gather", "_junction_scatter")


@register("stack")
class Stack(SquareLayer):
    """``depth`` factors of ``factor`` (acdc, afdf, blockdiag, ...) with ``shuffle`` between them.

    ``seed`` fixes the random permutations (drawn from the global torch RNG when omitted); every
    permutation is a buffer in the ``state_dict``.  Extra keyword options (``init``, ``sigma``,
    ``backend``, ``bias``, ``inner_shuffle``, ...) go to every factor.
    """

    stackable = False

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        factor: str = "acdc",
        depth: int = 2,
        shuffle: Annotated[str, SHUFFLE_WORDS] = "riffle",
        groups: int = 1,
        pow2_blocks: bool = False,
        activation: Annotated[str, ACTIVATION_WORDS] | None = None,
        norm: Annotated[str, NORM_WORDS] | None = None,
        seed: int | None = None,
        **factor_options: Any,
    ) -> None:
        super().__init__(in_features, out_features)
        if not isinstance(depth, int) or isinstance(depth, bool) or depth < 1:
            raise ValueError(f"layer 'stack': depth must be a positive integer, got {depth!r}")
        shuffle = self.check_word("shuffle", shuffle, SHUFFLE_WORDS)
        if activation is not None:
            activation = self.check_word("activation", activation, ACTIVATION_WORDS)
        if norm is not None:
            norm = self.check_word("norm", norm, NORM_WORDS)
        _check_factor(factor)
        self.size, self.block = square_size(self.name, in_features, out_features, groups, pow2_blocks)
        self.factor, self.depth, self.shuffle = factor, depth, shuffle
        # Each factor holds at least a few size-long vectors (its parameters, a shuffle index).
        self.check_parameter_memory(4 * depth * self.size)
        self.activation, self.norm = activation, norm
        if seed is None:
            seed = int(torch.randint(0, 2**31 - 1, (), device="cpu").item())
        generator = torch.Generator().manual_seed(seed)
        if groups > 1 or pow2_blocks:
            factor_options = {**factor_options, "groups": groups, "pow2_blocks": pow2_blocks}
        seeded = "seed" in accepted_options(factor)
        self.factors = nn.ModuleList(
            create(factor, self.size, self.size, **factor_options, **({"seed": seed + i} if seeded else {}))
            for i in range(depth)
        )
        self.shuffles = nn.ModuleList(
            Permutation(make_permutation(shuffle, self.size, generator), shuffle) for _ in range(depth - 1)
        )
        self.between = nn.ModuleList(self._between() for _ in range(depth - 1))
        #: Factors that carry a wide (e.g. complex) signal between them (structlayers.base.Cascading).
        self._cascade = isinstance(self.factors[0], Cascading) and self.factors[0].cascades()
        if self._cascade and not self.is_linear:
            raise ValueError(f"layer 'stack': {factor!r} factors with these options pass a non-real signal from "
                             "factor to factor (see the factor's 'cascade' option); activation and norm need a "
                             "real one")
        self._fusable_factors = isinstance(self.factors[0], Fusable) and self.factors[0].fusion_perms() is not None
        if self._fusable_factors:
            # The fused path's permutations between factors depend only on the fixed shuffles:
            # built once (and again whenever a state_dict loads other shuffles), not per call.
            for name, table in zip(_JUNCTIONS, self._junction_tables()):
                self.register_buffer(name, table, persistent=False)
            self.register_load_state_dict_post_hook(Stack._refresh_junctions)

    @classmethod
    def option_types(cls, layer_options: dict[str, object]) -> dict[str, object]:
        factor = str(layer_options.get("factor", inspect.signature(cls.__init__).parameters["factor"].default))
        _check_factor(factor)
        return {**option_types(factor), **super().option_types(layer_options)}

    def _junction_tables(self) -> tuple[Tensor, Tensor, Tensor]:
        """``(between, gather, scatter)``, one row per junction of two factors: the shuffle seen in
        factors' order, the single gather that replaces (output reordering, shuffle, input
        reordering), and its inverse."""
        order, inverse = self.factors[0].fusion_perms()
        n = order.numel()
        between = torch.stack([s.index.index_select(0, order) for s in self.shuffles]) if self.shuffles else (
            torch.empty(0, n, dtype=torch.long, device=order.device))
        gather = inverse[between]
        return between, gather, torch.argsort(gather, dim=-1)

    @staticmethod
    def _refresh_junctions(module: Stack, incompatible_keys: object) -> None:
        with torch.no_grad():
            for name, table in zip(_JUNCTIONS, module._junction_tables()):
                getattr(module, name).copy_(table)

    def _between(self) -> nn.Module:
        layers: list[nn.Module] = []
        if self.norm == "batchnorm":
            layers.append(_FeatureBatchNorm(self.size))
        elif self.norm == "layernorm":
            layers.append(nn.LayerNorm(self.size))
        if self.activation is not None:
            layers.append(ACTIVATIONS[self.activation]())
        return nn.Sequential(*layers)

    @property
    def traceable(self) -> bool:  # type: ignore[override]
        return not self._fusable_factors and all(getattr(f, "traceable", True) for f in self.factors)

    @property
    def is_linear(self) -> bool:
        return self.activation is None and self.norm is None

    def export_form(self) -> Stack:
        """A copy whose factors are their export forms (the fused FFT path off).  A cascade whose
        factors' export forms carry the wide signal as ``wide_parts`` real parts side by side (AFDF's
        complex cascade) shuffles each part alike."""
        new = copy.deepcopy(self)
        new.factors = nn.ModuleList(f.export_form() for f in new.factors)
        new._fusable_factors = False
        parts = getattr(new.factors[0], "wide_parts", 1) if self._cascade else 1
        if parts > 1:
            new.shuffles = nn.ModuleList(
                Permutation(torch.cat([s.index + k * self.size for k in range(parts)]), s.kind) for s in self.shuffles
            )
        return new

    def low_precision_native(self, rows: int, device: torch.device, dtype: torch.dtype) -> bool:
        return all(f.low_precision_native(rows, device, dtype) for f in self.factors)

    def _fusable(self, z: Tensor) -> bool:
        if not (self.is_linear and self._fusable_factors):
            return False
        rows = rows_of(z.shape[:-1])
        dtype = compute_dtype(z)
        return all(f.fusable(rows, z.device, dtype) for f in self.factors)

    def _fused(self, z: Tensor) -> Tensor:
        """A linear stack of :class:`~structlayers.base.Fusable` factors with every gather between
        two factors fused into one: the output reordering of factor ``i``, the shuffle and the input
        reordering of factor ``i + 1`` compose into one permutation, applied in one buffer with the
        next factor's input scale and the bias carried through it
        (:func:`~structlayers.transforms.dct.permute_scale`)."""
        order, inverse = self.factors[0].fusion_perms()
        # Every factor's scale in the fused order, and every junction's bias carried through it, in
        # a few batched ops rather than a few tiny ops per factor.
        a = torch.stack([f.fusion_scale() for f in self.factors]).index_select(1, order)
        shifts = None
        if any(f.bias is not None for f in self.factors[:-1]):
            biases = torch.stack([f.bias if f.bias is not None else torch.zeros_like(a[0]) for f in self.factors[:-1]])
            shifts = torch.gather(biases, 1, self._junction_between) * a[1:]
        v = permute_scale(z, order, inverse, a[0])
        for i, f in enumerate(self.factors):
            u = f.fused_core(v)
            if i == self.depth - 1:
                break
            shift = shifts[i] if shifts is not None else None
            v = permute_scale(u, self._junction_gather[i], self._junction_scatter[i], a[i + 1], shift)
        return permute_scale(u, inverse, order, None, self.factors[-1].bias)

    def forward(self, x: Tensor) -> Tensor:
        if x.numel() == 0:
            return self.empty_forward(x)
        z = self.pad(x)
        if self._fusable(z):
            return self.crop(self._fused(z))
        if self._cascade:
            for i, f in enumerate(self.factors):
                z = f.cascade_forward(self.shuffles[i - 1](z) if i else z)
            return self.crop(self.factors[-1].cascade_output(z))
        for i, f in enumerate(self.factors):
            if i:
                z = self.between[i - 1](self.shuffles[i - 1](z))
            z = f(z)
        return self.crop(z)

    def square_reference(self, z: Tensor) -> Tensor:
        """Factors' reference maps, their biases and the shuffles, on float64 CPU rows.  A factor
        that is not a :class:`SquareLayer` of the stack's size (a third-party plugin, or a factor
        that pads to a larger block size itself) contributes its ``to_dense()``."""
        if self._cascade:
            for i, f in enumerate(self.factors):
                z = f.cascade_reference(z.index_select(-1, self.shuffles[i - 1].index.cpu()) if i else z)
            return self.factors[-1].cascade_output(z)
        for i, f in enumerate(self.factors):
            if i:
                z = z.index_select(-1, self.shuffles[i - 1].index.cpu())
            if isinstance(f, SquareLayer) and f.size == self.size:
                z = f.square_reference(z)
                if f.bias is not None:
                    z = z + f.bias.detach().double().cpu()
            else:
                weight, bias = f.to_dense()
                z = z @ weight.detach().double().cpu().T
                if bias is not None:
                    z = z + bias.detach().double().cpu()
        return z

    def to_dense(self) -> tuple[Tensor, Tensor | None]:
        """The reference map applied to zero (bias) and to the identity (weight): O(depth N^2 log N)
        for FFT factors instead of the O(depth N^3) of multiplying dense factor matrices."""
        if not self.is_linear:
            raise NotCollapsibleError(
                f"layer 'stack' with activation={self.activation!r}, norm={self.norm!r} is not linear: no dense form"
            )
        check_allocation(48 * (self.in_features + 1) * self.size,
                         f"the dense form of layer 'stack' ({self.in_features} -> {self.out_features}, "
                         f"size {self.size})")
        dtype = dense_weight_dtype(self)
        probe = torch.cat([torch.zeros(1, self.size, dtype=torch.float64), torch.eye(self.size, dtype=torch.float64)])
        out = self.square_reference(probe[: self.in_features + 1])[:, : self.out_features]
        bias = out[0]
        weight = (out[1:] - bias).T.to(dtype).contiguous()
        any_bias = any(getattr(f, "bias", None) is not None for f in self.factors)
        return weight, bias.to(dtype) if any_bias else None

    def flop_count(self, batch_shape: tuple[int, ...] | int = (1,)) -> FlopCount:
        rows = rows_of(batch_shape)
        total = FlopCount()
        for i, f in enumerate(self.factors):
            total = total + (f.cascade_flop_count(rows, i > 0) if self._cascade else f.flop_count(rows))
        per_between = (self.activation is not None) + 2 * (self.norm is not None)
        return total + FlopCount(elementwise=per_between * rows * self.size * (self.depth - 1))

    @torch.no_grad()
    def project_(self, weight: Tensor, bias: Tensor | None, sweeps: int = 2, *,
                 refine_steps: int = REFINE_STEPS) -> None:
        """The nearest member of the stack's family that L-BFGS finds from a closed-form start
        (``refine_steps`` iterations on the observed entries, :func:`refine_`; 0 keeps the start).

        The start is block coordinate descent over the factors, from the identity: for
        factor ``i``, with ``Q`` the product before it and ``R`` the one after (shuffles included),
        the unconstrained optimum ``Q^+ G R^+`` (ridge pseudo-inverses) is projected onto the factor's
        family by its own ``project_``, and kept only if the error on the observed block drops.  The
        first update of the first factor is thus the one-factor projection (the shuffles around it
        are exact permutations); later ones refine.  Factor biases are zero except the last one's,
        which takes the target's.  The start alone leaves 0.35-0.7 relative error on random members
        of a 2-3 factor ACDC stack; the refinement recovers them (a local method: not every member).
        Raises ``NotImplementedError`` for a nonlinear stack or factors without a projection."""
        if not self.is_linear:
            raise NotImplementedError("a nonlinear stack (activation or norm) has no closed-form projection")
        n = self.size
        target, mask = observed_target(weight, n)
        identity = torch.eye(n, dtype=torch.float64)
        for f in self.factors:
            f.project_(identity.to(dense_weight_dtype(f)), None)
        maps = [identity.clone() for _ in self.factors]
        perms = [identity.index_select(1, s.index.cpu()) for s in self.shuffles]

        def chain(items: list[Tensor]) -> Tensor:
            out = identity
            for m in items:
                out = out @ m
            return out

        def pinv(m: Tensor) -> Tensor:
            gram = m.T @ m
            return torch.linalg.solve(gram + 1e-6 * float(torch.diagonal(gram).mean()) * identity, m.T)

        for _ in range(max(1, sweeps)):
            for i, f in enumerate(self.factors):
                before = chain([x for j in range(i) for x in (maps[j], perms[j])])
                after = chain([x for j in range(i, self.depth - 1) for x in (perms[j], maps[j + 1])])
                current = relative_error(before @ maps[i] @ after, target, mask)
                goal = torch.where(mask, target, before @ maps[i] @ after)
                saved = {k: v.clone() for k, v in f.state_dict().items()}
                f.project_((pinv(before) @ goal @ pinv(after.T).T).T.to(dense_weight_dtype(f)), None)
                m = f.to_dense()[0].double().cpu().T
                if relative_error(before @ m @ after, target, mask) < current:
                    maps[i] = m
                else:
                    f.load_state_dict(saved)
        last = self.factors[-1]
        if last.bias is not None:
            last.bias.copy_(padded_bias(bias, n))
        refine_(self, weight, bias, refine_steps)

    def params(self) -> int:
        norm = 2 * self.size * (self.depth - 1) if self.norm is not None else 0
        return sum(f.params() for f in self.factors) + norm

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, factor={self.factor!r}, depth={self.depth}, shuffle={self.shuffle!r}, "
            f"size={self.size}, activation={self.activation!r}, norm={self.norm!r}"
        )


__all__ = ["Stack", "StructuredLinear"]
