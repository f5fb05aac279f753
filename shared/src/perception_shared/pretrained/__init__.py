"""Pretrained backbone weights resolved the way timm and torchvision do it, offline once cached.

Identifiers name the weights, not only the architecture:

* timm: ``resnet50.a1_in1k`` or ``timm:resnet50.a1_in1k`` (architecture and pretrained tag; a name
  without a tag is an error, since timm would silently pick its default weights);
* torchvision: ``torchvision:DenseNet201_Weights.IMAGENET1K_V1`` (a weights enum; ``.DEFAULT`` resolves
  to the member it stands for).

``locate_weights`` looks, in this order, in

1. a local file or folder given by the user (``--weights PATH`` or a config key);
2. the Hugging Face hub cache for timm weights hosted on the hub (the file timm would fetch:
   ``model.safetensors``, else ``pytorch_model.bin``; ``HF_HUB_CACHE``, else ``HF_HOME/hub``, else
   ``~/.cache/huggingface/hub``), then the torch hub cache (``$TORCH_HOME/hub/checkpoints/<file name
   of the URL>``) for torchvision weights and for timm weights published by URL;
3. a download into those caches through ``huggingface_hub.hf_hub_download`` /
   ``torch.hub.download_url_to_file``, only when online: ``HF_HUB_OFFLINE`` (or
   ``TRANSFORMERS_OFFLINE``) unset and the caller does not forbid it.

Weights found nowhere are one ``WeightsError`` naming the model and the three ways to supply them.
Cached files are checked: a torch hub file whose name carries a sha256 prefix (torchvision's
``densenet201-c1103571.pth``) must match it, as ``torch.hub``'s ``check_hash`` requires of downloads,
and a Hugging Face cache file stored as a blob named by its sha256 must match that name. Every
``WeightsSource`` records the sha256 of the file it names, for the run's metadata.

Files are read with ``weights_only=True`` (timm 1.0's own file loader, used by ``create_timm_model``,
does the same) or as safetensors: nothing is unpickled.

Where each rule lives (import everything from ``perception_shared.pretrained``):

* ``_identifiers``: parsing identifiers, their canonical form, where each one is published;
* ``_cache``: the lookup order, the cache folders, the checks of cached files, downloads (``locate_weights``);
* ``_hashes``: sha256 of files, the published hashes, weights manifests, ``check_against_manifest``;
* ``_builders``: ``create_timm_model``, ``torchvision_state_dict``, ``create_torchvision_model``;
* ``_preprocessing``: ``preprocessing_for``;
* ``_sources``: ``WeightsSource``, ``WeightsRequest``, ``random_init``;
* ``_command``: the ``<package> weights list|fetch|check`` command.
"""

from ._builders import create_timm_model, create_torchvision_model, torchvision_state_dict
from ._cache import hf_hub_cache_dir, is_offline, locate_weights, torch_hub_checkpoints_dir
from ._command import add_weights_subcommands, weights_command
from ._hashes import PUBLISHED_SHA256, check_against_manifest, expected_hash, load_weights_manifest, sha256_file
from ._identifiers import TIMM_PREFIX, TORCHVISION_PREFIX, Library, canonical_identifier, parse_identifier
from ._preprocessing import preprocessing_for
from ._sources import SourceKind, WeightsRequest, WeightsSource, random_init

__all__ = [
    "PUBLISHED_SHA256",
    "TIMM_PREFIX",
    "TORCHVISION_PREFIX",
    "Library",
    "SourceKind",
    "WeightsRequest",
    "WeightsSource",
    "add_weights_subcommands",
    "canonical_identifier",
    "check_against_manifest",
    "create_timm_model",
    "create_torchvision_model",
    "expected_hash",
    "hf_hub_cache_dir",
    "is_offline",
    "load_weights_manifest",
    "locate_weights",
    "parse_identifier",
    "preprocessing_for",
    "random_init",
    "sha256_file",
    "torch_hub_checkpoints_dir",
    "torchvision_state_dict",
    "weights_command",
]
