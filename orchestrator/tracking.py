"""MLflow glue: tracking URIs, idempotent runs, and the rank-0 logger of a training run.

* The default tracking store is MLflow's own default, a SQLite database ``mlflow.db`` in the working
  directory. Relative SQLite paths are made absolute on the driver, so Ray workers (whose working
  directory may differ) write to the same file; artifacts of such stores go next to it in
  ``mlartifacts/``. Any other URI (an ``http://`` MLflow server) is passed through.
* A run is identified by a *run key* (tag ``poselab.run_key``): starting a run whose key already exists
  returns the existing run, so a restarted or resumed training continues its MLflow run and never
  creates a duplicate.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Param, RunStatus
from mlflow.tracking import MlflowClient

log = logging.getLogger(__name__)

RUN_KEY_TAG = "poselab.run_key"
RUN_DIR_TAG = "poselab.run_dir"
CHECKPOINT_ARTIFACT = "checkpoints/last.pth"
RUNS_URI_PREFIX = "runs:/"
PARENT_TAG = "mlflow.parentRunId"
RUN_NAME_TAG = "mlflow.runName"
DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
MAX_PARAM_CHARS = 6000  # MLflow's limit on a param value
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"
"""The experiment tag MLflow 3's UI has for an experiment's kind (``genai_development`` or
``custom_model_development``, the classic "Model training" view). MLflow 3.17's UI does not choose the
view from it: a GenAI / Model training switch in its sidebar does (remembered per browser, GenAI by
default), or the URL's ``workflowType`` (:data:`UI_MODEL_TRAINING`). The tag still says what the
experiments are, for a UI that reads it."""
UI_MODEL_TRAINING = "workflowType=machine_learning"
"""The MLflow UI URL query that opens a page in the Model training view (MLflow 3.17)."""
_BATCH = 900  # MLflow accepts up to 1000 metrics per log_batch


def resolve_tracking_uri(uri: str | None = None, cwd: str | Path | None = None) -> str:
    """``uri`` (or ``$MLFLOW_TRACKING_URI``, or ``sqlite:///mlflow.db``) with a relative SQLite or
    file path made absolute against ``cwd`` (default: the current directory)."""
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI
    base = Path(cwd or os.getcwd())
    if uri.startswith("sqlite:///"):
        path = uri[len("sqlite:///"):]
        if not path.startswith("/"):  # sqlite:////abs/path has a fourth slash
            return f"sqlite:///{(base / path).resolve()}"
        return uri
    if "://" not in uri:  # a bare path: an SQLite database file
        return f"sqlite:///{(base / uri).resolve()}"
    return uri


def default_artifact_location(tracking_uri: str, experiment: str) -> str | None:
    """For SQLite stores: ``<db dir>/mlartifacts/<experiment>`` (absolute file URI); None lets a
    tracking server choose."""
    if tracking_uri.startswith("sqlite:///"):
        db = Path(tracking_uri[len("sqlite:///"):])
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in experiment)
        return (db.parent / "mlartifacts" / safe).as_uri()
    return None


def get_or_create_experiment(client: MlflowClient, name: str, tracking_uri: str) -> str:
    """The id of experiment ``name``, created (once, by the caller: the driver) when missing, tagged as a
    model-training experiment (:data:`EXPERIMENT_KIND_TAG`; an existing experiment without a kind gets it)."""
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            raise ValueError(f"MLflow experiment '{name}' is deleted in {tracking_uri}: restore it "
                             f"(`mlflow experiments restore`) or choose another experiment name")
        if exp.tags.get(EXPERIMENT_KIND_TAG, "") in ("", "no_inferred_type"):
            client.set_experiment_tag(exp.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
        return exp.experiment_id
    return client.create_experiment(name, artifact_location=default_artifact_location(tracking_uri, name),
                                    tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND})


def experiment_ui_url(ui: str, experiment_id: str | None = None, run_id: str | None = None) -> str:
    """The MLflow UI page of an experiment (or run) at ``ui`` (``http://HOST:PORT``), in the UI's model
    training view (:data:`UI_MODEL_TRAINING`)."""
    if experiment_id is None:
        return f"{ui.rstrip('/')}/#/experiments?{UI_MODEL_TRAINING}"
    page = f"experiments/{experiment_id}" + (f"/runs/{run_id}" if run_id else "")
    return f"{ui.rstrip('/')}/#/{page}?{UI_MODEL_TRAINING}"


def flatten_params(config: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """A nested config -> {"train.lr": "0.001", ...}; lists as JSON; values capped at MLflow's limit."""
    out: dict[str, str] = {}
    for k, v in config.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten_params(v, f"{key}."))
        else:
            text = json.dumps(v) if isinstance(v, (list, tuple, bool)) or v is None else str(v)
            out[key] = text if len(text) <= MAX_PARAM_CHARS else text[: MAX_PARAM_CHARS - 3] + "..."
    return out


def find_run(client: MlflowClient, experiment_id: str, run_key: str) -> str | None:
    """The id of the run tagged with ``run_key`` (the newest if several), or None."""
    runs = client.search_runs([experiment_id], filter_string=f"tags.`{RUN_KEY_TAG}` = '{run_key}'",
                              order_by=["attributes.start_time DESC"], max_results=1)
    return runs[0].info.run_id if runs else None


def start_run(client: MlflowClient, experiment_id: str, run_key: str, run_name: str,
              params: Mapping[str, Any] | None = None, tags: Mapping[str, str] | None = None,
              parent_run_id: str | None = None, reuse: bool = True) -> tuple[str, bool]:
    """(run id, resumed): the run with ``run_key`` (when ``reuse``), or a new one with ``params``
    (flattened) and ``tags``; a new run under an existing key becomes the one later calls find.

    A resumed run is set back to RUNNING; its params are left as they were (MLflow params are
    immutable), so a changed config under the same key is reported as an error by the caller's check.
    """
    existing = find_run(client, experiment_id, run_key) if reuse else None
    if existing is not None:
        client.update_run(existing, status=RunStatus.to_string(RunStatus.RUNNING))
        return existing, True
    all_tags = {RUN_KEY_TAG: run_key, RUN_NAME_TAG: run_name, **(tags or {})}
    if parent_run_id:
        all_tags[PARENT_TAG] = parent_run_id
    run = client.create_run(experiment_id, run_name=run_name, tags=all_tags)
    run_id = run.info.run_id
    if params:
        items = [Param(k, v) for k, v in flatten_params(params).items()]
        for i in range(0, len(items), 90):  # log_batch takes at most 100 params
            client.log_batch(run_id, params=items[i:i + 90])
    return run_id, False


@dataclass
class RunLogger:
    """Logs metrics and artifacts of one MLflow run (used on rank 0 only).

    Non-finite values are skipped with one warning per key (MLflow's SQLite store refuses NaN in some
    backends and they would break charts); keys are passed through (``val/net1/AP``).
    """

    tracking_uri: str
    run_id: str

    def __post_init__(self) -> None:
        self.client = MlflowClient(tracking_uri=self.tracking_uri)
        self._warned: set[str] = set()

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        import time

        ts = int(time.time() * 1000)
        items = []
        for k, v in metrics.items():
            v = float(v)
            if not math.isfinite(v):
                if k not in self._warned:
                    self._warned.add(k)
                    log.warning("metric %s is %s at step %d: not logged to MLflow", k, v, step)
                continue
            items.append(Metric(k, v, ts, int(step)))
        for i in range(0, len(items), _BATCH):
            self.client.log_batch(self.run_id, metrics=items[i:i + _BATCH])

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(path), artifact_path)

    def log_dict(self, data: Any, artifact_file: str) -> None:
        self.client.log_dict(self.run_id, data, artifact_file)

    def set_tags(self, tags: Mapping[str, str]) -> None:
        for k, v in tags.items():
            self.client.set_tag(self.run_id, k, v)

    def finish(self, status: str = "FINISHED") -> None:
        self.client.set_terminated(self.run_id, status=status)


def run_checkpoint(client: MlflowClient, uri: str, download_dir: str | Path) -> Path:
    """The ``last.pth`` of the poselab run ``runs:/<run id>``: ``<tag poselab.run_dir>/last.pth`` when that
    file exists, else the run's logged artifact ``checkpoints/last.pth``, downloaded to
    ``download_dir/<run id>/last.pth`` (once: a later call finds the copy).

    Raises:
        ValueError: not a ``runs:/<run id>`` URI, no such run, or neither checkpoint exists (the message
            says where it looked).
    """
    from mlflow.exceptions import MlflowException

    if not uri.startswith(RUNS_URI_PREFIX) or not uri[len(RUNS_URI_PREFIX):].strip("/"):
        raise ValueError(f"{uri!r} is not an MLflow run URI (runs:/<run id>)")
    run_id = uri[len(RUNS_URI_PREFIX):].strip("/")
    if "/" in run_id:
        raise ValueError(f"{uri!r}: give the run only (runs:/<run id>); its checkpoint is found from the run")
    try:
        run = client.get_run(run_id)
    except MlflowException as e:
        raise ValueError(f"{uri}: no such MLflow run in {client.tracking_uri} ({e.message})") from None
    tagged = run.data.tags.get(RUN_DIR_TAG)
    if tagged and (Path(tagged) / "last.pth").is_file():
        return Path(tagged) / "last.pth"
    copy = Path(download_dir) / run_id / Path(CHECKPOINT_ARTIFACT).name
    if copy.is_file():
        return copy
    logged = {a.path for a in client.list_artifacts(run_id, str(Path(CHECKPOINT_ARTIFACT).parent))}
    if CHECKPOINT_ARTIFACT not in logged:
        where = f"its run directory {tagged} has no last.pth" if tagged else f"it has no tag {RUN_DIR_TAG}"
        raise ValueError(f"{uri}: no checkpoint found: {where} and it logged no {CHECKPOINT_ARTIFACT} "
                         "artifact")
    copy.parent.mkdir(parents=True, exist_ok=True)
    log.info("%s: %s is missing; downloading its logged %s", uri, tagged or RUN_DIR_TAG, CHECKPOINT_ARTIFACT)
    got = Path(client.download_artifacts(run_id, CHECKPOINT_ARTIFACT, str(copy.parent)))
    if got != copy:
        got.replace(copy)
    return copy
