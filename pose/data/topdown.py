"""Top-down samples: crop, augment and encode one person instance.

:class:`TopDownSampler` turns a :class:`PersonInstance` (plus an image) into a training or test
sample; :class:`TopDownDataset` is the map-style torch dataset over a list of instances that the
plain-PyTorch loop uses. Crops leave the dataset as uint8 RGB tensors; normalisation happens in
batch on the model's device (:class:`Normalizer`), which keeps the data path cheap to move around.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from pose.codecs.heatmap import HeatmapCodec
from pose.data.coco import PersonInstance
from pose.data.image_io import read_rgb
from pose.data.transforms import (
    AugmentParams,
    TopDownAugment,
    compose_affine,
    crop_matrices,
    transform_points_batch,
    warp_crop,
)
from pose.metainfo import DatasetMeta

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def augmentation_rng(seed: int, epoch: int, index: int, draw: int | None = None) -> np.random.Generator:
    """The generator of one sample's augmentation: ``default_rng([seed, epoch, index])``, or with
    ``draw`` (a labeled instance drawn more than once per epoch: the mixed item, or the pass of a cycled
    stream) ``default_rng([seed, epoch, index, draw])``, so every draw of an instance gets its own
    augmentation, as the original's ``__getitem__`` does."""
    key = [int(seed), int(epoch), int(index)] if draw is None else [int(seed), int(epoch), int(index), int(draw)]
    return np.random.default_rng(key)


@dataclass(frozen=True)
class TopDownSampler:
    """Crop + augment + encode for one instance (the per-sample work shared by every loader)."""

    meta: DatasetMeta
    codec: HeatmapCodec

    def geometry(self, inst: PersonInstance, params: AugmentParams) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The image->crop matrix (2, 3), the keypoints in crop pixels (K, 2) and their visibility (K,),
        with the keypoint labels swapped when ``params.flip``."""
        m, kps, vis = self.geometry_batch(inst.center[None], inst.scale[None], inst.keypoints[None],
                                          inst.visible[None], [params])
        return m[0], kps[0], vis[0]

    def geometry_batch(self, centers: np.ndarray, scales: np.ndarray, keypoints: np.ndarray, visible: np.ndarray,
                       params: Sequence[AugmentParams]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`geometry` of N instances at once: centres (N, 2), windows (N, 2), keypoints (N, K, 2),
        visible (N, K) and one draw each -> matrices (N, 2, 3), crop keypoints (N, K, 2) float32,
        visible (N, K). Row i equals :meth:`geometry` of instance i exactly."""
        scales = np.asarray(scales)
        factors = np.array([p.scale for p in params], dtype=scales.dtype if scales.dtype.kind == "f" else np.float64)
        flips = np.array([p.flip for p in params], dtype=bool)
        m = crop_matrices(centers, scales * factors[:, None], [p.rotation for p in params], self.codec.input_size,
                          flips)
        kps = transform_points_batch(keypoints, m)
        vis = np.array(visible)
        if flips.any():
            swap = self.meta.flip_indices
            kps[flips] = kps[flips][:, swap]
            vis[flips] = vis[flips][:, swap]
        return m, kps, vis

    def sample(self, image: np.ndarray, inst: PersonInstance, params: AugmentParams,
               region_to_image: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Returns image (3, H, W) uint8, heatmaps (K, h, w), weights (K,), keypoints (K, 2) in
        crop pixels, visible (K,), matrix (2, 3) image->crop.

        ``image`` is the full image, or, with ``region_to_image`` (2x3, region pixel -> image pixel),
        a stored region of it (``pose.data.shards``): the crop is then warped from the region with
        the composed matrix ``image->crop o region->image``; keypoints and ``matrix`` stay in image
        coordinates either way.
        """
        m, kps, vis = self.geometry(inst, params)
        crop = warp_crop(image, m if region_to_image is None else compose_affine(m, region_to_image),
                         self.codec.input_size)
        heatmaps, weights = self.codec.encode(kps, vis)
        return {
            "image": np.ascontiguousarray(crop.transpose(2, 0, 1)),
            "heatmaps": heatmaps,
            "weights": weights,
            "keypoints": kps,
            "visible": vis.astype(np.float32),
            "matrix": m.astype(np.float32),
        }


class TopDownDataset(Dataset):
    """Map-style dataset over person instances.

    Each item is a dict of tensors: ``image`` (3, H, W) uint8 RGB, ``heatmaps`` (K, h, w),
    ``weights`` (K,), ``keypoints`` (K, 2), ``visible`` (K,), ``matrix`` (2, 3) image->crop,
    and the instance's ``image_id``, ``score``, ``area``, ``center``, ``scale``, ``index``.

    Augmentation is drawn from :func:`augmentation_rng` ``(seed, epoch, index)``: reproducible, and
    independent of the number of loader workers. Call :meth:`set_epoch` each epoch. :meth:`draw` gives
    instance ``index`` with the augmentation of draw ``draw`` (the mixed semi-supervised stream draws a
    labeled instance many times per epoch, each time afresh).
    """

    def __init__(
        self,
        instances: list[PersonInstance],
        meta: DatasetMeta,
        codec: HeatmapCodec,
        augment: TopDownAugment | None = None,
        seed: int = 0,
    ) -> None:
        self.instances = instances
        self.sampler = TopDownSampler(meta, codec)
        self.augment = augment
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.instances)

    def params_for(self, index: int, draw: int | None = None) -> AugmentParams:
        if self.augment is None:
            return AugmentParams()
        return self.augment.sample(augmentation_rng(self.seed, self.epoch, index, draw))

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return self.draw(index)

    def draw(self, index: int, draw: int | None = None) -> dict[str, torch.Tensor]:
        """Item ``index`` (see the class docstring), augmented with the parameters of draw ``draw``."""
        inst = self.instances[index]
        image = read_rgb(inst.image_path, inst.image_id)
        out = self.sampler.sample(image, inst, self.params_for(index, draw))
        item = {k: torch.from_numpy(v) for k, v in out.items()}
        item["image_id"] = torch.tensor(inst.image_id, dtype=torch.int64)
        item["score"] = torch.tensor(inst.score, dtype=torch.float32)
        item["area"] = torch.tensor(inst.area, dtype=torch.float32)
        item["center"] = torch.from_numpy(inst.center.astype(np.float32))
        item["scale"] = torch.from_numpy(inst.scale.astype(np.float32))
        item["index"] = torch.tensor(index, dtype=torch.int64)
        return item


class Normalizer(torch.nn.Module):
    """uint8 RGB (B, 3, H, W) -> float (x / 255 - mean) / std with ImageNet statistics."""

    def __init__(self, mean: tuple[float, ...] = IMAGENET_MEAN, std: tuple[float, ...] = IMAGENET_STD) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1) * 255.0, persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1) * 255.0, persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return (images.float() - self.mean) / self.std
