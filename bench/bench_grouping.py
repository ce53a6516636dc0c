"""Grouping benchmark: bottom-up grouping time per image vs the number of people, compiled vs pure Python.

On the same synthetic candidates (K=17 joint types, tags = a known identity per person + noise,
flip-concatenated 2R = 16 dims as in the CE test setting, plus low-value false positives), in one run,
interleaved repetition by repetition so that machine load hits all paths alike:

* **scipy**: :func:`pose.bottomup.grouping.group_candidates` (vectorised distances and costs,
  ``scipy.optimize.linear_sum_assignment``), the implementation used by ``decode_people``;
* **munkres**: the same function with the pure-Python Hungarian solver of
  :mod:`pose.bottomup.munkres_reference` swapped in (only the solver differs);
* **reference-style**: :func:`pose.bottomup.munkres_reference.group_candidates_munkres`, the grouping
  written the way the reference code is (Python loops over candidates and instances) with the
  pure-Python solver.

All three must give identical groups (checked). ``top_k`` is max(30, people + 5) so every person has
candidates (the reference's top-30 would cap the matrices at 30 rows). Times are the median over
repetitions of the wall time of grouping one image (all K joint types); NMS/top-k and refine are not
included (they do not depend on the solver).

    python bench/bench_grouping.py            # ~1 min on a 2-core machine
    python bench/bench_grouping.py --quick    # a few seconds

The last line printed is a JSON object: ``ratio_at_30`` (munkres / scipy at 30 people) first.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("OMP_NUM_THREADS", "1")  # single-threaded BLAS, before numpy is imported

import numpy as np  # noqa: E402

from pose.bottomup.grouping import Candidates, GroupingConfig, Groups, group_candidates  # noqa: E402
from pose.bottomup.munkres_reference import group_candidates_munkres, munkres_assignment  # noqa: E402
from pose.metainfo import get_metainfo  # noqa: E402

PEOPLE = (1, 5, 10, 20, 30, 45, 60)


def synthetic_candidates(rng: np.random.Generator, people: int, k: int = 17, embed_dim: int = 8,
                         top_k: int = 30, noise: float = 0.08, miss: float = 0.1,
                         false_positives: float = 1.0) -> Candidates:
    """Candidates as top-k on a crowded image would give them.

    Per joint type, M = max(top_k, people + 5) candidates sorted by value: the ``people`` true joints
    (val U[0.3, 1], a fraction ``miss`` below the 0.1 threshold; tag = the person's identity + N(0,
    noise) per dim, the two flip halves with their own noise), then background peaks with random tags:
    val U[0, 0.1) (ignored by grouping) except, on average, ``false_positives`` of them per joint type
    with val U[0.1, 0.3) (they start instances of their own).

    Returns:
        :class:`Candidates` with vals (K, M), xy (K, M, 2), tags (K, M, 2*embed_dim).
    """
    m = max(top_k, people + 5)
    extra = m - people
    d = 2 * embed_dim
    ident = rng.normal(size=(people, embed_dim)) * 2.0
    ident = np.concatenate([ident, ident], axis=1)
    vals = np.zeros((k, m), np.float32)
    tags = np.zeros((k, m, d), np.float32)
    for j in range(k):
        v = rng.uniform(0.3, 1.0, size=people)
        v[rng.random(people) < miss] = rng.uniform(0.0, 0.1)
        bg = rng.uniform(0.0, 0.1, size=extra)
        fp = rng.random(extra) < false_positives / extra
        bg[fp] = rng.uniform(0.1, 0.3, size=int(fp.sum()))
        t = np.concatenate([ident[rng.permutation(people)] + rng.normal(scale=noise, size=(people, d)),
                            rng.normal(size=(extra, d)) * 2.0])
        allv = np.concatenate([v, bg])
        order = np.argsort(-allv, kind="stable")  # top-k comes sorted by value
        vals[j], tags[j] = allv[order], t[order]
    xy = rng.integers(0, 512, size=(k, m, 2))
    return Candidates(vals=vals, xy=xy, tags=tags)


def _same(a: Groups, b: Groups) -> bool:
    return (a.found.shape == b.found.shape and np.array_equal(a.found, b.found)
            and np.array_equal(a.joints, b.joints) and np.allclose(a.tags, b.tags))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--people", type=int, nargs="+", default=list(PEOPLE),
                   help="people counts (default: %(default)s)")
    p.add_argument("--repeats", type=int, default=7, help="timed repetitions per path; the median counts "
                                                         "(default: %(default)s)")
    p.add_argument("--images", type=int, default=3,
                   help="synthetic images per people count (times are per image, median over "
                        "images x repeats; default: %(default)s)")
    p.add_argument("--false-positives", type=float, default=1.0,
                   help="background peaks above the threshold per joint type, on average "
                        "(default: %(default)s)")
    p.add_argument("--no-reference", action="store_true", help="skip the reference-style loop grouping")
    p.add_argument("--quick", action="store_true", help="1 image, 3 repetitions, counts 1 10 30 60")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.quick:
        args.images, args.repeats = 1, 3
        if "--people" not in (sys.argv[1:] if argv is None else argv):
            args.people = [1, 10, 30, 60]

    order = get_metainfo("coco").grouping_order
    cfg = GroupingConfig()
    paths = {
        "scipy": lambda c: group_candidates(c, cfg, order),
        "munkres": lambda c: group_candidates(c, cfg, order, solver=munkres_assignment),
    }
    if not args.no_reference:
        paths["reference_style"] = lambda c: group_candidates_munkres(c, cfg, order)
    rng = np.random.default_rng(args.seed)
    t_start = time.perf_counter()
    rows = {}
    print(f"grouping time per image (ms, median of {args.images} images x {args.repeats} repetitions); "
          f"K=17, tags 2x8 dims, top_k = max(30, people + 5), "
          f"{args.false_positives:g} false positive(s) per joint type")
    head = f"{'people':>6}{'instances':>10}" + "".join(f"{n:>17}" for n in paths) + f"{'munkres/scipy':>15}"
    if "reference_style" in paths:
        head += f"{'ref/scipy':>11}"
    print(head)
    for people in args.people:
        times: dict[str, list[float]] = {n: [] for n in paths}
        instances = []
        for _ in range(args.images):
            cands = synthetic_candidates(rng, people, false_positives=args.false_positives)
            results = {n: f(cands) for n, f in paths.items()}  # warm-up and the identical-groups check
            base = results["scipy"]
            for n, g in results.items():
                if not _same(base, g):
                    raise SystemExit(f"{n} grouping differs from scipy at {people} people")
            instances.append(len(base))
            for _ in range(args.repeats):
                for n, f in paths.items():
                    t0 = time.perf_counter()
                    f(cands)
                    times[n].append((time.perf_counter() - t0) * 1e3)
        med = {n: statistics.median(v) for n, v in times.items()}
        rows[people] = {"instances": float(np.mean(instances)),
                        **{f"{n}_ms": round(v, 3) for n, v in med.items()},
                        "munkres_vs_scipy": round(med["munkres"] / med["scipy"], 2)}
        line = f"{people:>6}{np.mean(instances):>10.1f}" + "".join(f"{med[n]:>17.2f}" for n in paths)
        line += f"{med['munkres'] / med['scipy']:>15.1f}"
        if "reference_style" in paths:
            rows[people]["reference_vs_scipy"] = round(med["reference_style"] / med["scipy"], 2)
            line += f"{med['reference_style'] / med['scipy']:>11.1f}"
        print(line, flush=True)
    wall = time.perf_counter() - t_start
    print(f"identical groups on every image: yes; {wall:.1f} s")
    result = {
        "ratio_at_30": rows[30]["munkres_vs_scipy"] if 30 in rows else None,
        "reference_ratio_at_30": rows[30].get("reference_vs_scipy") if 30 in rows else None,
        "scipy_ms_at_30": rows[30]["scipy_ms"] if 30 in rows else None,
        "per_people": {str(k): v for k, v in rows.items()},
        "images": args.images,
        "repeats": args.repeats,
        "wall_s": round(wall, 1),
        "command": "python " + shlex.join(["bench/bench_grouping.py",
                                           *(sys.argv[1:] if argv is None else argv)]),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
