"""Semi-supervised data: label budgets and the mixed labeled + unlabeled stream.

* :func:`select_budget`: the first N instances in JSON order (the paper's protocol), or a seeded
  subset that is nested across budgets (N1 within N2 within N3 for one seed).
* :class:`MixedDataset`: item i = (a labeled sample, unlabeled crop i). Its length is the unlabeled
  set's, so one epoch is one pass over the unlabeled set; the labeled index of every item is redrawn
  uniformly *with replacement* each epoch, and every draw is augmented afresh (item i's labeled crop
  is augmented as draw i: a labeled instance drawn 30 times in an epoch is 30 different crops, as in
  the original, not one crop repeated). A shuffled DataLoader over it yields B labeled + B unlabeled
  crops per step. Unlabeled items carry the image (and its index) only, so their labels
  cannot reach a loss.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, TypeVar

import numpy as np
import torch
from torch.utils.data import Dataset

from pose.data.topdown import TopDownDataset

T = TypeVar("T")

BudgetMode = Literal["first", "nested"]

UNLABELED_KEYS = ("image", "index")


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
        unlabeled: the unlabeled top-down dataset (its labels, if any, are dropped).
        seed: seeds the pairing: ``default_rng([seed, epoch])``; the labeled crop of item ``i`` is
            augmented as draw ``i`` (:meth:`TopDownDataset.draw`).

    ``__getitem__(i)`` returns ``(labeled_item, {"image", "index"})``; the default collate turns a
    list of them into ``(labeled_batch, unlabeled_batch)``.
    """

    def __init__(self, labeled: TopDownDataset, unlabeled: TopDownDataset, seed: int = 0) -> None:
        if len(labeled) == 0 or len(unlabeled) == 0:
            raise ValueError(f"mixed stream needs labeled and unlabeled instances "
                             f"(got {len(labeled)} labeled, {len(unlabeled)} unlabeled)")
        self.labeled = labeled
        self.unlabeled = unlabeled
        self.seed = seed
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
        return lab, {k: unl[k] for k in UNLABELED_KEYS}
