"""Shared machinery of the square structured layers: padding/truncation for ``in != out`` and
the block (``groups``) layout.

Dimension change is done by zero-padding the input to a square size ``N >= max(in, out)`` and
keeping the first ``out`` outputs.  The alternative, extra dense ``nn.Linear`` layers that create
or fold the missing dimensions, adds O(N * |in - out|) dense parameters and FLOPs, which defeats
the compression; padding is exact, free, and keeps ``to_dense`` a sub-block of the square map.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from structlayers.base import StructuredLinear, dense_weight_dtype
from structlayers.configs import Words
from structlayers.transforms.shuffle import SHUFFLES
from structlayers.utils.memory import check_allocation

#: The words of the shuffle options (a stack's ``shuffle``, a factor's ``inner_shuffle``).
SHUFFLE_WORDS = Words(SHUFFLES)


def square_size(layer: str, in_features: int, out_features: int, groups: int, pow2_blocks: bool) -> tuple[int, int]:
    """``(N, block)``: the padded square size and the length of each of its ``groups`` blocks.

    Blocks have length ``ceil(max(in, out) / groups)``, rounded up to a power of two when
    ``pow2_blocks`` (sizes for which the FFT is fastest).
    """
    if not isinstance(groups, int) or isinstance(groups, bool) or groups < 1:
        raise ValueError(f"layer {layer!r}: groups must be a positive integer, got {groups!r}")
    need = max(in_features, out_features)
    if groups > need:
        raise ValueError(f"layer {layer!r}: groups={groups} exceeds the layer size {need}")
    block = -(-need // groups)
    if pow2_blocks:
        block = 1 << (block - 1).bit_length()
    return block * groups, block


class SquareLayer(StructuredLinear):
    """A layer computed on a padded square of size ``size``.

    ``square_reference`` is the unfused, float64, CPU evaluation of the square map (no bias) that
    dense forms are built from, kept separate from the optimised ``forward`` so that tests comparing
    ``to_dense()`` with the layer applied to the identity compare two independent computations.
    """

    size: int

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__(in_features, out_features)
        self.register_load_state_dict_pre_hook(SquareLayer._accept_unrecorded_structure)

    def structure(self) -> dict[str, int]:
        """What the parameters mean besides their shapes: the square size and the block length
        (``groups`` blocks); saved in the ``state_dict`` so that loading parameters of another
        layout (``groups=1`` into ``groups=2``, same shapes) is an error, not a silently other map."""
        return {k: int(getattr(self, k)) for k in ("size", "block") if hasattr(self, k)}

    def get_extra_state(self) -> Tensor:
        # A tensor (size, block), not a dict, so that tracing exporters (TorchScript, ONNX) accept it.
        structure = self.structure()
        return torch.tensor([structure.get("size", 0), structure.get("block", 0)])

    def set_extra_state(self, state: Any) -> None:
        if isinstance(state, Tensor):
            state = {k: v for k, v in zip(("size", "block"), state.tolist()) if v}
        mine = self.structure()
        if isinstance(state, dict) and state != mine:
            def describe(s: dict[str, int]) -> str:
                groups = f", {s['size'] // s['block']} group(s) of {s['block']}" if s.get("block") else ""
                return f"size {s.get('size')}{groups}"
            raise ValueError(f"layer {self.name!r}: the state_dict was saved from a layer of {describe(state)}, "
                             f"this one has {describe(mine)}; build it with the same groups / pow2_blocks")

    @staticmethod
    def _accept_unrecorded_structure(module: SquareLayer, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        # State dicts saved before the structure was recorded load as before (shapes checked only).
        state_dict.setdefault(prefix + "_extra_state", module.get_extra_state())

    @abstractmethod
    def square_reference(self, z: Tensor) -> Tensor:
        """The square map without bias on float64 CPU rows ``z (..., size)``."""

    def to_dense(self) -> tuple[Tensor, Tensor | None]:
        """The reference map applied to the identity, cut to ``(in, out)``, and the layer's own
        ``bias`` (added after the square map).  A stack, whose biases sit between its factors,
        overrides this."""
        # float64 identity, transform intermediates (complex for AFDF): a few N x N buffers.
        check_allocation(48 * self.size**2, f"the dense form of layer {self.name!r} (size {self.size})")
        m = self.square_reference(torch.eye(self.size, dtype=torch.float64))[: self.in_features, : self.out_features]
        bias = self.bias.detach().clone() if self.bias is not None else None
        return m.T.to(dense_weight_dtype(self)).contiguous(), bias

    def empty_forward(self, x: Tensor) -> Tensor:
        """The output for an input with no rows, ``(..., 0, out)`` (FFT libraries reject empty
        transforms), connected to the input and to every parameter so that a backward pass gives
        them zero gradients, as any other batch would."""
        anchor = sum((p.real if p.is_complex() else p).sum() * 0 for p in self.parameters())
        return self.crop(self.pad(x)) + anchor

    def pad(self, x: Tensor) -> Tensor:
        self.check_input(x)
        extra = self.size - self.in_features
        return F.pad(x, (0, extra)) if extra else x

    def crop(self, y: Tensor) -> Tensor:
        return y[..., : self.out_features] if self.size != self.out_features else y
