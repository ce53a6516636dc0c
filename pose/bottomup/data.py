"""Whole-image (bottom-up) data: COCO / CrowdPose loading, ignore masks, the random affine, test-time resize.

Spec: ``coupled_embedding_spec.md`` sections 1.1-1.3. One training item is one image:

* :func:`load_bottomup_images` reads a COCO-format keypoint file (COCO or CrowdPose layout, chosen by
  the :class:`~pose.metainfo.DatasetMeta`) into :class:`BottomUpImage` records, in JSON image order.
  Training keeps images with at least one annotation of any kind (crowd regions count), evaluation
  keeps every image. A person is kept when ``iscrowd == 0 or num_keypoints > 0`` *and* it has at
  least one labelled joint (v > 0). Its two halves, :func:`group_annotations` and
  :func:`image_record`, also choose what bottom-up Parquet shards hold (``pose.data.shards``), so
  the shard rows carry exactly these people and masks (:mod:`pose.bottomup.shards` decodes them).
* :func:`ignore_mask` rasterises, at full image size, the ``iscrowd`` RLEs and the polygons of
  non-crowd people with ``num_keypoints == 0`` (0 = ignored, 1 = used). Annotations without a
  ``segmentation`` (all of CrowdPose) add nothing, so a CrowdPose mask is all ones.
* :class:`BottomUpAugment` / :func:`train_matrices` / :class:`BottomUpSampler`: the RandomAffine of
  the reference (rotation U[-30, 30] deg, scale U[0.75, 1.5], translation up to 20% of the scaled
  image, 'short' square crop: the source square's side is the short image side times the scale),
  then a horizontal flip with probability 0.5. The mask is warped per heatmap resolution (x255 as
  uint8, bilinear, constant-0 border, > 0.5), so whatever falls outside the image is ignored; the
  joints and the four box corners (TL, TR, BR, BL) are warped to input pixels and handed to
  :meth:`pose.bottomup.codec.BottomUpCodec.encode`.
* :class:`BottomUpDataset`: the map-style training dataset (items documented there);
  :func:`resize_align` and :class:`ValImageDataset`: the test-time ResizeAlign (spec 1.3).

Images leave as uint8 RGB tensors; normalisation happens in batch on the model's device with
:class:`pose.data.topdown.Normalizer` (the reference normalises on the CPU; same numbers).

Coordinates: pixel centres at integer coordinates. A training crop is one 2x3 matrix ``M_in`` from
image to input pixels (:func:`pose.data.transforms.crop_matrix`); heatmap ``i`` uses
``M_i = (S_i / input_size) * M_in`` for its mask; the codec puts a joint at input pixel ``p`` on the
heatmap pixel that contains it, ``floor((p + 0.5) * S_i / input_size)`` (pixel centres at integers).
The mask warp maps pixel centres ``(S_i / input_size - 1) / 2`` heatmap pixels (-3/8 at stride 4)
off that convention; masks are region-level and the offset is left as it is.

Decisions and deliberate deviations from the reference (all sub-pixel unless stated):

1. The flip is folded into the affine at input resolution: x' = W_in - 1 - x, and heatmap ``i``
   inherits it through the S_i / input_size scaling. The reference flips each resolution
   separately with x' = S_i - 1 - x, which puts the flipped heatmap joints 1 - S_i / input_size
   heatmap pixels (0.75 at stride 4) away from where the flipped image puts them; here the image,
   the masks and the joints are mirrored about the same line.
2. The crop centre is the image centre in pixel-centre coordinates, ((w-1)/2, (h-1)/2) plus the
   translation, and it maps to ((in-1)/2, (in-1)/2) (``crop_matrix``); the reference maps (w/2, h/2)
   to (in/2, in/2). Half a pixel; with scale 1, no rotation and no translation a square image of
   side ``in`` maps with the identity.
3. The translation is drawn continuously, U[-t, t] x scaled width (height), instead of as an
   integer number of pixels (``randint``).
4. The ignore mask is built from *all* annotations (spec 1.1, as in HigherHRNet). The CE code
   filters out ``iscrowd`` annotations with ``num_keypoints == 0`` before it builds the mask, so in
   CE the crowd regions are never actually masked; the spec's behaviour is kept here.
5. People without any labelled joint are not kept in :attr:`BottomUpImage.joints`: they would add
   no heatmap peak and take no tag slot anyway (the codec's policy). They are counted in the
   :class:`~pose.data.coco.LoadReport`, and a zero-keypoint person's polygon still masks its pixels.
6. More than ``max_people`` people never crash (reference: index overflow): the codec keeps the
   best-annotated ones in the tag / scale slots; the dataset counts the rest (item ``num_dropped``).
7. ResizeAlign uses exact integer arithmetic for the size rounding (the reference's float
   ``ceil(512 / 300 * 600)`` can round 1024 up to 1088), centres the image exactly (pixel-centre
   convention, as in 2.) instead of at ``round(w / 2)``, and scales by ``out_short / short``.

Bad input: errors name the file and the image / annotation id (unknown image id, keypoints of the
wrong length or non-finite, missing or malformed bbox / segmentation, a CrowdPose file without a
numeric ``crowdIndex``, a missing or undecodable image, an image whose size differs from the JSON);
benign gaps are counted once in the returned report (images without annotations, people without
labelled joints, degenerate polygons).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from pycocotools import mask as mask_util
from pycocotools.coco import COCO
from torch.utils.data import Dataset

from pose.bottomup.codec import BottomUpCodec
from pose.data.coco import LoadReport, _images_by_id, read_json
from pose.data.image_io import read_rgb
from pose.data.transforms import crop_matrix, transform_points, warp_crop
from pose.evaluation.crowdpose_eval import check_crowdpose_gt
from pose.metainfo import DatasetMeta

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------- records
@dataclass
class BottomUpImage:
    """One image and its people.

    Attributes:
        image_id: COCO image id.
        image_path: path of the image file.
        width, height: image size from the JSON (the decoded image must match it).
        joints: (N, K, 3) float32 x, y, v in image pixels for the N kept people (v in {0, 1, 2}).
        boxes: (N, 4) float32 COCO ``bbox`` (x, y, w, h) of the same people, same order.
        mask_anns: the annotations that make the ignore mask, each ``{"id", "iscrowd",
            "segmentation"}`` (crowd RLEs, zero-keypoint polygons), already validated.
        crowd_index: the CrowdPose ``crowdIndex`` when the JSON has one, else None.
    """

    image_id: int
    image_path: Path
    width: int
    height: int
    joints: np.ndarray
    boxes: np.ndarray
    mask_anns: list[dict] = field(default_factory=list)
    crowd_index: float | None = None


def _finite_numbers(values: object) -> bool:
    if not isinstance(values, (list, tuple)):
        return False
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        return False
    return arr.ndim == 1 and bool(np.isfinite(arr).all())


def _checked_segmentation(seg: object, height: int, width: int, where: str,
                          report: LoadReport) -> list | dict | None:
    """Validate a segmentation for the ignore mask; None when nothing rasterisable is left.

    Polygons (a list of flat x, y lists) with fewer than 3 points are dropped (zero area; pycocotools
    would read a 4-value one as a box), counted in ``report``. RLEs (``{"size": [h, w], "counts": ...}``,
    compressed string or uncompressed list) must have the image's size.
    """
    if isinstance(seg, list):
        polys = []
        for poly in seg:
            if not _finite_numbers(poly) or len(poly) % 2:
                raise ValueError(f"{where}: malformed polygon in 'segmentation' (expected flat x, y numbers)")
            if len(poly) < 6:
                report.skip("degenerate polygons (< 3 points)")
                continue
            polys.append([float(v) for v in poly])
        return polys or None
    if isinstance(seg, dict) and "counts" in seg and "size" in seg:
        size = seg["size"]
        if not isinstance(size, (list, tuple)) or [int(v) for v in size] != [height, width]:
            raise ValueError(f"{where}: RLE size {size} does not match the image size "
                             f"[{height}, {width}] (h, w)")
        if not isinstance(seg["counts"], (str, list)):
            raise ValueError(f"{where}: RLE 'counts' must be a string or a list")
        return {"size": [height, width], "counts": seg["counts"]}
    raise ValueError(f"{where}: unsupported 'segmentation' (expected polygons or an RLE with 'size' and "
                     f"'counts')")


def _decode_segmentation(seg: list | dict, height: int, width: int) -> np.ndarray:
    """(H, W) uint8 0/1 of a validated segmentation (pycocotools ``annToRLE`` rules)."""
    if isinstance(seg, list):
        rle = mask_util.merge(mask_util.frPyObjects(seg, height, width))
    elif isinstance(seg["counts"], list):
        rle = mask_util.frPyObjects(seg, height, width)
    else:
        rle = seg
    return mask_util.decode(rle)


def load_bottomup_images(
    ann_file: str | Path,
    image_dir: str | Path,
    meta: DatasetMeta,
    train: bool,
) -> tuple[list[BottomUpImage], LoadReport]:
    """Whole-image records from a COCO-format keypoint file (COCO or CrowdPose layout).

    Args:
        ann_file: the annotation JSON; with ``train=False`` an ``image_info`` file (no
            ``annotations``) is accepted and gives images without people.
        image_dir: folder the images' ``file_name`` are relative to.
        meta: keypoint layout; ``meta.name == "crowdpose"`` requires a numeric ``crowdIndex`` on
            every image.
        train: keep only images with at least one annotation (any kind); otherwise keep all.

    Returns:
        The records in JSON image order and the :class:`LoadReport` (already logged once).

    Raises:
        ValueError / FileNotFoundError: naming the file and the image or annotation id.
    """
    path = Path(ann_file)
    data = read_json(path)
    by_image = group_annotations(data, path, meta, train)  # type: ignore[arg-type]
    report = LoadReport(source=str(path))
    out: list[BottomUpImage] = []
    for img in data["images"]:  # type: ignore[index]
        entries = by_image.get(int(img["id"]), [])
        if train and not entries:
            report.skip("images without annotations")
            continue
        out.append(image_record(img, entries, Path(image_dir), meta, path, report)[0])
    report.kept = len(out)
    report.log()
    return out, report


def group_annotations(data: dict, path: Path, meta: DatasetMeta, train: bool
                      ) -> dict[int, list[tuple[dict, np.ndarray]]]:
    """Validate a parsed keypoint file and group its annotations by image id, each with its (K, 3)
    float32 keypoints, in file order (the first half of :func:`load_bottomup_images`, shared with the
    bottom-up shard writer, :func:`pose.data.shards.writer.write_shards`)."""
    images = _images_by_id(data, path)
    if len(images) != len(data["images"]):
        seen: set[int] = set()
        for img in data["images"]:
            if int(img["id"]) in seen:
                raise ValueError(f"{path}: image id {img['id']} appears more than once")
            seen.add(int(img["id"]))
    if meta.name == "crowdpose":
        gt = COCO()  # only .dataset is read: no index, no prints
        gt.dataset = data
        check_crowdpose_gt(gt, str(path))
    anns = data.get("annotations")
    if anns is None:
        if train:
            raise ValueError(f"{path}: no 'annotations' list (training needs keypoint annotations)")
        anns = []
    if not isinstance(anns, list):
        raise ValueError(f"{path}: 'annotations' is not a list")  # noqa: TRY004

    k = meta.num_keypoints
    by_image: dict[int, list[tuple[dict, np.ndarray]]] = {}
    for i, ann in enumerate(anns):
        ann_id = ann.get("id", f"#{i}") if isinstance(ann, dict) else f"#{i}"
        if not isinstance(ann, dict):
            raise ValueError(f"{path}: annotation {ann_id} is not an object")  # noqa: TRY004
        if "image_id" not in ann or int(ann["image_id"]) not in images:
            raise ValueError(f"{path}: annotation {ann_id} refers to unknown image {ann.get('image_id')}")
        kp = ann.get("keypoints")
        if not isinstance(kp, list) or len(kp) != 3 * k:
            n = len(kp) if isinstance(kp, list) else None
            raise ValueError(
                f"{path}: annotation {ann_id} (image {ann['image_id']}) has {n} keypoint values, "
                f"expected {3 * k} for dataset '{meta.name}'"
            )
        if not _finite_numbers(kp):
            raise ValueError(f"{path}: annotation {ann_id} (image {ann['image_id']}) has non-numeric or "
                             f"non-finite keypoints")
        by_image.setdefault(int(ann["image_id"]), []).append((ann, np.asarray(kp, np.float32).reshape(k, 3)))
    return by_image


def image_record(img: dict, entries: list[tuple[dict, np.ndarray]], image_dir: Path, meta: DatasetMeta,
                 path: Path, report: LoadReport) -> tuple[BottomUpImage, list[dict]]:
    """One image's record from its JSON entry and its :func:`group_annotations` entries, and the
    annotations of the kept people (same order as ``joints``): which people train and which
    segmentations make the ignore mask is decided here only (the second half of
    :func:`load_bottomup_images`, shared with the bottom-up shard writer)."""
    image_id = int(img["id"])
    width, height = int(img["width"]), int(img["height"])
    if width <= 0 or height <= 0:
        raise ValueError(f"{path}: image {image_id} has size {width}x{height}")
    joints, boxes, mask_anns, people = [], [], [], []
    for ann, kps in entries:
        where = f"{path}: annotation {ann.get('id')} (image {image_id})"
        crowd = bool(ann.get("iscrowd", 0))
        labelled = int((kps[:, 2] > 0).sum())
        num_keypoints = int(ann.get("num_keypoints", labelled))
        if "segmentation" in ann and (crowd or num_keypoints == 0):
            seg = _checked_segmentation(ann["segmentation"], height, width, where, report)
            if seg is not None:
                mask_anns.append({"id": ann.get("id"), "iscrowd": int(crowd), "segmentation": seg})
        if crowd and num_keypoints <= 0:
            continue  # a crowd region: mask only
        if labelled == 0:
            report.skip("people without labelled joints (no targets; polygons still masked)")
            continue
        bbox = ann.get("bbox")
        if not _finite_numbers(bbox) or len(bbox) != 4:
            raise ValueError(f"{where}: missing or malformed 'bbox' {bbox!r} (needed for the box scale)")
        joints.append(kps)
        boxes.append(np.asarray(bbox, np.float32))
        people.append(ann)
    ci = img.get("crowdIndex")
    record = BottomUpImage(
        image_id=image_id,
        image_path=image_dir / img["file_name"],
        width=width,
        height=height,
        joints=np.stack(joints) if joints else np.zeros((0, meta.num_keypoints, 3), np.float32),
        boxes=np.stack(boxes) if boxes else np.zeros((0, 4), np.float32),
        mask_anns=mask_anns,
        crowd_index=float(ci) if _finite_numbers([ci]) else None,
    )
    return record, people


def check_size(image: np.ndarray, img: BottomUpImage) -> None:
    """Raise ``ValueError`` naming the image when the decoded pixels are not the annotation's size."""
    if image.shape[:2] != (img.height, img.width):
        raise ValueError(f"{img.image_path} (image id {img.image_id}): decoded size "
                         f"{image.shape[1]}x{image.shape[0]} differs from the annotation's "
                         f"{img.width}x{img.height}")


def ignore_mask(img: BottomUpImage) -> np.ndarray:
    """(H, W) float32 at full image size: 0 on crowd RLEs and zero-keypoint polygons, 1 elsewhere."""
    mask = np.ones((img.height, img.width), np.float32)
    for ann in img.mask_anns:
        mask[_decode_segmentation(ann["segmentation"], img.height, img.width) > 0] = 0.0
    return mask


# ---------------------------------------------------------------------------------------------- geometry
@dataclass(frozen=True)
class AffineParams:
    """One draw of the bottom-up augmentation.

    Attributes:
        scale: side of the source square / short image side (> 1 zooms out).
        rotation: degrees, counter-clockwise in the image as displayed (``crop_matrix``).
        translate: crop-centre shift as a fraction of the *scaled* image width and height.
        flip: mirror horizontally (and swap left / right joint labels).
    """

    scale: float = 1.0
    rotation: float = 0.0
    translate: tuple[float, float] = (0.0, 0.0)
    flip: bool = False


@dataclass(frozen=True)
class BottomUpAugment:
    """RandomAffine + RandomFlip of the reference (spec 1.2): rotation U[-rotation, rotation] degrees,
    scale U[scale_range], centre shift U[-translation, translation] x scaled image size, flip with
    probability ``flip_prob``."""

    rotation: float = 30.0
    scale_range: tuple[float, float] = (0.75, 1.5)
    translation: float = 0.2
    flip_prob: float = 0.5

    def __post_init__(self) -> None:
        lo, hi = self.scale_range
        if self.rotation < 0 or self.translation < 0:
            raise ValueError("augment.rotation and augment.translation must be >= 0")
        if not 0 < lo <= hi:
            raise ValueError(f"augment.scale_range must be 0 < min <= max, got {list(self.scale_range)}")
        if not 0.0 <= self.flip_prob <= 1.0:
            raise ValueError(f"augment.flip_prob must be in [0, 1], got {self.flip_prob}")

    def sample(self, rng: np.random.Generator) -> AffineParams:
        lo, hi = self.scale_range
        scale = float(rng.uniform(lo, hi))
        rotation = float(rng.uniform(-self.rotation, self.rotation))
        tx, ty = (float(v) for v in rng.uniform(-self.translation, self.translation, size=2))
        flip = bool(rng.random() < self.flip_prob)
        return AffineParams(scale=scale, rotation=rotation, translate=(tx, ty), flip=flip)


def train_matrices(width: int, height: int, params: AffineParams, input_size: int,
                   heatmap_sizes: tuple[int, ...]) -> tuple[np.ndarray, list[np.ndarray]]:
    """The image->input matrix (2, 3) and one image->heatmap matrix per resolution.

    The source is a square of side ``min(w, h) * scale`` centred on the image centre plus the
    translation, rotated by ``rotation``; it fills the ``input_size`` square (flipped when
    ``params.flip``). Heatmap ``i`` uses the input matrix times ``S_i / input_size``.
    """
    s = params.scale
    center = np.array([(width - 1) * 0.5 + params.translate[0] * width * s,
                       (height - 1) * 0.5 + params.translate[1] * height * s])
    side = min(width, height) * s
    m_in = crop_matrix(center, np.array([side, side]), params.rotation, (input_size, input_size), params.flip)
    return m_in, [m_in * (size / input_size) for size in heatmap_sizes]


def warp_mask(mask: np.ndarray, m: np.ndarray, size: int) -> np.ndarray:
    """Warp a 0/1 (H, W) mask to (size, size) float32 0/1: x255 uint8, bilinear, constant-0 border,
    then > 0.5 (outside the image becomes 0 = ignored)."""
    warped = cv2.warpAffine((mask * 255).astype(np.uint8), m, (int(size), int(size)),
                            flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return (warped > 127).astype(np.float32)


def box_corners(boxes: np.ndarray) -> np.ndarray:
    """(N, 4) xywh -> (N, 4, 2) corners TL, TR, BR, BL."""
    x, y, w, h = (boxes[:, i].astype(np.float64) for i in range(4))
    return np.stack([np.stack([x, y], -1), np.stack([x + w, y], -1),
                     np.stack([x + w, y + h], -1), np.stack([x, y + h], -1)], axis=1)


@dataclass(frozen=True)
class BottomUpSampler:
    """Warp + encode for one image (the per-item work of :class:`BottomUpDataset`)."""

    meta: DatasetMeta
    codec: BottomUpCodec

    def geometry(self, img: BottomUpImage, params: AffineParams
                 ) -> tuple[np.ndarray, list[np.ndarray], np.ndarray, np.ndarray]:
        """Input matrix (2, 3), heatmap matrices [(2, 3)], joints (N, K, 3) in input pixels (labels
        swapped with the flip indices when flipped; x, y = 0 where v = 0) and box corners (N, 4, 2)
        in input pixels."""
        m_in, m_heat = train_matrices(img.width, img.height, params, self.codec.input_size,
                                      tuple(self.codec.heatmap_sizes))
        joints = img.joints.astype(np.float32).copy()
        joints[..., :2] = transform_points(joints[..., :2], m_in)
        if params.flip:
            joints = joints[:, self.meta.flip_indices]
        joints[joints[..., 2] <= 0, :2] = 0.0
        corners = transform_points(box_corners(img.boxes), m_in).reshape(-1, 4, 2)
        return m_in, m_heat, joints, corners

    def sample(self, image: np.ndarray, img: BottomUpImage, params: AffineParams,
               mask: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Returns ``image`` (3, in, in) uint8, ``heatmaps_{i}`` (K, S_i, S_i), ``mask_{i}`` (S_i, S_i),
        ``joints`` (P, K, 2) int64, ``box_scales`` (P,), ``num_people`` and ``num_dropped`` (int64).

        ``mask``: the image's (H, W) mask (1 = use, 0 = ignore) when it is already known (a bottom-up
        shard row stores it); default :func:`ignore_mask` of ``img``'s ``mask_anns``."""
        check_size(image, img)
        m_in, m_heat, joints, corners = self.geometry(img, params)
        size = self.codec.input_size
        crop = warp_crop(image, m_in, (size, size))
        if mask is None:
            mask = ignore_mask(img)
        elif mask.shape != (img.height, img.width):
            raise ValueError(f"{img.image_path} (image id {img.image_id}): mask is {mask.shape[1]}x{mask.shape[0]}, "
                             f"the image {img.width}x{img.height}")
        targets = self.codec.encode(joints, corners)
        out: dict[str, np.ndarray] = {"image": np.ascontiguousarray(crop.transpose(2, 0, 1))}
        for i, (s, m) in enumerate(zip(self.codec.heatmap_sizes, m_heat)):
            out[f"heatmaps_{i}"] = targets.heatmaps[i].astype(np.float32, copy=False)
            out[f"mask_{i}"] = warp_mask(mask, m, int(s))
        out["joints"] = targets.joints.astype(np.int64, copy=False)
        out["box_scales"] = targets.box_scales.astype(np.float32, copy=False)
        out["num_people"] = np.array(targets.num_people, np.int64)
        out["num_dropped"] = np.array(targets.num_dropped, np.int64)
        return out


class BottomUpDataset(Dataset):
    """Map-style training dataset over whole images.

    Each item is a dict of tensors: ``image`` (3, in, in) uint8 RGB, ``heatmaps_{i}`` (K, S_i, S_i)
    float32, ``mask_{i}`` (S_i, S_i) float32 (1 = use, 0 = ignore), ``joints`` (P, K, 2) int64,
    ``box_scales`` (P,) float32, ``num_people``, ``num_dropped`` (people over the codec's
    ``max_people`` left out of the tag / scale slots) and ``image_id`` (int64 scalars). The default
    collate stacks them.

    Augmentation is drawn from ``np.random.default_rng([seed, epoch, index])``: reproducible and
    independent of the number of loader workers. Call :meth:`set_epoch` each epoch; it logs once
    how many people this process dropped over the cap during the previous epoch (with loader
    workers the counts live in the workers: sum the batches' ``num_dropped`` instead).
    """

    def __init__(
        self,
        images: list[BottomUpImage],
        meta: DatasetMeta,
        codec: BottomUpCodec,
        augment: BottomUpAugment | None = None,
        seed: int = 0,
    ) -> None:
        self.images = images
        self.sampler = BottomUpSampler(meta, codec)
        self.augment = augment
        self.seed = seed
        self.epoch = 0
        self.num_dropped = 0
        self.images_over_cap = 0

    def set_epoch(self, epoch: int) -> None:
        if self.num_dropped:
            log.warning("bottom-up data, epoch %d: %d people in %d images over max_people=%d left out of the "
                        "tag/scale targets (their heatmaps are kept)", self.epoch, self.num_dropped,
                        self.images_over_cap, self.sampler.codec.max_people)
        self.num_dropped = 0
        self.images_over_cap = 0
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.images)

    def params_for(self, index: int) -> AffineParams:
        if self.augment is None:
            return AffineParams()
        return self.augment.sample(np.random.default_rng([self.seed, self.epoch, index]))

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        img = self.images[index]
        image = read_rgb(img.image_path, img.image_id)
        out = self.sampler.sample(image, img, self.params_for(index))
        dropped = int(out["num_dropped"])
        if dropped:
            self.num_dropped += dropped
            self.images_over_cap += 1
        item = {k: torch.from_numpy(v) for k, v in out.items()}
        item["image_id"] = torch.tensor(img.image_id, dtype=torch.int64)
        return item


# ---------------------------------------------------------------------------------------------- test time
def _ceil_to(numerator: int, denominator: int, divisor: int) -> int:
    """ceil(numerator / denominator) rounded up to a multiple of ``divisor``, in exact integers."""
    return -(-numerator // (denominator * divisor)) * divisor


def aligned_size(width: int, height: int, input_size: int, size_divisor: int) -> tuple[int, int]:
    """ResizeAlign base size (w, h): the short side becomes ceil_d(input_size), the long side
    ceil_d(that * long / short), ceil_d rounding up to a multiple of ``size_divisor``."""
    short = _ceil_to(input_size, 1, size_divisor)
    if width < height:
        return short, _ceil_to(short * height, width, size_divisor)
    return _ceil_to(short * width, height, size_divisor), short


def resize_align(image: np.ndarray, input_size: int, size_divisor: int = 64,
                 scale_factor: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Test-time resize (spec 1.3): keep the aspect ratio, pad to multiples of ``size_divisor``.

    Args:
        image: (H, W, 3) uint8.
        input_size: the training input side; the short side is resized to it (rounded up to the
            divisor).
        scale_factor: output size ``int(base * factor)`` (multi-scale test; 1 gives the base size).

    Returns:
        resized (h, w, 3) uint8 (content centred, black padding) and the 2x3 float64 matrix
        image -> resized: a uniform scale ``out_short / short`` that maps the image centre
        ((W-1)/2, (H-1)/2) to the output centre ((w-1)/2, (h-1)/2).
    """
    h, w = image.shape[:2]
    base_w, base_h = aligned_size(w, h, input_size, size_divisor)
    out_w, out_h = int(base_w * scale_factor), int(base_h * scale_factor)
    if out_w < 1 or out_h < 1:
        raise ValueError(f"resize_align: scale_factor {scale_factor} gives an empty image")
    f = (out_w / w) if w < h else (out_h / h)
    m = crop_matrix(np.array([(w - 1) * 0.5, (h - 1) * 0.5]), np.array([out_w / f, out_h / f]), 0.0,
                    (out_w, out_h))
    return warp_crop(image, m, (out_w, out_h)), m


class ValImageDataset(Dataset):
    """Test-time dataset over whole images (batch size 1: sizes vary).

    Each item: ``image`` (3, h, w) uint8 RGB at scale factor 1 with its ``matrix`` (2, 3) float64
    image -> resized; for every further scale factor j >= 1, ``image_{j}`` and ``matrix_{j}``;
    ``image_id`` (int64) and ``orig_size`` (2,) int64 (W, H) of the original image.
    """

    def __init__(self, images: list[BottomUpImage], input_size: int, size_divisor: int = 64,
                 scale_factors: tuple[float, ...] = (1.0,)) -> None:
        if not scale_factors or scale_factors[0] != 1.0 or min(scale_factors) <= 0:
            raise ValueError(f"scale_factors must start with 1.0 and be > 0, got {list(scale_factors)}")
        self.images = images
        self.input_size = input_size
        self.size_divisor = size_divisor
        self.scale_factors = tuple(scale_factors)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        img = self.images[index]
        image = read_rgb(img.image_path, img.image_id)
        item = val_item(image, img, self.input_size, self.size_divisor, self.scale_factors)
        return {k: torch.from_numpy(v) for k, v in item.items()}


def val_item(image: np.ndarray, img: BottomUpImage, input_size: int, size_divisor: int,
             scale_factors: tuple[float, ...]) -> dict[str, np.ndarray]:
    """A :class:`ValImageDataset` item as numpy arrays, from the decoded (H, W, 3) RGB ``image`` of
    ``img`` (shared with the bottom-up shard decoder)."""
    check_size(image, img)
    item: dict[str, np.ndarray] = {}
    for j, factor in enumerate(scale_factors):
        resized, m = resize_align(image, input_size, size_divisor, factor)
        suffix = "" if j == 0 else f"_{j}"
        item[f"image{suffix}"] = np.ascontiguousarray(resized.transpose(2, 0, 1))
        item[f"matrix{suffix}"] = m.astype(np.float64)
    item["image_id"] = np.array(img.image_id, np.int64)
    item["orig_size"] = np.array([img.width, img.height], np.int64)
    return item
