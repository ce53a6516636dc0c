"""The typed experiment config: every knob of a top-down run, with unknown keys as errors."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pose.codecs.heatmap import HeatmapCodec
from pose.config import ConfigError
from pose.data.transforms import TopDownAugment
from pose.metainfo import DatasetMeta, get_metainfo
from pose.methods.collapse import CollapseRule
from pose.methods.hard_view import HardViewConfig
from pose.models.config import ModelConfig


class DatasetFiles:
    """The path and metainfo helpers of a data config (top-down and bottom-up) with ``root`` and
    ``dataset`` fields."""

    root: str
    dataset: str

    def path(self, rel: str) -> Path:
        """``rel`` under ``root`` unless it is absolute."""
        p = Path(rel)
        return p if p.is_absolute() else Path(self.root) / p

    def metainfo(self) -> DatasetMeta:
        return get_metainfo(self.dataset)


@dataclass(frozen=True)
class DataConfig(DatasetFiles):
    """Where the data is and how it is cut.

    Paths are relative to ``root`` unless absolute. ``val_boxes`` is "gt" or a detection results
    file. ``num_labeled`` > 0 is the label budget: with ``budget_mode`` "first", the first N training
    instances (JSON order; the paper's protocol); with "nested", N instances of a permutation fixed by
    ``budget_seed``, so budgets N1 < N2 < N3 of one seed are nested subsets.

    ``dataset`` picks the metainfo and the reader: "coco", "crowdpose" (COCO-format files), "mpii" (MPII's
    ``annot/*.json``, :mod:`pose.data.mpii`; validation is scored by PCKh against ``val_head_boxes``, the
    ``annot/gt_valid.mat`` file, and selects checkpoints on ``PCKh``), "aic" (AI Challenger, native or
    COCO-converted), or a metainfo ``.json`` (COCO-format files). ``val_head_boxes`` is MPII's only.
    MPII records carry their own crop window (SimpleBaseline's x1.25 of ``scale``): ``box_padding`` does
    not apply to them (only its default is accepted with "mpii"; it still pads ``semi.unlabeled=aic`` boxes).

    ``shards`` (relative to the working directory, like ``root``): a directory of Parquet shards
    (``poselab shards``) with ``train/``, ``val/`` (and ``unlabeled/`` for detector-box unlabeled
    data and for ``semi.unlabeled=aic``: AI Challenger shards in this dataset's layout, every person box)
    made from this dataset; when set, Ray Train workers stream decoded crops from them through
    Ray Data instead of reading image files (the ground truth under ``root`` still scores validation:
    COCO AP, or MPII's PCKh with ``val_head_boxes``). The plain-PyTorch engine reads image files only
    and refuses it.
    ``shards_reduced_decode``: training crops decode large JPEG regions at 1/2, 1/4 or 1/8 size when the
    crop allows it (:class:`pose.data.shards.decode.TopDownShardDecoder`; faster, a resampling of the exact
    crop: docs/data.md). Validation crops are always decoded in full.
    """

    root: str = "data/synthpose"
    dataset: str = "coco"
    train_ann: str = "annotations/person_keypoints_train.json"
    train_images: str = "images/train"
    val_ann: str = "annotations/person_keypoints_val.json"
    val_images: str = "images/val"
    val_boxes: str = "gt"
    val_head_boxes: str = ""
    det_score_threshold: float = 0.0
    num_labeled: int = 0
    budget_mode: Literal["first", "nested"] = "first"
    budget_seed: int = 0
    box_padding: float = 1.25
    num_workers: int = 2
    shards: str = ""
    shards_reduced_decode: bool = False

    def __post_init__(self) -> None:
        if self.shards_reduced_decode and not self.shards:
            raise ValueError("data.shards_reduced_decode applies to shard streams: set data.shards too")
        if self.num_labeled < 0:
            raise ValueError(f"data.num_labeled must be >= 0, got {self.num_labeled}")
        if self.num_workers < 0:
            raise ValueError(f"data.num_workers must be >= 0, got {self.num_workers}")
        if self.dataset == "mpii":
            if not self.val_head_boxes:
                raise ValueError("data.dataset=mpii is scored by PCKh: set data.val_head_boxes to the head-box file "
                                 "(annot/gt_valid.mat)")
            if self.val_boxes != "gt":
                raise ValueError(f"data.val_boxes={self.val_boxes}: MPII is evaluated on its annotated people "
                                 "(data.val_boxes=gt)")
            if self.box_padding != 1.25:
                raise ValueError(f"data.box_padding={self.box_padding}: MPII records carry their own crop window "
                                 "(SimpleBaseline's 1.25 x scale x 200 px); box_padding does not apply to them")
        elif self.val_head_boxes:
            raise ValueError(f"data.val_head_boxes={self.val_head_boxes} is MPII's head-box file, but "
                             f"data.dataset={self.dataset}")


@dataclass(frozen=True)
class SemiConfig:
    """The unlabeled set of semi-supervised methods (ignored by ``method.kind`` "supervised").

    ``unlabeled`` "train_gt": every training instance with its ground-truth box (all of
    ``data.train_ann``, not only the label budget; labels never used). "detections": the images of
    ``unlabeled_image_info`` with the person boxes of ``unlabeled_detections`` scoring at least
    ``det_score_threshold`` (the "wild" full-label setting). "aic": every human box of the AI Challenger
    file ``unlabeled_ann`` (native or COCO-converted) with the images of ``unlabeled_images``, the
    MPII + AIC setting; the AIC joints are carried into ``data.dataset``'s layout by name
    (:func:`pose.metainfo.joint_correspondence`, for MPII :data:`pose.metainfo.AIC_TO_MPII`; only the
    teacher diagnostics read them). Paths are relative to ``root``, or to ``data.root`` when ``root`` is
    empty. ``num_unlabeled`` > 0 keeps the first N unlabeled instances (for small-scale runs).
    """

    unlabeled: Literal["train_gt", "detections", "aic"] = "train_gt"
    root: str = ""
    unlabeled_ann: str = ""
    unlabeled_image_info: str = "annotations/image_info_unlabeled.json"
    unlabeled_detections: str = "person_detection_results/unlabeled_detections.json"
    unlabeled_images: str = "images/unlabeled"
    det_score_threshold: float = 0.0
    num_unlabeled: int = 0

    def __post_init__(self) -> None:
        if self.num_unlabeled < 0:
            raise ValueError(f"semi.num_unlabeled must be >= 0, got {self.num_unlabeled}")
        if (self.unlabeled == "aic") != bool(self.unlabeled_ann):
            raise ValueError("semi.unlabeled_ann is the AI Challenger annotation file of semi.unlabeled=aic: set both "
                             f"or neither (got semi.unlabeled={self.unlabeled}, "
                             f"semi.unlabeled_ann={self.unlabeled_ann!r})")

    def path(self, rel: str, data_root: str) -> Path:
        """``rel`` under ``root`` (``data_root`` when ``root`` is empty) unless it is absolute."""
        p = Path(rel)
        return p if p.is_absolute() else Path(self.root or data_root) / p


@dataclass(frozen=True)
class MethodConfig:
    """The training method and its consistency loss.

    ``kind``: "supervised" (labeled crops only), "posecons" (one network, self-taught easy -> hard) or
    "posedual" (two networks teaching each other). ``unsup_weight`` multiplies the consistency loss,
    ramped up as exp(-5 (1 - t)^2) over ``rampup_steps`` (0: full weight from step 0). Unlabeled joints
    whose teacher maximum is below ``confidence_threshold`` get weight 0 (0: no threshold). The paper:
    weight 1, no ramp-up, no threshold. ``hard`` builds the hard view; ``collapse`` sets the
    collapse monitor's diagnostics and rule.

    ``teacher``: "network" (the method's own teacher, the paper) or "oracle", a diagnosis: the
    unlabeled crops' ground-truth heatmaps teach every network (PoseDual: both), through the same
    cutout, warp and loss (:mod:`pose.methods.diagnostics`). Needs ``semi.unlabeled=train_gt``;
    ignored by "supervised" (no teacher), like the ``semi`` section.
    """

    kind: Literal["supervised", "posecons", "posedual"] = "supervised"
    teacher: Literal["network", "oracle"] = "network"
    unsup_weight: float = 1.0
    rampup_steps: int = 0
    confidence_threshold: float = 0.0
    hard: HardViewConfig = field(default_factory=HardViewConfig)
    collapse: CollapseRule = field(default_factory=CollapseRule)

    def __post_init__(self) -> None:
        if self.unsup_weight < 0 or self.rampup_steps < 0:
            raise ValueError("method.unsup_weight and method.rampup_steps must be >= 0")

    @property
    def semi_supervised(self) -> bool:
        return self.kind != "supervised"

    @property
    def diagnosis(self) -> str:
        """"oracle_teacher" for a diagnosis-only run (a semi-supervised method with an oracle teacher),
        else ""."""
        return "oracle_teacher" if self.teacher == "oracle" and self.semi_supervised else ""


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation: Adam (no weight decay by default), MultiStepLR stepped per epoch.

    ``val_interval``: validate every N epochs (and after the last); ``checkpoint_interval``: write the
    last-epoch checkpoint (``last.pth``, and the Ray Train / Tune checkpoint) every N epochs and after
    the last one; ``best.pth`` is written whenever validation improves. With many short epochs (a
    small label budget) every-epoch checkpoints cost more than the epochs.
    """

    epochs: int = 140
    batch_size: int = 32
    lr: float = 1e-3
    lr_steps: tuple[int, ...] = (90, 120)
    lr_factor: float = 0.1
    weight_decay: float = 0.0
    val_interval: int = 1
    checkpoint_interval: int = 1
    seed: int = 0
    device: str = "auto"
    threads: int = 0
    amp: Literal["none", "bf16", "fp16"] = "none"
    channels_last: bool = False
    log_interval: int = 20

    def __post_init__(self) -> None:
        if min(self.epochs, self.batch_size, self.val_interval, self.checkpoint_interval) < 1:
            raise ValueError("train.epochs, train.batch_size, train.val_interval and train.checkpoint_interval "
                             "must be >= 1")
        if self.lr <= 0:
            raise ValueError(f"train.lr must be > 0, got {self.lr}")


@dataclass(frozen=True)
class TestConfig:
    """Inference and evaluation settings (SimpleBaseline defaults)."""

    batch_size: int = 64
    flip_test: bool = True
    shift_heatmap: bool = True
    oks_nms_threshold: float = 0.9
    in_vis_threshold: float = 0.2


@dataclass(frozen=True)
class ExperimentConfig:
    """One top-down experiment (``task: topdown``; bottom-up experiments are
    :class:`pose.bottomup.config.BottomUpExperimentConfig`, ``task: bottomup``)."""

    task: Literal["topdown"] = "topdown"
    name: str = "experiment"
    output_dir: str = "runs"
    data: DataConfig = field(default_factory=DataConfig)
    codec: HeatmapCodec = field(default_factory=HeatmapCodec)
    augment: TopDownAugment = field(default_factory=TopDownAugment)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    test: TestConfig = field(default_factory=TestConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    semi: SemiConfig = field(default_factory=SemiConfig)

    def __post_init__(self) -> None:
        m = self.method
        if m.semi_supervised and m.teacher == "oracle" and self.semi.unlabeled != "train_gt":
            raise ConfigError(f"method.teacher=oracle needs the unlabeled crops' ground truth: "
                              f"semi.unlabeled=train_gt, got semi.unlabeled={self.semi.unlabeled} "
                              f"(method.kind={self.method.kind})")
        m = self.model
        if self.method.kind == "posedual" and m.init is not None and m.init_net2 is None:
            raise ValueError(f"model.init={m.init!r} without model.init_net2: PoseDual's two networks would "
                             "start identical, which defeats it; give net2 another start (e.g. another seed "
                             "of the supervised run)")
        if self.method.kind == "posedual" and m.init is not None and m.init == m.init_net2:
            raise ValueError(f"model.init and model.init_net2 are both {m.init!r}: PoseDual's two networks "
                             "would start identical; give net2 another start (e.g. another seed of the "
                             "supervised run)")
        if self.method.kind != "posedual" and m.init_net2 is not None:
            raise ValueError(f"model.init_net2={m.init_net2!r} starts PoseDual's second network, but "
                             f"method.kind={self.method.kind!r} has one network")

    @property
    def diagnosis(self) -> str:
        """Non-empty for a diagnosis-only run (``method.diagnosis``; tagged and marked in tables)."""
        return self.method.diagnosis

    @property
    def selection_metric(self) -> str:
        """The validation statistic that selects ``best.pth`` (logged as ``best_<metric>``): PCKh for MPII,
        else AP."""
        return "PCKh" if self.data.dataset == "mpii" else "AP"

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir) / self.name
