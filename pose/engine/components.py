"""Builders shared by every training entry point (plain PyTorch here, Ray Train in orchestrator/)."""

from __future__ import annotations

import random
import typing
from pathlib import Path

import numpy as np
import torch

from pose.data.coco import PersonInstance, load_detection_instances
from pose.data.readers import carry_instances
from pose.data.readers import load_annotated_instances as read_annotated
from pose.data.semi import MixedDataset, select_budget, unlabeled_gt_keys
from pose.data.topdown import TopDownDataset
from pose.experiment import ExperimentConfig, MethodConfig, SemiConfig
from pose.metainfo import AIC, DatasetMeta, joint_correspondence
from pose.methods import HardView, Method, PoseCons, PoseDual, Supervised
from pose.models.build import build_topdown_model
from pose.models.warm_start import init_networks
from pose.names import with_suggestion

UNLABELED_SEED_OFFSET = 1_000_003
"""The unlabeled dataset draws its easy augmentation from ``train.seed + UNLABELED_SEED_OFFSET``, so an
instance that is both labeled and unlabeled is not augmented identically in both streams."""


def aspect_ratio(cfg: ExperimentConfig) -> float:
    w, h = cfg.codec.input_size
    return w / h


def load_annotated_instances(cfg: ExperimentConfig, meta: DatasetMeta, ann_file: Path, images: Path
                             ) -> list[PersonInstance]:
    """The annotated people of a split, read by the dataset's reader (:func:`pose.data.readers.load_annotated_instances`:
    MPII's ``annot/*.json`` with its own window, no ``data.box_padding``; AI Challenger native or converted;
    else a COCO-format file)."""
    return read_annotated(meta, ann_file, images, aspect_ratio(cfg), cfg.data.box_padding)


def load_train_instances(cfg: ExperimentConfig, meta: DatasetMeta) -> list[PersonInstance]:
    """Labeled training instances; ``data.num_labeled`` > 0 is the label budget (``data.budget_mode``:
    the first N in file order, or a seeded nested subset)."""
    d = cfg.data
    instances = load_annotated_instances(cfg, meta, d.path(d.train_ann), d.path(d.train_images))
    if d.num_labeled > len(instances):
        raise ValueError(
            f"data.num_labeled={d.num_labeled} is larger than the {len(instances)} labeled instances "
            f"in {d.path(d.train_ann)}"
        )
    return select_budget(instances, d.num_labeled, d.budget_mode, d.budget_seed)


def _literal_values(cls: type, name: str) -> tuple[str, ...]:
    """The values of the ``Literal`` field ``name`` of dataclass ``cls`` (what its errors suggest from)."""
    return typing.get_args(typing.get_type_hints(cls)[name])


def load_aic_unlabeled(cfg: ExperimentConfig, meta: DatasetMeta) -> list[PersonInstance]:
    """``semi.unlabeled=aic``: every AI Challenger human box of ``semi.unlabeled_ann`` (people without a
    labeled joint included, as the original's unlabeled set), its keypoints carried into ``meta``'s layout
    by joint name (:func:`pose.data.readers.carry_instances`; AIC -> MPII: :data:`pose.metainfo.AIC_TO_MPII`;
    joints AIC lacks get visibility 0)."""
    d, s = cfg.data, cfg.semi
    if not joint_correspondence(AIC, meta):
        raise ValueError(f"semi.unlabeled=aic: AI Challenger's joints share no name with data.dataset="
                         f"{d.dataset} ({', '.join(meta.keypoint_names)})")
    people = read_annotated(AIC, s.path(s.unlabeled_ann, d.root), s.path(s.unlabeled_images, d.root),
                            aspect_ratio(cfg), d.box_padding, labeled_only=False)
    return carry_instances(people, AIC, meta)


def load_unlabeled_instances(cfg: ExperimentConfig, meta: DatasetMeta) -> list[PersonInstance]:
    """Unlabeled instances (``semi.unlabeled``): every training GT box, detector boxes on another set, or
    AI Challenger's human boxes (:func:`load_aic_unlabeled`)."""
    d, s = cfg.data, cfg.semi
    if s.unlabeled == "train_gt":
        instances = load_annotated_instances(cfg, meta, d.path(d.train_ann), d.path(d.train_images))
    elif s.unlabeled == "detections":
        instances = load_detection_instances(s.path(s.unlabeled_detections, d.root),
                                             s.path(s.unlabeled_image_info, d.root),
                                             s.path(s.unlabeled_images, d.root), meta, aspect_ratio(cfg),
                                             s.det_score_threshold, d.box_padding)
    elif s.unlabeled == "aic":
        instances = load_aic_unlabeled(cfg, meta)
    else:  # SemiConfig's Literal is checked by the config loader; this guards direct construction
        raise ValueError(with_suggestion(f"semi.unlabeled: unknown source {s.unlabeled!r}", str(s.unlabeled),
                                         _literal_values(SemiConfig, "unlabeled")))
    if s.num_unlabeled:
        instances = instances[: s.num_unlabeled]
    if not instances:
        raise ValueError(f"semi.unlabeled={s.unlabeled!r} gave no unlabeled instances")
    return instances


def load_val_instances(cfg: ExperimentConfig, meta: DatasetMeta) -> list[PersonInstance]:
    """Validation instances from GT boxes (the dataset's reader) or from a detection results file."""
    d = cfg.data
    if d.val_boxes == "gt":
        return load_annotated_instances(cfg, meta, d.path(d.val_ann), d.path(d.val_images))
    return load_detection_instances(d.path(d.val_boxes), d.path(d.val_ann), d.path(d.val_images), meta,
                                    aspect_ratio(cfg), d.det_score_threshold, d.box_padding)


def build_datasets(cfg: ExperimentConfig, meta: DatasetMeta) -> tuple[TopDownDataset, TopDownDataset]:
    train = TopDownDataset(load_train_instances(cfg, meta), meta, cfg.codec, cfg.augment, seed=cfg.train.seed)
    val = TopDownDataset(load_val_instances(cfg, meta), meta, cfg.codec, augment=None, seed=cfg.train.seed)
    return train, val


def unlabeled_ground_truth(cfg: ExperimentConfig) -> tuple[str, ...]:
    """The ground-truth keys unlabeled batches carry, as ``gt_<key>``
    (:func:`pose.data.semi.unlabeled_gt_keys`): keypoints and visibility when ``semi.unlabeled`` is
    ``train_gt`` or ``aic`` (teacher diagnostics; AIC's joints in the labeled layout), also heatmaps and
    weights for ``method.teacher=oracle``; none for detector boxes."""
    return unlabeled_gt_keys(cfg.semi.unlabeled in ("train_gt", "aic"), cfg.method.teacher == "oracle")


def build_train_stream(cfg: ExperimentConfig, meta: DatasetMeta, labeled: TopDownDataset
                       ) -> TopDownDataset | MixedDataset:
    """What the training loop iterates: the labeled dataset (supervised) or the mixed labeled +
    unlabeled stream (semi-supervised methods; one epoch = one pass over the unlabeled set; unlabeled
    items carry :func:`unlabeled_ground_truth`'s ``gt_`` keys)."""
    if not cfg.method.semi_supervised:
        return labeled
    unlabeled = TopDownDataset(load_unlabeled_instances(cfg, meta), meta, cfg.codec, cfg.augment,
                               seed=cfg.train.seed + UNLABELED_SEED_OFFSET)
    return MixedDataset(labeled, unlabeled, seed=cfg.train.seed, gt_keys=unlabeled_ground_truth(cfg))


def _build_network(cfg: ExperimentConfig, meta: DatasetMeta, seed: int | None = None) -> torch.nn.Module:
    """One top-down network; with ``seed``, its random initialisation is drawn from that seed (and the
    global RNG is left untouched)."""
    if seed is None:
        return build_topdown_model(cfg.model, meta.num_keypoints)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_topdown_model(cfg.model, meta.num_keypoints)


def build_method(cfg: ExperimentConfig, meta: DatasetMeta, load_init: bool = True) -> Method:
    """The method of ``cfg`` with its network(s). With ``load_init`` (default) and ``model.init`` set, the
    networks are warm-started from the earlier run's checkpoint(s) (:func:`pose.models.init_networks`);
    a loop that resumes its own run passes ``load_init=False`` (the resumed state replaces them anyway,
    and the source need not exist any more)."""
    if cfg.model.output_stride != cfg.codec.stride:
        raise ValueError(
            f"model output stride {cfg.model.output_stride} does not match the codec's stride {cfg.codec.stride:g} "
            f"(codec.input_size={list(cfg.codec.input_size)}, codec.heatmap_size={list(cfg.codec.heatmap_size)})"
        )
    m = cfg.method
    method: Method
    if m.kind == "supervised":
        method = Supervised(_build_network(cfg, meta))
    else:
        hard = HardView(m.hard, cfg.codec.input_size, cfg.codec.stride)
        options = dict(unsup_weight=m.unsup_weight, rampup_steps=m.rampup_steps,
                       confidence_threshold=m.confidence_threshold, collapse=m.collapse,
                       oracle_teacher=m.teacher == "oracle")
        if m.kind == "posecons":
            method = PoseCons(_build_network(cfg, meta), hard, **options)
        elif m.kind == "posedual":
            # Different seeds -> different random heads (and backbones, unless both load model.pretrained).
            net1 = _build_network(cfg, meta, seed=cfg.train.seed)
            net2 = _build_network(cfg, meta, seed=cfg.train.seed + 1)
            method = PoseDual(net1, net2, hard, **options)
        else:
            raise ValueError(with_suggestion(f"method.kind: unknown method {m.kind!r}", str(m.kind),
                                             _literal_values(MethodConfig, "kind")))
    if load_init:
        init_networks(method.networks, method.primary, cfg.model)
    return method


def build_optimizer(cfg: ExperimentConfig, method: Method) -> torch.optim.Optimizer:
    """One Adam over every network's parameters (no weight decay unless configured)."""
    params = [p for p in method.parameters() if p.requires_grad]
    return torch.optim.Adam(params, lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)


def build_scheduler(cfg: ExperimentConfig, optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LRScheduler:
    """MultiStepLR, stepped once per epoch."""
    return torch.optim.lr_scheduler.MultiStepLR(optimizer, list(cfg.train.lr_steps), cfg.train.lr_factor)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


RANK_SEED_STRIDE = 7919  # rank r's data-side RNG starts from train.seed + r * stride (networks: train.seed)


def restore_rng_state(saved: dict | list[dict] | None, seed: int, epoch: int, rank: int = 0, world: int = 1) -> None:
    """Restores this process's RNG streams from a checkpoint's ``rng`` entry, which is one state (the plain
    engine's :func:`rng_state`) or one per rank (the Ray engine's). A checkpoint from another number of
    processes, or none, reseeds from ``(seed, rank, epoch)`` instead, so either engine resumes the other's
    checkpoints."""
    states = [saved] if isinstance(saved, dict) else saved
    if states is not None and len(states) == world:
        set_rng_state(states[rank])
    else:
        seed_everything(seed + RANK_SEED_STRIDE * rank + 104729 * epoch)


def training_state(loop, rng: dict | list[dict]) -> dict:
    """The checkpoint of a training loop: ``loop`` has ``method``, ``optimizer``, ``scheduler``,
    ``epoch``, ``step``, ``best_ap``, ``collapse`` (or None) and ``cfg``; ``rng`` is this process's RNG
    state (:func:`rng_state`) or every rank's."""
    from pose.config import to_dict

    return {
        "method": loop.method.state_dict(),
        "optimizer": loop.optimizer.state_dict(),
        "scheduler": loop.scheduler.state_dict(),
        "epoch": loop.epoch,
        "step": loop.step,
        "best_ap": loop.best_ap,
        "rng": rng,
        "collapse": loop.collapse.state_dict() if loop.collapse is not None else None,
        "config": to_dict(loop.cfg),
    }
