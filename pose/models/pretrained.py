"""Load a local ImageNet checkpoint into a backbone, loudly.

The pose repos this library replaces load ImageNet weights with ``strict=False``: when key prefixes
do not match, nothing is loaded and training silently starts from random weights. Here every
backbone parameter and buffer must come from the file (except BN ``num_batches_tracked`` counters,
which old checkpoints lack), and shapes must match; otherwise a :class:`ValueError` names the file
and the offending keys. Nothing is ever downloaded.

Checkpoint keys the backbone does not have are dropped:

* classifier / ImageNet-head keys (:data:`CLASSIFIER_PREFIXES`): ``fc.`` (torchvision ResNet),
  ``incre_modules.``, ``downsamp_modules.``, ``final_layer.``, ``classifier.`` (HRNet ImageNet);
* keys the backbone declares unused in ``backbone.unused_checkpoint_prefixes`` (the single-scale
  HRNet drops the 3 lower-resolution fuse rows of the classifier's last stage-4 module);
* anything else is dropped too, but listed in a :class:`UserWarning` and in the returned report.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

CLASSIFIER_PREFIXES: tuple[str, ...] = (
    "fc.", "incre_modules.", "downsamp_modules.", "final_layer.", "classifier."
)
"""Checkpoint key prefixes of ImageNet classifier heads; ignored when the backbone lacks them."""

WRAPPER_KEYS: tuple[str, ...] = ("state_dict", "model")
"""Keys under which a checkpoint may nest its state dict (``{'state_dict': ...}``, ``{'model': ...}``)."""

_SHOW = 10  # keys named in an error message before "... and N more"


@dataclass(frozen=True)
class LoadReport:
    """What :func:`load_backbone_checkpoint` did.

    Attributes:
        path: the checkpoint file.
        loaded: backbone keys set from the file.
        ignored_classifier: checkpoint keys dropped as classifier keys or declared unused.
        ignored_other: other checkpoint keys the backbone does not have (also warned about).
    """

    path: Path
    loaded: tuple[str, ...]
    ignored_classifier: tuple[str, ...]
    ignored_other: tuple[str, ...]


def _name_some(keys: list[str]) -> str:
    shown = ", ".join(keys[:_SHOW])
    return shown + (f", ... and {len(keys) - _SHOW} more" if len(keys) > _SHOW else "")


def _load_error_reason(e: Exception) -> str:
    text = str(e)
    marker = "WeightsUnpickler error:"
    if marker in text:
        detail = text.split(marker, 1)[1].split("Check the documentation", 1)[0]
        detail = " ".join(detail.split()).split(". ")[0].rstrip(".")
        if "Unsupported global" in detail:  # a pickle with Python objects weights_only=True refuses
            return (
                f"it holds Python objects besides tensors: {detail}. If you trust the file, save just "
                f"its state dict: torch.save(torch.load(path, weights_only=False)['state_dict'], new_path)"
            )
        return f"not a pickle/torch file: {detail}"
    reason = " ".join(text.split())
    reason = reason if len(reason) <= 300 else reason[:300] + " ..."
    return f"{type(e).__name__}: {reason}"


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a checkpoint file into a flat ``{key: tensor}`` dict.

    Accepts a plain state dict or one nested under ``'state_dict'`` / ``'model'``; strips a leading
    ``'module.'`` (DataParallel / DDP) from the keys. Uses ``torch.load(weights_only=True)``.

    Raises:
        FileNotFoundError: ``path`` does not exist or is not a file.
        ValueError: the file is not a torch checkpoint, or holds no state dict of tensors.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        what = "is not a file" if path.exists() else "not found"
        where = "" if path.is_absolute() else f" (relative to the working directory {Path.cwd()})"
        raise FileNotFoundError(f"backbone checkpoint {what}: {path}{where}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # unpickling / zip / weights_only errors all mean "cannot use this file"
        raise ValueError(f"{path} is not a readable torch checkpoint ({_load_error_reason(e)})") from e
    if isinstance(obj, Mapping):
        for key in WRAPPER_KEYS:
            if key in obj and isinstance(obj[key], Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not obj:
        raise ValueError(
            f"{path}: expected a state dict (optionally under {list(WRAPPER_KEYS)}), got "
            f"{'an empty mapping' if isinstance(obj, Mapping) else type(obj).__name__}"
        )
    bad = [str(k) for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise ValueError(
            f"{path}: not a state dict of tensors ({len(bad)} non-tensor entries: {_name_some(bad)}; "
            f"a wrapped state dict must sit under one of {list(WRAPPER_KEYS)})"
        )
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in obj.items()}


def load_backbone_checkpoint(backbone: nn.Module, path: str | Path) -> LoadReport:
    """Copy the weights of the local checkpoint ``path`` into ``backbone`` (in place).

    Every backbone parameter and buffer (BN ``num_batches_tracked`` excepted) must be in the file
    with the same shape; checkpoint keys the backbone lacks are ignored (see the module docstring).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is not a torch checkpoint; backbone keys are missing from it (the
            message names the file, the first missing keys and their count); or shapes differ
            (the message names the file and each mismatching key with both shapes).
    """
    path = Path(path).expanduser()
    state = read_state_dict(path)
    own = backbone.state_dict()
    required = [k for k in own if not k.endswith("num_batches_tracked")]

    missing = [k for k in required if k not in state]
    if missing:
        raise ValueError(
            f"checkpoint {path} does not fit {type(backbone).__name__}: {len(missing)} of {len(required)} "
            f"backbone keys are missing from it: {_name_some(missing)} (checkpoint keys look like: "
            f"{_name_some(list(state)[:3])}). Is it a checkpoint of another architecture or size?"
        )
    mismatched = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if mismatched:
        detail = [
            f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}" for k in mismatched
        ]
        raise ValueError(
            f"checkpoint {path} does not fit {type(backbone).__name__}: {len(mismatched)} tensors have "
            f"other shapes: {_name_some(detail)}. Is it a checkpoint of another depth or width?"
        )

    declared = tuple(getattr(backbone, "unused_checkpoint_prefixes", ()))
    extra = [k for k in state if k not in own]
    ignored_classifier = [k for k in extra if k.startswith(CLASSIFIER_PREFIXES + declared)]
    ignored_other = [k for k in extra if not k.startswith(CLASSIFIER_PREFIXES + declared)]
    if ignored_other:
        warnings.warn(
            f"checkpoint {path}: ignoring {len(ignored_other)} keys that {type(backbone).__name__} does "
            f"not have: {_name_some(ignored_other)}",
            UserWarning,
            stacklevel=2,
        )
    backbone.load_state_dict({k: state[k] for k in own if k in state}, strict=False)
    return LoadReport(
        path=path,
        loaded=tuple(k for k in own if k in state),
        ignored_classifier=tuple(ignored_classifier),
        ignored_other=tuple(ignored_other),
    )
