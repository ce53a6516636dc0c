"""Which reader gives a dataset's top-down people, shared by the file loader (``pose.engine.components``)
and the shard writer (:mod:`pose.data.shards.writer`), so both paths crop the same instances.

* :func:`load_annotated_instances`: MPII's ``annot/*.json`` (:func:`pose.data.mpii.load_mpii_instances`),
  AI Challenger native or COCO-converted (:func:`pose.data.aic.load_aic_instances`), else a COCO-format
  keypoint file (:func:`pose.data.coco.load_gt_instances`).
* :func:`carry_instances`: the same people in another keypoint layout, joints carried by name (AIC's
  joints in MPII's 16 channels for the MPII + AIC setting, deviation M5).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

from pose.data.aic import load_aic_instances
from pose.data.coco import PersonInstance, load_gt_instances
from pose.data.mpii import load_mpii_instances
from pose.metainfo import DatasetMeta, joint_correspondence, remap_keypoints


def load_annotated_instances(meta: DatasetMeta, ann_file: str | Path, image_root: str | Path, aspect_ratio: float,
                             padding: float = 1.25, labeled_only: bool = True) -> list[PersonInstance]:
    """The annotated people of one split, by ``meta``'s reader, in the reader's deterministic order.

    Args:
        meta: the dataset (``mpii``, ``aic``, else COCO-format files in ``meta``'s layout).
        ann_file, image_root: the annotation file and its image directory.
        aspect_ratio: model input width / height (the crop window's).
        padding: box padding (not MPII's: its records carry their own window).
        labeled_only: False keeps people without a labeled joint too (MPII and AIC only: an unlabeled set
            of every person box, as ``semi.unlabeled=aic`` reads AI Challenger).

    Returns:
        :class:`PersonInstance` s with ``keypoints`` (K, 2) and ``visible`` (K,) in ``meta``'s layout.
    """
    if meta.name == "mpii":
        return load_mpii_instances(ann_file, image_root, aspect_ratio, labeled_only=labeled_only)
    if meta.name == "aic":
        return load_aic_instances(ann_file, image_root, aspect_ratio, padding, labeled_only=labeled_only)
    if not labeled_only:
        raise ValueError(f"{ann_file}: keeping people without labeled joints applies to MPII and AI Challenger; "
                         f"COCO-format files ({meta.name}) list only annotated people")
    return load_gt_instances(ann_file, image_root, meta, aspect_ratio, padding)


def carry_instances(instances: Sequence[PersonInstance], src: DatasetMeta, dst: DatasetMeta) -> list[PersonInstance]:
    """``instances`` of ``src``'s layout with their keypoints (K_src, 2) and visibility (K_src,) carried into
    ``dst``'s (K_dst, 2) and (K_dst,) by joint name (:func:`pose.metainfo.remap_keypoints`; ``dst`` joints
    without a source get zeros and visibility 0). Everything else (boxes, ids, ranks) is kept.

    Raises:
        ValueError: the layouts share no joint name.
    """
    pairs = joint_correspondence(src, dst)
    if not pairs:
        raise ValueError(f"{src.name}'s joints share no name with {dst.name}'s ({', '.join(dst.keypoint_names)})")
    out = []
    for p in instances:
        keypoints, visible = remap_keypoints(p.keypoints, p.visible, pairs, dst.num_keypoints)
        out.append(dataclasses.replace(p, keypoints=keypoints, visible=visible))
    return out
