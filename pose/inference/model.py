"""A trained network and the experiment config that says how to apply it, from a poselab checkpoint.

A checkpoint is a training state (:func:`pose.engine.components.training_state`): its ``"method"``
entry holds the networks under ``networks.<name>.``, its ``"config"`` entry the experiment config as
a dict (:func:`pose.tasks.config_from_dict` rebuilds it, top-down or bottom-up). The network applied
is the method's *primary* one (``net``; ``net1`` for PoseDual, the network that selects checkpoints).

Sources here: a checkpoint file or a run directory (its ``best.pth``, else ``last.pth``). MLflow
sources (``runs:/<run id>``, ``models:/...``) are resolved by the orchestration layer
(``orchestrator.mlflow_model``): pose/ never talks to MLflow.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pose.metainfo import DatasetMeta
from pose.models.warm_start import RUNS_URI_PREFIX, copy_primary_network, read_training_state
from pose.tasks import AnyExperimentConfig, config_from_dict, is_bottomup

RUN_DIR_CHECKPOINTS: tuple[str, ...] = ("best.pth", "last.pth")
"""The checkpoints of a run directory that a model source reads, in order of preference."""

MLFLOW_URI_PREFIXES: tuple[str, ...] = (RUNS_URI_PREFIX, "models:/")
"""MLflow model sources: resolved by orchestrator/, refused here."""


class PoseModel:
    """A trained network with the experiment config that applies it.

    Args:
        cfg: the experiment config of the run that trained it (task, codec, metainfo, test settings).
        network: top-down: normalised crops (B, 3, H, W) -> heatmaps (B, K, H/s, W/s); bottom-up:
            normalised images -> (heatmaps per resolution, tags (B, K, H/4, W/4, R)).
        network_name: the network's name in its method (``net`` or ``net1``).
        source: where it was loaded from (for messages).
    """

    def __init__(self, cfg: AnyExperimentConfig, network: nn.Module, network_name: str, source: str) -> None:
        self.cfg = cfg
        self.network = network.eval()
        self.network_name = network_name
        self.source = source

    @property
    def task(self) -> str:
        return self.cfg.task

    @property
    def bottomup(self) -> bool:
        return is_bottomup(self.cfg)

    @property
    def meta(self) -> DatasetMeta:
        return self.cfg.data.metainfo()

    def to(self, device: torch.device) -> PoseModel:
        self.network.to(device)
        return self

    def describe(self) -> str:
        """``simple_baseline-18 top-down (coco, 17 keypoints, input 192x256) from runs/a/best.pth``."""
        cfg = self.cfg
        if self.bottomup:
            arch, size = f"hrnet-w{cfg.model.width}", f"input {cfg.codec.input_size}"
        else:
            depth = cfg.model.depth if cfg.model.arch == "simple_baseline" else cfg.model.width
            arch, size = f"{cfg.model.arch}-{depth}", "input {}x{}".format(*cfg.codec.input_size)
        return (f"{arch} {self.task} ({cfg.data.dataset}, {self.meta.num_keypoints} keypoints, {size}; "
                f"network {self.network_name}) from {self.source}")


def build_network(cfg: AnyExperimentConfig) -> nn.Module:
    """The (randomly initialised) network of ``cfg``'s primary model, without reading the files that
    only start a training (``model.pretrained``, ``model.init``): the caller loads trained weights."""
    meta = cfg.data.metainfo()
    if is_bottomup(cfg):
        from pose.bottomup.model import build_bottomup_model

        model = dataclasses.replace(cfg.model, pretrained=None)
        return build_bottomup_model(model, meta.num_keypoints, cfg.codec.embed_dim)
    from pose.models.build import build_topdown_model

    model = dataclasses.replace(cfg.model, pretrained=None, init=None, init_net2=None)
    return build_topdown_model(model, meta.num_keypoints)


def checkpoint_for(source: str | Path) -> Path:
    """The checkpoint file of a model source: the file itself, or a run directory's ``best.pth``, else its
    ``last.pth``.

    Raises:
        ValueError: an MLflow URI (``runs:/``, ``models:/``: resolved by ``poselab predict``, not here).
        FileNotFoundError: no such file, or a run directory without either checkpoint.
    """
    text = str(source)
    if text.startswith(MLFLOW_URI_PREFIXES):
        raise ValueError(f"{text}: an MLflow model URI; pose/ does not talk to MLflow (`poselab predict` "
                         "resolves it): give the run directory or its best.pth instead")
    path = Path(text).expanduser()
    if path.is_dir():
        for name in RUN_DIR_CHECKPOINTS:
            if (path / name).is_file():
                return path / name
        raise FileNotFoundError(f"run directory {path} has no {' or '.join(RUN_DIR_CHECKPOINTS)}")
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    return path


def config_of_state(state: Mapping[str, Any], path: str | Path) -> AnyExperimentConfig:
    """The experiment config stored in a training state.

    Raises:
        ValueError: the state has no ``"config"`` dict (a checkpoint of another program), or it does not
            parse (the message names the file).
    """
    config = state.get("config")
    if not isinstance(config, Mapping):
        raise ValueError(f"{path}: the checkpoint has no 'config' (the experiment config that rebuilds the "
                         "network and its codec); checkpoints written by poselab training have one")
    return config_from_dict(dict(config), str(path))


def load_checkpoint_model(source: str | Path) -> PoseModel:
    """The primary network of a poselab checkpoint (file or run directory, :func:`checkpoint_for`) on the
    CPU, in eval mode, with its config.

    Raises:
        FileNotFoundError: no such file / a run directory without checkpoints.
        ValueError: not a poselab training state, no ``"config"``, or weights that do not fit the network
            the config describes (messages name the file).
    """
    path = checkpoint_for(source)
    state = read_training_state(path)
    cfg = config_of_state(state, path)
    network = build_network(cfg)
    name = copy_primary_network(network, state, path)
    return PoseModel(cfg, network, name, str(path))
