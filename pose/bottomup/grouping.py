"""Bottom-up grouping: joint candidates -> people (Associative / Coupled Embedding, spec §4.5-4.10).

Everything here runs on the maps aggregated at input resolution (:mod:`pose.bottomup.aggregate`):
heatmaps (K, H, W) and tags (K, H, W, D), with D = R (no flip) or 2R (flip-concatenated tags).

Pipeline of :func:`decode_people` (each step is a small function of its own):

1. :func:`top_k_candidates`: max-pool NMS (kernel ``nms_kernel``, stride 1, "same" padding) and the
   ``top_k`` highest peaks per joint type, with their integer (x, y) and the tag at that pixel.
2. :func:`group_candidates`: joint types visited in the dataset's grouping order; candidates with
   val > ``val_threshold``; the first joint type with candidates starts one instance per candidate;
   after that the Hungarian algorithm (``scipy.optimize.linear_sum_assignment``) on
   cost = round(D / tag_th) (> 1 -> 1e5, else cost - val) over the L2 distances D to the instances'
   mean tags, padded with 1e5 columns when there are more candidates than instances. A match joins
   its instance when the column is a real instance and D <= tag_th; every other candidate starts a
   new instance. An instance's tag is the mean tag of all its joints so far. No cap on instances.
3. :func:`adjust_offsets`: +0.25 px toward the higher neighbour in x and in y (ties go to -0.25),
   then +0.5 (pixel centre).
4. Score of a person = mean of val over all K joints (missing joints count 0), **before** refine.
5. :func:`refine_people`: every missing joint k is filled (no threshold) at the argmax over pixels of
   h_k - round(||tag_k(p) - prev_tag||), prev_tag being the mean tag of the person's found joints,
   with val = h_k there, +0.5 and the quarter offset.

Coordinates out are continuous input pixels where pixel (x, y) spans [x, x+1) x [y, y+1), so a
joint found at pixel x is reported at x + 0.5 (+-0.25).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment

#: cost of an impossible match (tag too far) and of the padding columns (spec §4.7)
BIG_COST = 1e5

#: solver(cost (m, n)) -> (rows, cols), rows ascending, one per assigned row (scipy's contract)
AssignmentSolver = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class GroupingConfig:
    """Test-time grouping settings (spec §4, §6 "Eval").

    Args:
        nms_kernel: max-pool NMS kernel at input resolution (5 for W32 configs, 7 for W48); odd.
        top_k: candidates kept per joint type (the reference uses max_num_people = 30).
        val_threshold: candidates with heatmap value <= this are ignored by grouping.
        tag_threshold: largest L2 tag distance at which a candidate joins an instance.
        adjust: apply the quarter-pixel offset toward the higher neighbour (the +0.5 pixel centre is
            always added, so the coordinate convention does not depend on this flag).
        refine: fill every missing joint from the heatmap and the person's mean tag (§4.10).
        max_people_out: keep at most this many people (highest score first); 0 = no cap (reference).
    """

    nms_kernel: int = 5
    top_k: int = 30
    val_threshold: float = 0.1
    tag_threshold: float = 1.0
    adjust: bool = True
    refine: bool = True
    max_people_out: int = 0

    def __post_init__(self) -> None:
        if self.nms_kernel < 1 or self.nms_kernel % 2 != 1:
            raise ValueError(f"GroupingConfig.nms_kernel must be a positive odd integer, "
                             f"got {self.nms_kernel}")
        if self.top_k < 1:
            raise ValueError(f"GroupingConfig.top_k must be >= 1, got {self.top_k}")
        if not self.tag_threshold > 0:
            raise ValueError(f"GroupingConfig.tag_threshold must be > 0, got {self.tag_threshold}")
        if self.max_people_out < 0:
            raise ValueError(f"GroupingConfig.max_people_out must be >= 0 (0 = no cap), "
                             f"got {self.max_people_out}")


@dataclass(frozen=True, eq=False)
class Candidates:
    """Per-joint-type peaks after NMS, M = min(top_k, H*W) per type, highest value first.

    Attributes:
        vals: (K, M) float32 heatmap values (0 for suppressed pixels that fill the top-k).
        xy: (K, M, 2) int64 integer pixel coordinates (x, y).
        tags: (K, M, D) float32 tag vectors at those pixels.
    """

    vals: np.ndarray
    xy: np.ndarray
    tags: np.ndarray


@dataclass(frozen=True, eq=False)
class Groups:
    """Instances built by :func:`group_candidates`, in creation order.

    Attributes:
        joints: (P, K, 3) float64 [x, y, val] with integer pixel x, y; zeros where a joint is missing.
        found: (P, K) bool, True where the instance has that joint.
        tags: (P, D) float64 mean tag of each instance's joints.
    """

    joints: np.ndarray
    found: np.ndarray
    tags: np.ndarray

    def __len__(self) -> int:
        return len(self.joints)


# -------------------------------------------------------------------------------------- candidates
def nms_heatmaps(heatmaps: torch.Tensor, kernel: int) -> torch.Tensor:
    """Max-pool NMS: keep pixels equal to the max of their kernel x kernel window, zero the rest.

    Args:
        heatmaps: (K, H, W) float.
        kernel: odd window side (stride 1, "same" padding).

    Returns:
        (K, H, W) heatmaps with non-maxima set to 0 (plateaus keep every equal pixel).
    """
    if kernel % 2 != 1:
        raise ValueError(f"nms kernel must be odd, got {kernel}")
    pooled = F.max_pool2d(heatmaps[None], kernel, stride=1, padding=(kernel - 1) // 2)[0]
    return heatmaps * (pooled == heatmaps)


def top_k_candidates(heatmaps: torch.Tensor, tags: torch.Tensor, nms_kernel: int, top_k: int) -> Candidates:
    """NMS, then the ``top_k`` highest pixels of every joint type with their tags (spec §4.5-4.6).

    Args:
        heatmaps: (K, H, W) aggregated heatmaps at the resolution grouping runs at.
        tags: (K, H, W, D) tags at the same resolution.
        nms_kernel: odd max-pool kernel.
        top_k: candidates per joint type (clipped to H*W).

    Returns:
        :class:`Candidates` with M = min(top_k, H*W).
    """
    heatmaps = torch.as_tensor(heatmaps, dtype=torch.float32)
    tags = torch.as_tensor(tags, dtype=torch.float32)
    k, h, w = heatmaps.shape
    if tags.ndim != 4 or tags.shape[:3] != heatmaps.shape:
        raise ValueError(f"tags {tuple(tags.shape)} do not match heatmaps {tuple(heatmaps.shape)} "
                         "(want (K, H, W, D))")
    d = tags.shape[3]
    kept = nms_heatmaps(heatmaps, nms_kernel).reshape(k, h * w)
    vals, ind = kept.topk(min(top_k, h * w), dim=1)
    cand_tags = torch.gather(tags.reshape(k, h * w, d), 1, ind[..., None].expand(-1, -1, d))
    xy = torch.stack([ind % w, ind // w], dim=-1)
    return Candidates(vals=vals.numpy(), xy=xy.numpy().astype(np.int64), tags=cand_tags.numpy())


# ---------------------------------------------------------------------------------------- grouping
def _check_order(order: Sequence[int], k: int) -> list[int]:
    order = [int(i) for i in order]
    if sorted(order) != list(range(k)):
        raise ValueError(f"grouping order must be a permutation of 0..{k - 1}, got {order}")
    return order


def match_cost(dist: np.ndarray, vals: np.ndarray, tag_threshold: float) -> np.ndarray:
    """The assignment cost of spec §4.7, padded to at least square.

    Args:
        dist: (m, n) L2 distances of m candidates to n instance tags.
        vals: (m,) candidate heatmap values.
        tag_threshold: tag_th.

    Returns:
        (m, max(m, n)) float64: round(D / tag_th), entries > 1 set to 1e5, the others minus val;
        extra 1e5 columns when m > n (np.round: halves go to even, as in the reference).
    """
    m, n = dist.shape
    cost = np.full((m, max(m, n)), BIG_COST)
    r = np.round(dist / tag_threshold)
    cost[:, :n] = np.where(r > 1, BIG_COST, r - vals[:, None])
    return cost


def tag_distances(cand_tags: np.ndarray, inst_tags: np.ndarray) -> np.ndarray:
    """L2 distances (m, n) between candidate tags (m, D) and instance tags (n, D), float64.

    |a - b|^2 = |a|^2 + |b|^2 - 2 a.b with one matrix product (several times faster than the
    (m, n, D) difference at these sizes); the rounding error (~1e-15 relative) only matters for a
    distance exactly at a rounding or threshold boundary.
    """
    d2 = (cand_tags ** 2).sum(axis=1)[:, None] + (inst_tags ** 2).sum(axis=1)[None, :]
    d2 -= 2.0 * (cand_tags @ inst_tags.T)
    return np.sqrt(np.maximum(d2, 0.0))


def group_candidates(cands: Candidates, cfg: GroupingConfig, order: Sequence[int],
                     solver: AssignmentSolver = linear_sum_assignment) -> Groups:
    """Greedy-by-joint-type Hungarian grouping of candidates into instances (spec §4.7).

    Args:
        cands: :class:`Candidates` (K joint types, M per type, D tag dims).
        cfg: uses ``val_threshold`` and ``tag_threshold``.
        order: joint types in the order they are visited (a permutation of 0..K-1).
        solver: the assignment solver (scipy by default; the benchmark swaps in a pure-Python one).

    Returns:
        :class:`Groups` in creation order. Vectorised: Python loops only over joint types.
    """
    k_types, m_max = cands.vals.shape
    d = cands.tags.shape[2]
    order = _check_order(order, k_types)
    keep = cands.vals > cfg.val_threshold  # (K, M)
    if not keep.any():
        return Groups(joints=np.zeros((0, k_types, 3)), found=np.zeros((0, k_types), bool),
                      tags=np.zeros((0, d)))
    all_joints = np.concatenate([cands.xy.astype(np.float64), cands.vals.astype(np.float64)[..., None]],
                                axis=2)  # (K, M, 3) x, y, val
    all_tags = cands.tags.astype(np.float64)
    cap = int(keep.sum())  # at most one instance per kept candidate
    joints = np.zeros((cap, k_types, 3))
    found = np.zeros((cap, k_types), dtype=bool)
    tag_sum = np.zeros((cap, d))
    count = np.zeros(cap)
    inst_tags = np.zeros((cap, d))  # running means, updated where they change
    th = cfg.tag_threshold
    n = 0
    for k in order:
        sel = np.flatnonzero(keep[k])
        m = len(sel)
        if m == 0:
            continue
        cand_joints = all_joints[k, sel]  # (m, 3)
        t = all_tags[k, sel]  # (m, D)
        if n == 0:
            new = np.arange(m)
        else:
            dist = tag_distances(t, inst_tags[:n])  # (m, n)
            rows, cols = solver(match_cost(dist, cand_joints[:, 2], th))
            rows, cols = np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64)
            real = cols < n
            rows, cols = rows[real], cols[real]
            ok = dist[rows, cols] <= th
            mr, mc = rows[ok], cols[ok]
            joints[mc, k] = cand_joints[mr]
            found[mc, k] = True
            tag_sum[mc] += t[mr]
            count[mc] += 1
            inst_tags[mc] = tag_sum[mc] / count[mc, None]
            unmatched = np.ones(m, dtype=bool)
            unmatched[mr] = False
            new = np.flatnonzero(unmatched)  # ascending row order, as the reference loops over pairs
        idx = np.arange(n, n + len(new))
        joints[idx, k] = cand_joints[new]
        found[idx, k] = True
        tag_sum[idx] = t[new]
        inst_tags[idx] = t[new]
        count[idx] = 1
        n += len(new)
    return Groups(joints=joints[:n], found=found[:n], tags=inst_tags[:n].copy())


# ----------------------------------------------------------------------------------------- offsets
def quarter_offsets(heatmaps: np.ndarray, k: np.ndarray, x: np.ndarray,
                    y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """+-0.25 toward the higher neighbour (ties -> -0.25), neighbours clamped at the borders.

    Args:
        heatmaps: (K, H, W).
        k, x, y: (N,) int joint type and pixel of each point.

    Returns:
        dx, dy: (N,) float64, each +0.25 or -0.25.
    """
    _, h, w = heatmaps.shape
    right = heatmaps[k, y, np.minimum(x + 1, w - 1)]
    left = heatmaps[k, y, np.maximum(x - 1, 0)]
    down = heatmaps[k, np.minimum(y + 1, h - 1), x]
    up = heatmaps[k, np.maximum(y - 1, 0), x]
    return np.where(right > left, 0.25, -0.25), np.where(down > up, 0.25, -0.25)


def adjust_offsets(joints: np.ndarray, found: np.ndarray, heatmaps: np.ndarray,
                   adjust: bool = True) -> np.ndarray:
    """Sub-pixel position of the found joints (spec §4.8): quarter offset, then +0.5.

    Args:
        joints: (P, K, 3) [x, y, val] with integer pixel x, y (from :func:`group_candidates`).
        found: (P, K) bool; missing joints are left as they are.
        heatmaps: (K, H, W) the aggregated heatmaps before NMS.
        adjust: False skips the quarter offset (the +0.5 is always added).

    Returns:
        (P, K, 3) float64 copy with x, y moved.
    """
    out = np.array(joints, dtype=np.float64, copy=True)
    p, k = np.nonzero(found)
    if len(p) == 0:
        return out
    x = out[p, k, 0].astype(np.int64)
    y = out[p, k, 1].astype(np.int64)
    dx, dy = quarter_offsets(heatmaps, k, x, y) if adjust else (0.0, 0.0)
    out[p, k, 0] = x + 0.5 + dx
    out[p, k, 1] = y + 0.5 + dy
    return out


# ------------------------------------------------------------------------------------------ refine
def refine_people(people: np.ndarray, found: np.ndarray, heatmaps: np.ndarray, tags: np.ndarray,
                  adjust: bool = True, chunk_elems: int = 1 << 22) -> np.ndarray:
    """Fill every missing joint from the heatmap and the person's mean tag (spec §4.10).

    prev_tag = the mean of the tags at the pixels of the person's found joints. For a missing joint
    k the new position is argmax over pixels of h_k - round(||tag_k - prev_tag||) (first maximum in
    row-major order), val = h_k there, then +0.5 and the quarter offset. Always filled, even with a
    low val (no threshold), as in the CE reference. Computed in float32 like the reference, with
    ||t - p||^2 = |t|^2 + |p|^2 - 2 t.p as one matrix product per joint type and chunk of people.

    Args:
        people: (P, K, 3) [x, y, val] after :func:`adjust_offsets` (floor(x), floor(y) is the pixel).
        found: (P, K) bool joints found by grouping; each person has at least one.
        heatmaps: (K, H, W) aggregated heatmaps (before NMS).
        tags: (K, H, W, D) aggregated tags.
        adjust: apply the quarter offset to the filled joints.
        chunk_elems: memory bound (elements) of the (people x pixels) block.

    Returns:
        (P, K, 3) float64 with every joint filled.
    """
    out = np.array(people, dtype=np.float64, copy=True)
    n_people, k_types = found.shape
    if n_people == 0 or found.all():
        return out
    if not found.any(axis=1).all():
        raise ValueError("refine_people: a person without any found joint has no tag to refine with")
    _, h, w = heatmaps.shape
    d = tags.shape[3]
    heatmaps = np.asarray(heatmaps, dtype=np.float32)
    tags = np.asarray(tags, dtype=np.float32)
    # prev_tag: mean of the tags at the found joints' pixels
    p_idx, k_idx = np.nonzero(found)
    px = np.clip(np.floor(out[p_idx, k_idx, 0]).astype(np.int64), 0, w - 1)
    py = np.clip(np.floor(out[p_idx, k_idx, 1]).astype(np.int64), 0, h - 1)
    tag_sum = np.zeros((n_people, d))
    np.add.at(tag_sum, p_idx, tags[k_idx, py, px].astype(np.float64))
    prev = (tag_sum / found.sum(axis=1)[:, None]).astype(np.float32)
    prev_sq = (prev ** 2).sum(axis=1)
    chunk = max(1, chunk_elems // (h * w))
    fill_p, fill_k, fill_flat = [], [], []
    for k in range(k_types):
        missing = np.flatnonzero(~found[:, k])
        if len(missing) == 0:
            continue
        tk = tags[k].reshape(h * w, d)
        tk_sq = np.einsum("pd,pd->p", tk, tk)
        hk = heatmaps[k].reshape(h * w)
        for s in range(0, len(missing), chunk):
            sel = missing[s:s + chunk]
            score = prev[sel] @ tk.T  # (c, H*W), then in place: h_k - round(||t - p||)
            score *= -2.0
            score += tk_sq[None, :]
            score += prev_sq[sel][:, None]
            np.maximum(score, 0.0, out=score)
            np.sqrt(score, out=score)
            np.round(score, out=score)
            np.subtract(hk[None, :], score, out=score)
            fill_p.append(sel)
            fill_k.append(np.full(len(sel), k))
            fill_flat.append(score.argmax(axis=1))
    p_f, k_f, flat = np.concatenate(fill_p), np.concatenate(fill_k), np.concatenate(fill_flat)
    y, x = np.divmod(flat, w)
    dx, dy = quarter_offsets(heatmaps, k_f, x, y) if adjust else (0.0, 0.0)
    out[p_f, k_f, 0] = x + 0.5 + dx
    out[p_f, k_f, 1] = y + 0.5 + dy
    out[p_f, k_f, 2] = heatmaps[k_f, y, x]
    return out


# ------------------------------------------------------------------------------------------ decode
def decode_people(heatmaps: torch.Tensor, tags: torch.Tensor, cfg: GroupingConfig,
                  order: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """People from aggregated maps: NMS, top-k, grouping, offsets, score, refine (spec §4.5-4.10).

    Args:
        heatmaps: (K, H, W) aggregated heatmaps (flip/scale merged, at input resolution).
        tags: (K, H, W, D) aggregated tags (D = R, or 2R with flip).
        cfg: :class:`GroupingConfig`.
        order: the dataset's grouping order (``DatasetMeta.grouping_order``).

    Returns:
        people (P, K, 3) float32 [x, y, val] in the pixels of the maps, and scores (P,) float32 = the
        mean val over K before refine. Creation order; with ``max_people_out`` the highest-scoring
        people are kept (in creation order).
    """
    heatmaps = torch.as_tensor(heatmaps, dtype=torch.float32).detach().cpu()
    tags = torch.as_tensor(tags, dtype=torch.float32).detach().cpu()
    if heatmaps.ndim != 3:
        raise ValueError(f"heatmaps must be (K, H, W), got {tuple(heatmaps.shape)}")
    k_types = heatmaps.shape[0]
    cands = top_k_candidates(heatmaps, tags, cfg.nms_kernel, cfg.top_k)
    groups = group_candidates(cands, cfg, order)
    if len(groups) == 0:
        return np.zeros((0, k_types, 3), np.float32), np.zeros((0,), np.float32)
    hm = heatmaps.numpy()
    people = adjust_offsets(groups.joints, groups.found, hm, cfg.adjust)
    found = groups.found
    scores = people[:, :, 2].mean(axis=1)
    if cfg.max_people_out and len(people) > cfg.max_people_out:
        # scores do not depend on refine, so capping first gives the same people and skips refining
        # the dropped ones (refine costs one pass over the K maps per missing joint)
        keep = np.sort(np.argsort(-scores, kind="stable")[: cfg.max_people_out])
        people, found, scores = people[keep], found[keep], scores[keep]
    if cfg.refine:
        people = refine_people(people, found, hm, tags.numpy(), adjust=cfg.adjust)
    return people.astype(np.float32), scores.astype(np.float32)
