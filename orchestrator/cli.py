"""The ``poselab`` command: pose's sub-commands plus the Ray/MLflow ones (``train`` through Ray Train,
``ablation``, ``table``, ``predict`` with MLflow model sources, ``mlflow-replay``)."""

from __future__ import annotations

import argparse
import json
import sys

from pose.cli import load_experiment
from pose.cli import main as pose_main
from pose.config import to_dict


def mlflow_ui_hint(tracking_uri: str, experiment_id: str | None = None, run_id: str | None = None) -> str:
    """How to open the MLflow UI on ``tracking_uri``: at the experiment (or run) when given, in the UI's
    Model training view (``?workflowType=machine_learning``; MLflow 3 opens in its GenAI view)."""
    from orchestrator.tracking import experiment_ui_url

    if tracking_uri.startswith(("http://", "https://")):
        return f"open {experiment_ui_url(tracking_uri, experiment_id, run_id)}"
    page = experiment_ui_url("http://127.0.0.1:5000", experiment_id, run_id)
    return f"uv run mlflow ui --backend-store-uri {tracking_uri} --host 127.0.0.1  (then open {page})"


def add_ray_arguments(p: argparse.ArgumentParser, workers_default: int = 1) -> None:
    """Options shared by the Ray-backed commands (where and how the training runs are tracked)."""
    g = p.add_argument_group("Ray and MLflow")
    g.add_argument("--workers", type=int, default=workers_default,
                   help=f"Ray Train workers per run (default {workers_default}; 0: in-process local mode, no DDP)")
    g.add_argument("--gpu", action="store_true", help="one GPU per worker (NCCL)")
    g.add_argument("--sync-bn", action="store_true", help="SyncBatchNorm across GPU workers")
    g.add_argument("--address", default=None, help="Ray cluster address (default: start a local Ray instance, "
                                                    "or join the one `ray job submit` runs in)")
    g.add_argument("--tracking-uri", default=None,
                   help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db here)")
    g.add_argument("--experiment", default="poselab", help="MLflow experiment name (default poselab)")
    g.add_argument("--max-failures", type=int, default=2, help="worker-group restarts before a run fails")
    g.add_argument("--storage", default=None, help="Ray Train checkpoint storage: a shared path or an object-store URI "
                                                         "(s3://..., gs://...; default: <output_dir>/ray)")
    g.add_argument("--resource-strategy", default=None, choices=["auto", "fits", "overcommit", "fractional"],
                   help="how Train workers and data loading share CPUs (default auto)")
    g.add_argument("--no-log-model", action="store_true",
                   help="do not log the best network as the run's MLflow model 'model' (logged by default: "
                        "runs:/<run id>/model for the Model Registry and `poselab predict`)")


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train", help="train one top-down experiment with Ray Train, tracked in MLflow",
        description="Train one experiment from a preset name (see `poselab presets`) or a JSON/YAML config "
                    "file through Ray Train (DDP across --workers), logging to MLflow. key=value arguments "
                    "override any config field; nested fields use dots, e.g. train.epochs=2. Rerunning the "
                    "same command resumes an interrupted run (same checkpoints, same MLflow run).")
    p.add_argument("config", help="preset name or config file (.json/.yaml)")
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. train.lr=0.002")
    p.add_argument("--no-resume", action="store_true",
                   help="start over: delete the run's checkpoints and open a new MLflow run")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    p.add_argument("--engine", choices=["ray", "plain"], default="ray",
                   help="ray (default) or plain: single-process PyTorch without Ray or MLflow")
    add_ray_arguments(p)
    # SUPPRESS: the flag adds to `poselab -v train`, it does not reset it
    p.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                   help="show Ray's and MLflow's console output (Ray Train's and the workers' logs) instead of "
                        "the compact status")
    p.set_defaults(func=_run_train)


def run_options_from_args(args: argparse.Namespace, **extra):
    from orchestrator.train import RunOptions

    return RunOptions(num_workers=args.workers, use_gpu=args.gpu, sync_bn=args.sync_bn, address=args.address,
                      tracking_uri=args.tracking_uri, experiment=args.experiment, max_failures=args.max_failures,
                      storage_path=args.storage, resource_strategy=args.resource_strategy,
                      log_model=not args.no_log_model, **extra)


def _run_train(args: argparse.Namespace) -> int:
    cfg = load_experiment(args.config, args.overrides)
    if args.print_config:
        print(json.dumps(to_dict(cfg), indent=2))
        return 0
    if args.engine == "plain":
        from orchestrator.train import resolve_init
        from pose.engine.trainer import Trainer

        cfg, _ = resolve_init(cfg, args.tracking_uri)  # runs:/ sources -> checkpoints (pose/ has no MLflow)
        final = Trainer(cfg, resume=not args.no_resume).fit()
        print(json.dumps({k: round(v, 4) for k, v in final.items()}))
        return 0
    import ray.train
    from mlflow.tracking import MlflowClient

    from orchestrator import console
    from orchestrator.console import LiveStatus, RunProgress
    from orchestrator.run_logger import UndeliveredRecords
    from orchestrator.train import run_training

    console.setup(args.verbose)  # before Ray starts: quiet unless --verbose
    # in place on a quiet terminal; with --workers 0 the training runs in this process and prints its own
    # progress bars there, so the status is plain lines
    status = LiveStatus(cfg.name, live=None if console.is_quiet() and args.workers > 0 else False)
    progress = RunProgress(status, cfg.name, cfg.train.epochs)
    try:
        result = run_training(cfg, run_options_from_args(args, resume=not args.no_resume), progress=progress)
    except ray.train.TrainingFailedError as e:
        print(f"poselab train: the run failed (after --max-failures={args.max_failures} restarts): {e}",
              file=sys.stderr)
        return 1
    except UndeliveredRecords as e:
        print(f"poselab train: training finished, but MLflow did not get all of it: {e}", file=sys.stderr)
        return 1
    print(json.dumps({k: round(v, 4) for k, v in result.metrics.items()}))
    print(f"MLflow run {result.run_id} ({'resumed' if result.resumed else 'new'}) in experiment "
          f"'{args.experiment}'; checkpoints in {result.run_dir}")
    experiment = MlflowClient(result.tracking_uri).get_experiment_by_name(args.experiment)
    hint = mlflow_ui_hint(result.tracking_uri, experiment and experiment.experiment_id, result.run_id)
    print(f"view it: {hint}")
    return 0


def _add_predict(sub: argparse._SubParsersAction) -> None:
    from pose.inference.cli import add_predict_subcommand

    p = add_predict_subcommand(
        sub, loader=_load_predict_model,
        model_help="a checkpoint (best.pth / last.pth of a poselab run), a run directory (its best.pth, "
                   "else last.pth), an MLflow run runs:/<run id> (its logged model 'model', else its "
                   "checkpoint) or an MLflow model models:/<name>/<version> (the Model Registry)")
    p.add_argument("--tracking-uri", default=None,
                   help="MLflow tracking URI of runs:/ and models:/ sources (default: "
                        "$MLFLOW_TRACKING_URI or sqlite:///mlflow.db here)")


def _load_predict_model(args: argparse.Namespace):
    from orchestrator.mlflow_model import load_model_source

    return load_model_source(args.model, args.tracking_uri)


def _add_replay(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "mlflow-replay", help="deliver MLflow records that runs kept while the tracking server was down",
        description="Deliver, in order and each once, the MLflow records that training runs kept in their "
                    "spool (<run dir>/mlflow-spool) because the tracking server was unreachable when they "
                    "ended. A run whose creation was kept is created then (or found by its key: never "
                    "twice). Delivered spools are emptied; running it again is harmless.")
    p.add_argument("paths", nargs="+", metavar="DIR",
                   help="a spool directory, a run directory, or any directory above run directories")
    p.add_argument("--tracking-uri", default=None,
                   help="deliver to this tracking URI (default: the URI each spool recorded; give the "
                        "SQLite store, e.g. sqlite:///ABS/mlflow.db, when the recorded server was a "
                        "loopback one that is gone)")
    p.add_argument("--wait", type=float, default=0.0,
                   help="seconds to wait for an unreachable server before giving up (default 0)")
    p.set_defaults(func=_run_replay)


def _run_replay(args: argparse.Namespace) -> int:
    from orchestrator.run_logger import UndeliveredRecords, replay
    from orchestrator.tracking import resolve_tracking_uri

    uri = resolve_tracking_uri(args.tracking_uri) if args.tracking_uri else None
    try:
        done = replay(args.paths, tracking_uri=uri, wait_s=args.wait)
    except UndeliveredRecords as e:
        print(f"poselab mlflow-replay: error: {e}", file=sys.stderr)
        return 1
    for spool, what in done:
        print(f"{spool}: delivered {what}")
    if not done:
        print("nothing to deliver: no spool with records under " + ", ".join(args.paths))
    return 0


def main(argv: list[str] | None = None) -> int:
    from orchestrator.cluster import add_cluster_subcommand
    from orchestrator.table import add_table_subcommand

    return pose_main(argv, extensions=[_add_train, add_table_subcommand, add_cluster_subcommand,
                                       _add_predict, _add_replay])


if __name__ == "__main__":
    sys.exit(main())
