"""Bottom-up grouping (spec §4.5-4.10): NMS/top-k, Hungarian grouping, offsets, score, refine, and the
pure-Python Munkres reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment

from pose.bottomup.grouping import (
    Candidates,
    GroupingConfig,
    adjust_offsets,
    decode_people,
    group_candidates,
    refine_people,
    top_k_candidates,
)
from pose.bottomup.munkres_reference import group_candidates_munkres, munkres_assignment
from pose.config import from_dict
from pose.metainfo import get_metainfo

COCO = get_metainfo("coco")


# -------------------------------------------------------------------------------- synthetic scenes
def identity_tags(rng: np.random.Generator, people: int, dim: int, min_dist: float = 3.0) -> np.ndarray:
    """(people, dim) identity tags at least ``min_dist`` apart (AE R=1: spaced on a line)."""
    if dim == 1:
        return (np.arange(people) * min_dist)[:, None].astype(np.float64) - min_dist
    while True:
        t = rng.normal(size=(people, dim)) * 2.5
        d = np.linalg.norm(t[:, None] - t[None], axis=2) + np.eye(people) * 1e9
        if d.min() >= min_dist:
            return t


def make_scene(rng: np.random.Generator, people: int, dim: int, k: int = 17, size: int = 96,
               noise: float = 0.05, flip_concat: bool = False):
    """Heatmaps (K, S, S) with one sub-pixel Gaussian peak per (person, joint), at least 8 px apart,
    and tags (K, S, S, D) = the person's identity + noise in a 7x7 window around each joint
    (D = dim, or 2*dim as [orig, flipped] halves with independent noise when ``flip_concat``).

    Returns heatmaps, tags, gt (people, K, 2) integer peak pixels, ident (people, D)."""
    cells = [(x, y) for y in range(4, size - 4, 8) for x in range(4, size - 4, 8)]
    pick = rng.choice(len(cells), size=people * k, replace=False)
    gt = np.array([cells[i] for i in pick]).reshape(people, k, 2) + rng.integers(-1, 2, size=(people, k, 2))
    ident = identity_tags(rng, people, dim)
    if flip_concat:
        ident = np.concatenate([ident, ident], axis=1)
    d = ident.shape[1]
    hm = np.zeros((k, size, size))
    tags = rng.normal(scale=0.01, size=(k, size, size, d))  # background far from no one in particular
    yy, xx = np.mgrid[0:size, 0:size]
    for p in range(people):
        for j in range(k):
            x, y = gt[p, j]
            cx, cy = x + rng.uniform(-0.2, 0.2), y + rng.uniform(-0.2, 0.2)  # no exact ties for the offsets
            peak = rng.uniform(0.5, 1.0)
            hm[j] = np.maximum(hm[j], peak * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * 1.5 ** 2)))
            tags[j, y - 3:y + 4, x - 3:x + 4] = ident[p] + rng.normal(scale=noise, size=(7, 7, d))
    return (torch.from_numpy(hm).float(), torch.from_numpy(tags).float(), gt, ident)


def assert_people_match(people: np.ndarray, gt: np.ndarray) -> None:
    """Every decoded person is one GT person with every joint at that person's pixel."""
    assert people.shape == gt.shape[:2] + (3,)
    seen = set()
    for person in people:
        pix = np.floor(person[:, :2]).astype(int)
        hits = [g for g in range(len(gt)) if (np.abs(pix - gt[g]).max(axis=1) <= 0).all()]
        assert len(hits) == 1, (pix, gt)
        seen.add(hits[0])
    assert seen == set(range(len(gt)))


# ------------------------------------------------------------------------------------------ config
def test_config_validation_and_from_dict():
    cfg = from_dict(GroupingConfig, {"nms_kernel": 7, "top_k": 20, "tag_threshold": 1.0})
    assert cfg == GroupingConfig(nms_kernel=7, top_k=20)
    for bad in ({"nms_kernel": 4}, {"nms_kernel": 0}, {"top_k": 0}, {"tag_threshold": 0.0},
                {"max_people_out": -1}):
        with pytest.raises(ValueError):
            GroupingConfig(**bad)


# -------------------------------------------------------------------------------------- end to end
@pytest.mark.parametrize("people, dim, flip_concat", [(3, 1, False), (5, 1, False), (4, 8, False),
                                                      (5, 8, False), (4, 8, True), (3, 1, True)])
def test_decode_synthetic_identities(people, dim, flip_concat):
    rng = np.random.default_rng(people * 10 + dim + flip_concat)
    hm, tags, gt, _ = make_scene(rng, people, dim, flip_concat=flip_concat)
    assert tags.shape[-1] == dim * (2 if flip_concat else 1)
    out, scores = decode_people(hm, tags, GroupingConfig(), COCO.grouping_order)
    assert out.dtype == np.float32 and scores.shape == (people,)
    assert_people_match(out, gt)
    # every joint found by grouping: refine has nothing to fill, scores = mean peak value
    assert (out[:, :, 2] > 0.4).all()
    np.testing.assert_allclose(scores, out[:, :, 2].mean(axis=1), rtol=1e-6)


def test_decode_grouping_order_crowdpose():
    meta = get_metainfo("crowdpose")
    rng = np.random.default_rng(7)
    hm, tags, gt, _ = make_scene(rng, 4, 8, k=14)
    out, _ = decode_people(hm, tags, GroupingConfig(nms_kernel=7), meta.grouping_order)
    assert_people_match(out, gt)


def test_decode_empty_and_bad_inputs():
    out, scores = decode_people(torch.zeros(17, 32, 32), torch.zeros(17, 32, 32, 8), GroupingConfig(),
                                range(17))
    assert out.shape == (0, 17, 3) and scores.shape == (0,)
    with pytest.raises(ValueError, match="permutation"):
        decode_people(torch.zeros(17, 32, 32), torch.zeros(17, 32, 32, 8), GroupingConfig(), range(16))
    with pytest.raises(ValueError, match="tags"):
        decode_people(torch.zeros(17, 32, 32), torch.zeros(17, 32, 30, 8), GroupingConfig(), range(17))


def test_max_people_out_keeps_best_scores():
    rng = np.random.default_rng(3)
    hm, tags, gt, _ = make_scene(rng, 5, 8)
    hm[5] = 0  # a joint type refine has to fill: capping (before refine) must not change the kept people
    full, full_scores = decode_people(hm, tags, GroupingConfig(), COCO.grouping_order)
    capped, capped_scores = decode_people(hm, tags, GroupingConfig(max_people_out=2), COCO.grouping_order)
    assert len(capped) == 2
    best = np.sort(np.argsort(-full_scores)[:2])
    np.testing.assert_array_equal(capped, full[best])
    np.testing.assert_array_equal(capped_scores, full_scores[best])


# ------------------------------------------------------------------------------------- NMS / top-k
@pytest.mark.parametrize("kernel, kept", [(5, 2), (7, 1)])
def test_nms_kernel_suppresses_neighbours(kernel, kept):
    hm = torch.zeros(1, 20, 20)
    hm[0, 10, 6] = 0.9
    hm[0, 10, 9] = 0.6  # 3 px to the right: inside a 7x7 window, outside a 5x5 one
    tags = torch.arange(400, dtype=torch.float32).reshape(1, 20, 20, 1)
    c = top_k_candidates(hm, tags, kernel, top_k=5)
    assert c.vals.shape == (1, 5) and c.xy.shape == (1, 5, 2) and c.tags.shape == (1, 5, 1)
    assert int((c.vals > 0).sum()) == kept
    assert c.xy[0, 0].tolist() == [6, 10] and c.tags[0, 0, 0] == 10 * 20 + 6
    if kept == 2:
        assert c.xy[0, 1].tolist() == [9, 10] and c.tags[0, 1, 0] == 10 * 20 + 9


def test_top_k_clipped_to_pixels():
    c = top_k_candidates(torch.rand(2, 3, 3), torch.rand(2, 3, 3, 4), 1, top_k=30)
    assert c.vals.shape == (2, 9)


# ---------------------------------------------------------------------------------- grouping rules
def cands(rows_per_type: list[list[tuple[float, float]]], dim: int = 1) -> Candidates:
    """Candidates from [(val, tag), ...] per joint type (tags 1-D, repeated over ``dim``); x = index."""
    m = max(len(r) for r in rows_per_type)
    k = len(rows_per_type)
    vals = np.zeros((k, m), np.float32)
    xy = np.zeros((k, m, 2), np.int64)
    tags = np.zeros((k, m, dim), np.float32)
    for j, rows in enumerate(rows_per_type):
        for i, (v, t) in enumerate(rows):
            vals[j, i], xy[j, i], tags[j, i] = v, (i, j), t / np.sqrt(dim)
    return Candidates(vals, xy, tags)


@pytest.mark.parametrize("grouper", [group_candidates, group_candidates_munkres])
def test_thresholds_new_instances_and_running_mean(grouper):
    c = cands([
        [(0.9, 0.0), (0.8, 5.0)],                     # type 0 starts two instances
        [(0.7, 0.5), (0.6, 3.0), (0.05, 5.0)],        # 0.5 joins #0 (round(0.5) = 0); 3.0 far from both
                                                      # -> new #2; 0.05 ignored
        [(0.5, 1.25), (0.5, 6.0)],                    # 1.25 from #0's mean 0.25 is D=1.0 -> joins (<=);
                                                      # 6.0: D=1.0 from #1 -> joins #1
        [(0.5, 1.8)],                                 # D to #0's mean (0+.5+1.25)/3 is 1.22: round 1 but
                                                      # > th -> new (exactly representable tags above)
    ])
    g = grouper(c, GroupingConfig(), order=[0, 1, 2, 3])
    assert g.found.tolist() == [[True, True, True, False], [True, False, True, False],
                                [False, True, False, False], [False, False, False, True]]
    np.testing.assert_allclose(g.tags[:, 0], [(0 + 0.5 + 1.25) / 3, 5.5, 3.0, 1.8], atol=1e-6)
    np.testing.assert_allclose(g.joints[0, :3], [[0, 0, 0.9], [0, 1, 0.7], [0, 2, 0.5]], atol=1e-6)
    assert g.joints[1, 1].tolist() == [0, 0, 0]  # missing joints are zeros


@pytest.mark.parametrize("grouper", [group_candidates, group_candidates_munkres])
def test_hungarian_beats_greedy(grouper):
    # instances A (tag 0) and B (tag 0.8); c1 (0.4, val .9) could join either, c2 (-0.4) only A:
    # the optimum puts c1 in B and c2 in A (greedy by value would put c1 in A and start c2 anew)
    c = cands([[(0.9, 0.0), (0.8, 0.8)], [(0.9, 0.4), (0.5, -0.4)]])
    g = grouper(c, GroupingConfig(), order=[0, 1])
    assert len(g) == 2
    assert g.joints[0, 1, 0] == 1 and g.joints[1, 1, 0] == 0  # x = candidate index


@pytest.mark.parametrize("grouper", [group_candidates, group_candidates_munkres])
def test_order_and_val_threshold(grouper):
    # type 1 visited first starts the instances; nothing above the threshold in type 0
    c = cands([[(0.09, 0.0), (0.02, 9.0)], [(0.5, 0.0), (0.4, 3.0)]])
    g = grouper(c, GroupingConfig(val_threshold=0.1), order=[1, 0])
    assert len(g) == 2 and not g.found[:, 0].any()
    g = grouper(c, GroupingConfig(val_threshold=0.05), order=[1, 0])
    assert g.found[0].tolist() == [True, True] and len(g) == 2


@pytest.mark.parametrize("dim", [1, 8, 16])
def test_reference_grouping_identical(dim):
    """The vectorised grouping, the same with the pure-Python solver, and the loop + pure-Python
    Munkres one give identical groups, on candidates with misses, outliers that start instances of
    their own, and false positives. (Identities are well apart so that no two assignments tie: the
    solvers may break exact ties differently.)"""
    rng = np.random.default_rng(dim)
    k, m = 17, 12
    for _ in range(4):
        people = int(rng.integers(1, 10))
        ident = identity_tags(rng, people, dim, min_dist=4.0)
        vals = np.zeros((k, m), np.float32)
        tags = np.zeros((k, m, dim), np.float32)
        for j in range(k):
            n = min(m - 2, people)
            vals[j, :n] = rng.uniform(0.0, 1.0, size=n)  # some below the threshold: misses
            step = rng.normal(size=(n, dim))
            step /= np.linalg.norm(step, axis=1, keepdims=True)
            step *= np.where(rng.random(n) < 0.1, 1.2, 0.05)[:, None]  # 10% outliers at 1.2
            tags[j, :n] = ident[rng.permutation(people)[:n]] + step
            vals[j, n:] = rng.uniform(0, 0.3, size=m - n)  # false positives, far from everything
            tags[j, n:] = 0
            tags[j, n:, 0] = 30 + 5 * (j * m + np.arange(n, m))
        xy = rng.integers(0, 100, size=(k, m, 2))
        c = Candidates(vals, xy, tags)
        order = rng.permutation(k)
        a = group_candidates(c, GroupingConfig(), order)
        assert len(a) > people  # outliers and false positives made instances of their own
        b = group_candidates_munkres(c, GroupingConfig(), order)
        c_ = group_candidates(c, GroupingConfig(), order, solver=munkres_assignment)
        for other in (b, c_):
            assert np.array_equal(a.found, other.found)
            np.testing.assert_array_equal(a.joints, other.joints)
            np.testing.assert_allclose(a.tags, other.tags, atol=1e-9)


# -------------------------------------------------------------------------------- offsets / refine
def test_adjust_offsets_hand_made():
    hm = np.zeros((2, 8, 10))
    hm[0, 4, 5] = 1.0
    hm[0, 4, 6] = 0.5   # right > left -> +0.25 in x
    hm[0, 3, 5] = hm[0, 5, 5] = 0.3  # tie in y -> -0.25
    hm[1, 0, 0] = 1.0
    hm[1, 1, 0] = 0.2   # border: left / up clamp to the peak itself, so both offsets go -0.25
    joints = np.array([[[5, 4, 1.0], [0, 0, 1.0]], [[5, 4, 1.0], [0, 0, 0.0]]])
    found = np.array([[True, True], [True, False]])
    out = adjust_offsets(joints, found, hm)
    np.testing.assert_allclose(out[0, 0], [5.75, 4.25, 1.0])
    np.testing.assert_allclose(out[0, 1], [0.25, 0.25, 1.0])
    np.testing.assert_allclose(out[1, 1], [0, 0, 0])  # missing: untouched
    np.testing.assert_allclose(adjust_offsets(joints, found, hm, adjust=False)[0, 0], [5.5, 4.5, 1.0])
    assert joints[0, 0, 0] == 5  # input not modified


def test_refine_fills_missing_joint_at_matching_tag():
    k, s = 3, 24
    hm = np.zeros((k, s, s), np.float32)
    tags = np.zeros((k, s, s, 2), np.float32)
    me, other = np.array([1.0, 1.0]), np.array([4.0, -2.0])
    # found joints of the person: types 0 and 1
    hm[0, 5, 5], tags[0, 5, 5] = 0.9, me + 0.1
    hm[1, 8, 6], tags[1, 8, 6] = 0.7, me - 0.1
    # type 2: a strong peak with another person's tag and a weak one (below val_th) with ours
    tags[2] = other
    hm[2, 15, 17], tags[2, 15, 17] = 0.95, other
    hm[2, 12, 4], tags[2, 12, 4] = 0.05, me
    hm[2, 12, 3] = 0.02   # left neighbour higher than right (0): x - 0.25
    hm[2, 13, 4] = 0.03   # down higher than up: y + 0.25
    people = np.array([[[5.75, 5.25, 0.9], [6.25, 8.75, 0.7], [0, 0, 0]]])
    found = np.array([[True, True, False]])
    out = refine_people(people, found, hm, tags)
    np.testing.assert_allclose(out[0, 2], [4 + 0.5 - 0.25, 12 + 0.5 + 0.25, 0.05], rtol=1e-6)
    np.testing.assert_allclose(out[0, :2], people[0, :2])
    # always filled, even where the heatmap is empty everywhere (val 0)
    hm[2] = 0
    out = refine_people(people, found, hm, tags)
    assert out[0, 2, 2] == 0 and tuple(np.floor(out[0, 2, :2]).astype(int)) == (4, 12)


def test_refine_matches_direct_formula():
    rng = np.random.default_rng(0)
    k, s, d = 4, 20, 3
    hm = rng.random((k, s, s)).astype(np.float32)
    tags = (rng.normal(size=(k, s, s, d)) * 2).astype(np.float32)
    people = np.zeros((3, k, 3))
    found = np.array([[True, False, False, True], [False, True, False, False], [True, True, True, False]])
    for p, j in zip(*np.nonzero(found)):
        people[p, j] = [rng.integers(s) + 0.75, rng.integers(s) + 0.25, 0.5]
    out = refine_people(people, found, hm, tags, adjust=False)
    for p in range(3):
        pix = [(j, int(people[p, j, 1]), int(people[p, j, 0])) for j in range(k) if found[p, j]]
        prev = np.mean([tags[j, y, x] for j, y, x in pix], axis=0)
        for j in range(k):
            if found[p, j]:
                continue
            score = hm[j] - np.round(np.sqrt(((tags[j] - prev) ** 2).sum(axis=-1)))
            y, x = np.unravel_index(np.argmax(score), score.shape)
            np.testing.assert_allclose(out[p, j], [x + 0.5, y + 0.5, hm[j, y, x]], rtol=1e-6)


def test_score_is_computed_before_refine():
    rng = np.random.default_rng(11)
    hm, tags, gt, _ = make_scene(rng, 2, 8)
    hm[5] = 0.0  # joint type 5 never detected: refine fills it, with val 0 at best...
    hm[5, gt[0, 5, 1], gt[0, 5, 0]] = 0.08  # ... or a value below val_th for person 0
    cfg = GroupingConfig()
    with_refine, s1 = decode_people(hm, tags, cfg, COCO.grouping_order)
    no_refine, s2 = decode_people(hm, tags, GroupingConfig(refine=False), COCO.grouping_order)
    np.testing.assert_allclose(s1, s2)
    assert (no_refine[:, 5] == 0).all()
    np.testing.assert_allclose(s1, no_refine[:, :, 2].mean(axis=1), rtol=1e-6)
    # refine filled joint 5 for everybody; person 0's is at its weak peak
    p0 = int(np.argmin([np.abs(np.floor(q[0, :2]) - gt[0, 0]).sum() for q in with_refine]))
    assert tuple(np.floor(with_refine[p0, 5, :2]).astype(int)) == tuple(gt[0, 5])
    assert with_refine[p0, 5, 2] == pytest.approx(0.08)
    assert not np.allclose(s1, with_refine[:, :, 2].mean(axis=1))


# ---------------------------------------------------------------------------------- Munkres solver
def test_munkres_matches_scipy_cost():
    rng = np.random.default_rng(0)
    for t in range(120):
        m, n = (int(v) for v in rng.integers(1, 14, size=2))
        cost = rng.random((m, n)) * 10
        if t % 3 == 0:
            cost = np.round(cost)  # many ties
        if t % 4 == 0:
            cost[rng.random((m, n)) < 0.4] = 1e5
        if t % 5 == 0:
            cost -= 5  # negative costs
        rows, cols = munkres_assignment(cost)
        r2, c2 = linear_sum_assignment(cost)
        assert len(rows) == len(r2) == min(m, n)
        assert len(set(cols.tolist())) == len(cols) and (np.diff(rows) > 0).all()
        assert cost[rows, cols].sum() == pytest.approx(cost[r2, c2].sum(), abs=1e-6)
    assert munkres_assignment(np.zeros((0, 3)))[0].shape == (0,)
