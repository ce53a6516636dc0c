"""One shared Ray instance for the orchestrator tests, plus tiny SynthPose shards.

Ray is started once per session with the CPU plan of a 2-core laptop running 2 Train workers
(logical overcommit: ``num_cpus=4``) and shut down at the end.
"""

from __future__ import annotations

import os
from pathlib import Path

# Read when Ray is imported, so before the test modules import it: workers run this interpreter (not
# `uv run` per worker, which also ships the working directory) at the test process's priority (Ray's
# default worker niceness of 15 starves them next to any other busy process).
os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
os.environ.setdefault("RAY_worker_niceness", "0")
# Ray Train's preemption watcher (an observability actor started with every worker group, for cloud
# node preemptions) is one more Python process per group start: none of these tests preempts a node.
os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")

import pytest  # noqa: E402

from orchestrator.resources import plan_resources  # noqa: E402
from pose.data.shards.options import ShardOptions  # noqa: E402
from pose.data.shards.writer import write_shards  # noqa: E402
from pose.synth import SynthConfig, generate_dataset  # noqa: E402


TINY_MODEL = {"model.resnet_stages": 3, "model.num_deconv": 2, "model.deconv_channels": 32}
"""The top-down model of the orchestrator tests' trainings: ResNet-18 up to layer3 (output stride 16,
two deconvolutions: stride 4). A quarter of the whole ResNet-18's parameters, so every checkpoint,
Tune checkpoint copy and MLflow model is a quarter the size, and a training step (a batch of 4 at
64x96) takes less than half the time."""


@pytest.fixture(scope="session")
def ray_session():
    import ray

    plan = plan_resources(cluster_cpus=2, num_workers=2, starting_local=True)
    assert plan.init_kwargs() == {"num_cpus": 4.0}
    ray.init(**plan.init_kwargs(), include_dashboard=False, log_to_driver=False, logging_level="WARNING",
             object_store_memory=256 * 1024**2)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    try:
        yield plan
    finally:
        ray.shutdown()


@pytest.fixture(scope="session")
def synth_data(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth_ray")
    cfg = SynthConfig(images=4, val_images=3, unlabeled_images=2, seed=11, workers=1, long_side=(192, 256))
    generate_dataset(cfg, out, progress=False)
    return out


@pytest.fixture(scope="session")
def shard_dirs(synth_data, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("shards_ray")
    dirs = {"train": root / "train", "val": root / "val", "unlabeled": root / "unlabeled"}
    common = dict(lossless=True, rows_per_shard=4, row_group_size=2)
    write_shards(synth_data, "train", dirs["train"], ShardOptions(**common), workers=1, progress=False)
    write_shards(synth_data, "val", dirs["val"], ShardOptions(**common), workers=1, progress=False)
    write_shards(synth_data, "unlabeled", dirs["unlabeled"], ShardOptions(boxes="detections", **common), workers=1,
                 progress=False)
    return dirs


@pytest.fixture(scope="session")
def tiny_ablation_spec(coco_mini):
    """A function (out_dir, name, methods, seeds) -> an ablation spec dict training a tiny model for one
    epoch on the coco-mini images (seconds per trial): ResNet-18 up to layer3 (:data:`TINY_MODEL`),
    evaluated without flip test (one forward pass per validation batch)."""

    def make(out_dir: Path, name: str, methods: list[str], seeds: list[int]) -> dict:
        return {
            "name": name,
            "preset": "synth-r18-128x96",
            "overrides": {
                "data.root": str(coco_mini), "data.train_ann": "annotations/person_keypoints_val2017.json",
                "data.train_images": "images/val2017", "data.val_ann": "annotations/person_keypoints_val2017.json",
                "data.val_images": "images/val2017", "data.num_workers": 0, "codec.input_size": [64, 96],
                "codec.heatmap_size": [16, 24], **TINY_MODEL, "train.epochs": 1,
                "train.lr_steps": [1], "train.batch_size": 4, "test.batch_size": 5, "test.flip_test": False,
                "output_dir": str(out_dir),
            },
            "axes": {"method": methods, "label_budget": [5], "seed": seeds},
        }

    return make
