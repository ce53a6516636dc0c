"""How a training epoch is cut into batches: full batches only.

A training epoch drops its partial last batch, on every loader (the plain and DDP file loaders, the Ray
Data streams; top-down, semi-supervised and bottom-up alike). A tail of a few items would be a step
whose gradient rests on one or two crops and whose forwards update the batch-norm running statistics
with one-image batches: with 2,929 unlabeled crops in batches of 16, PoseDual's last step ran three
single-image forwards, a quarter of the running statistics evaluation then used. Training streams are
reshuffled every epoch, so the dropped items differ from epoch to epoch and nothing is lost for good.

The one exception: a rank whose share is smaller than one batch keeps it whole (one short step per
epoch), so a tiny dataset still trains. Validation never drops anything.
"""

from __future__ import annotations


def drops_partial_batch(items: int, batch_size: int) -> bool:
    """Whether a training stream of ``items`` (one rank's share) drops its partial last batch: when it
    holds at least one full batch."""
    return items >= batch_size


def train_steps_per_epoch(items: int, batch_size: int) -> int:
    """Optimiser steps of a training epoch over ``items`` (one rank's share): the full batches, or one
    short batch when there is not a single full one (at least 1)."""
    if batch_size < 1:
        raise ValueError(f"batch size must be >= 1, got {batch_size}")
    return max(1, items // batch_size)
