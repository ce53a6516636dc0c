"""What decides the content of a shard directory: :class:`ShardOptions` (the re-run fingerprint covers it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Mode = Literal["topdown", "bottomup"]
Boxes = Literal["gt", "detections"]
People = Literal["labeled", "all"]

FULL_BOX_READERS = ("mpii", "aic")
"""Datasets whose readers can keep people without a labeled joint (``people="all"``)."""


@dataclass(frozen=True)
class ShardOptions:
    """Everything that decides the content of the shards (the re-run fingerprint covers it).

    Attributes:
        mode: "topdown" (one row per instance) or "bottomup" (one row per image).
        boxes: top-down person boxes: "gt" (annotated people with labeled keypoints) or
            "detections" (a detection results file; keypoints are zeros).
        dataset: the dataset's reader and keypoint layout: ``coco``, ``crowdpose`` or a metainfo JSON path
            (COCO-format files), ``mpii`` (``annot/*.json``, :mod:`pose.data.mpii`; records carry their own
            crop window, so only the default ``padding`` applies) or ``aic`` (AI Challenger, native or
            COCO-converted, :mod:`pose.data.aic`); :mod:`pose.data.shards.sources` gives each one's files.
        people: top-down ``gt`` rows: "labeled" (people with a labeled joint, the training set's rule) or
            "all" (every person box, people without a labeled joint included: an unlabeled set, as
            ``semi.unlabeled=aic`` reads AI Challenger); "all" is for ``mpii`` and ``aic`` only.
        layout: the keypoint layout the rows hold when it is not ``dataset``'s own (empty: its own):
            joints carried by name (:func:`pose.metainfo.joint_correspondence`, AIC -> MPII for the
            MPII + AIC setting), joints without a source at zero with visibility 0.
        aspect_ratio: crop width / height of the model input (192 / 256); sets ``center``/``scale``.
        padding: box padding (SimpleBaseline's 1.25).
        scale_factor, rot_factor: the largest :class:`~pose.data.transforms.TopDownAugment` the
            regions must support (scale up to 1 + scale_factor, rotation up to 2 * rot_factor).
        max_side: regions whose long side exceeds it are downscaled to it (no longer bit-exact).
        input_size: the model input (W, H) the shards serve, or None (native resolution, the default).
            When set, a region is downscaled to :func:`region_density`: one region pixel per crop pixel
            of the most zoomed-in augmentation (window scale ``1 - scale_factor``), so no crop the
            augmentation can draw is upsampled from it. Smaller regions decode faster; the crops are
            then resamplings of the file loader's, and the pipeline refuses larger model inputs.
        region_density: with ``input_size``, region pixels per crop pixel of that most zoomed-in crop
            (>= 1; default 1). Denser regions keep the crops closer to the file loader's (less blur from
            the two resamplings) for a decode that grows with the square.
        lossless: store regions as PNG (bit-exact crops) instead of JPEG.
        quality: JPEG quality of the regions: 1..100, or "source" (the default): the source image's
            quality and chroma subsampling, read from its header (:mod:`pose.data.jpeg_header`;
            :data:`pose.data.shards.regions.FALLBACK_QUALITY` for sources that are not JPEG). JPEG regions of JPEG sources start
            and end on the source's block grid either way, so re-encoding keeps the blocks it can.
        det_score_threshold: detections scoring below it are not written (counted).
        rows_per_shard: rows per Parquet file.
        row_group_size: rows per Parquet row group (the unit of parallel/streaming reads).
    """

    mode: Mode = "topdown"
    boxes: Boxes = "gt"
    dataset: str = "coco"
    people: People = "labeled"
    layout: str = ""
    aspect_ratio: float = 0.75
    padding: float = 1.25
    scale_factor: float = 0.25
    rot_factor: float = 30.0
    max_side: int = 1024
    input_size: tuple[int, int] | None = None
    region_density: float = 1.0
    lossless: bool = False
    quality: int | Literal["source"] = "source"
    det_score_threshold: float = 0.0
    rows_per_shard: int = 1024
    row_group_size: int = 128

    def __post_init__(self) -> None:
        if self.mode not in ("topdown", "bottomup"):
            raise ValueError(f"mode must be 'topdown' or 'bottomup', got {self.mode!r}")
        if self.boxes not in ("gt", "detections"):
            raise ValueError(f"boxes must be 'gt' or 'detections', got {self.boxes!r}")
        if self.people not in ("labeled", "all"):
            raise ValueError(f"people must be 'labeled' or 'all', got {self.people!r}")
        if self.people == "all" and (self.dataset not in FULL_BOX_READERS or self.mode != "topdown"
                                     or self.boxes != "gt"):
            raise ValueError(f"people='all' (every person box) applies to top-down gt rows of "
                             f"{' or '.join(FULL_BOX_READERS)}, got mode={self.mode}, boxes={self.boxes}, "
                             f"dataset={self.dataset}")
        if self.boxes == "detections" and self.dataset == "mpii":
            raise ValueError("detection boxes are matched to a COCO-format image list; MPII shards take its "
                             "annotated people (boxes='gt')")
        if self.layout and self.mode != "topdown":
            raise ValueError("layout (another keypoint layout) applies to top-down rows")
        if self.dataset == "mpii" and self.padding != 1.25:
            raise ValueError(f"padding={self.padding}: MPII records carry their own crop window (SimpleBaseline's "
                             "1.25 x scale x 200 px); padding does not apply to them")
        if self.mode == "bottomup" and self.boxes != "gt":
            raise ValueError("bottom-up shards hold whole images: --boxes detections applies to top-down only")
        if self.rows_per_shard < 1 or self.row_group_size < 1:
            raise ValueError("rows_per_shard and row_group_size must be >= 1")
        if self.max_side < 16:
            raise ValueError(f"max_side must be >= 16, got {self.max_side}")
        if self.input_size is not None:
            size = tuple(self.input_size)
            if len(size) != 2 or not all(isinstance(v, int) and v >= 1 for v in size):
                raise ValueError(f"input_size must be two positive integers (W, H), got {self.input_size!r}")
            if self.mode != "topdown":
                raise ValueError("input_size applies to top-down regions; bottom-up rows keep the original file")
            object.__setattr__(self, "input_size", size)  # JSON manifests give a list
        if not (isinstance(self.region_density, (int, float)) and 1.0 <= self.region_density <= 16.0):
            raise ValueError(f"region_density must be a number in 1..16 (region pixels per crop pixel), "
                             f"got {self.region_density!r}")
        if self.region_density != 1.0 and self.input_size is None:
            raise ValueError("region_density applies to regions sized for a model input: give input_size too")
        if self.quality != "source" and not (isinstance(self.quality, int) and 1 <= self.quality <= 100):
            raise ValueError(f"JPEG quality must be 'source' or an integer in 1..100, got {self.quality!r}")
        if self.aspect_ratio <= 0 or self.padding <= 0 or self.scale_factor < 0 or self.rot_factor < 0:
            raise ValueError("aspect_ratio and padding must be > 0, scale_factor and rot_factor >= 0")

    @property
    def image_format(self) -> str:
        return "png" if self.lossless else "jpeg"


def parse_quality(text: str) -> int | Literal["source"]:
    """A ``--quality`` argument: ``"source"`` or an integer in 1..100 (``ValueError`` otherwise)."""
    if text == "source":
        return "source"
    if not (text.isdigit() and 1 <= int(text) <= 100):
        raise ValueError(f"expected 'source' or an integer in 1..100, got {text!r}")
    return int(text)
