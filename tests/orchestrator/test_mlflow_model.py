"""The run's MLflow model: logged once at the end of training, loaded back by `mlflow.pytorch.load_model` with
the checkpoint's heatmaps, registered in the Model Registry (local SQLite store), and applied by
`poselab predict --model runs:/<id>` (or its checkpoint when the run logged no model)."""

from __future__ import annotations

import json

import mlflow
import mlflow.pytorch
import pytest
import torch
from mlflow.tracking import MlflowClient

from orchestrator.cli import main
from orchestrator.mlflow_model import load_mlflow_model, log_pose_model, mlflow_tracking_uri, run_models
from orchestrator.tracking import RUN_DIR_TAG, RunRequest, open_run
from orchestrator.train import RunOptions, run_training
from pose.config import apply_overrides
from pose.engine.trainer import Trainer
from pose.inference.model import load_checkpoint_model
from pose.presets import get_preset

torch.set_num_threads(2)


def _tiny(coco_mini, out_dir, *extra: str):
    return apply_overrides(get_preset("synth-r18-128x96").config, [
        f"data.root={coco_mini}", "data.train_ann=annotations/person_keypoints_val2017.json",
        "data.train_images=images/val2017", "data.val_ann=annotations/person_keypoints_val2017.json",
        "data.val_images=images/val2017", "data.num_workers=0", "codec.input_size=[32,64]",
        "codec.heatmap_size=[8,16]", "model.deconv_channels=16", "data.num_labeled=4", "train.batch_size=4",
        "train.epochs=1", "train.lr_steps=[1]", "test.batch_size=8", f"output_dir={out_dir}", *extra])


def test_model_round_trip_registry_and_predict_from_the_run(coco_mini, tmp_path):
    Trainer(_tiny(coco_mini, tmp_path / "runs", "name=tiny"), log_metrics=lambda m, s: None).fit()
    run_dir = tmp_path / "runs" / "tiny"
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    run_id, _ = open_run(client, uri, RunRequest("models", "tiny", "tiny", tags={RUN_DIR_TAG: str(run_dir)}))

    model_uri = log_pose_model(uri, run_id, run_dir, step=1)
    assert model_uri is not None and model_uri.startswith("models:/")
    assert log_pose_model(uri, run_id, run_dir, step=1) is None  # a rerun of a finished run logs nothing new
    experiment = client.get_run(run_id).info.experiment_id
    [(step, model_id)] = run_models(client, run_id, experiment)
    assert step == 1 and model_uri == f"models:/{model_id}"
    assert [(o.model_id, o.step) for o in client.get_run(run_id).outputs.model_outputs] == [(model_id, 1)]

    checkpoint = load_checkpoint_model(run_dir)
    assert checkpoint.source.endswith("best.pth")
    images = torch.randn(2, 3, 64, 32)
    with mlflow_tracking_uri(uri):
        network = mlflow.pytorch.load_model(f"runs:/{run_id}/model")
        version = mlflow.register_model(f"runs:/{run_id}/model", "poselab-tiny")
    assert int(version.version) == 1 and version.name == "poselab-tiny"
    with torch.no_grad():
        expected = checkpoint.network(images)
        torch.testing.assert_close(network.eval()(images), expected, rtol=0, atol=0)
        registered = load_mlflow_model("models:/poselab-tiny/1", uri)
        assert registered.cfg == checkpoint.cfg and registered.network_name == "net"
        torch.testing.assert_close(registered.network(images), expected, rtol=0, atol=0)

    images_dir = coco_mini / "images" / "val2017"
    gt = coco_mini / "annotations" / "person_keypoints_val2017.json"
    common = ["--input", str(images_dir), "--boxes", str(gt), "--no-render", "--no-progress"]
    assert main(["predict", "--model", f"runs:/{run_id}", "--tracking-uri", uri, "--out", str(tmp_path / "a"),
                 *common]) == 0
    assert main(["predict", "--model", str(run_dir), "--out", str(tmp_path / "b"), *common]) == 0
    from_mlflow = json.loads((tmp_path / "a" / "results.json").read_text())
    assert from_mlflow == json.loads((tmp_path / "b" / "results.json").read_text()) and from_mlflow

    # a run without a logged model: its checkpoint (best.pth of the tagged run directory)
    bare, _ = open_run(client, uri, RunRequest("models", "bare", "bare", tags={RUN_DIR_TAG: str(run_dir)}))
    assert load_mlflow_model(f"runs:/{bare}", uri).source == str(run_dir / "best.pth")
    with pytest.raises(ValueError, match="logged no MLflow model named 'model'"):
        load_mlflow_model(f"runs:/{bare}/model", uri)
    with pytest.raises(ValueError, match="no such MLflow run"):
        load_mlflow_model("runs:/nosuchrun", uri)


def test_a_training_run_logs_its_best_network_once(ray_session, coco_mini, tmp_path):
    """PoseDual through the Ray worker (local mode): the model is net1's best weights, with the config;
    rerunning the finished run does not log a second one."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    cfg = _tiny(coco_mini, tmp_path / "runs", "name=dual", "method.kind=posedual")
    options = RunOptions(num_workers=0, tracking_uri=uri, experiment="dual")
    result = run_training(cfg, options, plan=ray_session)
    client = MlflowClient(uri)
    experiment = client.get_run(result.run_id).info.experiment_id
    assert len(run_models(client, result.run_id, experiment)) == 1
    model = load_mlflow_model(f"runs:/{result.run_id}", uri)
    best = load_checkpoint_model(result.run_dir / "best.pth")
    assert model.network_name == best.network_name == "net1" and model.cfg == best.cfg
    for key, value in best.network.state_dict().items():
        assert torch.equal(model.network.state_dict()[key], value), key
    run_training(cfg, options, plan=ray_session)
    assert len(run_models(client, result.run_id, experiment)) == 1
