"""Initialise networks from an earlier poselab run's checkpoint (``model.init``), loudly.

A warm start copies a whole network (backbone and head) from a training state that
:func:`pose.engine.components.training_state` wrote (``<run dir>/last.pth`` or ``best.pth``): its
``"method"`` entry is the Method's state dict, whose network keys are ``networks.<name>.<key>``. The
network taken is the checkpoint's *primary* one: ``net`` (supervised, PoseCons) or ``net1``
(PoseDual). The checks are as strict as the backbone loader's (:mod:`pose.models.pretrained`) and
stricter in one way: a key of the checkpoint's network that the target lacks is an error too, since a
whole network is copied (no classifier keys to drop). Missing keys, unexpected keys and shape
mismatches raise a :class:`ValueError` naming the file and the first keys.

Sources: a checkpoint file, or a run directory (its ``last.pth``). ``runs:/<MLflow run id>`` is
resolved by the orchestration layer (``orchestrator.train.resolve_init``) before a config reaches
this module; pose/ never talks to MLflow, so here such a source is an error that says so.

Only weights are read: the optimiser, LR schedule and epoch counter of the new run start fresh.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from pose.models.config import ModelConfig
from pose.models.pretrained import _load_error_reason, _name_some

log = logging.getLogger(__name__)

RUNS_URI_PREFIX = "runs:/"
"""An MLflow run as a source (``runs:/<run id>``): resolved by orchestrator/, refused here."""

RUN_CHECKPOINT = "last.pth"
"""The checkpoint of a run directory that a warm start reads."""

PRIMARY_NETWORKS: tuple[str, ...] = ("net", "net1")
"""Primary network names of the methods (``net``: supervised, PoseCons; ``net1``: PoseDual)."""

NETWORKS_PREFIX = "networks."


@dataclass(frozen=True)
class InitReport:
    """What :func:`load_network_checkpoint` did.

    Attributes:
        path: the checkpoint file read.
        network: the checkpoint's network that was copied (``net`` or ``net1``).
        tensors: number of tensors copied (every entry of the target's state dict).
        epoch: the checkpoint's epoch (None when it has none).
        run_name: the source run's config name (None when the checkpoint has no config).
        mlflow_run_id: the source run's MLflow run (Ray engine checkpoints; else None).
    """

    path: Path
    network: str
    tensors: int
    epoch: int | None = None
    run_name: str | None = None
    mlflow_run_id: str | None = None

    def describe(self) -> str:
        """``net of /runs/a/last.pth (run a, epoch 40)``."""
        about = [text for text, known in ((f"run {self.run_name}", self.run_name),
                                          (f"epoch {self.epoch}", self.epoch is not None),
                                          (f"MLflow run {self.mlflow_run_id}", self.mlflow_run_id)) if known]
        return f"{self.network} of {self.path}" + (f" ({', '.join(about)})" if about else "")


def checkpoint_file(source: str | Path) -> Path:
    """The checkpoint file of a ``model.init`` source: the file itself, or ``<run dir>/last.pth``.

    Raises:
        ValueError: ``source`` is a ``runs:/`` URI (resolved by the Ray/MLflow layer only).
        FileNotFoundError: no such file, or a run directory without ``last.pth``.
    """
    text = str(source)
    if text.startswith(RUNS_URI_PREFIX):
        raise ValueError(
            f"model.init source {text!r} is an MLflow run URI: pose/ does not talk to MLflow. `poselab "
            f"train` (either engine) and ablations resolve it to the run's checkpoint; here, give the run "
            f"directory or its {RUN_CHECKPOINT} instead")
    path = Path(text).expanduser()
    where = "" if path.is_absolute() else f" (relative to the working directory {Path.cwd()})"
    if path.is_dir():
        if not (path / RUN_CHECKPOINT).is_file():
            raise FileNotFoundError(f"model.init: run directory {path}{where} has no {RUN_CHECKPOINT} "
                                    f"(has the run finished an epoch?)")
        return path / RUN_CHECKPOINT
    if not path.is_file():
        raise FileNotFoundError(f"model.init: checkpoint not found: {path}{where}")
    return path


def _numpy_globals() -> list[Any]:
    """The NumPy types a training state's RNG state needs under ``torch.load(weights_only=True)``."""
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # NumPy 1.x
        from numpy.core.multiarray import _reconstruct  # type: ignore[no-redef]
    return [_reconstruct, np.ndarray, np.dtype, type(np.dtype(np.uint32))]


def read_training_state(path: str | Path) -> Mapping[str, Any]:
    """A poselab training state (a mapping with a ``"method"`` state dict), read with
    ``torch.load(weights_only=True)`` (NumPy RNG arrays allowed, nothing else).

    Raises:
        ValueError: the file is not a torch checkpoint, or not a poselab training state.
    """
    path = Path(path)
    try:
        with torch.serialization.safe_globals(_numpy_globals()):
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # unpickling / zip / weights_only errors all mean "cannot use this file"
        raise ValueError(f"{path} is not a readable torch checkpoint ({_load_error_reason(e)})") from e
    method = state.get("method") if isinstance(state, Mapping) else None
    if not isinstance(method, Mapping) or not method:
        what = (f"keys {_name_some([str(k) for k in state])}" if isinstance(state, Mapping)
                else type(state).__name__)
        raise ValueError(f"{path} is not a poselab training state (expected a mapping with a 'method' state "
                         f"dict, got {what}); for ImageNet backbone weights use model.pretrained")
    return state


def primary_network_state(state: Mapping[str, Any], path: str | Path) -> tuple[str, dict[str, torch.Tensor]]:
    """(name, state dict) of the training state's primary network (``net``, else ``net1``), keys without
    the ``networks.<name>.`` prefix.

    Raises:
        ValueError: the state has neither network.
    """
    method = state["method"]
    names = list(dict.fromkeys(k[len(NETWORKS_PREFIX):].split(".", 1)[0] for k in method
                               if isinstance(k, str) and k.startswith(NETWORKS_PREFIX)))
    name = next((n for n in PRIMARY_NETWORKS if n in names), None)
    if name is None:
        raise ValueError(f"{path}: no primary network ({' or '.join(PRIMARY_NETWORKS)}) in its method state "
                         f"(networks: {', '.join(names) or 'none'})")
    prefix = f"{NETWORKS_PREFIX}{name}."
    return name, {k[len(prefix):]: v for k, v in method.items() if k.startswith(prefix)}


def _model_hint(state: Mapping[str, Any]) -> str:
    config = state.get("config")
    model = config.get("model") if isinstance(config, Mapping) else None
    if not isinstance(model, Mapping):
        return ""
    shown = {k: model[k] for k in ("arch", "depth", "width", "deconv_channels", "num_deconv") if k in model}
    return f" (the checkpoint's run used model {shown})"


def copy_primary_network(network: nn.Module, state: Mapping[str, Any], path: str | Path) -> str:
    """Copy the primary network of the training state ``state`` (read from ``path``) into ``network``
    (in place) and return its name (``net`` or ``net1``). Every entry of ``network.state_dict()``
    (parameters and buffers) must be in the checkpoint's network with the same shape, and the
    checkpoint's network may have no other entries.

    Raises:
        ValueError: no primary network; keys missing from the checkpoint, keys the network lacks, or
            shapes that differ (each message names the file and the first keys).
    """
    name, weights = primary_network_state(state, path)
    own = network.state_dict()
    kind = type(network).__name__
    missing = [k for k in own if k not in weights]
    if missing:
        raise ValueError(
            f"checkpoint {path} does not fit {kind}: {len(missing)} of {len(own)} keys are missing from its "
            f"network {name!r}: {_name_some(missing)}{_model_hint(state)}")
    unexpected = [k for k in weights if k not in own]
    if unexpected:
        raise ValueError(
            f"checkpoint {path} does not fit {kind}: its network {name!r} has {len(unexpected)} keys the "
            f"model lacks: {_name_some(unexpected)}{_model_hint(state)}")
    mismatched = [f"{k}: checkpoint {tuple(weights[k].shape)} vs model {tuple(v.shape)}"
                  for k, v in own.items() if tuple(weights[k].shape) != tuple(v.shape)]
    if mismatched:
        raise ValueError(
            f"checkpoint {path} does not fit {kind}: {len(mismatched)} tensors of its network {name!r} have "
            f"other shapes: {_name_some(mismatched)}{_model_hint(state)}")
    network.load_state_dict(weights, strict=True)
    return name


def load_network_checkpoint(network: nn.Module, source: str | Path) -> InitReport:
    """Copy the primary network of the poselab checkpoint ``source`` into ``network`` (in place).

    ``source``: a checkpoint file or a run directory (:func:`checkpoint_file`). Every entry of
    ``network.state_dict()`` (parameters and buffers: BN statistics too) must be in the checkpoint's
    network with the same shape, and the checkpoint's network may have no other entries.

    Raises:
        FileNotFoundError: no such file / a run directory without ``last.pth``.
        ValueError: a ``runs:/`` source; not a poselab training state; keys missing from the
            checkpoint, keys the network lacks, or shapes that differ (each message names the file and
            the first keys).
    """
    path = checkpoint_file(source)
    state = read_training_state(path)
    name = copy_primary_network(network, state, path)
    config = state.get("config")
    epoch = state.get("epoch")
    run_id = state.get("mlflow_run_id")
    return InitReport(path=path, network=name, tensors=len(network.state_dict()),
                      epoch=epoch if isinstance(epoch, int) else None,
                      run_name=config.get("name") if isinstance(config, Mapping) else None,
                      mlflow_run_id=run_id if isinstance(run_id, str) and run_id else None)


def init_networks(networks: MutableMapping[str, nn.Module], primary: str, model: ModelConfig
                  ) -> list[InitReport]:
    """Warm-start a method's networks from ``model.init`` / ``model.init_net2`` (nothing without
    ``model.init``): the primary network from ``init``, the other one (PoseDual's ``net2``) from
    ``init_net2``. Logs what was loaded from where.

    Raises:
        ValueError: ``init_net2`` missing for two networks or given for one; both sources are the same
            file (two identical starts defeat PoseDual); and as :func:`load_network_checkpoint`.
    """
    if model.init is None:
        return []
    others = [n for n in networks if n != primary]
    if len(others) > 1:
        raise ValueError(f"model.init: a method with networks {list(networks)} cannot be warm-started "
                         "(one or two networks)")
    if others and model.init_net2 is None:
        raise ValueError(f"model.init: the method's second network {others[0]!r} needs model.init_net2 (two "
                         "identical starts defeat PoseDual)")
    if not others and model.init_net2 is not None:
        raise ValueError(f"model.init_net2={model.init_net2!r}, but the method has one network ({primary!r})")
    sources = {primary: model.init, **({others[0]: model.init_net2} if others else {})}
    files = {name: checkpoint_file(source) for name, source in sources.items()}
    if len(files) == 2 and len({p.resolve() for p in files.values()}) == 1:
        raise ValueError(f"model.init and model.init_net2 are the same checkpoint {files[primary]}: "
                         "PoseDual's two networks would start identical")
    reports = []
    for name, path in files.items():
        report = load_network_checkpoint(networks[name], path)
        log.info("model.init: %s <- %s", name, report.describe())
        reports.append(report)
    return reports
