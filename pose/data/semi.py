"""Semi-supervised data: label budgets and the mixed labeled + unlabeled stream.

* :func:`select_budget`: the first N instances in JSON order (the paper's protocol), or a seeded
  subset that is nested across budgets (N1 within N2 within N3 for one seed).
* :class:`MixedDataset`: item i = (a labeled sample, unlabeled crop i). Its length is the unlabeled
  set's, so one epoch is one pass over the unlabeled set; the labeled index of every item is redrawn
  uniformly *with replacement* each epoch, and every draw is augmented afresh (item i's labeled crop
  is augmented as draw i: a labeled instance drawn 30 times in an epoch is 30 different crops, as in
  the original, not one crop repeated). A shuffled DataLoader over it yields B labeled + B unlabeled
  crops per step.

Unlabeled items (:func:`unlabeled_item`, both data paths) carry :data:`UNLABELED_KEYS` (the image and
its index), and, only when the unlabeled source has ground truth (``semi.unlabeled=train_gt``), the
ground-truth keys asked for, renamed with an explicit ``gt_`` prefix (:data:`GT_PREFIX`):
``gt_keypoints`` (K, 2) crop pixels and ``gt_visible`` (K,) for the teacher diagnostics
(:mod:`pose.methods.diagnostics`), and, for the oracle teacher only (``method.teacher=oracle``),
``gt_heatmaps`` (K, h, w) and ``gt_weights`` (K,), the codec's targets. The methods' losses read
``image`` only (the oracle, a diagnosis mode, reads ``gt_heatmaps`` / ``gt_weights``); no unlabeled item
ever carries the labeled keys ``keypoints``, ``heatmaps`` or ``weights``, so an unlabeled label cannot
reach a loss by mistake.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal, TypeVar

import numpy as np
import torch
from torch.utils.data import Dataset

from pose.data.topdown import TopDownDataset

T = TypeVar("T")

BudgetMode = Literal["first", "nested"]

UNLABELED_KEYS = ("image", "index")
"""What every unlabeled item carries (the methods' losses read ``image`` only)."""
GT_PREFIX = "gt_"
"""Ground-truth keys of unlabeled items are the top-down item's keys with this prefix."""
DIAGNOSTIC_GT_KEYS = ("keypoints", "visible")
"""Top-down keys unlabeled items carry (as ``gt_keypoints``, ``gt_visible``) when the source has GT."""
ORACLE_GT_KEYS = ("heatmaps", "weights")
"""Top-down keys unlabeled items also carry (as ``gt_heatmaps``, ``gt_weights``) for the oracle teacher."""
GT_KEYPOINTS = "gt_keypoints"  # (B, K, 2) crop pixels of the easy view
GT_VISIBLE = "gt_visible"  # (B, K) 1 for labeled joints
GT_HEATMAPS = "gt_heatmaps"  # (B, K, h, w) the codec's targets (oracle teacher only)
GT_WEIGHTS = "gt_weights"  # (B, K) the codec's joint weights (oracle teacher only)


def unlabeled_gt_keys(has_gt: bool, oracle: bool = False) -> tuple[str, ...]:
    """The top-down keys unlabeled items carry as ``gt_<key>``: none without ground truth (detector
    boxes), :data:`DIAGNOSTIC_GT_KEYS` with it, plus :data:`ORACLE_GT_KEYS` for the oracle teacher."""
    if not has_gt:
        if oracle:
            raise ValueError("the oracle teacher needs unlabeled crops with ground truth "
                             "(semi.unlabeled=train_gt)")
        return ()
    return DIAGNOSTIC_GT_KEYS + (ORACLE_GT_KEYS if oracle else ())


def unlabeled_source_keys(gt_keys: Sequence[str] = ()) -> tuple[str, ...]:
    """The top-down keys an unlabeled stream must produce for :func:`unlabeled_item` (``gt_keys``: as
    :func:`unlabeled_gt_keys`)."""
    _check_gt_keys(gt_keys)
    return UNLABELED_KEYS + tuple(gt_keys)


def unlabeled_item(item: Mapping[str, T], gt_keys: Sequence[str] = ()) -> dict[str, T]:
    """The unlabeled view of a top-down item or collated batch: :data:`UNLABELED_KEYS` as they are,
    each of ``gt_keys`` renamed ``gt_<key>``, nothing else. The one place both data paths (this
    module's :class:`MixedDataset` and the Ray Data stream of ``orchestrator/streams.py``) rename."""
    _check_gt_keys(gt_keys)
    out = {k: item[k] for k in UNLABELED_KEYS}
    out.update({GT_PREFIX + k: item[k] for k in gt_keys})
    return out


def _check_gt_keys(gt_keys: Sequence[str]) -> None:
    unknown = [k for k in gt_keys if k not in DIAGNOSTIC_GT_KEYS + ORACLE_GT_KEYS]
    if unknown:
        raise ValueError(f"unknown unlabeled ground-truth keys {unknown} "
                         f"(choose from {list(DIAGNOSTIC_GT_KEYS + ORACLE_GT_KEYS)})")


def select_budget(instances: Sequence[T], n: int, mode: BudgetMode = "first", seed: int = 0) -> list[T]:
    """Keep ``n`` instances (all when ``n`` is 0).

    ``first``: the first ``n`` in order. ``nested``: the first ``n`` of a permutation fixed by
    ``seed`` and the number of instances, kept in their original order, so a smaller budget is always a
    subset of a larger one.
    """
    if n < 0:
        raise ValueError(f"label budget must be >= 0, got {n}")
    if n == 0:
        return list(instances)
    if n > len(instances):
        raise ValueError(f"label budget {n} is larger than the {len(instances)} available instances")
    if mode == "first":
        return list(instances[:n])
    if mode == "nested":
        order = np.random.default_rng(seed).permutation(len(instances))
        return [instances[i] for i in np.sort(order[:n])]
    raise ValueError(f"unknown budget mode {mode!r} (choose 'first' or 'nested')")


class MixedDataset(Dataset):
    """Pairs every unlabeled crop with a labeled sample drawn with replacement (redrawn per epoch).

    Args:
        labeled: the labeled top-down dataset.
        unlabeled: the unlabeled top-down dataset (its labels are dropped, except ``gt_keys``).
        seed: seeds the pairing: ``default_rng([seed, epoch])``; the labeled crop of item ``i`` is
            augmented as draw ``i`` (:meth:`TopDownDataset.draw`).
        gt_keys: ground-truth keys the unlabeled items keep, renamed ``gt_<key>``
            (:func:`unlabeled_gt_keys`; none by default).

    ``__getitem__(i)`` returns ``(labeled_item, unlabeled_item)`` (:func:`unlabeled_item`: ``image``,
    ``index`` and the ``gt_`` keys); the default collate turns a list of them into
    ``(labeled_batch, unlabeled_batch)``.
    """

    def __init__(self, labeled: TopDownDataset, unlabeled: TopDownDataset, seed: int = 0,
                 gt_keys: Sequence[str] = ()) -> None:
        if len(labeled) == 0 or len(unlabeled) == 0:
            raise ValueError(f"mixed stream needs labeled and unlabeled instances "
                             f"(got {len(labeled)} labeled, {len(unlabeled)} unlabeled)")
        self.labeled = labeled
        self.unlabeled = unlabeled
        self.seed = seed
        _check_gt_keys(gt_keys)
        self.gt_keys = tuple(gt_keys)
        self.epoch = 0
        self.pairing = self._draw(0)

    def _draw(self, epoch: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, epoch])
        return rng.integers(0, len(self.labeled), size=len(self.unlabeled))

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.labeled.set_epoch(epoch)
        self.unlabeled.set_epoch(epoch)
        self.pairing = self._draw(epoch)

    def __len__(self) -> int:
        return len(self.unlabeled)

    def __getitem__(self, index: int) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        lab = self.labeled.draw(int(self.pairing[index]), draw=index)
        unl = self.unlabeled[index]
        return lab, unlabeled_item(unl, self.gt_keys)
