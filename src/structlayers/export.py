"""Export models that hold layer plugins to ONNX or ``torch.export``.

FFT-based layers do not export as they run: ONNX has no complex tensors and its DFT operator is
recent and unevenly supported, and the fast paths use custom autograd functions and in-place
kernels.  :func:`export` therefore swaps every outermost plugin for an exportable form first
(:func:`exportable`), one of:

- ``"dense-dct"``: the plugin's :meth:`~structlayers.base.StructuredLinear.export_form`, the same
  parameters with its transforms as matmuls by fixed matrices (ACDC's dense DCT, AFDF's DFT in real
  arithmetic, stacks factor by factor); structure and parameter count are kept;
- ``"collapsed"``: one ``nn.Linear`` with the plugin's exact effective weight (:func:`dense_linear`);
  nonlinear plugins (stacks with activations) keep their ``dense-dct`` form.

ONNX export uses PyTorch's TorchScript-based exporter unless ``onnxscript`` (which the
``torch.export``-based exporter needs) is installed; ``onnx`` itself is imported only here.
"""

from __future__ import annotations

import copy
import importlib.util
import warnings
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from structlayers.base import dense_linear
from structlayers.collapse import _plugins, _replace_plugin

FORMATS = ("onnx", "torch.export")
FORMS = ("dense-dct", "collapsed")


class Rows(nn.Module):
    """``layer`` on ``(..., in)`` inputs flattened to ``(rows, in)`` and reshaped back: every matmul
    of the exported graph is 2-D (onnxruntime 1.19's MatMul + BatchNormalization fusion assumes a
    2-D MatMul input, and a pointwise convolution followed by batch norm produces that pattern)."""

    def __init__(self, layer: nn.Module, in_features: int, out_features: int) -> None:
        super().__init__()
        self.layer, self.in_features, self.out_features = layer, in_features, out_features

    def forward(self, x: Tensor) -> Tensor:
        return self.layer(x.reshape(-1, self.in_features)).reshape(*x.shape[:-1], self.out_features)


def exportable(model: nn.Module, form: Literal["dense-dct", "collapsed"] = "dense-dct") -> nn.Module:
    """A copy of ``model`` (in eval mode) with every outermost plugin in its exportable ``form``."""
    if form not in FORMS:
        raise ValueError(f"unknown export form {form!r}; expected one of {FORMS}")
    model = copy.deepcopy(model)
    for name, layer in _plugins(model).items():
        new = dense_linear(layer) if form == "collapsed" and layer.is_linear else layer.export_form()
        model = _replace_plugin(model, name, Rows(new, layer.in_features, layer.out_features))
    return model.eval()


def _args(example: Any) -> tuple:
    return example if isinstance(example, tuple) else (example,)


def export(
    model: nn.Module,
    example: Any,
    format: Literal["onnx", "torch.export"] = "onnx",
    form: Literal["dense-dct", "collapsed"] = "dense-dct",
    path: str | Path | None = None,
    *,
    opset: int = 17,
    dynamic_batch: bool = True,
) -> Path | torch.export.ExportedProgram:
    """Export ``model`` traced on ``example`` (a tensor or a tuple of positional inputs) with its
    plugins in ``form`` (see the module docs).

    ``format="onnx"`` writes ``path`` (required) and returns it; the first dimension of every input
    and output is dynamic when ``dynamic_batch``.  ``format="torch.export"`` returns the
    :class:`torch.export.ExportedProgram` (saved to ``path`` with :func:`torch.export.save` when
    given), with a dynamic batch dimension when ``dynamic_batch`` and the batch has more than one row.
    """
    if format not in FORMATS:
        raise ValueError(f"unknown export format {format!r}; expected one of {FORMATS}")
    ready = exportable(model, form)
    args = _args(example)
    if format == "torch.export":
        dynamic = None
        if dynamic_batch and all(isinstance(a, torch.Tensor) and a.dim() and a.shape[0] > 1 for a in args):
            batch = torch.export.Dim("batch")
            dynamic = tuple({0: batch} for _ in args)
        with torch.no_grad():
            program = torch.export.export(ready, args, dynamic_shapes=dynamic)
        if path is not None:
            torch.export.save(program, str(path))
        return program
    if path is None:
        raise ValueError("export(format='onnx') needs a path to write the model to")
    try:
        import onnx  # noqa: F401  (the exporter needs it; fail with a clear message if it is missing)
    except ImportError as err:
        raise ImportError("ONNX export needs the onnx package: pip install 'structlayers[export]'") from err
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    inputs = [f"input{i}" for i in range(len(args))]
    with torch.no_grad():
        outputs = ready(*args)
    n_out = len(outputs) if isinstance(outputs, (tuple, list)) else 1
    names = [f"output{i}" for i in range(n_out)]
    axes = {n: {0: "batch"} for n in inputs + names} if dynamic_batch else None
    use_dynamo = importlib.util.find_spec("onnxscript") is not None
    with warnings.catch_warnings(), torch.no_grad():
        warnings.filterwarnings("ignore", category=DeprecationWarning, message=".*TorchScript-based ONNX export.*")
        # The plugins' own shape checks (the batch is dynamic, the feature size is not) trace as
        # constants, correctly; a tracer warning from anywhere else -- a branch on the model's data,
        # which the graph bakes in -- reaches the caller.
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning, module=r"structlayers\.")
        torch.onnx.export(ready, args, str(path), input_names=inputs, output_names=names, opset_version=opset,
                          dynamic_axes=axes, dynamo=use_dynamo)
    return path
