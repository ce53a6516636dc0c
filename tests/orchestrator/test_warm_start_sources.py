"""``model.init=runs:/<run id>``: resolved to the run's checkpoint through MLflow (a SQLite store in
tmp_path; no Ray), with the sources recorded as tags."""

from __future__ import annotations

import dataclasses
import json
import shutil

import pytest
from mlflow.tracking import MlflowClient

from orchestrator.train import absolute_paths, resolve_init
from pose.config import apply_overrides
from pose.presets import get_preset


def _cfg(out_dir, *extra: str):
    return apply_overrides(get_preset("synth-r18-128x96").config,
                           [f"output_dir={out_dir}", "name=fine", *extra])


@pytest.fixture()
def store(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    exp = client.create_experiment("src", artifact_location=(tmp_path / "artifacts").as_uri())
    return uri, client, exp


def _source_run(client, exp, run_dir, log_artifact: bool) -> str:
    run_dir.mkdir(parents=True)
    (run_dir / "last.pth").write_bytes(b"weights of " + run_dir.name.encode())
    run_id = client.create_run(exp, tags={"poselab.run_dir": str(run_dir)}).info.run_id
    if log_artifact:
        client.log_artifact(run_id, str(run_dir / "last.pth"), "checkpoints")
    return run_id


def test_runs_uri_resolves_to_the_run_dir_then_to_the_logged_checkpoint(store, tmp_path):
    uri, client, exp = store
    a = _source_run(client, exp, tmp_path / "sup" / "seed=0", log_artifact=True)
    b = _source_run(client, exp, tmp_path / "sup" / "seed=1", log_artifact=False)
    cfg = _cfg(tmp_path / "runs", "method.kind=posedual", f"model.init=runs:/{a}",
               f"model.init_net2=runs:/{b}")
    resolved, tags = resolve_init(cfg, uri)
    assert resolved.model.init == str(tmp_path / "sup" / "seed=0" / "last.pth")
    assert resolved.model.init_net2 == str(tmp_path / "sup" / "seed=1" / "last.pth")
    assert tags == {"poselab.init": resolved.model.init, "poselab.init_source": f"runs:/{a}",
                    "poselab.init_net2": resolved.model.init_net2, "poselab.init_net2_source": f"runs:/{b}"}

    shutil.rmtree(tmp_path / "sup" / "seed=0")  # the run directory is gone: its logged artifact is used
    (tmp_path / "runs" / "fine" / "init" / "sources.json").unlink()
    resolved, tags = resolve_init(cfg, uri)
    copy = tmp_path / "runs" / "fine" / "init" / a / "last.pth"
    assert resolved.model.init == tags["poselab.init"] == str(copy)
    assert copy.read_bytes() == b"weights of seed=0"
    record = json.loads((tmp_path / "runs" / "fine" / "init" / "sources.json").read_text())
    assert record[f"runs:/{a}"] == str(copy)

    shutil.rmtree(tmp_path / "sup" / "seed=1")  # neither a directory nor an artifact
    with pytest.raises(ValueError, match=rf"model.init_net2: runs:/{b}: no checkpoint found: its run "
                                         r"directory .*seed=1 has no last.pth and it logged no checkpoints/"):
        resolve_init(cfg, uri)


def test_a_resumed_run_keeps_the_checkpoint_its_source_resolved_to(store, tmp_path):
    uri, client, exp = store
    a = _source_run(client, exp, tmp_path / "sup" / "a", log_artifact=False)
    cfg = _cfg(tmp_path / "runs", f"model.init=runs:/{a}")
    first, _ = resolve_init(cfg, uri)
    (tmp_path / "runs" / "fine" / "last.pth").write_bytes(b"resumable")
    shutil.rmtree(tmp_path / "sup")  # resolving again would fail; the resumed run keeps its config
    again, tags = resolve_init(cfg, uri)
    assert again == first and tags["poselab.init"] == first.model.init


def test_bad_run_uris_and_sources_that_need_no_mlflow(store, tmp_path):
    uri, _, _ = store
    with pytest.raises(ValueError, match="model.init: runs:/nosuchrun: no such MLflow run"):
        resolve_init(_cfg(tmp_path, "model.init=runs:/nosuchrun"), uri)
    with pytest.raises(ValueError, match="give the run only"):
        resolve_init(_cfg(tmp_path, "model.init=runs:/abc/checkpoints/last.pth"), uri)
    plain = _cfg(tmp_path, "model.init=/ckpt/last.pth")
    no_store = "sqlite:////nonexistent/dir/x.db"  # never opened: only runs:/ sources need MLflow
    assert resolve_init(plain, no_store) == (plain, {"poselab.init": "/ckpt/last.pth"})
    assert resolve_init(_cfg(tmp_path), no_store)[1] == {}


def test_absolute_paths_make_file_sources_absolute_and_leave_run_uris(tmp_path):
    cfg = _cfg("out", "method.kind=posedual", "model.init=runs/sup/seed=0", "model.init_net2=runs:/abc")
    model = absolute_paths(cfg, cwd=tmp_path).model
    assert model.init == str(tmp_path / "runs" / "sup" / "seed=0") and model.init_net2 == "runs:/abc"
    assert dataclasses.replace(model, init=None, init_net2=None).pretrained is None


def test_absolute_paths_make_the_unlabeled_root_absolute(tmp_path):
    """The MPII + AIC setting's unlabeled set has its own root (``semi.root``); a Tune trial runs in
    another directory, so a relative one is made absolute like ``data.root`` (empty stays empty)."""
    cfg = _cfg("out", "data.root=data/mpii", "semi.root=data/aic")
    placed = absolute_paths(cfg, cwd=tmp_path)
    assert (placed.data.root, placed.semi.root) == (str(tmp_path / "data" / "mpii"), str(tmp_path / "data" / "aic"))
    assert absolute_paths(_cfg("out"), cwd=tmp_path).semi.root == ""
