import numpy as np
import pytest
import torch

from pose.codecs.heatmap import HeatmapCodec
from pose.metainfo import COCO, CROWDPOSE


# DARK is exact up to float error away from the border; within two heatmap pixels of the border its
# zero-padded blur pulls the peak inwards a little (measured up to ~0.52 px).
@pytest.mark.parametrize("unbiased,mode,margin,tol", [(False, "shift", 8, 0.5), (True, "dark", 8, 0.6),
                                                      (True, "dark", 32, 0.05)])
@pytest.mark.parametrize("size", [((192, 256), (48, 64)), ((96, 128), (24, 32)), ((288, 384), (72, 96))])
def test_round_trip_within_half_a_heatmap_pixel(unbiased, mode, margin, tol, size):
    codec = HeatmapCodec(input_size=size[0], heatmap_size=size[1], sigma=2.0, unbiased=unbiased, decode_mode=mode)
    rng = np.random.default_rng(0)
    w, h = size[0]
    kps = np.stack([rng.uniform(margin, w - margin, 17), rng.uniform(margin, h - margin, 17)], 1).astype(np.float32)
    hm, weights = codec.encode(kps, np.ones(17, np.float32))
    assert hm.shape == (17, size[1][1], size[1][0]) and weights.tolist() == [1.0] * 17
    assert np.allclose(hm.max(axis=(1, 2)), 1.0, atol=0.2)
    coords, scores = codec.decode(hm[None])
    err_hm_px = np.abs(coords[0] - kps) / codec.stride
    assert err_hm_px.max() <= tol, err_hm_px.max()
    assert scores.shape == (1, 17)


def test_weights_zero_for_unlabeled_and_off_map_joints():
    codec = HeatmapCodec()
    kps = np.array([[50, 50], [-100, 40], [500, 10], [100, 100]], np.float32)
    hm, w = codec.encode(kps, np.array([1, 1, 1, 0], np.float32))
    assert w.tolist() == [1, 0, 0, 0]
    assert hm[1:].max() == 0 and hm[0].max() == pytest.approx(1.0)


def test_joint_just_outside_the_map_keeps_weight_when_window_overlaps():
    codec = HeatmapCodec()
    hm, w = codec.encode(np.array([[-8.0, 100.0]], np.float32), np.ones(1, np.float32))
    assert w[0] == 1 and hm.max() > 0


@pytest.mark.parametrize("meta", [COCO, CROWDPOSE])
def test_flip_back_symmetry(meta):
    """Heatmaps of mirrored joints, flipped back, equal the originals (up to the one-pixel shift)."""
    codec = HeatmapCodec()
    k = meta.num_keypoints
    rng = np.random.default_rng(1)
    kps = np.stack([rng.uniform(20, 170, k), rng.uniform(20, 230, k)], 1).astype(np.float32)
    hm, _ = codec.encode(kps, np.ones(k, np.float32))
    w_in = codec.input_size[0]
    mirrored = kps.copy()
    mirrored[:, 0] = w_in - 1 - mirrored[:, 0]
    mirrored = mirrored[meta.flip_indices]
    hm_m, _ = codec.encode(mirrored, np.ones(k, np.float32))
    back = HeatmapCodec.flip_back(torch.from_numpy(hm_m)[None], meta.flip_indices, shift=False)
    c_orig, _ = codec.decode(hm[None])
    c_back, _ = codec.decode(back)
    # Mirroring at input resolution moves the peak by stride-1 input pixels at most (plus rounding).
    assert np.abs(c_back - c_orig).max() <= codec.stride + 0.5
    shifted = HeatmapCodec.flip_back(torch.from_numpy(hm_m)[None], meta.flip_indices, shift=True)
    assert torch.equal(shifted[..., 1:], back[..., :-1])
    c_shift, _ = codec.decode(shifted)
    # The one-pixel shift compensates the stride: closer on average, never more than a pixel off.
    assert np.abs(c_shift - c_orig).max() <= codec.stride
    assert np.abs(c_shift - c_orig).mean() < np.abs(c_back - c_orig).mean()


def test_flip_back_is_an_involution_without_shift():
    hm = torch.rand(2, 17, 8, 6)
    twice = HeatmapCodec.flip_back(HeatmapCodec.flip_back(hm, COCO.flip_indices, False), COCO.flip_indices, False)
    assert torch.equal(twice, hm)


def test_decode_zero_map_gives_zero_coords_and_score():
    coords, scores = HeatmapCodec().decode(torch.zeros(1, 3, 64, 48))
    assert (coords == 0).all() and (scores == 0).all()


def test_mismatched_strides_rejected():
    with pytest.raises(ValueError, match="strides"):
        HeatmapCodec(input_size=(192, 256), heatmap_size=(48, 32))


@pytest.mark.parametrize("unbiased", [False, True])
def test_factors_expand_to_the_heatmaps(unbiased):
    """The pipeline moves the Gaussian's factors; their outer product is the heatmaps exactly."""
    codec = HeatmapCodec(input_size=(96, 128), heatmap_size=(24, 32), unbiased=unbiased)
    rng = np.random.default_rng(0)
    kps = rng.uniform(-20, 140, (5, 17, 2)).astype(np.float32)
    vis = (rng.random((5, 17)) < 0.8).astype(np.float32)
    heatmaps, weights = codec.encode_batch(kps, vis)
    gy, gx, w2 = codec.encode_factors(kps, vis)
    assert gy.shape == (5, 17, 32) and gx.shape == (5, 17, 24) and gy.dtype == gx.dtype == np.float32
    assert codec.expand_factors(gy, gx).tobytes() == heatmaps.tobytes()
    np.testing.assert_array_equal(w2, weights)
    assert heatmaps[weights == 0].max() == 0.0 and 0.9 < heatmaps.max() <= 1.0
