import numpy as np
import pytest

from pose.data.transforms import (
    TopDownAugment,
    box_to_center_scale,
    compose_affine,
    crop_matrices,
    crop_matrix,
    invert_affine,
    transform_points,
    transform_points_batch,
    warp_crop,
)


def test_box_to_center_scale_pads_to_aspect():
    c, s = box_to_center_scale([10, 20, 30, 80], aspect_ratio=0.75)
    assert c.tolist() == [25, 60]
    assert s[0] / s[1] == pytest.approx(0.75) and s[1] == pytest.approx(100)


@pytest.mark.parametrize("rotation", [0.0, 37.0, -60.0])
@pytest.mark.parametrize("flip", [False, True])
def test_crop_inverse_round_trip(rotation, flip):
    m = crop_matrix(np.array([300.0, 200.0]), np.array([150.0, 200.0]), rotation, (192, 256), flip)
    pts = np.random.default_rng(0).uniform(150, 400, (20, 2))
    back = transform_points(transform_points(pts, m), invert_affine(m))
    assert np.abs(back - pts).max() < 1e-3


def test_crop_centre_maps_to_output_centre_and_rotation_is_rigid():
    m = crop_matrix(np.array([100.0, 80.0]), np.array([96.0, 128.0]), 30.0, (96, 128))
    assert np.allclose(transform_points(np.array([[100.0, 80.0]]), m), [[47.5, 63.5]])
    a, b = np.array([[0.0, 0.0]]), np.array([[10.0, 0.0]])
    d1 = transform_points(b, m) - transform_points(a, m)
    a2 = np.array([[0.0, 10.0]])
    d2 = transform_points(a2, m) - transform_points(a, m)
    assert np.linalg.norm(d1) == pytest.approx(np.linalg.norm(d2))  # same scale on both axes
    assert float((d1 @ d2.T).item()) == pytest.approx(0.0, abs=1e-4)  # angles preserved


def test_warp_moves_pixels_like_points():
    img = np.zeros((200, 300, 3), np.uint8)
    img[118:123, 178:183] = 255  # a bright dot centred at (180, 120)
    m = crop_matrix(np.array([150.0, 100.0]), np.array([120.0, 160.0]), 25.0, (96, 128), flip=True)
    crop = warp_crop(img, m, (96, 128))
    ys, xs = np.nonzero(crop[..., 0] > 100)
    expected = transform_points(np.array([[180.0, 120.0]]), m)[0]
    assert abs(xs.mean() - expected[0]) < 1.0 and abs(ys.mean() - expected[1]) < 1.0


def test_augment_ranges_and_determinism():
    aug = TopDownAugment()
    draws = [aug.sample(np.random.default_rng(i)) for i in range(400)]
    scales = np.array([d.scale for d in draws])
    rots = np.array([d.rotation for d in draws])
    assert scales.min() >= 0.75 and scales.max() <= 1.25
    assert np.abs(rots).max() <= 60
    assert 0.45 < np.mean(rots != 0) < 0.75
    assert 0.4 < np.mean([d.flip for d in draws]) < 0.6
    assert aug.sample(np.random.default_rng(7)) == aug.sample(np.random.default_rng(7))


def test_batched_geometry_equals_row_by_row():
    """The shard decoder computes a call's matrices, points and compositions at once; the file loader
    one instance at a time: the numbers must be the same, bit for bit (flips, unrotated windows, the
    sign of zero included)."""
    rng = np.random.default_rng(3)
    n = 400
    centers = rng.uniform(0, 640, (n, 2)).astype(np.float32)
    scales = rng.uniform(8, 500, (n, 2)).astype(np.float32)
    rotations = np.where(rng.random(n) < 0.6, rng.normal(0, 30, n), 0.0)
    flips = rng.random(n) < 0.5
    m = crop_matrices(centers, scales, rotations, (96, 128), flips)
    points = rng.uniform(-50, 700, (n, 17, 2)).astype(np.float32)
    inner = np.zeros((n, 2, 3))
    inner[:, 0, 0] = inner[:, 1, 1] = rng.uniform(0.3, 1.0, n)
    inner[:, :, 2] = rng.integers(0, 300, (n, 2))
    composed = compose_affine(m, inner)
    kps = transform_points_batch(points, m)
    for i in range(n):
        one = crop_matrix(centers[i], scales[i], float(rotations[i]), (96, 128), bool(flips[i]))
        assert one.tobytes() == m[i].tobytes()
        assert kps[i].tobytes() == transform_points(points[i], one).tobytes()
        assert composed[i].tobytes() == compose_affine(one, inner[i]).tobytes()
    # the flip is the mirror about the crop's vertical centre line, also for unrotated windows
    mirror = np.array([[-1.0, 0.0, 95.0], [0.0, 1.0, 0.0]]) @ np.vstack([m[~flips][0], [0.0, 0.0, 1.0]])
    j = int(np.flatnonzero(~flips)[0])
    flipped = crop_matrix(centers[j], scales[j], float(rotations[j]), (96, 128), True)
    assert flipped.tobytes() == mirror.tobytes()
