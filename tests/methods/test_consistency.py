"""PoseCons / PoseDual: teacher without gradient, PoseDual's crossed cutouts, evaluation keys, init."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pose.config import apply_overrides
from pose.engine.components import build_method
from pose.experiment import ExperimentConfig
from pose.metainfo import COCO
from pose.methods import HardView, HardViewConfig, PoseCons, PoseDual
from pose.methods.hard_view import affine_about_center

torch.set_num_threads(2)

W, H, K = 32, 48, 17


class TinyNet(nn.Module):
    """(B, 3, 48, 32) -> (B, K, 12, 8) heatmaps; records whether each output carries a graph."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, K, 3, 2, 1))
        self.outputs: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        self.outputs.append(y)
        return y


def _batches(b: int = 4, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    labeled = {"image": torch.randint(0, 256, (b, 3, H, W), generator=g, dtype=torch.uint8),
               "heatmaps": torch.rand(b, K, H // 4, W // 4, generator=g),
               "weights": torch.ones(b, K)}
    unlabeled = {"image": torch.randint(0, 256, (b, 3, H, W), generator=g, dtype=torch.uint8),
                 "index": torch.arange(b)}
    return labeled, unlabeled


def _hard(**kw) -> HardView:
    return HardView(HardViewConfig(**kw), (W, H), 4.0)


def test_no_gradient_reaches_a_teacher_prediction_posecons():
    net = TinyNet(0)
    method = PoseCons(net, _hard(cutout_joints=3))
    out = method.training_step(*_batches())
    labeled_out, teacher_out, student_out = net.outputs
    assert teacher_out.grad_fn is None and not teacher_out.requires_grad
    assert labeled_out.requires_grad and student_out.requires_grad
    out.loss.backward()
    assert all(p.grad is not None for p in net.parameters())
    assert {"loss_sup", "loss_unsup", "unsup_max_response", "unsup_confident_frac", "unsup_agreement"} <= set(out.logs)


def test_no_gradient_reaches_a_teacher_prediction_posedual():
    n1, n2 = TinyNet(0), TinyNet(1)
    method = PoseDual(n1, n2, _hard(cutout_joints=3, randaugment=True))
    out = method.training_step(*_batches())
    for net in (n1, n2):
        labeled_out, teacher_out, student_out = net.outputs
        assert teacher_out.grad_fn is None and not teacher_out.requires_grad
        assert labeled_out.requires_grad and student_out.requires_grad
    # the unsupervised term alone gives each network a gradient only through its own student output
    n1.outputs.clear()
    n2.outputs.clear()
    labeled, unlabeled = _batches(seed=1)
    labeled["weights"] = torch.zeros(4, K)  # no supervised signal
    out = method.training_step(labeled, unlabeled)
    grads = torch.autograd.grad(out.loss, [n1.outputs[0], n1.outputs[2], n2.outputs[2]], allow_unused=True)
    assert grads[0] is None or grads[0].abs().max() == 0
    assert grads[1].abs().max() > 0 and grads[2].abs().max() > 0


def test_posedual_networks_get_different_cutouts_from_the_other_network():
    method = PoseDual(TinyNet(0), TinyNet(1), _hard(cutout_joints=4, cutout_jitter=0.0, rot_prob=0.0,
                                                    scale_factor=0.0))
    method.generator = torch.Generator().manual_seed(0)
    images = torch.full((2, 3, H, W), 200, dtype=torch.uint8)
    t1 = torch.zeros(2, K, H // 4, W // 4)
    t2 = torch.zeros(2, K, H // 4, W // 4)
    t1[:, :, 2, 1] = 1.0   # net1 sees every joint at input (4, 8)   (top left)
    t2[:, :, 9, 6] = 1.0   # net2 sees every joint at input (24, 36) (bottom right)
    hard1, hard2, target1, target2 = method.hard_inputs(images, t1, t2)
    assert hard1[:, :, 36, 24].abs().max() < 1e-5 and hard1[:, :, 8, 4].abs().min() > 0.5  # cut at net2's joints
    assert hard2[:, :, 8, 4].abs().max() < 1e-5 and hard2[:, :, 36, 24].abs().min() > 0.5  # cut at net1's joints
    assert not torch.allclose(hard1, hard2)
    # identity transform: each network's target is the OTHER network's easy-view heatmaps
    torch.testing.assert_close(target1, t2, atol=1e-5, rtol=0)
    torch.testing.assert_close(target2, t1, atol=1e-5, rtol=0)


def test_posedual_hard_views_share_one_transform():
    method = PoseDual(TinyNet(0), TinyNet(1), _hard())
    method.generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (3, 3, H, W), dtype=torch.uint8)
    t = torch.rand(3, K, H // 4, W // 4)
    hard1, hard2, target1, target2 = method.hard_inputs(images, t, t)
    torch.testing.assert_close(hard1, hard2)  # no cutout: the same RandAugment draw and warp
    torch.testing.assert_close(target1, target2)


def test_dual_predict_reports_three_evaluations_and_selects_on_net1():
    n1, n2 = TinyNet(0), TinyNet(1)
    method = PoseDual(n1, n2, _hard()).eval()
    x = torch.randn(2, 3, H, W)
    out = method.predict(x)
    assert set(out) == {"net1", "net2", "mean"} and method.primary == "net1"
    torch.testing.assert_close(out["mean"], 0.5 * (n1(x) + n2(x)))
    assert not torch.allclose(out["net1"], out["net2"])


def test_confidence_threshold_and_rampup():
    labeled, unlabeled = _batches()
    gated = PoseCons(TinyNet(0), _hard(), confidence_threshold=10.0)  # no teacher joint is that confident
    assert gated.training_step(labeled, unlabeled).logs["loss_unsup"] == 0.0
    ramped = PoseCons(TinyNet(0), _hard(), unsup_weight=2.0, rampup_steps=10)
    first = ramped.training_step(labeled, unlabeled).logs["unsup_weight"]
    assert first == pytest.approx(2.0 * torch.exp(torch.tensor(-5.0)).item(), rel=1e-4)
    for _ in range(10):
        last = ramped.training_step(labeled, unlabeled).logs["unsup_weight"]
    assert last == pytest.approx(2.0)
    assert int(ramped.global_step) == 11 and "global_step" in ramped.state_dict()
    with pytest.raises(ValueError, match="unlabeled"):
        ramped.training_step(labeled, None)


def _dual_config(seed: int = 0) -> ExperimentConfig:
    return apply_overrides(ExperimentConfig(), [
        "method.kind=posedual", "model.depth=18", "model.deconv_channels=16", "model.num_deconv=3",
        f"train.seed={seed}"])


def test_posedual_networks_get_different_initialisations_deterministically():
    a = build_method(_dual_config(), COCO)
    b = build_method(_dual_config(), COCO)
    assert isinstance(a, PoseDual)
    head1 = a.networks["net1"].head.final_layer.weight
    head2 = a.networks["net2"].head.final_layer.weight
    assert not torch.allclose(head1, head2)
    # without model.pretrained the backbones differ too
    assert not torch.allclose(a.networks["net1"].backbone.conv1.weight, a.networks["net2"].backbone.conv1.weight)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb), ka  # same seed -> same pair of networks
    c = build_method(_dual_config(seed=5), COCO)
    assert not torch.allclose(c.networks["net1"].head.final_layer.weight, head1)


def test_build_method_kinds():
    cfg = apply_overrides(ExperimentConfig(), ["model.depth=18", "model.deconv_channels=16",
                                               "method.kind=posecons", "method.hard.cutout_joints=5"])
    m = build_method(cfg, COCO)
    assert isinstance(m, PoseCons) and m.hard.cfg.cutout_joints == 5 and m.primary == "net"


# ---------------------------------------------------------------------------------------------- ground truth
def _with_ground_truth(unlabeled: dict, joint: tuple[int, int] = (24, 36), oracle: bool = False) -> dict:
    """``unlabeled`` plus the gt_ keys of every joint at input pixel ``joint`` (heatmap ``joint / 4``);
    with ``oracle`` also the codec's heatmaps and weights (joint 0 unlabeled: an all-zero map)."""
    from pose.codecs.heatmap import HeatmapCodec

    b = unlabeled["image"].shape[0]
    kps = torch.tensor(joint, dtype=torch.float32).expand(b, K, 2).clone()
    vis = torch.ones(b, K)
    vis[:, 0] = 0.0
    out = {**unlabeled, "gt_keypoints": kps, "gt_visible": vis}
    if oracle:
        codec = HeatmapCodec(input_size=(W, H), heatmap_size=(W // 4, H // 4))
        hm, w = codec.encode_batch(kps.numpy(), vis.numpy())
        out.update(gt_heatmaps=torch.from_numpy(hm), gt_weights=torch.from_numpy(w))
    return out


class _Recorder:
    """Wraps a method's hard-view pieces and loss to record what they were given and returned."""

    def __init__(self, method) -> None:
        self.thetas, self.cutout_joints, self.cutout_inputs, self.losses = [], [], [], []
        hard_views, cutout, loss_fn = method.hard_views, method.hard.cutout, method.loss_fn

        def record_views(images, teachers):
            views, theta = hard_views(images, teachers)
            self.thetas.append(theta)
            return views, theta

        def record_cutout(images, teacher, generator=None):
            self.cutout_joints.append(teacher.clone())
            out, boxes = cutout(images, teacher, generator)
            self.cutout_inputs.append(out)
            return out, boxes

        losses = self.losses

        class RecordLoss(nn.Module):
            def forward(self, pred, target, weights):
                losses.append((target.clone(), weights.clone()))
                return loss_fn(pred, target, weights)

        method.hard_views, method.hard.cutout, method.loss_fn = record_views, record_cutout, RecordLoss()


@pytest.mark.parametrize("kind", ["posecons", "posedual"])
def test_the_oracle_teaches_the_warped_gt_heatmaps_with_gt_weights_and_cuts_out_at_the_gt_joints(kind):
    hard = _hard(cutout_joints=4, cutout_jitter=0.0, cutout_half_size=(2, 2))  # rotation and scale on
    method = (PoseCons(TinyNet(0), hard, oracle_teacher=True) if kind == "posecons"
              else PoseDual(TinyNet(0), TinyNet(1), hard, oracle_teacher=True))
    method.generator = torch.Generator().manual_seed(0)
    labeled, unlabeled = _batches()
    unlabeled["image"] = torch.full_like(unlabeled["image"], 200)
    unlabeled = _with_ground_truth(unlabeled, oracle=True)
    rec = _Recorder(method)
    out = method.training_step(labeled, unlabeled)
    (theta,) = rec.thetas
    assert not torch.allclose(theta, affine_about_center(torch.zeros(4), torch.ones(4), (W, H)))
    expected = method.hard.warp_heatmaps(unlabeled["gt_heatmaps"], theta)
    unsup = rec.losses[1:] if kind == "posecons" else rec.losses[2:]  # after the supervised term(s)
    assert len(unsup) == (1 if kind == "posecons" else 2)  # PoseDual: both networks taught by the oracle
    for target, weights in unsup:
        torch.testing.assert_close(target, expected)
        torch.testing.assert_close(weights, unlabeled["gt_weights"])
        assert weights[:, 0].eq(0).all() and weights[:, 1:].eq(1).all()  # an all-zero map teaches nothing
    for joints, cut in zip(rec.cutout_joints, rec.cutout_inputs):  # placed at the oracle's argmax
        assert torch.equal(joints, unlabeled["gt_heatmaps"])
        # every labeled joint's cutout covers input (24, 36): the gt joint, pixel (6, 9) of the heatmap
        assert cut[:, :, 36, 24].abs().max() < 1e-5 and cut[:, :, 8, 4].abs().min() > 0.5
    assert out.logs["unsup_teacher_pck"] == 1.0  # the oracle is right by construction
    assert 0.0 <= out.logs["unsup_student_pck"] <= 1.0
    if kind == "posedual":
        assert out.logs["unsup_teacher_pck_net1"] == out.logs["unsup_teacher_pck_net2"] == 1.0
        assert out.logs["dual_agreement"] == 1.0
    with pytest.raises(ValueError, match="gt_heatmaps, gt_weights"):
        method.training_step(labeled, {"image": unlabeled["image"], "index": unlabeled["index"]})


@pytest.mark.parametrize("kind", ["posecons", "posedual"])
def test_ground_truth_is_diagnosed_per_network_and_never_reaches_a_loss(kind):
    def build():
        hard = _hard(cutout_joints=3, randaugment=True)
        m = PoseCons(TinyNet(0), hard) if kind == "posecons" else PoseDual(TinyNet(0), TinyNet(1), hard)
        m.generator = torch.Generator().manual_seed(0)
        return m

    labeled, unlabeled = _batches()
    plain = build().training_step(labeled, unlabeled)
    assert not any("pck" in k for k in plain.logs)  # no ground truth (detector boxes): absent, not NaN
    diagnosed = build().training_step(labeled, _with_ground_truth(unlabeled, oracle=True))
    assert diagnosed.loss.item() == plain.loss.item()  # a network teacher never reads the gt_ keys
    keys = {"unsup_teacher_pck", "unsup_student_pck"}
    if kind == "posedual":
        keys |= {f"{k}_{n}" for k in keys for n in ("net1", "net2")}
        logs = diagnosed.logs
        for k in ("unsup_teacher_pck", "unsup_student_pck"):
            assert logs[k] == pytest.approx(0.5 * (logs[f"{k}_net1"] + logs[f"{k}_net2"]))
    assert keys <= set(diagnosed.logs) and all(0.0 <= diagnosed.logs[k] <= 1.0 for k in keys)
    assert {k: v for k, v in diagnosed.logs.items() if k not in keys} == plain.logs


def test_build_method_passes_the_teacher_choice():
    base = ["model.depth=18", "model.deconv_channels=16", "method.kind=posedual"]
    oracle = apply_overrides(ExperimentConfig(), [*base, "method.teacher=oracle"])
    assert build_method(oracle, COCO).oracle_teacher
    assert not build_method(apply_overrides(ExperimentConfig(), base), COCO).oracle_teacher
