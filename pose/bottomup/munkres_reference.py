"""A pure-Python Hungarian (Kuhn-Munkres) solver and the grouping written around it.

This is the baseline of ``bench/bench_grouping.py`` and a cross-check of the vectorised
:func:`pose.bottomup.grouping.group_candidates`: the Associative / Coupled Embedding reference code
groups with the pure-Python ``munkres`` package inside per-candidate Python loops; this module does
the same with a solver of its own:

* :func:`munkres_assignment`: O(n^3) Hungarian algorithm with row/column potentials (dual
  variables) and shortest augmenting paths, one row at a time. Rectangular matrices are padded with
  zeros to square; only real (row, column) pairs are returned, like
  ``scipy.optimize.linear_sum_assignment``.
* :func:`group_candidates_munkres`: spec §4.7 written the plain way (lists of instances, Python
  loops over candidates and instances, pure-Python distances), giving the same groups as
  :func:`~pose.bottomup.grouping.group_candidates`.

Not for production use: it is slow by design.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from pose.bottomup.grouping import BIG_COST, Candidates, GroupingConfig, Groups


def munkres_assignment(cost: np.ndarray | Sequence[Sequence[float]]) -> tuple[np.ndarray, np.ndarray]:
    """Minimum-cost assignment of a (m, n) cost matrix, in pure Python.

    Args:
        cost: (m, n) finite costs.

    Returns:
        rows, cols: int64 arrays of length min(m, n), rows ascending; sum(cost[rows, cols]) is minimal
        over all assignments of min(m, n) pairs.
    """
    a = [[float(c) for c in row] for row in np.asarray(cost, dtype=np.float64).tolist()]
    m = len(a)
    n_cols = len(a[0]) if m else 0
    if m == 0 or n_cols == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    n = max(m, n_cols)
    # square matrix, 1-based (index 0 is the virtual start of every augmenting path)
    mat = [[0.0] * (n + 1)]
    for i in range(n):
        row = a[i] + [0.0] * (n - n_cols) if i < m else [0.0] * n
        mat.append([0.0] + row)
    inf = math.inf
    u = [0.0] * (n + 1)  # row potentials
    v = [0.0] * (n + 1)  # column potentials
    owner = [0] * (n + 1)  # owner[j] = row matched to column j (0 = free)
    way = [0] * (n + 1)  # previous column on the shortest path
    for i in range(1, n + 1):
        # add row i: grow a shortest-path tree over columns with reduced costs until a free column
        owner[0] = i
        j0 = 0
        minv = [inf] * (n + 1)
        used = [False] * (n + 1)
        while True:
            used[j0] = True
            i0 = owner[j0]
            row = mat[i0]
            ui0 = u[i0]
            delta = inf
            j1 = 0
            for j in range(1, n + 1):
                if not used[j]:
                    cur = row[j] - ui0 - v[j]
                    if cur < minv[j]:
                        minv[j] = cur
                        way[j] = j0
                    if minv[j] < delta:
                        delta = minv[j]
                        j1 = j
            # move the potentials by delta: reduced costs stay >= 0, tree edges stay tight
            for j in range(n + 1):
                if used[j]:
                    u[owner[j]] += delta
                    v[j] -= delta
                else:
                    minv[j] -= delta
            j0 = j1
            if owner[j0] == 0:
                break
        # flip the augmenting path back to the start
        while j0:
            j1 = way[j0]
            owner[j0] = owner[j1]
            j0 = j1
    pairs = sorted((owner[j] - 1, j - 1) for j in range(1, n + 1) if owner[j] - 1 < m and j - 1 < n_cols)
    rows = np.array([p[0] for p in pairs], dtype=np.int64)
    cols = np.array([p[1] for p in pairs], dtype=np.int64)
    return rows, cols


def group_candidates_munkres(cands: Candidates, cfg: GroupingConfig, order: Sequence[int]) -> Groups:
    """Spec §4.7 grouping with :func:`munkres_assignment`, written with plain Python loops.

    Args:
        cands: candidates from :func:`pose.bottomup.grouping.top_k_candidates`.
        cfg: uses ``val_threshold`` and ``tag_threshold``.
        order: joint types in visiting order.

    Returns:
        :class:`~pose.bottomup.grouping.Groups`, the same as ``group_candidates`` gives.
    """
    k_types, m_max = cands.vals.shape
    d = cands.tags.shape[2]
    vals, xy, tags = cands.vals.tolist(), cands.xy.tolist(), cands.tags.tolist()
    th = cfg.tag_threshold
    instances: list[dict] = []  # each: joints {k: (x, y, val)}, tags [tag, ...]

    def start(k: int, joint: tuple[float, float, float], tag: list[float]) -> None:
        instances.append({"joints": {k: joint}, "tags": [tag]})

    for k in order:
        cand = [(float(xy[k][i][0]), float(xy[k][i][1]), float(vals[k][i]), tags[k][i])
                for i in range(m_max) if vals[k][i] > cfg.val_threshold]
        if not cand:
            continue
        if not instances:
            for x, y, val, tag in cand:
                start(k, (x, y, val), tag)
            continue
        means = [[sum(t[j] for t in inst["tags"]) / len(inst["tags"]) for j in range(d)]
                 for inst in instances]
        n = len(instances)
        dist = [[math.sqrt(sum((c[3][j] - mt[j]) ** 2 for j in range(d))) for mt in means] for c in cand]
        cost = []
        for c, drow in zip(cand, dist):
            row = []
            for dd in drow:
                r = round(dd / th)  # Python's round: halves to even, like np.round
                row.append(BIG_COST if r > 1 else r - c[2])
            row += [BIG_COST] * (len(cand) - n)
            cost.append(row)
        rows, cols = munkres_assignment(cost)
        assigned = dict(zip(rows.tolist(), cols.tolist()))
        for r, (x, y, val, tag) in enumerate(cand):
            c = assigned.get(r, n)
            if c < n and dist[r][c] <= th:
                instances[c]["joints"][k] = (x, y, val)
                instances[c]["tags"].append(tag)
            else:
                start(k, (x, y, val), tag)
    joints = np.zeros((len(instances), k_types, 3))
    found = np.zeros((len(instances), k_types), dtype=bool)
    inst_tags = np.zeros((len(instances), d))
    for p, inst in enumerate(instances):
        for k, joint in inst["joints"].items():
            joints[p, k] = joint
            found[p, k] = True
        inst_tags[p] = np.mean(np.asarray(inst["tags"], dtype=np.float64), axis=0)
    return Groups(joints=joints, found=found, tags=inst_tags)
