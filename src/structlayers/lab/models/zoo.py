"""Models from timm and torchvision by name (``timm:resnet18``, ``torchvision:mobilenet_v3_small``),
randomly initialised (nothing is downloaded), for ``structlayers count | replace | train``.

Both packages are optional (the ``zoo`` extra).  Keyword options go to ``timm.create_model`` /
``torchvision.models.get_model`` (``-m num_classes=10``, ``-m img_size=32`` for a timm ViT...).

torchvision ships compiled operators (detection ops such as ``nms``) built against one torch build;
next to another build (a CUDA torchvision wheel with a CPU torch) they fail to load and
``import torchvision`` fails while registering their fake kernels.  The classification models are
plain Python, so :func:`import_torchvision` then defines the two operators that torchvision registers
unconditionally, with kernels that raise, and imports it again: models build and run, and calling a
detection operator raises a clear error instead.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

from torch import nn

PREFIXES = ("timm", "torchvision")
_SCHEMAS = {
    "nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}
_stub_library: Any = None


def is_zoo_name(name: str) -> bool:
    """Whether ``name`` names a zoo model (``timm:<name>`` or ``torchvision:<name>``)."""
    prefix, sep, rest = name.partition(":")
    return bool(sep) and prefix in PREFIXES and bool(rest)


def _missing_extension(err: BaseException) -> bool:
    return isinstance(err, RuntimeError) and "torchvision::" in str(err) and "does not exist" in str(err)


def _define_stub_operators() -> None:
    """The operators torchvision's import registers fake kernels for, with kernels that raise."""
    global _stub_library
    import torch

    _stub_library = torch.library.Library("torchvision", "FRAGMENT")
    for name, schema in _SCHEMAS.items():
        try:
            getattr(torch.ops.torchvision, name)
            continue  # loaded after all
        except (AttributeError, RuntimeError):
            pass
        _stub_library.define(schema)

        def unavailable(*args: Any, _name: str = name) -> Any:
            raise RuntimeError(f"torchvision::{_name} is unavailable: torchvision's compiled operators did not "
                               "load against this torch build (install the torchvision build matching torch)")

        _stub_library.impl(name, unavailable, "CompositeExplicitAutograd")


def import_torchvision() -> Any:
    """``import torchvision``, working around compiled operators that do not load (module docs)."""
    try:
        return importlib.import_module("torchvision")
    except RuntimeError as err:
        if not _missing_extension(err):
            raise
    for module in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[module]
    _define_stub_operators()
    return importlib.import_module("torchvision")


def _require(package: str) -> Any:
    try:
        if package in ("timm", "torchvision"):
            import_torchvision()  # timm imports torchvision
        return importlib.import_module(package)
    except ImportError as err:
        raise ValueError(f"{package} models need the {package} package (pip install 'structlayers[zoo]'): "
                         f"{err}") from None


def build_zoo_model(name: str, **options: Any) -> nn.Module:
    """A randomly initialised ``timm:<name>`` / ``torchvision:<name>`` model."""
    prefix, _, model = name.partition(":")
    if prefix == "timm":
        timm = _require("timm")
        if not timm.is_model(model):
            raise ValueError(f"timm has no model {model!r} (timm.list_models() lists them)")
        return timm.create_model(model, pretrained=False, **options)
    if prefix == "torchvision":
        torchvision = _require("torchvision")
        if model not in torchvision.models.list_models():
            raise ValueError(f"torchvision has no model {model!r} (torchvision.models.list_models() lists them)")
        return torchvision.models.get_model(model, weights=None, **options)
    raise ValueError(f"unknown model zoo {prefix!r}; expected one of {PREFIXES}")


def zoo_input_shape(name: str, model: nn.Module) -> tuple[int, ...]:
    """The ``(C, H, W)`` input of one image for ``model``: timm's data config (which follows
    ``img_size`` / ``in_chans`` options), ``(3, 224, 224)`` for torchvision classifiers."""
    if name.startswith("timm:"):
        timm = _require("timm")
        shape = tuple(timm.data.resolve_model_data_config(model)["input_size"])
        embed = getattr(model, "patch_embed", None)
        if embed is not None and getattr(embed, "img_size", None) is not None:
            shape = (shape[0], *embed.img_size)
        return shape
    return (3, 224, 224)
