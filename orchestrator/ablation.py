"""An ablation: a grid of training runs scheduled by Ray Tune, tracked as one MLflow parent run with a
child run per trial, summarised as a paper-style table.

Each Tune trial is a function that runs one training (:func:`orchestrator.train.run_training`, a
``TorchTrainer`` inside the trial: the Train-inside-Tune pattern of Ray Train V2; a Trainer is never
passed to the Tuner). Everything is keyed deterministically, so rerunning the same command after the
driver was killed resumes: ``Tuner.restore`` skips finished trials and restarts unfinished ones,
whose trainings continue from their checkpoints and their MLflow child runs; the parent run is found
again by its key.

An optional warm-start stage (spec key ``warm_start``, :mod:`orchestrator.warm_start`) runs first, in the
same call, as its own Tune grid (``<ablation>__warm_start``) of supervised runs, one per seed, tracked as
child runs of the same parent run with ``poselab.role=stage`` and ``poselab.stage=warm_start``; the grid's
trials then start from its checkpoints (``model.init``). It resumes like the grid.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from orchestrator import console
from orchestrator.ablation_spec import AblationSpec, GridPlan, Trial, expand_grid
from orchestrator.console import LiveStatus
from orchestrator.interrupt import TuneInterruptWatch
from orchestrator.paired import paired_section
from orchestrator.resources import ResourcePlan
from orchestrator.run_logger import replay
from orchestrator.stage_table import collect_stage, stage_summary, stage_tags
from orchestrator.table import (
    build_table,
    collect_trials,
    format_text,
    parent_tags,
    table_numbers,
    to_markdown,
    trial_tags,
)
from orchestrator.table_artifacts import log_table
from orchestrator.tracking import (
    RunRequest,
    end_stopped_runs,
    get_or_create_experiment,
    open_run,
    resolve_tracking_uri,
)
from orchestrator.tracking_outage import OutagePolicy, is_unreachable, wait_for
from orchestrator.train import (
    RunOptions,
    absolute_paths,
    remove_storage_dir,
    run_training,
    safe_name,
    storage_join,
    storage_root,
)
from orchestrator.warm_start import STAGE

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AblationOptions:
    """Where and how the trials run.

    Attributes:
        workers: Ray Train workers per trial (0: the training runs in the trial's own process, Ray
            Train's local mode: no extra actors, the cheapest on a laptop).
        use_gpu: one GPU per worker.
        cpus_per_trial: CPUs a trial holds (default: 1 in local mode, else ``workers`` + 0.1 for
            the trial driver); with the cluster's CPUs this sets ``max_concurrent_trials``.
        max_concurrent_trials: override the derived concurrency.
        torch_threads: intra-op torch threads per trial process (default: the machine's cores divided
            by the trials at once, and by the workers per trial), e.g. 1 on cores shared with other jobs.
        tracking_uri, experiment: MLflow store and experiment.
        storage_path: Tune state and Ray Train checkpoints (default ``<output_dir>/tune``).
        output_dir: where trial run directories go (overrides the spec's config).
        max_failures: per trial.
        restart: ignore a previous interrupted ablation of the same name and start over.
        log_checkpoints: also upload every trial's best/last checkpoints to MLflow (default: they
            stay in the trial's run directory, whose path is the tag ``poselab.run_dir``).
        log_model: log every trial's best network as its run's MLflow model ``model`` (default: on).
        outage: how the driver and the trials ride out an unreachable tracking server (default:
            ``OutagePolicy.from_env()``): trials keep training and spool what they log; the driver
            waits up to ``wait_s`` for the calls it needs answered (the parent run, the table).
    """

    workers: int = 0
    use_gpu: bool = False
    cpus_per_trial: float | None = None
    max_concurrent_trials: int | None = None
    torch_threads: int | None = None
    tracking_uri: str | None = None
    experiment: str = "poselab"
    storage_path: str | None = None
    output_dir: str | None = None
    max_failures: int = 1
    restart: bool = False
    log_checkpoints: bool = False
    log_model: bool = True
    extra_tags: dict[str, str] = field(default_factory=dict)
    outage: OutagePolicy | None = None


class AblationInterrupted(Exception):
    """Ctrl+C (SIGINT) stopped the ablation: its message says what is unfinished (after the table so
    far, when the grid had started); the parent run is KILLED, and the same command resumes it."""


def concurrency(cluster_cpus: float, cpus_per_trial: float, trials: int) -> int:
    """Trials that fit side by side (at least 1, at most ``trials``)."""
    return max(1, min(trials, int(math.floor(cluster_cpus / cpus_per_trial + 1e-9))))


def _trial_fn(config: dict[str, Any], context: dict[str, Any]) -> None:
    """One Tune trial: one training run, tracked as a child of the ablation's MLflow run.

    ``config`` holds only the grid point (saved in Tune's state); ``context`` (tracking URI, parent
    run, resources) comes from the driver that runs now, through ``tune.with_parameters``: a resumed
    ablation must talk to *its* MLflow server, not to the address of the killed driver's one.
    """
    import ray.tune

    from orchestrator.tune_status import FINISHED_BEFORE

    ctx = context
    trial = Trial.from_dict(config["trial"])
    # relative paths against the driver's directory: a grid restored from a Tune state saved before a
    # path became absolute (semi.root) still runs here, in Tune's trial directory
    trial = replace(trial, config=absolute_paths(trial.config, cwd=ctx["cwd"]))
    stage = ctx.get("stage")  # None for the grid's trials, "warm_start" for the warm-start stage's runs
    finished = _finished_run(ctx, trial)
    if finished is not None:  # Tune's state lagged behind a killed driver: report, do not train again
        run_id, final = finished
        print(f"{trial_label(trial.trial_id, stage)}: already finished (MLflow run {run_id}); not rerun",
              flush=True)  # the trial's log; the driver's status says it too
        ray.tune.report({**final, "done": True, "mlflow_run_id": run_id, FINISHED_BEFORE: True})
        return
    plan = ResourcePlan(**ctx["plan"])
    parent = ctx["parent_run_id"]
    tags = (stage_tags(parent, stage, trial.trial_id, trial.axes) if stage
            else trial_tags(parent, trial.trial_id, trial.axes))
    options = RunOptions(**ctx["run_options"], parent_run_id=parent, defer_delivery=True,
                         run_key=child_run_key(parent, trial.trial_id, stage),
                         tags={**tags, **ctx["tags"], "poselab.run_dir": str(trial.config.run_dir)})
    callbacks = []
    if options.num_workers > 0:  # Train reports (every epoch) reach Tune and its scheduler
        from ray.tune.integration.ray_train import TuneReportCallback

        callbacks.append(TuneReportCallback())
    result = run_training(trial.config, options, plan=plan, callbacks=callbacks, in_tune_trial=True)
    ray.tune.report({**{f"final/{k}": v for k, v in result.metrics.items()}, "done": True,
                     "mlflow_run_id": result.run_id})


def child_run_key(parent_run_id: str, trial_id: str, stage: str | None = None) -> str:
    """The MLflow run key of a trial: under its parent *run*, so a resumed ablation (same parent run)
    finds its children again and a restarted one (a new parent run) starts new ones. A stage's run
    (``stage``, e.g. ``warm_start``) is keyed apart from a grid trial with the same id."""
    return f"{parent_run_id}/{stage}/{trial_id}" if stage else f"{parent_run_id}/{trial_id}"


def trial_label(trial_id: str, stage: str | None) -> str:
    """How progress lines name a trial: its id, or ``<stage>/<id>`` for a stage's run."""
    return f"{stage}/{trial_id}" if stage else trial_id


def _finished_run(ctx: dict[str, Any], trial: Trial) -> tuple[str, dict[str, float]] | None:
    """(run id, final metrics) when the trial's MLflow child run already finished, else None (also when
    the tracking server cannot tell now: the training then finds its finished run and does not train
    again, and its MLflow records wait in its spool)."""
    from mlflow.tracking import MlflowClient

    from orchestrator.tracking import find_run

    client = MlflowClient(tracking_uri=ctx["run_options"]["tracking_uri"])
    key = child_run_key(ctx["parent_run_id"], trial.trial_id, ctx.get("stage"))
    try:
        experiment = client.get_experiment_by_name(ctx["run_options"]["experiment"])
        run_id = find_run(client, experiment.experiment_id, key) if experiment else None
        run = client.get_run(run_id) if run_id is not None else None
    except Exception as e:
        if not is_unreachable(e):
            raise
        log.warning("trial %s: the tracking server is unreachable; training (resuming) without checking "
                    "for a finished MLflow run", trial.trial_id)
        return None
    if run is None or run_id is None:
        return None
    final = {k: v for k, v in run.data.metrics.items() if k.startswith("final/")}
    return (run_id, final) if run.info.status == "FINISHED" and final else None


def run_ablation(spec: AblationSpec, options: AblationOptions = AblationOptions()) -> str:
    """Run (or resume) the grid of ``spec``, after its warm-start stage when it has one; log and return
    the table text.

    Ray must be initialised by the caller (``ray.init`` locally, or the cluster the job runs on).
    """
    import ray
    import ray.tune
    from mlflow.tracking import MlflowClient

    plan: GridPlan = expand_grid(spec)
    if plan.skipped:
        print(plan.skipped_summary(), flush=True)
    out_dir = options.output_dir or spec.base.output_dir

    def placed(trial: Trial) -> Trial:
        return replace(trial, config=absolute_paths(replace(trial.config, output_dir=out_dir)))

    trials = [placed(t) for t in plan.trials]
    warm = spec.warm_start
    stage_trials = [placed(t) for t in warm.stage_trials(spec.name)] if warm is not None else []
    if warm is not None:
        trials = list(warm.attach(trials, stage_trials))
        note = warm.label_note(trials)
        if note:
            print(note, flush=True)
    storage = storage_root(options.storage_path or Path(out_dir) / "tune")
    tune_name = safe_name(spec.name)
    location = storage_join(storage, tune_name)
    stage_name = safe_name(f"{spec.name}/{STAGE}")
    stage_location = storage_join(storage, stage_name)

    tracking_uri = resolve_tracking_uri(options.tracking_uri)
    policy = options.outage or OutagePolicy.from_env()
    policy.bound_http_client()
    client = MlflowClient(tracking_uri=tracking_uri)

    def answered(call, what: str):  # the driver's calls need the server: wait for it (up to policy.wait_s)
        return wait_for(call, tracking_uri, policy, what)

    def deliver_kept(runs: list[Trial]) -> None:
        """What trials logged during an outage (their spools) reaches MLflow before the table is read;
        waits up to policy.wait_s, else UndeliveredRecords (a rerun of the command delivers them)."""
        run_dirs = [t.config.run_dir for t in runs if t.config.run_dir.is_dir()]
        if run_dirs:
            for spool, what in replay(run_dirs, tracking_uri, wait_s=policy.wait_s, policy=policy):
                print(f"delivered to MLflow what {spool.parent.name} kept during an outage: {what}",
                      flush=True)

    experiment_id = answered(lambda: get_or_create_experiment(client, options.experiment, tracking_uri),
                             "creating the experiment")
    parent_key = f"ablation:{location}"
    locations = [location, *([stage_location] if warm is not None else [])]
    restoring = any(ray.tune.Tuner.can_restore(loc) for loc in locations) and not options.restart
    if options.restart:  # start over: the Tune state and the trials' run directories go
        run_dirs = [t.config.run_dir for t in [*stage_trials, *trials] if t.config.run_dir.is_dir()]
        if run_dirs:  # what the old trials could not log reaches MLflow first (or this is an error)
            replay(run_dirs, tracking_uri, wait_s=policy.wait_s, policy=policy)
        for path in [*locations, *(str(t.config.run_dir) for t in [*stage_trials, *trials])]:
            remove_storage_dir(path)
    params: dict[str, Any] = {"spec": spec.source, "trials": len(trials), "axes": spec.axis_names}
    if warm is not None:
        params[STAGE] = warm.describe()
    request = RunRequest(options.experiment, parent_key, spec.name, params,
                         {**parent_tags(spec.name, spec.axis_names), **options.extra_tags}, reuse=restoring)
    parent_id, resumed = answered(lambda: open_run(client, tracking_uri, request), "opening the parent run")
    stage_text = (f" after a warm-start stage of {len(stage_trials)} supervised runs (seeds "
                  f"{', '.join(map(str, warm.seeds))})" if warm is not None else "")
    print(f"ablation {spec.name}: {len(trials)} trials{stage_text} ({'resuming' if restoring else 'new'}; "
          f"MLflow parent run {parent_id} in experiment '{options.experiment}')", flush=True)

    cluster_cpus = ray.cluster_resources().get("CPU", 1.0)
    cpus_per_trial = options.cpus_per_trial or (1.0 if options.workers == 0 else options.workers + 0.1)
    limit = options.max_concurrent_trials or concurrency(cluster_cpus, cpus_per_trial,
                                                         max(len(trials), len(stage_trials)))
    cores = os.cpu_count() or 1
    threads = options.torch_threads or (max(1, cores // limit) if options.workers == 0
                                        else max(1, cores // max(limit * options.workers, 1)))
    trial_plan = ResourcePlan("fits", None, 1.0, 0.0, threads,
                              f"{limit} concurrent trials x {cpus_per_trial:g} CPUs on {cluster_cpus:g}")
    print(f"running up to {limit} trials at once ({trial_plan.reason}; {threads} torch threads each)", flush=True)

    run_options = dict(num_workers=options.workers, use_gpu=options.use_gpu, tracking_uri=tracking_uri,
                       experiment=options.experiment, max_failures=options.max_failures,
                       stop_on_collapse=spec.stop_collapsed, log_checkpoints=options.log_checkpoints,
                       log_model=options.log_model, outage=policy)
    context = {"parent_run_id": parent_id, "plan": asdict(trial_plan), "run_options": run_options,
               "tags": dict(options.extra_tags), "cwd": os.getcwd()}
    # the live status: every run of the stage and of the grid, in place on a quiet console's terminal
    status = LiveStatus(spec.name, live=None if console.is_quiet() else False)
    for t in stage_trials:
        status.add(trial_label(t.trial_id, STAGE), t.config.train.epochs)
    for t in trials:
        status.add(t.trial_id, t.config.train.epochs)
    status.set_logs(console.ray_logs_dir())
    grid = _Grid(options, cpus_per_trial, limit, storage, context, status)
    if warm is not None:
        print(f"warm-start stage: {len(stage_trials)} supervised runs in {Path(out_dir) / spec.name / STAGE}",
              flush=True)
    def unfinished(runs: list[Trial], stage: str | None) -> int:
        """How many of ``runs`` have no finished MLflow child run (the record of an interrupted grid)."""
        ctx = {**context, "stage": stage}
        return sum(answered(lambda t=t: _finished_run(ctx, t), "reading the trials' runs") is None for t in runs)

    def stopped(runs: list[Trial], stage: str | None, where: str, since: float) -> AblationInterrupted:
        """The parent run and the runs of ``runs`` that the Ctrl+C at ``since`` (``time.time()``) stopped
        end KILLED (a resumed ablation opens them again); the error says what is unfinished."""
        keys = [child_run_key(parent_id, t.trial_id, stage) for t in runs]
        answered(lambda: end_stopped_runs(client, experiment_id, keys, int(since * 1000)),
                 "ending the stopped runs")
        answered(lambda: client.set_terminated(parent_id, status="KILLED"), "ending the parent run")
        return AblationInterrupted(f"{spec.name}: interrupted (Ctrl+C) {where}: {unfinished(runs, stage)} of "
                                   f"{len(runs)} runs unfinished. Rerun the same command to resume them.\n")

    with status:
        if warm is not None:
            stage_results, interrupted_at = grid.fit(stage_trials, stage_name, stage_location, STAGE,
                                                     scheduler=None)
            deliver_kept(stage_trials)
            if interrupted_at is not None:
                raise stopped(stage_trials, STAGE, "during the warm-start stage; the grid did not start",
                              interrupted_at)
            if stage_results.num_errors:
                answered(lambda: client.set_terminated(parent_id, status="FAILED"), "ending the parent run")
                return (f"{spec.name}: {stage_results.num_errors} of {len(stage_trials)} warm-start runs "
                        f"failed (see {stage_location}); the grid did not start. Rerun the same command to "
                        "retry them.\n")
        scheduler = None
        if spec.scheduler == "asha":
            from ray.tune.schedulers import ASHAScheduler

            scheduler = ASHAScheduler(time_attr="epoch", metric=f"val/best_{spec.base.selection_metric}", mode="max",
                                      max_t=max(t.config.train.epochs for t in trials), grace_period=1)
        results, interrupted_at = grid.fit(trials, tune_name, location, None, scheduler)
        deliver_kept(trials)
    if interrupted_at is not None:
        error = stopped(trials, None, "during the grid", interrupted_at)
        table = answered(lambda: _tabulate(client, spec, options, plan, trials, stage_trials),
                         "collecting and logging the table")
        raise AblationInterrupted(f"{table}\n{error}")
    errors = results.num_errors
    status = "FINISHED" if errors == 0 else "FAILED"
    answered(lambda: client.set_terminated(parent_id, status=status), "ending the parent run")
    text = answered(lambda: _tabulate(client, spec, options, plan, trials, stage_trials),
                    "collecting and logging the table")
    if errors:
        text += f"\n{errors} trial(s) failed: see {location}\n"
    return text


def _tabulate(client: Any, spec: AblationSpec, options: AblationOptions, plan: GridPlan, trials: list[Trial],
              stage_trials: list[Trial]) -> str:
    """The table of the ablation's newest parent run from MLflow, logged to that run; returns its text.
    Idempotent (every artifact is replaced), so a call interrupted by an outage may be repeated."""
    warm = spec.warm_start
    parent, df = collect_trials(client, options.experiment, spec.name)
    numbers = table_numbers(df, parent.axes, spec.metric)
    table = build_table(df, parent.axes, spec.metric)
    title = f"{spec.name}: {spec.metric} (experiment {options.experiment}, parent run {parent.run_id})"
    line = stage_summary(collect_stage(client, parent, STAGE), spec.metric, STAGE) if warm is not None else ""
    summary = f"\n{line}\n" if line else ""  # the stage's runs are not cells of the table: a line under it
    summary += paired_section(df, parent.axes, spec.metric)  # e.g. PoseDual - Supervised, seed by seed
    log_table(client, parent.run_id, numbers, table, to_markdown(table, title) + summary)
    grid_record: dict[str, Any] = {"spec": spec.source, "trials": [t.trial_id for t in trials],
                                   "skipped": [s.label for s in plan.skipped]}
    if warm is not None:
        grid_record[STAGE] = {**warm.describe(), "trials": [t.trial_id for t in stage_trials],
                              "run_dirs": [str(t.config.run_dir) for t in stage_trials]}
    client.log_dict(parent.run_id, grid_record, "results/grid.json")
    return format_text(table, title) + summary


def restore_tuner(location: str, trainable: Any):
    """``Tuner.restore`` of an interrupted grid, or None when its saved Tune state cannot be read back
    (it was pickled by an older poselab whose classes or functions have since moved or been renamed).

    Starting such a grid afresh loses nothing: a trial whose MLflow child run finished reports that run
    and is not trained again (:func:`_trial_fn`), and an unfinished one resumes from the last checkpoint
    in its run dir. The reason is printed once.
    """
    import pickle

    import ray.tune

    try:
        return ray.tune.Tuner.restore(location, trainable, resume_unfinished=True, resume_errored=True)
    except (AttributeError, ImportError, pickle.UnpicklingError, TypeError, EOFError) as error:
        print(f"the Tune state in {location} cannot be restored ({type(error).__name__}: {error}; it was "
              "saved by an older poselab); running the grid again: trials that finished are taken from "
              "MLflow, not retrained", flush=True)
        return None


class _Grid:
    """Runs (or restores) one Tune grid of trials: the ablation's, or its warm-start stage's."""

    def __init__(self, options: AblationOptions, cpus_per_trial: float, limit: int, storage: str,
                 context: dict[str, Any], status: LiveStatus) -> None:
        self.options, self.cpus_per_trial, self.limit, self.storage = options, cpus_per_trial, limit, storage
        self.context, self.status = context, status

    def fit(self, trials: list[Trial], name: str, location: str, stage: str | None, scheduler: Any):
        """``Tuner(...).fit()`` over ``trials`` in ``location`` (``Tuner.restore`` when it holds an
        interrupted grid and the ablation is not restarted); returns Tune's ``ResultGrid`` and, when
        Ctrl+C (SIGINT) stopped the fit (Tune then returns normally: :mod:`orchestrator.interrupt`), the
        wall-clock time of the Ctrl+C, else None."""
        import ray.tune

        from orchestrator.tune_status import TrialStatus, replace_callbacks

        options = self.options
        callbacks = [TrialStatus(self.status, len(trials), stage)]
        run_options = {**self.context["run_options"], "storage_path": storage_join(location, "train")}
        context = {**self.context, "stage": stage, "run_options": run_options}
        trainable = ray.tune.with_resources(ray.tune.with_parameters(_trial_fn, context=context),
                                            {"CPU": self.cpus_per_trial if options.workers == 0 else 0.1})
        tuner = None
        if ray.tune.Tuner.can_restore(location) and not options.restart:
            tuner = restore_tuner(location, trainable)
        if tuner is not None:
            replace_callbacks(tuner, callbacks)  # the pickled ones hold no status
        else:
            tuner = ray.tune.Tuner(
                trainable,
                param_space={"trial": ray.tune.grid_search([t.to_dict() for t in trials])},
                tune_config=ray.tune.TuneConfig(
                    max_concurrent_trials=min(self.limit, len(trials)), scheduler=scheduler,
                    reuse_actors=True,
                    trial_name_creator=lambda t: t.config["trial"]["trial_id"],
                    trial_dirname_creator=lambda t: safe_name(t.config["trial"]["trial_id"])),
                run_config=ray.tune.RunConfig(
                    name=name, storage_path=self.storage, verbose=0,
                    callbacks=callbacks,
                    checkpoint_config=ray.tune.CheckpointConfig(num_to_keep=2),
                    failure_config=ray.tune.FailureConfig(max_failures=options.max_failures)),
            )
        with TuneInterruptWatch() as watch:
            results = tuner.fit()
        return results, watch.interrupted_at
