"""Bottom-up diagnostics: the signed offsets from the ground-truth joints to the nearest peaks, and the
correlation of the tag dimensions at the ground-truth joints (pose.bottomup.diagnostics), alone and
through :meth:`pose.bottomup.inference.BottomUpEvaluator.predict` / ``score``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pose.bottomup.codec import BottomUpCodec
from pose.bottomup.config import BottomUpTestConfig
from pose.bottomup.data import load_bottomup_images, val_item
from pose.bottomup.diagnostics import (
    BottomUpDiagnostics,
    Moments,
    correlation_image,
    mean_abs_off_diagonal,
    nearest_peak_offsets,
    sample_tags,
    tag_correlation,
)
from pose.bottomup.grouping import GroupingConfig
from pose.bottomup.inference import TAG_CORRELATION_IMAGE, BottomUpEvaluator
from pose.bottomup.oracle import OracleSwap
from pose.metainfo import get_metainfo


# ------------------------------------------------------------------------------------ tag correlation
def test_perfectly_correlated_tag_dimensions_score_one():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(5000, 1))
    slopes = np.array([1.0, -2.0, 0.5, 3.0, -0.1, 1.5, 2.5, -4.0])  # anti-correlation counts as correlation
    tags = z * slopes + rng.normal(size=8)
    c = tag_correlation(tags)
    assert c.shape == (8, 8)
    np.testing.assert_allclose(np.abs(c), 1.0, atol=1e-9)
    assert mean_abs_off_diagonal(c) == pytest.approx(1.0, abs=1e-9)


def test_independent_tag_dimensions_score_near_zero():
    tags = np.random.default_rng(1).normal(size=(20000, 8)) * np.arange(1, 9)
    c = tag_correlation(tags)
    np.testing.assert_allclose(np.diag(c), 1.0)
    assert mean_abs_off_diagonal(c) < 0.02


def test_partly_correlated_dimensions_score_in_between():
    rng = np.random.default_rng(2)
    z = rng.normal(size=(20000, 1))
    tags = z + rng.normal(size=(20000, 4))  # each pair shares half its variance: correlation 0.5
    assert mean_abs_off_diagonal(tag_correlation(tags)) == pytest.approx(0.5, abs=0.03)


def test_moments_merge_like_one_pass_and_survive_a_constant_dimension():
    x = np.random.default_rng(3).normal(size=(300, 3))
    x[:, 2] = 7.0  # no variance: correlates 0 with the others
    whole = Moments.of(x)
    parts = Moments.of(x[:100]) + Moments.empty(3).add(x[100:250]) + Moments.of(x[250:])
    assert parts.count == 300
    np.testing.assert_allclose(parts.correlation(), whole.correlation(), atol=1e-12)
    np.testing.assert_allclose(parts.mean(), x.mean(axis=0))
    np.testing.assert_allclose(parts.std(), x.std(axis=0), atol=1e-9)
    c = whole.correlation()
    assert c[2, 2] == 1.0 and c[0, 2] == 0.0 and c[2, 1] == 0.0
    with pytest.raises(ValueError, match="dimension"):
        Moments.empty(2) + Moments.empty(3)
    assert np.isnan(mean_abs_off_diagonal(np.ones((1, 1))))
    with pytest.raises(ValueError, match="square"):
        mean_abs_off_diagonal(np.ones((2, 3)))


def test_sample_tags_reads_the_tag_map_pixel_of_each_labelled_joint():
    k, h0, w0, r = 2, 4, 6, 3
    ys, xs = np.mgrid[0:h0, 0:w0]
    tags = np.zeros((k, h0, w0, r))
    for t in range(k):
        tags[t] = np.stack([np.full((h0, w0), t), ys, xs], axis=-1)
    joints = np.zeros((2, k, 3))
    joints[0, 0] = (4 * 3 + 1.5, 4 * 2 + 1.5, 2)  # tag pixel (x 3, y 2) at stride 4
    joints[0, 1] = (0.2, 14.9, 1)  # pixel (0, 3)
    joints[1, 0] = (23.0, 2.0, 0)  # unlabelled
    joints[1, 1] = (40.0, 2.0, 2)  # outside the 24-pixel-wide input
    out = sample_tags(torch.from_numpy(tags), joints, np.array([[1.0, 0, 0], [0, 1.0, 0]]), (16, 24))
    np.testing.assert_array_equal(out, [[0, 2, 3], [1, 3, 0]])


def test_correlation_image_is_an_rgb_picture():
    image = correlation_image(np.eye(8), "AE")
    assert image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8 and image.shape[0] > 8 * 40


# ------------------------------------------------------------------------------------ peak offsets
def test_nearest_peak_offsets_of_a_single_peak():
    heat = torch.zeros((3, 40, 40))
    ys, xs = torch.meshgrid(torch.arange(40.0), torch.arange(40.0), indexing="ij")
    heat[1] = torch.exp(-((xs - 22) ** 2 + (ys - 10) ** 2) / 8)
    joints = np.zeros((1, 3, 3))
    joints[0, 1] = (20.0, 11.0, 2)
    joints[0, 2] = (5.0, 5.0, 2)  # no peak of its type: counted, no offset
    offsets, labelled = nearest_peak_offsets(heat, joints, np.array([[1.0, 0, 0], [0, 1.0, 0]]),
                                             GroupingConfig(adjust=False))
    assert labelled == 2
    np.testing.assert_allclose(offsets, [[2.0, -1.0]])


class ShiftedOracle:
    """A network with the ground truth's heatmaps moved by a constant vector and ground-truth tags.

    ``BottomUpEvaluator.predict`` with ``oracle_diagnosis`` calls it once per source (net, oracle
    tags, oracle heatmaps) for each image, in item order: call c is image c // 3."""

    def __init__(self, meta, records, matrices, shift_input_px: np.ndarray, embed_dim: int) -> None:
        self.oracle = OracleSwap(None, meta.flip_indices, embed_dim=embed_dim, heatmaps=True, tags=True)
        self.records, self.matrices, self.shift, self.calls = records, matrices, shift_input_px, 0

    def eval(self):
        return self

    def forward_images(self, x: torch.Tensor):
        i = self.calls // 3
        self.calls += 1
        joints = self.records[i].joints.copy()
        joints[..., :2] += self.shift / self.matrices[i][0, 0]  # input pixels -> image pixels
        self.oracle.joints, self.oracle.matrices = joints, [self.matrices[i]]
        return self.oracle.forward_images(x)


@pytest.mark.parametrize("shift", [(0.0, 0.0), (1.0, -0.5)])
def test_a_constant_shift_comes_out_as_the_signed_offset(separated_gt, tmp_path, shift):
    """Heatmaps moved by ``shift`` heatmap pixels: the diagnosis reports that vector, with little spread;
    R = 8 tags, all dimensions equal: correlation 1, and its picture is written."""
    gt_file = separated_gt("coco", 160.0)
    meta = get_metainfo("coco")
    records, _ = load_bottomup_images(gt_file, gt_file.parent, meta, train=False)
    codec = BottomUpCodec(input_size=256, heatmap_sizes=(64,), embed_dim=8,
                          grouping=GroupingConfig(max_people_out=20))
    test = BottomUpTestConfig(flip_test=True, size_divisor=32, max_people=20, oracle_diagnosis=True)
    evaluator = BottomUpEvaluator(meta, codec, test, gt_file)
    items = [{k: torch.from_numpy(v) for k, v in
              val_item(np.zeros((r.height, r.width, 3), np.uint8), r, 256, 32, (1.0,)).items()} for r in records]
    stride = evaluator.heatmap_stride
    method = ShiftedOracle(meta, records, [it["matrix"].numpy() for it in items], np.array(shift) * stride, 8)
    results, seen, diag = evaluator.predict(method, items, torch.device("cpu"))
    assert seen == [r.image_id for r in records] and diag.joints == 9 * 17
    stats = evaluator.score(results, tmp_path, diag)
    assert stats["peak_dx"] == pytest.approx(shift[0], abs=0.1), stats
    assert stats["peak_dy"] == pytest.approx(shift[1], abs=0.1), stats
    assert stats["peak_dx_std"] < 0.2 and stats["peak_dy_std"] < 0.2, stats
    assert stats["peak_found"] == 1.0
    assert stats["tag_corr_offdiag"] == pytest.approx(1.0), stats
    assert (tmp_path / TAG_CORRELATION_IMAGE).is_file()


def test_diagnostics_add_across_ranks_and_report_only_what_was_measured():
    a = BottomUpDiagnostics(offsets=Moments.of(np.array([[1.0, 0.0], [3.0, 2.0]])), joints=3)
    b = BottomUpDiagnostics(offsets=Moments.of(np.array([[2.0, 1.0]])), joints=1,
                            tags=Moments.of(np.random.default_rng(0).normal(size=(50, 4))))
    merged = a + b + BottomUpDiagnostics()
    stats = merged.stats()
    assert stats["peak_dx"] == pytest.approx(2.0) and stats["peak_dy"] == pytest.approx(1.0)
    assert stats["peak_found"] == pytest.approx(0.75) and "tag_corr_offdiag" in stats
    assert BottomUpDiagnostics().stats() == {}
    r1 = BottomUpDiagnostics(tags=Moments.of(np.ones((10, 1))))
    assert "tag_corr_offdiag" not in r1.stats()  # R = 1: no off-diagonal
