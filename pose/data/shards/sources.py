"""The input of a shard directory: which files one split is read from (per dataset layout) and the
top-down people they give, read by the file loader's readers (:mod:`pose.data.readers`).

Default files under ``root`` by ``dataset`` (``--split NAME``; every one can be overridden):

==============  ======================================================  =====================
dataset         annotations                                             images
==============  ======================================================  =====================
COCO-format     ``annotations/person_keypoints_NAME.json`` (or          ``images/NAME``
                ``annotations/image_info_NAME.json``)
``mpii``        ``annot/NAME.json`` (``val``: ``annot/valid.json``)     ``images``
``aic``         ``F/keypoint_F_annotation.json``, F = NAME (``val``:    ``F/images``
                ``validation``), or ``annotations/aic_NAME.json``
==============  ======================================================  =====================
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pose.data.coco import PersonInstance, load_detection_instances
from pose.data.readers import carry_instances, load_annotated_instances
from pose.data.shards.options import Boxes, ShardOptions
from pose.metainfo import DatasetMeta, get_metainfo

AIC_SPLIT_FOLDERS = {"val": "validation"}
"""AI Challenger's folder of a split name that differs from it (``train`` is ``train``)."""


@dataclass(frozen=True)
class ShardSource:
    """The input files of one split."""

    ann: Path
    images: Path
    detections: Path | None = None


def annotation_candidates(root: Path, split: str, dataset: str = "coco") -> list[Path]:
    """The default annotation files of ``split`` under ``root``, in order of preference (see the module
    docstring)."""
    if dataset == "mpii":
        names = [split] + (["valid"] if split == "val" else [])
        return [root / "annot" / f"{name}.json" for name in names]
    if dataset == "aic":
        folder = AIC_SPLIT_FOLDERS.get(split, split)
        return [root / folder / f"keypoint_{folder}_annotation.json", root / "annotations" / f"aic_{split}.json"]
    return [root / "annotations" / f"person_keypoints_{split}.json", root / "annotations" / f"image_info_{split}.json"]


def default_images(root: Path, split: str, dataset: str = "coco") -> Path:
    """The default image directory of ``split`` under ``root`` (see the module docstring)."""
    if dataset == "mpii":
        return root / "images"
    if dataset == "aic":
        return root / AIC_SPLIT_FOLDERS.get(split, split) / "images"
    return root / "images" / split


def resolve_source(root: str | Path, split: str, boxes: Boxes = "gt", ann: str | Path | None = None,
                   images: str | Path | None = None, detections: str | Path | None = None,
                   dataset: str = "coco") -> ShardSource:
    """The files of ``split`` under ``root``: :func:`annotation_candidates` (the first that exists),
    :func:`default_images`, and for detection boxes the one file in ``person_detection_results/`` whose name
    contains ``split``. Relative overrides are relative to ``root``.

    Raises:
        FileNotFoundError: naming the paths tried and the option that overrides them.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset root not found: {root}")

    def under(p: str | Path) -> Path:
        p = Path(p)
        return p if p.is_absolute() else root / p

    if ann is None:
        cands = annotation_candidates(root, split, dataset)
        found = [c for c in cands if c.exists()]
        if not found:
            raise FileNotFoundError(f"no {'' if dataset == 'coco' else dataset + ' '}annotation file for split "
                                    f"'{split}' under {root} (tried {', '.join(str(c) for c in cands)}; pass --ann)")
        ann_path = found[0]
    else:
        ann_path = under(ann)
    img_dir = under(images) if images is not None else default_images(root, split, dataset)
    if not img_dir.is_dir():
        raise FileNotFoundError(f"image directory not found: {img_dir} (pass --images)")
    det_path = None
    if boxes == "detections":
        if detections is not None:
            det_path = under(detections)
        else:
            det_dir = root / "person_detection_results"
            cands = sorted(det_dir.glob(f"*{split}*.json")) if det_dir.is_dir() else []
            if len(cands) != 1:
                raise FileNotFoundError(
                    f"cannot pick the detection file for split '{split}': {len(cands)} candidates in "
                    f"{det_dir} ({', '.join(c.name for c in cands) or 'none'}); pass --detections")
            det_path = cands[0]
        if not det_path.exists():
            raise FileNotFoundError(f"detection file not found: {det_path}")
    return ShardSource(ann=ann_path, images=img_dir, detections=det_path)


def row_layout(opts: ShardOptions) -> DatasetMeta:
    """The keypoint layout the rows of ``opts`` hold: ``opts.layout``, else the dataset's own."""
    return get_metainfo(opts.layout or opts.dataset)


def load_instances(opts: ShardOptions, src: ShardSource) -> list[PersonInstance]:
    """The top-down people of one split, as the file loader reads them: ``gt`` boxes by the dataset's reader
    (:func:`pose.data.readers.load_annotated_instances`; ``people="all"`` keeps people without a labeled
    joint), or detections (COCO-format image lists); carried into ``opts.layout`` when set
    (:func:`pose.data.readers.carry_instances`). Bad input raises naming the file and the record; expected
    filtering is a counted skip the reader reports once."""
    meta = get_metainfo(opts.dataset)
    if opts.boxes == "gt":
        items = load_annotated_instances(meta, src.ann, src.images, opts.aspect_ratio, opts.padding,
                                         labeled_only=opts.people == "labeled")
    else:
        assert src.detections is not None  # resolve_source found it
        items = load_detection_instances(src.detections, src.ann, src.images, meta, opts.aspect_ratio,
                                         opts.det_score_threshold, opts.padding)
    layout = row_layout(opts)
    return carry_instances(items, meta, layout) if layout.name != meta.name else items
