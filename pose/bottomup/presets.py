"""Bottom-up presets: every row of the Coupled Embedding paper's COCO and CrowdPose tables at paper
scale (``ce-*``, with the Associative Embedding baselines ``ae-*`` of the same networks: R = 1, plain
heatmap loss), and CPU-scale runs on crowded SynthPose (``synthcrowd-*``: a W8 HRNet with a 32-channel
head conv, at input 128 for quick runs and 160 for the CE-vs-AE comparison).

Paper settings (spec section 6; grouping keeps the 20 best-scoring people before refinement,
as many as the evaluator scores): Adam 1.5e-3, 500 warm-up iterations from 1e-3 x, x0.1 at epochs 200
and 260 of 300, batch 10 per GPU, sigma 2, 30 people per image, R = 8, beta 0.40 (COCO) / 0.55
(CrowdPose), flip test, NMS kernel 5 (W32) or 7 (W48), validation every 10 epochs.
"""

from __future__ import annotations

from pose.bottomup.codec import BottomUpCodec
from pose.bottomup.config import (
    BottomUpDataConfig,
    BottomUpExperimentConfig,
    BottomUpTestConfig,
    BottomUpTrainConfig,
)
from pose.bottomup.grouping import GroupingConfig
from pose.bottomup.losses import BottomUpLossConfig
from pose.bottomup.model import BottomUpModelConfig

# (dataset, data config, beta, README AP per row: (head, width) -> headline)
_PAPER_DATA = {
    "coco": (BottomUpDataConfig(root="data/coco", dataset="coco",
                                train_ann="annotations/person_keypoints_train2017.json", train_images="train2017",
                                val_ann="annotations/person_keypoints_val2017.json", val_images="val2017",
                                num_workers=4), 0.40,
             {("ae", 32): "67.0", ("ae", 48): "68.4", ("higher", 32): "68.8", ("higher", 48): "71.1 (72.8 multi-scale)"},
             "COCO test-dev AP"),
    "crowdpose": (BottomUpDataConfig(root="data/crowdpose", dataset="crowdpose",
                                     train_ann="json/crowdpose_trainval.json", train_images="images",
                                     val_ann="json/crowdpose_test.json", val_images="images", num_workers=4), 0.55,
                  {("ae", 32): "68.9", ("ae", 48): "70.1", ("higher", 32): "69.6", ("higher", 48): "70.5 (71.6 multi-scale)"},
                  "CrowdPose test AP"),
}


def _paper_rows() -> list[tuple[str, str, str, BottomUpExperimentConfig]]:
    """(name, description, paper row, config) for every paper-scale preset."""
    rows = []
    for dataset, (data, beta, headline, metric) in _PAPER_DATA.items():
        for head in ("ae", "higher"):
            for width, size in ((32, 512), (48, 640)):
                for kind in ("ce", "ae"):
                    net = f"{'higherhrnet' if head == 'higher' else 'hrnet'}-w{width}-{size}"
                    name = f"{kind}-{dataset}-{net}"
                    sizes = (size // 4,) if head == "ae" else (size // 4, size // 2)
                    codec = BottomUpCodec(input_size=size, heatmap_sizes=sizes, sigma=2.0, max_people=30,
                                          embed_dim=8 if kind == "ce" else 1,
                                          grouping=GroupingConfig(nms_kernel=5 if width == 32 else 7,
                                                                  max_people_out=20))
                    cfg = BottomUpExperimentConfig(
                        name=name, data=data, codec=codec,
                        model=BottomUpModelConfig(head=head, width=width),
                        loss=BottomUpLossConfig(kind=kind, beta=beta),
                        train=BottomUpTrainConfig(), test=BottomUpTestConfig())
                    label = "Coupled Embedding (R=8)" if kind == "ce" else "Associative Embedding baseline (R=1)"
                    row = (f"ce_{'hrhrnet' if head == 'higher' else 'hrnet'}_w{width}: {metric} "
                           f"{headline[head, width]}" if kind == "ce" else "")
                    rows.append((name, f"{label}, {net}, {dataset}, 300 epochs", row, cfg))
    return rows


SYNTH_EMBEDDINGS: dict[str, tuple[str, int, str]] = {
    "ce": ("ce", 8, "Coupled Embedding (R=8)"),
    "ae": ("ae", 1, "Associative Embedding (R=1)"),
    "ae-r8": ("ae", 8, "Associative Embedding with 8-dim tags, no coupling (R=8)"),
}
"""Name token -> (loss.kind, codec.embed_dim, label) of the ``synthcrowd-*`` presets: the values of the
ablation's ``embedding`` axis (``orchestrator.ablation_spec.EMBEDDINGS``)."""

SYNTH_HEAD_CHANNELS = 32
"""Channels of the CPU presets' head conv: what every final 1x1 layer reads (issue 23: 8 backbone
features cannot make 17 separate heatmap peaks)."""

# (input size, heads, embeddings, train config, what the scale is for)
_SYNTH_SCALES = (
    (128, ("ae", "higher"), ("ce", "ae"),
     BottomUpTrainConfig(epochs=30, batch_size=16, lr=3e-3, warmup_iters=50, lr_steps=(24,), val_interval=10,
                         log_interval=10),
     "smoke scale, 30 epochs"),
    (160, ("higher",), ("ce", "ae", "ae-r8"),
     BottomUpTrainConfig(epochs=60, batch_size=16, lr=3e-3, warmup_iters=50, lr_steps=(48,), val_interval=30,
                         log_interval=10),
     "the CE-vs-AE scale, 60 epochs"),
)


def _synth_rows() -> list[tuple[str, str, str, BottomUpExperimentConfig]]:
    """CPU scale on crowded SynthPose: a tiny HRNet (width 8, one block per stage) whose 1/4 features go
    through a 3x3 conv to 32 channels before the final 1x1 layers (``model.head_channels``).

    ``*-w8h32-128``: input 128, both heads, CE and AE: quick runs and tests (round-trip ceiling on the COCO
    format: AP 0.47 with the HRNet head, 0.75 with HigherHRNet). ``*-higherhrnet-w8h32-160``: input 160,
    HigherHRNet (heatmaps at 1/4 and 1/2), CE, AE and AE-R8: the end-to-end CE-vs-AE comparison (ceiling
    0.83 on the COCO format) at 2.4x the per-step cost of the 128 HRNet preset (docs/bottomup.md).
    """
    rows = []
    tiny = dict(width=8, stem_channels=16, stage1_blocks=1, num_modules=(1, 1, 1), num_blocks=1, higher_blocks=1,
                head_channels=SYNTH_HEAD_CHANNELS)
    for size, heads, kinds, train, purpose in _SYNTH_SCALES:
        for fmt, root, beta in (("coco", "data/synthpose-crowd", 0.40), ("crowdpose", "data/synthpose-crowd-cp", 0.55)):
            for head in heads:
                for kind in kinds:
                    loss_kind, embed_dim, what = SYNTH_EMBEDDINGS[kind]
                    net = f"{'higherhrnet' if head == 'higher' else 'hrnet'}-w8h{SYNTH_HEAD_CHANNELS}-{size}"
                    name = f"synthcrowd{'-cp' if fmt == 'crowdpose' else ''}-{kind}-{net}"
                    sizes = (size // 4,) if head == "ae" else (size // 4, size // 2)
                    cfg = BottomUpExperimentConfig(
                        name=name,
                        data=BottomUpDataConfig(root=root, dataset=fmt, num_workers=2),
                        codec=BottomUpCodec(input_size=size, heatmap_sizes=sizes, sigma=2.0, max_people=10,
                                            embed_dim=embed_dim,
                                            grouping=GroupingConfig(nms_kernel=5, max_people_out=20)),
                        model=BottomUpModelConfig(head=head, **tiny),
                        loss=BottomUpLossConfig(kind=loss_kind, beta=beta),
                        train=train,
                        test=BottomUpTestConfig(flip_test=True, size_divisor=32))
                    rows.append((name, f"{what}, tiny {net} (W8 backbone, 32-channel head), crowded SynthPose "
                                       f"({fmt} format), {purpose} (CPU)", "", cfg))
    return rows


BOTTOMUP_ROWS = _paper_rows() + _synth_rows()
