"""Label budgets and the mixed labeled + unlabeled stream."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from pose.config import apply_overrides
from pose.data.semi import MixedDataset, select_budget
from pose.engine.components import build_train_stream, load_train_instances, load_unlabeled_instances
from pose.experiment import ExperimentConfig
from pose.metainfo import COCO


class FakeSet(torch.utils.data.Dataset):
    """Labeled-looking items whose tensors carry the dataset index and the epoch."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return self.draw(i)

    def draw(self, i: int, draw: int | None = None) -> dict[str, torch.Tensor]:
        return {"image": torch.full((3, 4, 4), i, dtype=torch.uint8), "heatmaps": torch.zeros(2, 2, 2),
                "weights": torch.ones(2), "index": torch.tensor(i), "epoch": torch.tensor(self.epoch),
                "draw": torch.tensor(-1 if draw is None else draw)}


def _epoch(mixed: MixedDataset, epoch: int, batch: int):
    mixed.set_epoch(epoch)
    loader = DataLoader(mixed, batch_size=batch, shuffle=True, generator=torch.Generator().manual_seed(epoch))
    return [tuple(b) for b in loader]


def test_every_step_sees_b_labeled_and_b_unlabeled_and_an_epoch_is_one_unlabeled_pass():
    mixed = MixedDataset(FakeSet(5), FakeSet(23), seed=0)
    assert len(mixed) == 23
    batches = _epoch(mixed, 0, batch=4)
    assert len(batches) == 6  # ceil(23 / 4)
    for lab, unl in batches:
        assert lab["image"].shape[0] == unl["image"].shape[0]
        assert lab["image"].shape[0] in (4, 3)
        assert set(unl) == {"image", "index"}  # labels of unlabeled crops never leave the dataset
    seen = torch.cat([u["index"] for _, u in batches]).sort().values
    assert seen.tolist() == list(range(23))  # each unlabeled crop exactly once
    labeled = torch.cat([lab["index"] for lab, _ in batches])
    assert labeled.min() >= 0 and labeled.max() < 5


def test_labeled_crops_are_drawn_as_their_mixed_item():
    mixed = MixedDataset(FakeSet(3), FakeSet(10), seed=0)
    assert [int(mixed[i][0]["draw"]) for i in range(10)] == list(range(10))


def test_every_draw_of_a_labeled_instance_is_augmented_afresh(coco_mini):
    from pose.engine.components import build_datasets

    cfg = _mini_config(coco_mini, "data.num_labeled=1", "method.kind=posecons")
    train, _ = build_datasets(cfg, COCO)
    stream = build_train_stream(cfg, COCO, train)
    stream.set_epoch(2)
    draws = [stream[i][0] for i in range(4)]  # one labeled instance: every item draws it
    assert all(int(d["index"]) == 0 for d in draws)
    matrices = [d["matrix"] for d in draws]
    assert all(not torch.equal(a, b) for i, a in enumerate(matrices) for b in matrices[i + 1:])
    again = stream[3][0]  # reproducible: the same item is the same crop
    assert torch.equal(again["image"], draws[3]["image"]) and torch.equal(again["matrix"], matrices[3])


def test_labeled_indices_are_resampled_with_replacement_every_epoch():
    mixed = MixedDataset(FakeSet(200), FakeSet(200), seed=3)
    first = torch.cat([lab["index"] for lab, _ in _epoch(mixed, 0, batch=50)])
    # a permutation would use every index once; drawing with replacement repeats ~37% of them
    assert len(set(first.tolist())) < 170
    second = torch.cat([lab["index"] for lab, _ in _epoch(mixed, 1, batch=50)])
    assert not np.array_equal(np.sort(first.numpy()), np.sort(second.numpy()))  # redrawn per epoch
    assert mixed.labeled.epoch == 1 and mixed.unlabeled.epoch == 1  # both datasets follow the epoch
    again = MixedDataset(FakeSet(200), FakeSet(200), seed=3)
    again.set_epoch(1)
    assert np.array_equal(again.pairing, mixed.pairing)  # reproducible from (seed, epoch)


def test_nested_budgets_are_nested():
    items = list(range(1000))
    small, mid, large = (select_budget(items, n, "nested", seed=7) for n in (50, 200, 600))
    assert set(small) < set(mid) < set(large)
    assert len(small) == 50 and len(large) == 600 and large == sorted(large)
    assert small != items[:50]  # a random subset, not the prefix
    assert set(select_budget(items, 50, "nested", seed=8)) != set(small)
    assert select_budget(items, 50, "first") == items[:50]
    assert select_budget(items, 0, "nested") == items
    with pytest.raises(ValueError, match="larger than"):
        select_budget(items, 1001)


def _mini_config(coco_mini, *extra):
    return apply_overrides(ExperimentConfig(), [
        f"data.root={coco_mini}", "data.train_ann=annotations/person_keypoints_val2017.json",
        "data.train_images=images/val2017", "data.val_ann=annotations/person_keypoints_val2017.json",
        "data.val_images=images/val2017", "codec.input_size=[48,64]", "codec.heatmap_size=[12,16]", *extra])


def test_unlabeled_sources_on_coco_mini(coco_mini):
    cfg = _mini_config(coco_mini, "data.num_labeled=3", "method.kind=posecons")
    labeled = load_train_instances(cfg, COCO)
    unlabeled = load_unlabeled_instances(cfg, COCO)
    assert len(labeled) == 3 and len(unlabeled) == 12  # train_gt: every GT instance, not only the budget
    det = _mini_config(coco_mini, "method.kind=posedual", "semi.unlabeled=detections",
                       "semi.unlabeled_image_info=annotations/person_keypoints_val2017.json",
                       "semi.unlabeled_detections=person_detection_results/COCO_val2017_detections_AP_H_56_person.json",
                       "semi.unlabeled_images=images/val2017", "semi.det_score_threshold=0.5")
    boxes = load_unlabeled_instances(det, COCO)
    assert 0 < len(boxes) < 118 and all(i.score >= 0.5 and i.visible.sum() == 0 for i in boxes)
    capped = load_unlabeled_instances(_mini_config(coco_mini, "semi.num_unlabeled=5"), COCO)
    assert len(capped) == 5


def test_train_stream_is_mixed_only_for_semi_supervised_methods(coco_mini):
    from pose.engine.components import build_datasets

    sup = _mini_config(coco_mini, "data.num_labeled=4")
    train, _ = build_datasets(sup, COCO)
    assert build_train_stream(sup, COCO, train) is train
    semi = _mini_config(coco_mini, "data.num_labeled=4", "method.kind=posedual")
    train, _ = build_datasets(semi, COCO)
    stream = build_train_stream(semi, COCO, train)
    assert isinstance(stream, MixedDataset) and len(stream) == 12 and len(stream.labeled) == 4
    lab, unl = stream[0]
    assert lab["image"].shape == unl["image"].shape == (3, 64, 48) and unl["image"].dtype == torch.uint8
    # the nested budget protocol reaches the labeled set
    nested = _mini_config(coco_mini, "data.num_labeled=4", "data.budget_mode=nested", "data.budget_seed=1")
    first = [i.instance_id for i in load_train_instances(sup, COCO)]
    picked = [i.instance_id for i in load_train_instances(nested, COCO)]
    assert len(picked) == 4 and picked != first


def test_unlabeled_items_carry_prefixed_ground_truth_only_when_the_source_has_it(coco_mini):
    from pose.engine.components import build_datasets

    def unlabeled_of(*extra):
        cfg = _mini_config(coco_mini, "data.num_labeled=4", *extra)
        train, _ = build_datasets(cfg, COCO)
        stream = build_train_stream(cfg, COCO, train)
        stream.set_epoch(1)
        return cfg, stream, stream[3][1]

    _, stream, unl = unlabeled_of("method.kind=posecons")  # train_gt: diagnostics' keys only
    assert set(unl) == {"image", "index", "gt_keypoints", "gt_visible"}
    item = stream.unlabeled[3]  # the same instance, epoch and augmentation draw
    assert torch.equal(unl["image"], item["image"]) and torch.equal(unl["gt_keypoints"], item["keypoints"])
    assert torch.equal(unl["gt_visible"], item["visible"]) and unl["gt_keypoints"].shape == (17, 2)
    assert unl["gt_visible"].sum() > 0

    cfg, stream, unl = unlabeled_of("method.kind=posedual", "method.teacher=oracle")
    assert set(unl) == {"image", "index", "gt_keypoints", "gt_visible", "gt_heatmaps", "gt_weights"}
    heatmaps, weights = cfg.codec.encode(unl["gt_keypoints"].numpy(), unl["gt_visible"].numpy())
    assert np.array_equal(unl["gt_heatmaps"].numpy(), heatmaps)
    assert np.array_equal(unl["gt_weights"].numpy(), weights)
    assert unl["gt_heatmaps"].shape == (17, 16, 12)
    batch = next(iter(DataLoader(stream, batch_size=3)))[1]  # collated: (B, K, ...) under the same names
    assert batch["gt_keypoints"].shape == (3, 17, 2) and batch["gt_heatmaps"].shape == (3, 17, 16, 12)

    det = ["semi.unlabeled=detections", "semi.unlabeled_image_info=annotations/person_keypoints_val2017.json",
           "semi.unlabeled_detections=person_detection_results/COCO_val2017_detections_AP_H_56_person.json",
           "semi.unlabeled_images=images/val2017", "semi.det_score_threshold=0.5"]
    _, _, unl = unlabeled_of("method.kind=posedual", *det)  # detector boxes: no ground truth at all
    assert set(unl) == {"image", "index"}


def test_unlabeled_item_renames_in_one_place_and_refuses_other_keys():
    from pose.data.semi import unlabeled_gt_keys, unlabeled_item, unlabeled_source_keys

    item = {"image": 1, "index": 2, "keypoints": 3, "visible": 4, "heatmaps": 5, "weights": 6, "matrix": 7}
    assert unlabeled_item(item) == {"image": 1, "index": 2}
    assert unlabeled_item(item, unlabeled_gt_keys(True)) == {"image": 1, "index": 2, "gt_keypoints": 3,
                                                             "gt_visible": 4}
    assert unlabeled_item(item, unlabeled_gt_keys(True, oracle=True))["gt_weights"] == 6
    assert unlabeled_gt_keys(False) == ()
    assert unlabeled_source_keys(("keypoints",)) == ("image", "index", "keypoints")
    with pytest.raises(ValueError, match="unknown unlabeled ground-truth keys"):
        unlabeled_item(item, ("matrix",))
    with pytest.raises(ValueError, match="semi.unlabeled=train_gt"):
        unlabeled_gt_keys(False, oracle=True)
