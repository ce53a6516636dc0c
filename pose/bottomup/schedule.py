"""The per-iteration learning-rate schedule of the bottom-up recipes: linear warm-up, then steps."""

from __future__ import annotations

import bisect

import torch


def warmup_multistep(optimizer: torch.optim.Optimizer, warmup_iters: int, warmup_ratio: float,
                     milestones: list[int], factor: float) -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR`` stepped once per iteration: lr x (``warmup_ratio`` -> 1, linear over
    ``warmup_iters`` iterations) x ``factor`` ** (milestones passed); ``milestones`` in iterations.

    At iteration i < warmup_iters the multiplier is ratio + (1 - ratio) * i / warmup_iters (mmcv's
    linear warm-up), so iteration 0 trains at ``warmup_ratio`` x lr.
    """
    steps = sorted(int(m) for m in milestones)

    def multiplier(i: int) -> float:
        warm = 1.0 if i >= warmup_iters else warmup_ratio + (1.0 - warmup_ratio) * i / max(warmup_iters, 1)
        return warm * factor ** bisect.bisect_right(steps, i)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, multiplier)
