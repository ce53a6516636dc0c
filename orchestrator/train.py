"""Driver side of one training run: Ray, the MLflow run, and ``TorchTrainer.fit``.

:func:`run_training` is what ``poselab train`` and every ablation trial call. It

1. makes the config's paths absolute (Ray workers need not share the driver's working directory) and
   resolves ``runs:/<run id>`` warm-start sources (``model.init``, ``model.init_net2``) to checkpoint
   files (:func:`resolve_init`; the run's MLflow tags ``poselab.init*`` record them);
2. opens (or resumes) the run's MLflow run, keyed by the run directory, so a rerun continues the same
   MLflow run and never creates a duplicate (a diagnosis-only config is tagged ``poselab.diagnosis``);
   while the tracking server is unreachable everything the run logs, its opening included, waits in
   ``<run dir>/mlflow-spool`` (:mod:`orchestrator.run_logger`) and training goes on;
3. starts or joins Ray with a CPU plan that keeps Train workers and data loading from deadlocking on
   small machines (:func:`orchestrator.resources.plan_resources`);
4. runs :func:`orchestrator.worker.train_loop_per_worker` in a ``TorchTrainer`` whose
   ``RunConfig(storage_path, name)`` is deterministic, so Ray Train restores the latest checkpoint on a
   rerun and replaces failed workers (``FailureConfig``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator import console
from orchestrator.console import RunProgress
from orchestrator.resources import ResourcePlan, plan_resources
from orchestrator.run_logger import REPLAY_COMMAND, RunLogger, replay
from orchestrator.table import TAG_DIAGNOSIS
from orchestrator.tracking import (
    RUN_DIR_TAG,
    RUNS_URI_PREFIX,
    RunRequest,
    resolve_tracking_uri,
    run_checkpoint,
)
from orchestrator.tracking_outage import OutagePolicy, wait_for
from orchestrator.tracking_spool import SPOOL_DIR
from orchestrator.worker import WorkerSettings, loop_config, train_loop_per_worker
from pose.config import to_dict
from pose.tasks import AnyExperimentConfig

log = logging.getLogger(__name__)

DEFAULT_EXPERIMENT = "poselab"
INIT_TAGS = {"init": "poselab.init", "init_net2": "poselab.init_net2"}
"""MLflow tags of a warm-started run: the checkpoint file each network started from."""
INIT_DOWNLOADS = "init"
"""Subdirectory of a run directory with ``runs:/`` checkpoints downloaded from MLflow and
``sources.json`` (each ``runs:/`` source -> the checkpoint file it was resolved to)."""


@dataclass(frozen=True)
class RunOptions:
    """How and where one experiment runs (not part of the experiment config).

    Attributes:
        num_workers: Ray Train workers; 0 runs the loop in this process (Ray Train's local mode; no
            DDP, resumable from ``<run dir>/last.pth``).
        use_gpu: one GPU per worker (NCCL backend).
        sync_bn: SyncBatchNorm across workers (GPU only).
        address: Ray cluster address (``auto``, ``ray://...``); None starts a local instance unless one
            is already running in this process.
        tracking_uri: MLflow tracking URI (default: ``$MLFLOW_TRACKING_URI`` or ``sqlite:///mlflow.db``).
        experiment: MLflow experiment name.
        max_failures: worker-group restarts Ray Train may do before the run fails.
        storage_path: Ray Train storage (checkpoints); default ``<output_dir>/ray``.
        resource_strategy: "auto", "fits", "overcommit" or "fractional" (see ``plan_resources``).
        resume: continue an interrupted run (False: delete its checkpoints and start a new MLflow run).
        log_checkpoints: log best/last checkpoints as MLflow artifacts.
        log_model: log the best network as the run's MLflow model ``model`` at the end (``mlflow.pytorch``
            flavour with the config; ``runs:/<run id>/model`` for the Model Registry and ``poselab predict``).
        stop_on_collapse: end a semi-supervised run once the collapse monitor flags it.
        tags: extra MLflow tags of the run.
        parent_run_id: MLflow parent run (ablation trials).
        run_key: identity of the run in MLflow (default: its absolute run directory).
        fault_step, fault_marker: fault injection for tests (see ``WorkerSettings``).
        outage: how the run rides out an unreachable tracking server (default:
            ``OutagePolicy.from_env()``; docs/orchestration.md, "Tracking server outages").
        defer_delivery: at the end, leave what an outage kept in the run's spool (with a warning)
            instead of waiting for the server: ablation trials, whose driver delivers every trial's
            spool when the grid ends.
    """

    num_workers: int = 1
    use_gpu: bool = False
    sync_bn: bool = False
    address: str | None = None
    tracking_uri: str | None = None
    experiment: str = DEFAULT_EXPERIMENT
    max_failures: int = 2
    storage_path: str | None = None
    resource_strategy: str | None = None
    resume: bool = True
    log_checkpoints: bool = True
    log_model: bool = True
    stop_on_collapse: bool = False
    tags: dict[str, str] = field(default_factory=dict)
    parent_run_id: str | None = None
    run_key: str | None = None
    fault_step: int = 0
    fault_marker: str = ""
    outage: OutagePolicy | None = None
    defer_delivery: bool = False

    def __post_init__(self) -> None:
        if self.num_workers < 0 or self.max_failures < -1:
            raise ValueError("num_workers must be >= 0 and max_failures >= -1")
        if self.sync_bn and not self.use_gpu:
            raise ValueError("sync_bn needs use_gpu (torch's SyncBatchNorm runs on CUDA only)")


@dataclass(frozen=True)
class TrainResult:
    """What a finished run produced: final metrics of the primary network, where things are."""

    metrics: dict[str, float]
    run_id: str
    tracking_uri: str
    run_dir: Path
    resumed: bool


def absolute_paths(cfg: AnyExperimentConfig, cwd: str | Path | None = None) -> AnyExperimentConfig:
    """``data.root``, ``data.shards``, ``semi.root``, ``output_dir``, ``model.pretrained`` and
    ``model.init`` / ``model.init_net2`` (unless ``runs:/`` URIs) made absolute against ``cwd``: a Tune
    trial or a Ray Train worker runs in another directory."""
    base = Path(cwd or os.getcwd())

    def absolute(p: str) -> str:
        if not p or Path(p).is_absolute() or p.startswith(RUNS_URI_PREFIX):
            return p
        return str((base / p).resolve())

    model = dataclasses.replace(cfg.model, pretrained=absolute(cfg.model.pretrained))
    if hasattr(cfg.model, "init"):  # top-down models (bottom-up ones have no warm start)
        model = dataclasses.replace(model, init=absolute(cfg.model.init),
                                    init_net2=absolute(cfg.model.init_net2))
    data = dataclasses.replace(cfg.data, root=absolute(cfg.data.root))
    if hasattr(cfg.data, "shards"):
        data = dataclasses.replace(data, shards=absolute(cfg.data.shards))
    extra = {}
    if getattr(cfg, "semi", None) is not None and cfg.semi.root:  # the unlabeled set's own root (AIC)
        extra["semi"] = dataclasses.replace(cfg.semi, root=absolute(cfg.semi.root))
    return dataclasses.replace(cfg, output_dir=absolute(cfg.output_dir), data=data, model=model, **extra)


def resolve_init(cfg: AnyExperimentConfig, tracking_uri: str | None = None, policy: OutagePolicy | None = None
                 ) -> tuple[AnyExperimentConfig, dict[str, str]]:
    """``cfg`` with ``runs:/<run id>`` sources of ``model.init`` / ``model.init_net2`` replaced by the
    run's checkpoint file (:func:`orchestrator.tracking.run_checkpoint`; a logged artifact is
    downloaded under ``<run dir>/init/``), and the MLflow tags that record the sources: ``poselab.init``
    / ``poselab.init_net2`` = the checkpoint file, ``poselab.init_source`` / ``poselab.init_net2_source``
    = the ``runs:/`` URI it came from. No MLflow access unless a source is a ``runs:/`` URI.

    Each resolution is recorded in ``<run dir>/init/sources.json``; a rerun of the same run takes the
    recorded file while it exists or while the run has a ``last.pth`` to resume from (so a resumed run
    keeps its config even when the source run's directory is gone: it is not warm-started again).

    Raises:
        ValueError: a ``runs:/`` source without a checkpoint (see ``run_checkpoint``).
    """
    model = cfg.model
    if getattr(model, "init", None) is None:
        return cfg, {}
    changes: dict[str, str] = {}
    tags: dict[str, str] = {}
    record = cfg.run_dir / INIT_DOWNLOADS / "sources.json"
    known: dict[str, str] = json.loads(record.read_text()) if record.is_file() else {}
    resuming = (cfg.run_dir / "last.pth").is_file()
    for field_name, tag in INIT_TAGS.items():
        source = getattr(model, field_name)
        if source is None:
            continue
        if source.startswith(RUNS_URI_PREFIX):
            path = known.get(source)
            if path is None or not (resuming or Path(path).is_file()):
                from mlflow.tracking import MlflowClient

                uri = resolve_tracking_uri(tracking_uri)
                client = MlflowClient(tracking_uri=uri)
                downloads = cfg.run_dir / INIT_DOWNLOADS
                try:  # waits out a tracking-server outage (up to the policy's wait_s)
                    path = str(wait_for(lambda: run_checkpoint(client, source, downloads), uri,
                                        policy or OutagePolicy.from_env(),
                                        f"resolving model.{field_name}={source}"))
                except ValueError as e:
                    raise ValueError(f"model.{field_name}: {e}") from None
                known[source] = path
            log.info("model.%s: %s -> %s", field_name, source, path)
            changes[field_name] = path
            tags[f"{tag}_source"] = source
        tags[tag] = changes.get(field_name, source)
    if changes:
        record.parent.mkdir(parents=True, exist_ok=True)
        record.write_text(json.dumps(known, indent=2))
        cfg = dataclasses.replace(cfg, model=dataclasses.replace(model, **changes))
    return cfg, tags


def storage_root(path: str | Path) -> str:
    """A storage location for Ray Train / Tune: an object-store URI (``s3://bucket/prefix``,
    ``gs://...``) as given, a local path made absolute (every node must see it: a shared filesystem)."""
    text = str(path)
    return text if "://" in text else str(Path(text).resolve())


def storage_join(root: str, *parts: str) -> str:
    """``root/part/...`` for a URI or a local path."""
    return "/".join([root.rstrip("/"), *parts]) if "://" in root else str(Path(root, *parts))


def remove_storage_dir(location: str) -> None:
    """Delete a run's storage directory (local or on an object store) if it exists."""
    if "://" not in location:
        if Path(location).exists():
            shutil.rmtree(location)
        return
    import pyarrow.fs

    fs, path = pyarrow.fs.FileSystem.from_uri(location)
    if fs.get_file_info(path).type != pyarrow.fs.FileType.NotFound:
        fs.delete_dir(path)


def safe_name(name: str) -> str:
    """A Ray Train run name from an experiment name (``ablation/trial`` -> ``ablation__trial``)."""
    return "".join(c if c.isalnum() or c in "-_.=," else "_" for c in name.replace("/", "__"))


def _config_changed(run_dir: Path, cfg: AnyExperimentConfig) -> list[str]:
    """Top-level config sections that differ from the interrupted run's ``config.json`` ([] if none)."""
    saved = run_dir / "config.json"
    if not saved.exists():
        return []
    old = json.loads(saved.read_text())
    new = to_dict(cfg)
    return sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))


def config_tags(cfg: AnyExperimentConfig) -> dict[str, str]:
    """MLflow tags every run of ``cfg`` gets from the config itself: ``poselab.diagnosis`` for a
    diagnosis-only run (``oracle_teacher``: ``method.teacher=oracle``), read by ``poselab table``."""
    diagnosis = getattr(cfg, "diagnosis", "")
    return {TAG_DIAGNOSIS: diagnosis} if diagnosis else {}


def ensure_ray(options: RunOptions, num_workers: int, driver_cpus: float = 0.0) -> ResourcePlan:
    """Start (or join) Ray and return the CPU plan for ``num_workers`` workers."""
    import ray

    if ray.is_initialized():
        total = ray.cluster_resources().get("CPU", 1.0)
        return plan_resources(total, num_workers, driver_cpus=driver_cpus, starting_local=False,
                              strategy=options.resource_strategy,  # type: ignore[arg-type]
                              physical_cpus=os.cpu_count())
    local = options.address is None
    cores = os.cpu_count() or 1
    if local:
        plan = plan_resources(cores, num_workers, driver_cpus=driver_cpus, starting_local=True,
                              strategy=options.resource_strategy)  # type: ignore[arg-type]
        ray.init(**plan.init_kwargs(), include_dashboard=False, **console.ray_init_kwargs())
    else:
        ray.init(address=options.address, **console.ray_init_kwargs())
        plan = plan_resources(ray.cluster_resources().get("CPU", 1.0), num_workers, driver_cpus=driver_cpus,
                              starting_local=False, strategy=options.resource_strategy,  # type: ignore[arg-type]
                              physical_cpus=cores)
    console.ray_started()
    log.info("Ray resources: %s", plan.reason)
    return plan


def run_training(cfg: AnyExperimentConfig, options: RunOptions = RunOptions(), plan: ResourcePlan | None = None,
                 callbacks: Sequence[Any] = (), in_tune_trial: bool = False,
                 progress: RunProgress | None = None) -> TrainResult:
    """Train ``cfg`` with Ray Train and track it in MLflow; returns the final metrics.

    ``plan`` (default: :func:`ensure_ray`'s) sizes the workers; ``callbacks`` are Ray Train
    ``UserCallback`` s (e.g. Tune's ``TuneReportCallback`` inside an ablation trial). With
    ``in_tune_trial`` and ``num_workers=0`` the loop runs in the calling Tune trial's process and
    reports to Tune (Ray Train's local mode is not usable inside a Tune function). ``progress`` (``poselab
    train``'s live status) follows the run from its MLflow run while it trains.

    Raises:
        ValueError: the config differs from the interrupted run in the same directory (resume
            would mix two experiments): pass ``resume=False`` or choose another ``name``.
        ray.train.TrainingFailedError: the run failed more than ``max_failures`` times (its MLflow run
            is marked FAILED).
        orchestrator.run_logger.UndeliveredRecords: training finished but the tracking server stayed
            unreachable longer than ``outage.wait_s`` (unless ``defer_delivery``): the message says what
            was not logged, where it is kept (``<run dir>/mlflow-spool``) and how to deliver it
            (``poselab mlflow-replay``). ``TrainResult.run_id`` is "" when a deferred run's MLflow run
            is not created yet.
    """
    cfg = absolute_paths(cfg)
    run_dir = cfg.run_dir
    storage = storage_root(options.storage_path or Path(cfg.output_dir) / "ray")
    ray_name = safe_name(cfg.name)
    tracking_uri = resolve_tracking_uri(options.tracking_uri)
    policy = options.outage or OutagePolicy.from_env()
    if not options.resume:
        if run_dir.is_dir():  # the old run's records that never reached MLflow go first (or it is an error)
            replay([run_dir], tracking_uri, wait_s=policy.wait_s, policy=policy)
        for d in (str(run_dir), storage_join(storage, ray_name)):
            log.info("--no-resume: removing %s (if present)", d)
            remove_storage_dir(d)
    cfg, init_tags = resolve_init(cfg, tracking_uri, policy)
    changed = _config_changed(run_dir, cfg)
    if changed:
        raise ValueError(f"{run_dir} holds an interrupted run with a different config (sections: "
                         f"{', '.join(changed)}): rerun with --no-resume to start over, or change `name`")

    spool_dir = run_dir / SPOOL_DIR
    logger = RunLogger(tracking_uri, spool_dir, policy=policy, label=cfg.name)
    tags = {RUN_DIR_TAG: str(run_dir), **config_tags(cfg), **init_tags, **options.tags}
    request = RunRequest(options.experiment, options.run_key or str(run_dir), cfg.name, to_dict(cfg), tags,
                         options.parent_run_id, reuse=options.resume)
    run_id = logger.open(request)  # "" while the server is unreachable: the opening waits in the spool

    plan = plan or ensure_ray(options, options.num_workers)
    settings = WorkerSettings(tracking_uri=tracking_uri, run_id=run_id, spool_dir=str(spool_dir),
                              outage=dataclasses.asdict(policy), use_gpu=options.use_gpu,
                              torch_threads=plan.torch_threads, sync_bn=options.sync_bn,
                              log_checkpoints=options.log_checkpoints, log_model=options.log_model,
                              resume=options.resume,
                              stop_on_collapse=options.stop_on_collapse,
                              fault_step=options.fault_step, fault_marker=options.fault_marker)
    if in_tune_trial and options.num_workers == 0:
        from orchestrator.worker import TuneSession

        def execute() -> None:
            train_loop_per_worker(loop_config(cfg, settings), session=TuneSession())
    else:
        trainer = _torch_trainer(cfg, settings, options, plan, storage, ray_name, callbacks)

        def execute() -> None:
            trainer.fit()
    if progress is not None:
        progress.start(tracking_uri, run_id)
    try:
        execute()
    except BaseException:
        logger.reload()  # the workers' records come first
        try:
            logger.finish("FAILED")
            if not logger.flush():
                log.warning("run %s failed while MLflow is unreachable: %s wait in %s (`%s %s` "
                            "delivers them)", cfg.name, logger.spool.summary(), spool_dir, REPLAY_COMMAND,
                            spool_dir)
        except Exception as e:  # the training's error is the one to raise
            log.warning("run %s: could not record its FAILED status in MLflow: %s", cfg.name, e)
        if progress is not None:
            progress.stop(None)
        raise
    logger.reload()
    logger.finish("FINISHED")
    if not options.defer_delivery:
        logger.close()  # waits for an unreachable server up to policy.wait_s, else UndeliveredRecords
    elif not logger.flush():
        log.warning("run %s finished while MLflow is unreachable: %s wait in %s for the ablation's driver "
                    "to deliver them", cfg.name, logger.spool.summary(), spool_dir)
    metrics = json.loads((run_dir / "final_metrics.json").read_text())
    if progress is not None:
        progress.stop(metrics)
    return TrainResult(metrics=metrics, run_id=logger.run_id, tracking_uri=tracking_uri, run_dir=run_dir,
                       resumed=logger.resumed)


def _torch_trainer(cfg: AnyExperimentConfig, settings: WorkerSettings, options: RunOptions, plan: ResourcePlan,
                   storage: str, ray_name: str, callbacks: Sequence[Any]):
    """The ``TorchTrainer``: deterministic ``(storage_path, name)`` so a rerun restores its checkpoint."""
    import ray.train
    from ray.train.torch import TorchConfig, TorchTrainer

    scaling: dict[str, Any] = {"num_workers": options.num_workers, "use_gpu": options.use_gpu}
    if options.num_workers > 0:
        resources = dict(plan.resources_per_worker)
        if options.use_gpu:
            resources["GPU"] = 1
        scaling["resources_per_worker"] = resources
    return TorchTrainer(
        train_loop_per_worker,
        train_loop_config=loop_config(cfg, settings),
        torch_config=TorchConfig(backend="nccl" if options.use_gpu else "gloo"),
        scaling_config=ray.train.ScalingConfig(**scaling),
        run_config=ray.train.RunConfig(
            name=ray_name, storage_path=storage,
            failure_config=ray.train.FailureConfig(max_failures=options.max_failures),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=2), callbacks=list(callbacks)),
    )
