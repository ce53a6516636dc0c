"""Test-time aggregation (spec §2, §4.1-4.4): projection, flip merge, multi-scale merge, HigherHRNet
average, and the chain of them."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pose.bottomup.aggregate import (
    aggregate_outputs,
    flip_back,
    flip_merge,
    higher_average,
    merge_scales,
    project_to_input,
)
from pose.bottomup.grouping import GroupingConfig, decode_people
from pose.metainfo import get_metainfo

COCO = get_metainfo("coco")
FLIP = [int(i) for i in COCO.flip_indices]


def scene(rng: np.random.Generator, people: int = 3, k: int = 17, h: int = 64, w: int = 80, dim: int = 4):
    """Sub-pixel Gaussian peaks 8+ px apart and identity tags around them: (K, H, W), (K, H, W, dim)."""
    cells = [(x, y) for y in range(4, h - 4, 8) for x in range(4, w - 4, 8)]
    pick = rng.choice(len(cells), size=people * k, replace=False)
    pos = np.array([cells[i] for i in pick]).reshape(people, k, 2)
    ident = np.eye(people, dim) * 4.0
    hm = np.zeros((k, h, w))
    tags = np.zeros((k, h, w, dim))
    yy, xx = np.mgrid[0:h, 0:w]
    for p in range(people):
        for j in range(k):
            x, y = pos[p, j]
            cx, cy = x + rng.uniform(-0.3, 0.3), y + rng.uniform(-0.3, 0.3)
            hm[j] = np.maximum(hm[j], rng.uniform(0.5, 1) * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / 4.5))
            tags[j, y - 3:y + 4, x - 3:x + 4] = ident[p] + rng.normal(scale=0.05, size=(7, 7, dim))
    return torch.from_numpy(hm).float(), torch.from_numpy(tags).float()


# ------------------------------------------------------------------------------------- HigherHRNet
def test_higher_average_shapes_and_values():
    q = torch.full((2, 3, 8, 10), 1.0)
    h = torch.full((2, 3, 16, 20), 3.0)
    out = higher_average(q, h)
    assert out.shape == (2, 3, 16, 20)
    assert torch.allclose(out, torch.full_like(out, 2.0))
    q = torch.rand(1, 2, 8, 8)
    h = torch.rand(1, 2, 16, 16)
    want = (F.interpolate(q, scale_factor=2, mode="bilinear", align_corners=False) + h) / 2
    assert torch.allclose(higher_average(q, h), want)
    # align_corners=False: a horizontal ramp x -> x at 1/4 is (x + 0.5) / 2 - 0.5 at 1/2 (clamped at
    # the borders)
    ramp = torch.arange(8.0).repeat(1, 1, 8, 1)
    up = higher_average(ramp, torch.zeros(1, 1, 16, 16)) * 2
    assert torch.allclose(up[0, 0, 0, 1:-1], (torch.arange(1, 15) + 0.5) / 2 - 0.5)
    with pytest.raises(ValueError):
        higher_average(torch.zeros(1, 3, 8, 8), torch.zeros(1, 2, 16, 16))


# -------------------------------------------------------------------------------------- projection
def test_project_to_input_shapes_and_per_dim_bilinear():
    hm = torch.rand(2, 3, 16, 24)
    tags = torch.rand(2, 3, 16, 24, 5)
    p_hm, p_tags = project_to_input(hm, tags, (64, 96))
    assert p_hm.shape == (2, 3, 64, 96) and p_tags.shape == (2, 3, 64, 96, 5)
    assert torch.allclose(p_hm, F.interpolate(hm, size=(64, 96), mode="bilinear", align_corners=False))
    for d in range(5):
        want = F.interpolate(tags[..., d], size=(64, 96), mode="bilinear", align_corners=False)
        assert torch.allclose(p_tags[..., d], want, atol=1e-6)
    # the reference's trilinear resize over (H, W, R -> R) is the same thing
    tri = F.interpolate(tags.permute(0, 1, 4, 2, 3).reshape(2, 3, 5, 16, 24).flatten(0, 1)[:, None],
                        size=(5, 64, 96), mode="trilinear", align_corners=False)
    assert torch.allclose(p_tags, tri[:, 0].reshape(2, 3, 5, 64, 96).permute(0, 1, 3, 4, 2), atol=1e-6)
    # constant tag vectors stay constant; the 1/4 tags can differ in size from (1/2) heatmaps
    const = torch.tensor([1.0, -2.0, 0.5]).expand(1, 2, 8, 8, 3)
    _, t = project_to_input(torch.rand(1, 2, 16, 16), const, (32, 32))
    assert torch.allclose(t, torch.tensor([1.0, -2.0, 0.5]).expand(1, 2, 32, 32, 3))


# -------------------------------------------------------------------------------------------- flip
def test_flip_back_is_an_involution():
    hm, tags = torch.rand(17, 6, 7), torch.rand(17, 6, 7, 2)
    b_hm, b_tags = flip_back(*flip_back(hm, tags, FLIP), FLIP)
    assert torch.equal(b_hm, hm) and torch.equal(b_tags, tags)
    f_hm, _ = flip_back(hm, None, FLIP)
    assert torch.equal(f_hm[1, :, 0], hm[2, :, -1])  # left eye of the flipped = right eye, mirrored


def test_flip_merge_symmetric_example():
    rng = np.random.default_rng(0)
    hm, tags = scene(rng)
    f_hm, f_tags = flip_back(hm, tags, FLIP)  # a perfectly flip-equivariant network on the flipped image
    m_hm, m_tags = flip_merge(torch.stack([hm, f_hm]), torch.stack([tags, f_tags]), FLIP)
    assert m_hm.shape == hm.shape and m_tags.shape == hm.shape + (8,)
    assert torch.allclose(m_hm, hm)
    assert torch.equal(m_tags, torch.cat([tags, tags], dim=-1))
    with pytest.raises(ValueError):
        flip_merge(hm[None], tags[None], FLIP)


def test_flipped_input_gives_mirrored_result():
    """[orig, flipped] outputs A, B give the merge M; the flipped image's outputs [B, A] give
    flip_back(M) (tags with their halves swapped), and decoding gives the mirrored people with the
    joints permuted by flip_index."""
    rng = np.random.default_rng(1)
    a_hm, a_tags = scene(rng)
    noisy_hm = a_hm + torch.from_numpy(rng.uniform(0, 0.02, size=a_hm.shape)).float()
    noisy_tags = a_tags + torch.from_numpy(rng.normal(scale=0.05, size=a_tags.shape)).float()
    # the flipped image's outputs, not exactly equivariant
    b_hm, b_tags = flip_back(noisy_hm, noisy_tags, FLIP)
    m_hm, m_tags = flip_merge(torch.stack([a_hm, b_hm]), torch.stack([a_tags, b_tags]), FLIP)
    n_hm, n_tags = flip_merge(torch.stack([b_hm, a_hm]), torch.stack([b_tags, a_tags]), FLIP)
    mirrored_hm, mirrored_tags = flip_back(m_hm, m_tags, FLIP)
    assert torch.equal(n_hm, mirrored_hm)
    assert torch.equal(n_tags, torch.cat([mirrored_tags[..., 4:], mirrored_tags[..., :4]], dim=-1))

    w = a_hm.shape[2]
    people, scores = decode_people(m_hm, m_tags, GroupingConfig(), COCO.grouping_order)
    flipped, f_scores = decode_people(n_hm, n_tags, GroupingConfig(), COCO.grouping_order)
    assert len(people) == len(flipped) == 3
    expect = people[:, FLIP].copy()
    expect[:, :, 0] = w - expect[:, :, 0]
    for q, s in zip(flipped, f_scores):
        i = int(np.argmin(np.abs(expect - q[None]).sum(axis=(1, 2))))
        np.testing.assert_allclose(q, expect[i], atol=1e-5)
        assert s == pytest.approx(scores[i])


# ------------------------------------------------------------------------------------------ scales
def test_merge_scales_average_and_tags_from_factor_one():
    h1, h2, h3 = torch.rand(3, 17, 8, 8)
    t1, t2 = torch.rand(2, 17, 8, 8, 16)
    hm, tags = merge_scales([h1, h2, h3], [t1, t2, t2], (1.0, 0.5, 2.0))
    assert torch.allclose(hm, (h1 + h2 + h3) / 3)
    assert tags is t1
    hm, tags = merge_scales([h1], [t1], [1])
    assert torch.equal(hm, h1) and tags is t1
    with pytest.raises(ValueError, match="first scale factor must be 1"):
        merge_scales([h1, h2], [t1, t2], (0.5, 1.0))
    with pytest.raises(ValueError, match="one of each"):
        merge_scales([h1, h2], [t1], (1.0, 0.5))
    with pytest.raises(ValueError, match="project them first"):
        merge_scales([h1, torch.rand(17, 4, 4)], [t1, t2], (1.0, 0.5))


def test_aggregate_outputs_chain():
    """HigherHRNet outputs at two scale factors with flip -> maps at input size, step by step."""
    k, r, size = 17, 8, (64, 96)
    outs = []
    for h, w in ((16, 24), (8, 12)):  # factor 1: input 64x96; factor 0.5: input 32x48
        outs.append(([torch.rand(2, k, h, w), torch.rand(2, k, 2 * h, 2 * w)], torch.rand(2, k, h, w, r)))
    hm, tags = aggregate_outputs(outs, size, (1.0, 0.5), FLIP)
    assert hm.shape == (k, *size) and tags.shape == (k, *size, 2 * r)
    merged = []
    for maps, t in outs:
        p_hm, p_tags = project_to_input(higher_average(*maps), t, size)
        merged.append(flip_merge(p_hm, p_tags, FLIP))
    assert torch.allclose(hm, (merged[0][0] + merged[1][0]) / 2)
    assert torch.equal(tags, merged[0][1])
    # no flip: batch 1, tags keep R dims
    hm1, tags1 = aggregate_outputs([([m[:1] for m in outs[0][0]], outs[0][1][:1])], size)
    assert hm1.shape == (k, *size) and tags1.shape == (k, *size, r)
    with pytest.raises(ValueError, match="batch of 2"):
        aggregate_outputs([([m[:1] for m in outs[0][0]], outs[0][1][:1])], size, flip_index=FLIP)
