"""Bottom-up presets: every row of the Coupled Embedding paper's COCO and CrowdPose tables at paper
scale (``ce-*``, with the Associative Embedding baselines ``ae-*`` of the same networks: R = 1, plain
heatmap loss), and CPU-scale runs on crowded SynthPose (``synthcrowd-*``).

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


def _synth_rows() -> list[tuple[str, str, str, BottomUpExperimentConfig]]:
    """CPU scale: a tiny HRNet (width 8, one block per stage) at 128x128 on crowded SynthPose."""
    rows = []
    tiny = dict(width=8, stem_channels=16, stage1_blocks=1, num_modules=(1, 1, 1), num_blocks=1, higher_blocks=1)
    for fmt, root, beta in (("coco", "data/synthpose-crowd", 0.40), ("crowdpose", "data/synthpose-crowd-cp", 0.55)):
        for head in ("ae", "higher"):
            for kind in ("ce", "ae"):
                net = f"{'higherhrnet' if head == 'higher' else 'hrnet'}-w8-128"
                name = f"synthcrowd{'-cp' if fmt == 'crowdpose' else ''}-{kind}-{net}"
                sizes = (32,) if head == "ae" else (32, 64)
                cfg = BottomUpExperimentConfig(
                    name=name,
                    data=BottomUpDataConfig(root=root, dataset=fmt, num_workers=2),
                    codec=BottomUpCodec(input_size=128, heatmap_sizes=sizes, sigma=2.0, max_people=10,
                                        embed_dim=8 if kind == "ce" else 1,
                                        grouping=GroupingConfig(nms_kernel=5, max_people_out=20)),
                    model=BottomUpModelConfig(head=head, **tiny),
                    loss=BottomUpLossConfig(kind=kind, beta=beta),
                    train=BottomUpTrainConfig(epochs=30, batch_size=16, lr=3e-3, warmup_iters=50, lr_steps=(24,),
                                              val_interval=10, log_interval=10),
                    test=BottomUpTestConfig(flip_test=True, size_divisor=32))
                what = "Coupled Embedding (R=8)" if kind == "ce" else "Associative Embedding (R=1)"
                rows.append((name, f"{what}, tiny {net}, crowded SynthPose ({fmt} format), 30 epochs (CPU scale)",
                             "", cfg))
    return rows


BOTTOMUP_ROWS = _paper_rows() + _synth_rows()
