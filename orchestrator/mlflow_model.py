"""The MLflow model of a training run, and MLflow model sources for ``poselab predict``.

At the end of a run (rank 0, :class:`orchestrator.worker.WorkerRun`) :func:`log_pose_model` logs the
run's best network as an MLflow model named ``model`` with the ``mlflow.pytorch`` flavour (MLflow 3's
logged-model API: a ``LoggedModel`` of the run's experiment whose source run is the training run, linked
to it as an output at the run's final step):

* the network is the checkpoint's primary one (``net``; ``net1`` for PoseDual), rebuilt on the CPU from
  the config and loaded with the best weights (``best.pth``, else ``last.pth``); it is pickled
  (``serialization_format="pickle"``, so loading it needs the ``pose`` package importable; MLflow's
  default ``pt2`` would trace a graph with ``torch.export`` for fixed input shapes, and bottom-up inputs
  vary in size);
* the experiment config (what rebuilds the codec, metainfo and test settings) is the file
  ``extra_files/poselab_config.json`` inside the model directory; the model's metadata
  (``poselab``) says so, with the task and network;
* the Python requirements are given explicitly (this environment's torch, torchvision, NumPy,
  OpenCV and MLflow versions), so MLflow infers nothing and downloads nothing.

The model is then ``runs:/<run id>/model`` for the Model Registry (``mlflow.register_model``) and
``mlflow.pytorch.load_model``. :func:`load_mlflow_model` reads it back (or a registered
``models:/<name>/<version>``) as a :class:`pose.inference.model.PoseModel`; a ``runs:/`` run without a
logged model falls back to its checkpoint (:func:`orchestrator.tracking.run_checkpoint`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

from mlflow.entities import LoggedModelStatus
from mlflow.tracking import MlflowClient

from orchestrator.tracking import RUNS_URI_PREFIX, resolve_tracking_uri, run_checkpoint
from pose.config import to_dict
from pose.inference.model import RUN_DIR_CHECKPOINTS, PoseModel, checkpoint_for, load_checkpoint_model
from pose.tasks import config_from_dict

log = logging.getLogger(__name__)

MODEL_NAME = "model"
"""The name of a run's logged model: ``runs:/<run id>/model``."""
CONFIG_FILE = "poselab_config.json"
"""The experiment config inside the model directory (under ``extra_files/``)."""
METADATA_KEY = "poselab"
STEP_TAG = "poselab.step"
"""Tag of a logged model: the training step (optimiser steps) of the run when it was logged."""
MODELS_URI_PREFIX = "models:/"
REQUIRED_PACKAGES: tuple[str, ...] = ("torch", "torchvision", "numpy", "opencv-python-headless", "mlflow")
_QUIET_LOGGERS = ("mlflow.pytorch", "mlflow.utils.environment")
"""MLflow loggers silenced while a model is logged: the warning about the pickle format (chosen on
purpose, see the module docstring) and the one about pip's version (uv environments have no pip)."""


def pip_requirements() -> list[str]:
    """``name==version`` of :data:`REQUIRED_PACKAGES` as installed here (a package that is not installed
    is listed without a version)."""
    out = []
    for name in REQUIRED_PACKAGES:
        try:
            out.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            out.append(name)
    return out


@contextlib.contextmanager
def mlflow_tracking_uri(uri: str) -> Iterator[None]:
    """Within the block, MLflow's fluent API (``mlflow.pytorch.log_model``, ``mlflow.artifacts``) uses
    ``uri``; afterwards the process's tracking URI and ``$MLFLOW_TRACKING_URI`` are as before."""
    import mlflow

    env = os.environ.get("MLFLOW_TRACKING_URI")
    explicit = mlflow.get_tracking_uri() if mlflow.is_tracking_uri_set() else None
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(explicit)
        if env is not None:
            os.environ["MLFLOW_TRACKING_URI"] = env


@contextlib.contextmanager
def _quiet_mlflow() -> Iterator[None]:
    loggers = [logging.getLogger(name) for name in _QUIET_LOGGERS]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def run_models(client: MlflowClient, run_id: str, experiment_id: str) -> list[tuple[int, str]]:
    """(step, model id) of the models named ``model`` that run ``run_id`` (of experiment ``experiment_id``)
    logged, oldest step first (the step is the tag ``poselab.step``)."""
    found = client.search_logged_models([experiment_id],
                                        filter_string=f"name = '{MODEL_NAME}' AND source_run_id = '{run_id}'")
    return sorted((int(m.tags.get(STEP_TAG, 0)), m.model_id) for m in found
                  if m.status == LoggedModelStatus.READY)


def log_pose_model(tracking_uri: str, run_id: str, run_dir: str | Path, step: int) -> str | None:
    """Log the best network of the run directory ``run_dir`` (its ``best.pth``, else ``last.pth``) as the
    MLflow model ``model`` of run ``run_id``, linked to the run at ``step``; returns its ``models:/<model
    id>`` URI. Does nothing (returns None) when the run already logged a model at ``step`` or later (a
    rerun of a finished run), or when ``run_dir`` has no checkpoint yet.

    The model is linked to the run by one ``log_outputs`` call; MLflow's own linking (``log_model`` with
    ``run_id``) would also copy every metric of the run at ``step`` to the model, a request per metric key
    (seconds per run through a tracking server).
    """
    import mlflow.pytorch
    from mlflow.entities import LoggedModelOutput

    client = MlflowClient(tracking_uri=tracking_uri)
    experiment_id = client.get_run(run_id).info.experiment_id
    logged = run_models(client, run_id, experiment_id)
    if logged and logged[-1][0] >= step:
        log.info("MLflow run %s already has its model (models:/%s at step %d)", run_id, logged[-1][1],
                 logged[-1][0])
        return None
    try:
        checkpoint = checkpoint_for(run_dir)
    except FileNotFoundError:
        log.warning("%s has no checkpoint: no MLflow model logged", run_dir)
        return None
    model = load_checkpoint_model(checkpoint)
    with tempfile.TemporaryDirectory(prefix="poselab-model-") as tmp:
        config_file = Path(tmp) / CONFIG_FILE
        config_file.write_text(json.dumps(to_dict(model.cfg), indent=2))
        # created here, in the run's experiment (left to itself, log_model would use the process's active or
        # default experiment)
        created = client.create_logged_model(experiment_id=experiment_id, name=MODEL_NAME,
                                             source_run_id=run_id, tags={STEP_TAG: str(step)},
                                             model_type=f"poselab-{model.task}")
        meta = {METADATA_KEY: {"task": model.task, "network": model.network_name,
                               "checkpoint": checkpoint.name, "run_id": run_id,
                               "config": f"extra_files/{CONFIG_FILE}"}}
        with mlflow_tracking_uri(tracking_uri), _quiet_mlflow():
            info = mlflow.pytorch.log_model(
                model.network, name=MODEL_NAME, model_id=created.model_id,
                pip_requirements=pip_requirements(), extra_files=[str(config_file)], metadata=meta,
                serialization_format="pickle")
    client.log_outputs(run_id, [LoggedModelOutput(created.model_id, step)])
    log.info("logged the MLflow model %s (network %s of %s) to run %s", info.model_uri, model.network_name,
             checkpoint, run_id)
    return info.model_uri


def load_model_dir(path: str | Path, source: str) -> PoseModel:
    """A downloaded MLflow model directory (``MLmodel``, ``data/``, ``extra_files/poselab_config.json``) ->
    the network (on the CPU, eval mode) with its config.

    Raises:
        ValueError: the model has no poselab config (not logged by a poselab run).
    """
    import mlflow.pytorch
    from mlflow.models import Model

    path = Path(path)
    info = (Model.load(str(path)).metadata or {}).get(METADATA_KEY)
    config_file = path / "extra_files" / CONFIG_FILE
    if not isinstance(info, dict) or not config_file.is_file():
        raise ValueError(f"{source}: not a poselab model (no {METADATA_KEY} metadata and "
                         f"extra_files/{CONFIG_FILE}: the config that rebuilds the codec); poselab training "
                         "runs log one as 'model'")
    cfg = config_from_dict(json.loads(config_file.read_text()), f"{source} {CONFIG_FILE}")
    network = mlflow.pytorch.load_model(str(path), map_location="cpu")
    return PoseModel(cfg, network, str(info.get("network", "net")), source)


def _download_and_load(artifact_uri: str, source: str, tracking_uri: str) -> PoseModel:
    import mlflow.artifacts
    from mlflow.exceptions import MlflowException

    with tempfile.TemporaryDirectory(prefix="poselab-model-") as tmp, mlflow_tracking_uri(tracking_uri):
        try:
            local = mlflow.artifacts.download_artifacts(artifact_uri=artifact_uri, dst_path=tmp)
        except MlflowException as e:
            raise ValueError(f"{source}: cannot download the model from {tracking_uri} ({e.message})"
                             ) from None
        return load_model_dir(local, source)


def _parse_runs_uri(uri: str) -> tuple[str, str]:
    rest = uri[len(RUNS_URI_PREFIX):].strip("/")
    run_id, _, path = rest.partition("/")
    if not run_id or path not in ("", MODEL_NAME):
        raise ValueError(f"{uri!r}: expected runs:/<run id> or runs:/<run id>/{MODEL_NAME}")
    return run_id, path


def load_mlflow_model(uri: str, tracking_uri: str | None = None) -> PoseModel:
    """The model of an MLflow source:

    * ``runs:/<run id>``: the run's logged model ``model`` (the latest), else its checkpoint (``best.pth``,
      else ``last.pth``: in its run directory, else its logged ``checkpoints/`` artifacts);
    * ``runs:/<run id>/model``: the logged model only;
    * ``models:/<name>/<version>`` (the Model Registry), ``models:/<model id>``: that model.

    Raises:
        ValueError: no such run or model, or nothing to load from it (the message says what was looked for).
    """
    from mlflow.exceptions import MlflowException

    tracking_uri = resolve_tracking_uri(tracking_uri)
    if uri.startswith(MODELS_URI_PREFIX):
        return _download_and_load(uri, uri, tracking_uri)
    if not uri.startswith(RUNS_URI_PREFIX):
        raise ValueError(f"{uri!r} is not an MLflow model URI (runs:/<run id> or models:/...)")
    run_id, path = _parse_runs_uri(uri)
    client = MlflowClient(tracking_uri=tracking_uri)
    try:
        experiment_id = client.get_run(run_id).info.experiment_id
    except MlflowException as e:
        raise ValueError(f"{uri}: no such MLflow run in {tracking_uri} ({e.message})") from None
    models = run_models(client, run_id, experiment_id)
    if models:
        model_id = models[-1][1]
        return _download_and_load(client.get_logged_model(model_id).artifact_location, uri, tracking_uri)
    if path == MODEL_NAME:
        raise ValueError(f"{uri}: run {run_id} logged no MLflow model named '{MODEL_NAME}'")
    log.info("%s logged no MLflow model: using its checkpoint", uri)
    with tempfile.TemporaryDirectory(prefix="poselab-checkpoint-") as tmp:
        checkpoint = run_checkpoint(client, f"{RUNS_URI_PREFIX}{run_id}", tmp, RUN_DIR_CHECKPOINTS)
        return load_checkpoint_model(checkpoint)


def load_model_source(source: str, tracking_uri: str | None = None) -> PoseModel:
    """``poselab predict --model``: an MLflow URI (:func:`load_mlflow_model`), else a checkpoint file or a
    run directory (:func:`pose.inference.model.load_checkpoint_model`)."""
    if source.startswith((RUNS_URI_PREFIX, MODELS_URI_PREFIX)):
        return load_mlflow_model(source, tracking_uri)
    return load_checkpoint_model(source)
