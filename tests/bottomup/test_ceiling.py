"""The round trip: ground truth encoded by the training codec, decoded by the real inference path
(ResizeAlign, flip, NMS / top-k, grouping with ground-truth tags, offsets, refinement, back-projection).

Pins the coordinate conventions between encoding and decoding: a half-pixel mismatch shows as a signed
mean error on one axis, which these tests bound by a quarter of a heatmap pixel."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import pose.bottomup.inference as inference
from pose.bottomup.ceiling import CodecOracle, match_people, round_trip
from pose.bottomup.codec import BottomUpCodec
from pose.bottomup.config import BottomUpTestConfig
from pose.bottomup.data import load_bottomup_images
from pose.bottomup.grouping import GroupingConfig
from pose.bottomup.inference import BottomUpEvaluator
from pose.metainfo import get_metainfo
from pose.presets import get_preset

def _evaluator(gt_file: Path, fmt: str, codec: BottomUpCodec, flip: bool) -> tuple[BottomUpEvaluator, list]:
    meta = get_metainfo(fmt)
    records, _ = load_bottomup_images(gt_file, gt_file.parent, meta, train=False)
    test = BottomUpTestConfig(flip_test=flip, size_divisor=32, max_people=20)
    return BottomUpEvaluator(meta, codec, test, gt_file, image_ids=[r.image_id for r in records]), records


HRNET_128 = BottomUpCodec(input_size=128, heatmap_sizes=(32,), sigma=2.0, max_people=10, embed_dim=8,
                          grouping=GroupingConfig(nms_kernel=5, max_people_out=20))
HIGHER_128 = BottomUpCodec(input_size=128, heatmap_sizes=(32, 64), sigma=2.0, max_people=10, embed_dim=1,
                           grouping=GroupingConfig(nms_kernel=5, max_people_out=20))

HIGHER_160 = get_preset("synthcrowd-ce-higherhrnet-w8h32-160").config.codec  # the CE-vs-AE presets


@pytest.mark.parametrize("codec", [HRNET_128, HIGHER_128, HIGHER_160], ids=["hrnet", "higherhrnet", "higherhrnet-160"])
@pytest.mark.parametrize("flip", [True, False], ids=["flip", "noflip"])
def test_round_trip_has_no_signed_error_on_crowded_synthpose(crowd_dataset, codec, flip):
    """The CPU presets' resolution on crowded SynthPose: whatever the AP, the errors have no direction."""
    root = crowd_dataset("coco")
    evaluator, records = _evaluator(root / "annotations/person_keypoints_val.json", "coco", codec, flip)
    c = round_trip(evaluator, records)
    assert c.joints > 150 and c.unmatched == 0, c
    assert abs(c.mean_dx_hm) < 0.25 and abs(c.mean_dy_hm) < 0.25, c
    # tighter, in input pixels: half an input pixel (a centre / corner convention slip) stands out
    assert abs(c.mean_dx_hm) * c.heatmap_stride < 0.2 and abs(c.mean_dy_hm) * c.heatmap_stride < 0.2, c
    assert c.median_hm < 1.0, c  # each joint lands within its heatmap pixel's neighbourhood


@pytest.mark.parametrize("fmt", ["coco", "crowdpose"])
@pytest.mark.parametrize("flip", [True, False], ids=["flip", "noflip"])
def test_round_trip_is_perfect_for_large_separated_people(separated_gt, fmt, flip):
    """People 160 px tall at input 256 (40 heatmap pixels), 100 px apart: AP 1.0 and no signed error."""
    gt_file = separated_gt(fmt, 160.0)
    codec = BottomUpCodec(input_size=256, heatmap_sizes=(64,), sigma=2.0, max_people=10, embed_dim=1,
                          grouping=GroupingConfig(nms_kernel=5, max_people_out=20))
    evaluator, records = _evaluator(gt_file, fmt, codec, flip)
    c = round_trip(evaluator, records)
    assert c.people == 9 and c.unmatched == 0, c
    assert c.ap == pytest.approx(1.0) and c.ap50 == pytest.approx(1.0), c
    assert abs(c.mean_dx_hm) < 0.25 and abs(c.mean_dy_hm) < 0.25, c


def test_round_trip_sees_a_half_pixel_shift(separated_gt, monkeypatch):
    """Half a heatmap pixel (2 input pixels at stride 4) of back-projection shift comes out as that
    signed error on both axes, and breaks the quarter-pixel bound of the tests above."""
    gt_file = separated_gt("coco", 160.0)
    codec = BottomUpCodec(input_size=256, heatmap_sizes=(64,), embed_dim=1)
    evaluator, records = _evaluator(gt_file, "coco", codec, flip=True)
    exact = round_trip(evaluator, records)
    monkeypatch.setattr(inference, "PIXEL_CENTRE_SHIFT", inference.PIXEL_CENTRE_SHIFT - 2.0)
    shifted = round_trip(evaluator, records)
    for axis in ("mean_dx_hm", "mean_dy_hm"):
        assert getattr(shifted, axis) - getattr(exact, axis) == pytest.approx(0.5, abs=0.02)
        assert getattr(shifted, axis) > 0.25


def test_codec_oracle_outputs_the_training_targets():
    """Unflipped row: exactly the codec's encoding of the joints in input pixels (square input);
    the mirrored row: the encoding of the mirrored joints with swapped labels."""
    meta = get_metainfo("coco")
    codec = BottomUpCodec(input_size=64, heatmap_sizes=(16, 32), embed_dim=2)
    joints = np.zeros((1, 17, 3))
    joints[0, 0] = (10.3, 20.7, 2)
    joints[0, 5] = (40.0, 33.2, 1)  # left shoulder: the mirror's right shoulder
    oracle = CodecOracle(codec, meta.flip_indices, tie_noise=0.0)
    oracle.joints, oracle.matrices = joints, [np.array([[1.0, 0, 0], [0, 1.0, 0]])]
    heatmaps, tags = oracle.forward_images(torch.zeros((2, 3, 64, 64), dtype=torch.uint8))
    assert [tuple(h.shape) for h in heatmaps] == [(2, 17, 16, 16), (2, 17, 32, 32)] and tags.shape == (2, 17, 16, 16, 2)
    enc = codec.encode(joints, np.zeros((1, 4, 2)))
    for i in range(2):
        assert torch.equal(heatmaps[i][0], torch.from_numpy(enc.heatmaps[i]))
    mirrored = joints[:, meta.flip_indices].copy()
    mirrored[..., 0] = 63 - mirrored[..., 0]
    enc_m = codec.encode(mirrored, np.zeros((1, 4, 2)))
    assert torch.equal(heatmaps[0][1], torch.from_numpy(enc_m.heatmaps[0]))
    assert heatmaps[0][1, 6].max() == 1.0 and heatmaps[0][1, 5].max() == 0.0  # label swapped
    assert tags[0, 0, 5, 2].tolist() == [3.0, 3.0]  # the person's tag at its nose


def test_codec_oracle_crops_non_square_inputs_and_rejects_bad_arguments():
    codec = BottomUpCodec(input_size=64, heatmap_sizes=(16,), embed_dim=1)
    oracle = CodecOracle(codec, list(range(17)))
    assert oracle.codec_for(96, 64).heatmap_sizes == (24,)
    with pytest.raises(ValueError, match="tie_noise"):
        CodecOracle(codec, list(range(17)), tie_noise=-1.0)
    with pytest.raises(RuntimeError, match="set joints"):
        oracle.forward_images(torch.zeros((1, 3, 64, 64)))


def test_match_people_pairs_by_mean_labelled_distance():
    gt = np.zeros((2, 3, 3))
    gt[0, :, :2], gt[0, :, 2] = [[0, 0], [1, 1], [2, 2]], 2
    gt[1, :, :2], gt[1, :2, 2] = [[50, 50], [51, 51], [999, 999]], 1  # joint 2 unlabelled
    pred = np.zeros((3, 3, 3))
    pred[0, :, :2] = [[50.5, 50], [51, 51.5], [0, 0]]
    pred[1, :, :2] = gt[0, :, :2] + 0.3
    pred[2, :, :2] = 200.0
    assert sorted(match_people(pred, gt)) == [(0, 1), (1, 0)]
    assert match_people(pred[:0], gt) == []
