"""Bottom-up inference end to end with an oracle network: heatmaps and tags rendered from the ground
truth go through ResizeAlign, flip and multi-scale aggregation, grouping and back-projection, and
must score near-perfect AP (COCO and CrowdPose protocols). This pins the geometry of every step."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pose.bottomup.codec import BottomUpCodec
from pose.bottomup.config import BottomUpTestConfig
from pose.bottomup.data import ValImageDataset, load_bottomup_images
from pose.bottomup.inference import BottomUpEvaluator, people_to_results
from pose.data.transforms import transform_points
from pose.metainfo import get_metainfo

TAG_SPACING = 3.0  # > tag_threshold: people never merge


class OracleMethod:
    """Stands in for :class:`BottomUpMethod`: ``forward_images`` renders Gaussian heatmaps (sigma 1.5
    heatmap px at stride 4) at the ground-truth joints of the current image and constant tags
    ``TAG_SPACING * person`` around them; the flipped copy of a batch gets the mirrored maps."""

    def __init__(self, meta, embed_dim: int) -> None:
        self.meta, self.embed_dim = meta, embed_dim
        self.joints: np.ndarray | None = None  # (N, K, 3) original image pixels
        self.matrices: list[np.ndarray] = []  # image -> resized, per forward call in order

    def eval(self):
        return self

    def forward_images(self, x: torch.Tensor):
        b, _, h, w = x.shape
        m = self.matrices.pop(0)
        k = self.meta.num_keypoints
        hh, ww = h // 4, w // 4
        ys, xs = np.mgrid[0:hh, 0:ww].astype(np.float64)
        heat = np.zeros((k, hh, ww))
        tags = np.zeros((k, hh, ww, self.embed_dim))
        best = np.full((k, hh, ww), np.inf)
        for n, person in enumerate(self.joints):
            pts = transform_points(person[:, :2], m)
            for j in range(k):
                if person[j, 2] <= 0:
                    continue
                cx, cy = (pts[j, 0] - 1.5) / 4, (pts[j, 1] - 1.5) / 4  # bilinear projection: p -> 4p + 1.5
                d2 = (xs - cx) ** 2 + (ys - cy) ** 2
                heat[j] = np.maximum(heat[j], np.exp(-d2 / (2 * 1.5**2)))
                closer = d2 < best[j]
                best[j][closer] = d2[closer]
                tags[j][closer] = TAG_SPACING * (n + 1)
        hm, tg = torch.from_numpy(heat).float()[None], torch.from_numpy(tags).float()[None]
        if b == 2:
            idx = torch.as_tensor(self.meta.flip_indices)
            hm = torch.cat([hm, hm.flip(-1)[:, idx]])
            tg = torch.cat([tg, tg.flip(-2)[:, idx]])
        return [hm], tg


@pytest.mark.parametrize("fmt", ["coco", "crowdpose"])
@pytest.mark.parametrize("flip,factors", [(False, (1.0,)), (True, (1.0,)), (True, (1.0, 0.5))])
def test_oracle_maps_score_near_perfect_ap(crowd_dataset, fmt, flip, factors):
    root = crowd_dataset(fmt)
    meta = get_metainfo(fmt)
    gt_file = root / "annotations/person_keypoints_val.json"
    images, _ = load_bottomup_images(gt_file, root / "images/val", meta, train=False)
    test = BottomUpTestConfig(flip_test=flip, scale_factors=factors, size_divisor=32, max_people=20)
    codec = BottomUpCodec(input_size=256, heatmap_sizes=(64,), embed_dim=1)
    evaluator = BottomUpEvaluator(meta, codec, test, gt_file)
    oracle = OracleMethod(meta, embed_dim=1)
    dataset = ValImageDataset(images, codec.input_size, test.size_divisor, factors)
    results = []
    for i, record in enumerate(images):
        item = dataset[i]
        oracle.joints = record.joints
        oracle.matrices = [item["matrix" if j == 0 else f"matrix_{j}"].numpy() for j in range(len(factors))]
        people, scores = evaluator.predict_resized(
            oracle, [item["image" if j == 0 else f"image_{j}"] for j in range(len(factors))],
            item["matrix"].numpy(), torch.device("cpu"))
        labelled = int((record.joints[:, :, 2] > 0).any(axis=1).sum())
        assert len(people) >= labelled  # every labelled person found (refine fills in the rest)
        results.extend(people_to_results(people, scores, record.image_id, test.max_people))
    stats = evaluator.score(results)
    assert stats["AP"] > 0.85, stats


def test_people_to_results_keeps_the_best_scoring():
    people = np.zeros((3, 17, 3))
    people[:, :, 0] = np.arange(17)
    people[:, :, 1] = 2 * np.arange(17)
    out = people_to_results(people, np.array([0.1, 0.9, 0.5]), image_id=7, max_people=2)
    assert [r["score"] for r in out] == [0.9, 0.5]
    assert out[0]["bbox"] == [0.0, 0.0, 16.0, 32.0] and out[0]["image_id"] == 7 and len(out[0]["keypoints"]) == 51
