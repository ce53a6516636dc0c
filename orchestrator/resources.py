"""CPU planning for Ray Train workers + Ray Data on small machines.

Each Ray Train worker reserves 1 logical CPU by default and Ray Data only schedules its read/map
tasks on the CPUs left over, so 2 workers on a 2-core laptop leave Ray Data nothing and the run
hangs (ray PR #41603, issue #54305; ``shared/specs/ray_mlflow_notes.md`` §1.6). Logical CPUs are
admission control, not pinning, so either remedy is safe:

* **overcommit**: when this process starts the local Ray instance, declare more logical CPUs than
  cores (``ray.init(num_cpus=...)``): workers keep 1 CPU each and Ray Data gets its own.
* **fractional**: when attaching to a running cluster (whose CPU count is fixed), give workers a
  fraction of a CPU (``resources_per_worker={"CPU": 0.5}``) and leave the rest to Ray Data.

:func:`plan_resources` picks one automatically; ``strategy`` (or ``POSELAB_RAY_STRATEGY``) overrides.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Literal

Strategy = Literal["auto", "fits", "overcommit", "fractional"]
STRATEGIES = ("auto", "fits", "overcommit", "fractional")
ENV_STRATEGY = "POSELAB_RAY_STRATEGY"


@dataclass(frozen=True)
class ResourcePlan:
    """How to start Ray and size the Train workers.

    Attributes:
        strategy: "fits" (nothing to change), "overcommit" or "fractional".
        num_cpus: logical CPUs for ``ray.init(num_cpus=...)`` (None: let Ray count the cores / use the
            running cluster's).
        cpus_per_worker: ``ScalingConfig(resources_per_worker={"CPU": cpus_per_worker})``.
        data_cpus: logical CPUs left for Ray Data tasks while training runs.
        torch_threads: intra-op threads per worker (physical cores / workers, at least 1).
        reason: one line for the log.
    """

    strategy: str
    num_cpus: float | None
    cpus_per_worker: float
    data_cpus: float
    torch_threads: int
    reason: str

    @property
    def resources_per_worker(self) -> dict[str, float]:
        return {"CPU": self.cpus_per_worker}

    def init_kwargs(self) -> dict:
        """Keyword arguments for ``ray.init`` (empty when Ray's own CPU count is right)."""
        return {} if self.num_cpus is None else {"num_cpus": self.num_cpus}


def _floor_to(x: float, step: float) -> float:
    return math.floor(x / step + 1e-9) * step


def plan_resources(cluster_cpus: float, num_workers: int, *, data_cpus: float = 2.0, driver_cpus: float = 0.0,
                   starting_local: bool = True, strategy: Strategy | None = None,
                   physical_cpus: int | None = None) -> ResourcePlan:
    """Decide the CPU accounting for ``num_workers`` Train workers next to Ray Data.

    Args:
        cluster_cpus: CPUs Ray has (or would detect): the core count for a local start, the cluster's
            total for an attached one.
        num_workers: Ray Train workers (0: local mode, no worker actors).
        data_cpus: logical CPUs Ray Data should be able to use while training (reads + map tasks).
        driver_cpus: CPUs held by a Tune trial driver or similar (per concurrent trial).
        starting_local: True when this process starts Ray (``ray.init`` without an address), so the
            logical CPU count can be chosen; False when attaching to a running cluster.
        strategy: "auto" (default; or ``$POSELAB_RAY_STRATEGY``), or force "fits", "overcommit" or
            "fractional".
        physical_cpus: cores for the thread count (default: ``cluster_cpus``).

    Auto: "fits" if workers (1 CPU each) + data + driver fit; else "overcommit" when starting a
    local instance, "fractional" when attaching. Fractional gives Ray Data ``min(data_cpus,
    cluster_cpus / 2)`` and splits the rest evenly (a multiple of 0.05 below 1, whole CPUs above).

    Raises:
        ValueError: bad arguments, an unknown strategy, overcommit on an attached cluster, or a
            cluster too small for even fractional workers.
    """
    if cluster_cpus <= 0 or num_workers < 0 or data_cpus <= 0 or driver_cpus < 0:
        raise ValueError(f"need cluster_cpus > 0, num_workers >= 0, data_cpus > 0, driver_cpus >= 0 (got "
                         f"{cluster_cpus}, {num_workers}, {data_cpus}, {driver_cpus})")
    chosen = strategy or os.environ.get(ENV_STRATEGY) or "auto"
    if chosen not in STRATEGIES:
        raise ValueError(f"unknown resource strategy {chosen!r} (choose from {', '.join(STRATEGIES)})")
    threads = max(1, int((physical_cpus or cluster_cpus) // max(num_workers, 1)))
    need = num_workers * 1.0 + data_cpus + driver_cpus
    if chosen == "auto":
        chosen = "fits" if cluster_cpus >= need else ("overcommit" if starting_local else "fractional")

    if chosen == "fits":
        return ResourcePlan("fits", None, 1.0, max(cluster_cpus - num_workers - driver_cpus, 0.0), threads,
                            f"{cluster_cpus:g} CPUs hold {num_workers} workers + {data_cpus:g} for data"
                            f"{f' + {driver_cpus:g} driver' if driver_cpus else ''}")
    if chosen == "overcommit":
        if not starting_local:
            raise ValueError("cannot overcommit CPUs of a running cluster (its CPU count is fixed): use "
                             "strategy 'fractional', or start the cluster with `ray start --num-cpus=N`")
        logical = float(max(math.ceil(need), math.ceil(cluster_cpus)))
        return ResourcePlan("overcommit", logical, 1.0, logical - num_workers - driver_cpus, threads,
                            f"{cluster_cpus:g} cores < {need:g} CPUs needed: ray.init(num_cpus={logical:g}) "
                            f"(logical overcommit; workers 1 CPU each, data {logical - num_workers - driver_cpus:g})")
    # fractional
    data = min(data_cpus, cluster_cpus / 2.0)
    left = cluster_cpus - data - driver_cpus
    if num_workers == 0:
        return ResourcePlan("fractional", None, 0.0, cluster_cpus - driver_cpus, threads, "local mode: no workers")
    per = left / num_workers
    per = float(math.floor(per)) if per >= 1.0 else _floor_to(per, 0.05)
    if per <= 0:
        raise ValueError(f"{cluster_cpus:g} CPUs are too few for {num_workers} workers + data + driver "
                         f"({driver_cpus:g}); use fewer workers")
    return ResourcePlan("fractional", None, per, cluster_cpus - per * num_workers - driver_cpus, threads,
                        f"{cluster_cpus:g} CPUs < {need:g} needed: workers get {per:g} CPU each, data "
                        f"{cluster_cpus - per * num_workers - driver_cpus:g}")
