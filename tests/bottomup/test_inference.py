"""Bottom-up inference end to end with an oracle network (:class:`pose.bottomup.oracle.OracleSwap`
without a network): heatmaps and tags rendered from the ground truth go through ResizeAlign, flip and multi-scale aggregation, grouping and back-projection, and
must score near-perfect AP (COCO and CrowdPose protocols). This pins the geometry of every step."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pose.bottomup.codec import BottomUpCodec
from pose.bottomup.config import BottomUpTestConfig
from pose.bottomup.data import ValImageDataset, load_bottomup_images
from pose.bottomup.inference import BottomUpEvaluator, people_to_results
from pose.bottomup.oracle import ORACLE_TAG_SPACING, OracleSwap, render_oracle_maps
from pose.metainfo import get_metainfo

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
    oracle = OracleSwap(None, meta.flip_indices, embed_dim=1, heatmaps=True, tags=True)
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


class PerfectHeatmapsMergedTags:
    """A network with ground-truth heatmaps and one constant tag for everybody (every person merges).

    ``BottomUpEvaluator.predict`` with ``oracle_diagnosis`` calls it once per source (net, oracle
    tags, oracle heatmaps) for each image, in item order: call c is image c // 3."""

    def __init__(self, meta, records, matrices) -> None:
        self.heat = OracleSwap(None, meta.flip_indices, embed_dim=1, heatmaps=True, tags=True)
        self.records, self.matrices, self.calls = records, matrices, 0

    def eval(self):
        return self

    def forward_images(self, x: torch.Tensor):
        i = self.calls // 3
        self.calls += 1
        self.heat.joints, self.heat.matrices = self.records[i].joints, [self.matrices[i]]
        heatmaps, tags = self.heat.forward_images(x)
        return heatmaps, torch.zeros_like(tags)


def test_oracle_diagnosis_separates_localisation_from_grouping(crowd_dataset):
    """Perfect heatmaps, useless tags: the network's AP is low, the oracle-tag AP (its localisation)
    near perfect, the oracle-heatmap AP (its grouping) as low as the network's."""
    root = crowd_dataset("coco")
    meta = get_metainfo("coco")
    gt_file = root / "annotations/person_keypoints_val.json"
    images, _ = load_bottomup_images(gt_file, root / "images/val", meta, train=False)
    test = BottomUpTestConfig(flip_test=True, size_divisor=32, max_people=20, oracle_diagnosis=True)
    codec = BottomUpCodec(input_size=256, heatmap_sizes=(64,), embed_dim=1)
    evaluator = BottomUpEvaluator(meta, codec, test, gt_file)
    dataset = ValImageDataset(images, codec.input_size, test.size_divisor, (1.0,))
    items = [dataset[i] for i in range(len(dataset))]
    method = PerfectHeatmapsMergedTags(meta, images, [it["matrix"].numpy() for it in items])
    results, seen, diag = evaluator.predict(method, items, torch.device("cpu"))
    assert sorted(results) == ["net", "oracle_heatmaps", "oracle_tags"] and seen == [r.image_id for r in images]
    assert diag.tags is None and diag.offsets is not None  # R = 1: no tag correlation
    stats = evaluator.score(results, None, diag)
    assert abs(stats["peak_dx"]) < 0.1 and abs(stats["peak_dy"]) < 0.1, stats  # the heatmaps are the truth
    assert stats["AP_oracle_tags"] > 0.85, stats
    assert stats["AP"] < 0.5 and stats["AP_oracle_heatmaps"] < 0.5, stats
    assert abs(stats["AP_oracle_heatmaps"] - stats["AP"]) < 1e-9  # same heatmaps, same tags


def test_oracle_maps_peak_at_the_joints_and_tag_the_nearest_person():
    joints = np.zeros((2, 17, 3))
    joints[0, 0] = (40.0, 20.0, 2)  # person 0's nose
    joints[1, 0] = (100.0, 60.0, 1)  # person 1's nose
    joints[1, 5] = (10.0, 10.0, 0)  # unlabelled: no peak
    identity = np.array([[1.0, 0, 0], [0, 1.0, 0]])
    for stride in (4, 2):
        hw = (128 // stride, 128 // stride)
        heat, tags = render_oracle_maps(joints, identity, (128, 128), hw, embed_dim=2)
        assert heat.shape == (17, *hw) and tags.shape == (17, *hw, 2)
        shift = (stride - 1) / 2
        for x, y in ((40.0, 20.0), (100.0, 60.0)):
            qy, qx = round((y - shift) / stride), round((x - shift) / stride)
            assert heat[0, qy, qx] == heat[0, qy - 1:qy + 2, qx - 1:qx + 2].max() > 0.8
        assert heat[5].max() == 0 and not tags[5].any()
        assert (tags[0, 0, 0] == ORACLE_TAG_SPACING).all()  # top-left: nearest to person 0
        assert (tags[0, -1, -1] == 2 * ORACLE_TAG_SPACING).all()  # bottom-right: person 1


def test_oracle_swap_needs_a_method_unless_both_maps_are_oracles():
    with pytest.raises(ValueError, match="without a method"):
        OracleSwap(None, list(range(17)), heatmaps=True, tags=False)
