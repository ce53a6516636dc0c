"""MLflow glue: tracking URIs, idempotent runs, run checkpoints (the logger of a run that rides out
server outages is :mod:`orchestrator.run_logger`).

* The default tracking store is MLflow's own default, a SQLite database ``mlflow.db`` in the working
  directory. Relative SQLite paths are made absolute on the driver, so Ray workers (whose working
  directory may differ) write to the same file; artifacts of such stores go next to it in
  ``mlartifacts/``. Any other URI (an ``http://`` MLflow server) is passed through.
* A run is identified by a *run key* (tag ``poselab.run_key``): opening a run whose key already exists
  returns the existing run, so a restarted or resumed training continues its MLflow run and never
  creates a duplicate; each opening also tags the run it creates with a unique ``poselab.open_id``, so
  an opening retried after a lost answer, or replayed from a spool, finds it instead of creating another.
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from mlflow.entities import Param, RunStatus, RunTag
from mlflow.tracking import MlflowClient

from orchestrator.tracking_outage import is_unreachable

log = logging.getLogger(__name__)

RUN_KEY_TAG = "poselab.run_key"
RUN_DIR_TAG = "poselab.run_dir"
CHECKPOINT_ARTIFACTS = "checkpoints"
"""The artifact folder of a run's logged checkpoints (``best.pth``, ``last.pth``)."""
RUNS_URI_PREFIX = "runs:/"
PARENT_TAG = "mlflow.parentRunId"
RUN_NAME_TAG = "mlflow.runName"
OPEN_ID_TAG = "poselab.open_id"
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


def find_run(client: MlflowClient, experiment_id: str, run_key: str, tag: str = RUN_KEY_TAG) -> str | None:
    """The id of the run whose ``tag`` (default: the run key) is ``run_key`` (the newest if several), or
    None. A failed lookup raises: it never passes for "no such run" (which would create a duplicate)."""
    runs = client.search_runs([experiment_id], filter_string=f"tags.`{tag}` = '{run_key}'",
                              order_by=["attributes.start_time DESC"], max_results=1)
    return runs[0].info.run_id if runs else None


def end_stopped_runs(client: MlflowClient, experiment_id: str, run_keys: Iterable[str], since_ms: int) -> int:
    """End as KILLED the runs (found by key) that a Ctrl+C stopped: those still RUNNING (their process was
    killed before it could end them) and those that ended FAILED at or after ``since_ms`` (epoch
    milliseconds: when the Ctrl+C came; the training ends a run FAILED on any exception, the stop's
    included). A run that failed before it, or finished, keeps its status; a key without a run is
    skipped. Returns how many runs were ended KILLED."""
    ended = 0
    for key in run_keys:
        run_id = find_run(client, experiment_id, key)
        if run_id is None:
            continue
        info = client.get_run(run_id).info
        stopped_by_it = info.status == "FAILED" and (info.end_time or 0) >= since_ms
        if info.status in ("RUNNING", "SCHEDULED") or stopped_by_it:
            client.set_terminated(run_id, status="KILLED")
            ended += 1
    return ended


class RunRequest:
    """What opening a run needs: created when missing, found by ``run_key`` when ``reuse``.

    Args:
        experiment: MLflow experiment name (created when missing).
        run_key, run_name: the run's identity (tag ``poselab.run_key``) and display name.
        params: the config (nested values are flattened: :func:`flatten_params`).
        tags: tags of a new run; set again on a found (resumed) one.
        parent_run_id: makes the run a child run.
        reuse: find an existing run by key (False: always a new run).
        open_id: a unique id tagged on the run it creates (``poselab.open_id``), so a retried or
            replayed opening finds the run an earlier try created although its answer was lost.
        start_time: epoch milliseconds (default: now): a run created late, from the spool, keeps it.
    """

    def __init__(self, experiment: str, run_key: str, run_name: str, params: Mapping[str, Any] | None = None,
                 tags: Mapping[str, str] | None = None, parent_run_id: str | None = None, reuse: bool = True,
                 open_id: str | None = None, start_time: int | None = None) -> None:
        self.experiment, self.run_key, self.run_name = experiment, run_key, run_name
        self.params = flatten_params(params or {})
        self.tags = dict(tags or {})
        self.parent_run_id = parent_run_id
        self.reuse = reuse
        self.open_id = open_id or uuid.uuid4().hex
        self.start_time = int(time.time() * 1000) if start_time is None else int(start_time)

    def to_dict(self) -> dict[str, Any]:
        return {"experiment": self.experiment, "run_key": self.run_key, "run_name": self.run_name,
                "params": self.params, "tags": self.tags, "parent_run_id": self.parent_run_id,
                "reuse": self.reuse, "open_id": self.open_id, "start_time": self.start_time}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunRequest:
        return cls(**{k: data[k] for k in ("experiment", "run_key", "run_name", "params", "tags",
                                            "parent_run_id", "reuse", "open_id", "start_time")})


def open_run(client: MlflowClient, tracking_uri: str, request: RunRequest) -> tuple[str, bool]:
    """(run id, resumed): the run an earlier try of this ``request`` created (tag ``poselab.open_id``),
    else the run with its key (when ``reuse``; set back to RUNNING, its tags set again), else a new
    one with the request's params and tags; a new run under an existing key becomes the one later calls
    find. Idempotent: retrying or replaying a request never creates a second run.

    A created run gets the request's params it does not have yet (all, unless an earlier try logged
    some before its connection broke); a resumed run's params are left as they were (MLflow params
    are immutable), so a changed config under the same key is reported as an error by the caller's check.
    """
    experiment_id = get_or_create_experiment(client, request.experiment, tracking_uri)
    run_id = find_run(client, experiment_id, request.open_id, tag=OPEN_ID_TAG)
    if run_id is None and request.reuse:
        run_id = find_run(client, experiment_id, request.run_key)
        if run_id is not None:
            client.update_run(run_id, status=RunStatus.to_string(RunStatus.RUNNING))
            tags = [RunTag(k, v) for k, v in request.tags.items()]
            for i in range(0, len(tags), 90):  # log_batch takes at most 100 tags
                client.log_batch(run_id, tags=tags[i:i + 90])
            return run_id, True
    logged: dict[str, str] = {}
    if run_id is None:
        all_tags = {RUN_KEY_TAG: request.run_key, RUN_NAME_TAG: request.run_name,
                    OPEN_ID_TAG: request.open_id, **request.tags}
        if request.parent_run_id:
            all_tags[PARENT_TAG] = request.parent_run_id
        run_id = client.create_run(experiment_id, start_time=request.start_time, tags=all_tags,
                                   run_name=request.run_name).info.run_id
    else:  # created by an earlier try of this request
        logged = client.get_run(run_id).data.params
    items = [Param(k, v) for k, v in request.params.items() if k not in logged]
    for i in range(0, len(items), 90):  # log_batch takes at most 100 params
        client.log_batch(run_id, params=items[i:i + 90])
    return run_id, False


def run_checkpoint(client: MlflowClient, uri: str, download_dir: str | Path,
                   names: Sequence[str] = ("last.pth",)) -> Path:
    """The checkpoint of the poselab run ``runs:/<run id>``: the first of ``names`` in the run directory
    (tag ``poselab.run_dir``), else the first of them among the run's logged ``checkpoints/`` artifacts,
    downloaded to ``download_dir/<run id>/<name>`` (once: a later call finds the copy). The default takes
    ``last.pth`` (warm starts); ``("best.pth", "last.pth")`` prefers the best one.

    Raises:
        ValueError: not a ``runs:/<run id>`` URI, no such run, or none of the checkpoints exists (the
            message says where it looked).
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
        if is_unreachable(e):  # an outage, not a missing run: the caller may wait for the server
            raise
        raise ValueError(f"{uri}: no such MLflow run in {client.tracking_uri} ({e.message})") from None
    tagged = run.data.tags.get(RUN_DIR_TAG)
    for name in names:
        if tagged and (Path(tagged) / name).is_file():
            return Path(tagged) / name
    for name in names:
        if (Path(download_dir) / run_id / name).is_file():
            return Path(download_dir) / run_id / name
    logged = {a.path for a in client.list_artifacts(run_id, CHECKPOINT_ARTIFACTS)}
    name = next((n for n in names if f"{CHECKPOINT_ARTIFACTS}/{n}" in logged), None)
    if name is None:
        wanted = " or ".join(names)
        where = f"its run directory {tagged} has no {wanted}" if tagged else f"it has no tag {RUN_DIR_TAG}"
        raise ValueError(f"{uri}: no checkpoint found: {where} and it logged no "
                         f"{CHECKPOINT_ARTIFACTS}/{wanted} artifact")
    copy = Path(download_dir) / run_id / name
    copy.parent.mkdir(parents=True, exist_ok=True)
    log.info("%s: %s is missing; downloading its logged %s/%s", uri, tagged or RUN_DIR_TAG,
             CHECKPOINT_ARTIFACTS, name)
    got = Path(client.download_artifacts(run_id, f"{CHECKPOINT_ARTIFACTS}/{name}", str(copy.parent)))
    if got != copy:
        got.replace(copy)
    return copy
