"""Models built with their located weights: ``create_timm_model`` (through timm's own loader),
``torchvision_state_dict`` and ``create_torchvision_model`` (strict loads, legacy DenseNet keys renamed).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import WeightsError
from ..frozen import tag_pretrained
from ..logging import get_logger
from ..weights import load_weights_file
from ._cache import locate_weights
from ._identifiers import Library, import_library, parse_identifier, torchvision_weights_enums
from ._sources import WeightsSource, random_init


def _first_line(e: Exception) -> str:
    """The start of an exception's message, on one line (torch's load errors run to thousands of keys)."""
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text[:400]}{'…' if len(text) > 400 else ''}"


_BUILDERS = {"timm": "create_timm_model", "torchvision": "create_torchvision_model / torchvision_state_dict"}


def _name_for(identifier: str, library: Library, *, pretrained: bool, file: str | Path | None = None) -> str:
    """The parsed name of an identifier that must belong to ``library``; a file needs pretrained weights."""
    if not pretrained and file is not None:
        raise WeightsError(f"{identifier}: a weights file ({file}) was given but pretrained is false")
    found, name = parse_identifier(identifier, require_weights=pretrained)
    if found != library:
        raise WeightsError(f"{identifier} is a {found} identifier; use {_BUILDERS[found]}")
    return name


def create_timm_model(
    identifier: str,
    *,
    pretrained: bool,
    file: str | Path | None = None,
    allow_download: bool | None = None,
    package: str | None = None,
    config_key: str | None = None,
    **timm_kwargs: Any,
) -> tuple[nn.Module, WeightsSource]:
    """``timm.create_model`` with its weights from ``locate_weights``; returns the model and its source.

    The returned model is tagged (``frozen.tag_pretrained``) so that checkpoints refer to its frozen
    weights instead of storing them. The weights go through timm's own loader (``pretrained_cfg_overlay=dict(file=...)``: timm 1.0's
    ``load_state_dict`` reads with ``weights_only=True``), so timm adapts them as usual to
    ``num_classes``/``in_chans``/``features_only``. ``pretrained=False`` builds a randomly initialized
    model (a bare architecture name is fine then). A ``pretrained_cfg_overlay`` in ``timm_kwargs``
    is kept (its ``file`` replaced by the located one).
    """
    timm = import_library("timm")
    name = _name_for(identifier, "timm", pretrained=pretrained, file=file)
    if not pretrained:
        return timm.create_model(name, pretrained=False, **timm_kwargs), random_init(identifier)
    source = locate_weights(identifier, file, allow_download=allow_download, package=package, config_key=config_key)
    overlay = dict(timm_kwargs.pop("pretrained_cfg_overlay", None) or {})
    overlay["file"] = str(source.path)
    # timm loads non-strictly when num_classes differs from the weights' (it drops the classifier and
    # would leave any other missing tensor random too): load strictly with the published head, then
    # replace the head.
    num_classes = timm_kwargs.pop("num_classes", None)
    try:
        model = timm.create_model(source.identifier, pretrained=True, pretrained_cfg_overlay=overlay, **timm_kwargs)
        if num_classes is not None and num_classes != getattr(model, "num_classes", num_classes):
            model.reset_classifier(num_classes)
    except Exception as e:  # timm raises RuntimeError/KeyError/UnpicklingError for a file that does not fit
        raise WeightsError(f"cannot load {source.path} into timm's {source.identifier}: {_first_line(e)}") from e
    tag_pretrained(model, source.identifier)
    get_logger("pretrained").info("weights: %s", source.describe())
    return model, source


# Before torch 0.4 DenseNet layers held submodules named 'norm.1', 'conv.2', ...; torchvision's
# published DenseNet files still use those names, and its builders rename them on load.
_DENSENET_OLD_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.([12]\.(?:weight|bias|running_mean|running_var|num_batches_tracked))$"
)


def _torchvision_key_fixes(name: str, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    if not name.startswith("DenseNet"):
        return state
    out = {}
    for key, value in state.items():
        m = _DENSENET_OLD_KEY.match(key)
        out[m.group(1) + m.group(2) if m else key] = value
    return out


def torchvision_state_dict(
    identifier: str,
    file: str | Path | None = None,
    *,
    allow_download: bool | None = None,
    package: str | None = None,
    config_key: str | None = None,
) -> tuple[dict[str, torch.Tensor], WeightsSource]:
    """The state dict of torchvision weights (read with ``weights_only=True``) and where it came from.

    Key names are those of today's torchvision modules (DenseNet's legacy ``norm.1`` names are renamed
    as torchvision's builder does), so it loads into ``torchvision.models.<model>(weights=None)``.
    """
    name = _name_for(identifier, "torchvision", pretrained=True)
    source = locate_weights(identifier, file, allow_download=allow_download, package=package, config_key=config_key)
    assert source.path is not None
    return _torchvision_key_fixes(name, load_weights_file(source.path)), source


def _torchvision_model_name(enum_name: str) -> str:
    for model_name, cls in torchvision_weights_enums().items():
        if cls.__name__ == enum_name:
            return model_name
    raise WeightsError(f"no torchvision model uses {enum_name}")


def create_torchvision_model(
    identifier: str,
    *,
    pretrained: bool,
    file: str | Path | None = None,
    allow_download: bool | None = None,
    package: str | None = None,
    config_key: str | None = None,
    **model_kwargs: Any,
) -> tuple[nn.Module, WeightsSource]:
    """``torchvision.models.get_model`` with weights from ``torchvision_state_dict`` (strict load).

    ``pretrained=False`` accepts a model name too (``torchvision:densenet201``).
    """
    tvm = import_library("torchvision.models")
    name = _name_for(identifier, "torchvision", pretrained=pretrained, file=file)
    enum_name = name.partition(".")[0]
    if not pretrained:
        model_name = _torchvision_model_name(enum_name) if "." in name else name
        return tvm.get_model(model_name, weights=None, **model_kwargs), random_init(identifier)
    state, source = torchvision_state_dict(  # before building: missing weights fail fast
        identifier, file, allow_download=allow_download, package=package, config_key=config_key
    )
    model = tvm.get_model(_torchvision_model_name(enum_name), weights=None, **model_kwargs)
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise WeightsError(f"{source.path} does not fit torchvision's {enum_name} model: {_first_line(e)}") from e
    tag_pretrained(model, source.identifier)
    get_logger("pretrained").info("weights: %s", source.describe())
    return model, source
