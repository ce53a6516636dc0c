"""Run an ablation (a YAML spec: base preset + axes) with Ray Tune; print the paper-style table.

Locally (starts Ray on this machine, MLflow in ./mlflow.db)::

    uv run --locked python pipelines/ablation.py                       # the default spec below

On a cluster (joins the job's Ray cluster; log to a tracking server every node reaches)::

    ray job submit --address http://HEAD:8265 --working-dir . -- \\
        python pipelines/ablation.py pipelines/specs/synth-quick.yaml --tracking-uri http://HEAD:5000

Rerunning the same command after an interruption resumes the ablation (finished trials are kept,
unfinished ones continue from their checkpoints, the MLflow runs are reused).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # `python pipelines/ablation.py` from a checkout (e.g. a Ray job's working dir)
    sys.path.insert(0, str(REPO))

from orchestrator import console  # noqa: E402
from orchestrator.ablation import AblationInterrupted, AblationOptions, run_ablation  # noqa: E402
from orchestrator.ablation_spec import AblationSpec  # noqa: E402
from orchestrator.cli import mlflow_ui_hint  # noqa: E402
from orchestrator.run_logger import UndeliveredRecords  # noqa: E402
from orchestrator.tracking import resolve_tracking_uri  # noqa: E402
from orchestrator.tracking_outage import TrackingUnavailable  # noqa: E402

if TYPE_CHECKING:
    from pose.synth import SynthConfig

DEFAULT_SPEC = REPO / "pipelines" / "specs" / "synth-quick.yaml"
log = logging.getLogger("ablation")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="pipelines/ablation.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    p.add_argument("spec", nargs="?", default=str(DEFAULT_SPEC),
                   help="ablation spec (YAML); default: %(default)s")
    p.add_argument("--workers", type=int, default=0,
                   help="Ray Train workers per trial (default 0: each trial trains in its own process)")
    p.add_argument("--gpu", action="store_true", help="one GPU per Train worker")
    p.add_argument("--max-concurrent", type=int, default=None,
                   help="trials at once (default: derived from the cluster's CPUs)")
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="torch threads per trial process (default: the cores divided by the trials at once)")
    p.add_argument("--tracking-uri", default=None,
                   help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db here)")
    p.add_argument("--experiment", default="poselab-ablations", help="MLflow experiment (default %(default)s)")
    p.add_argument("--output-dir", default=None, help="trial run directories (default: the spec's output_dir)")
    p.add_argument("--storage", default=None, help="Tune/Train storage: a shared path or an object-store URI such as "
                        "s3://BUCKET/poselab/tune (default: <output dir>/tune)")
    p.add_argument("--address", default=None,
                   help="Ray address (default: $RAY_ADDRESS, as set inside `ray job submit`; else a local Ray)")
    p.add_argument("--restart", action="store_true", help="start over instead of resuming an interrupted run")
    p.add_argument("--no-log-model", action="store_true",
                   help="do not log each trial's best network as its run's MLflow model 'model' (logged by "
                        "default)")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="show Ray's and MLflow's console output (Tune's tables, every trial process's output, "
                        "Ray Train's checkpoint lines) and one line per trial event, instead of the compact status")
    p.add_argument("--synth-images", type=int, default=600,
                   help="when the spec's data root is missing and is a SynthPose directory (a name containing "
                        "'synthpose') and the spec has no 'synth' settings, generate it first with this many train "
                        "images (default %(default)s); a name ending in '-quick' gets the quick profile, '-crowd' (or "
                        "'-crowd-cp', CrowdPose "
                        "format) the crowd profile of the bottom-up runs (docs/synthpose.md)")
    args = p.parse_args(argv)
    for name in ("threads", "max_concurrent"):
        value = getattr(args, name)
        if value is not None and value < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    return args


def ensure_synthpose(spec: AblationSpec, images: int) -> None:
    """Generate the spec's SynthPose data root when it does not exist yet (the embedded default), and its
    unlabeled root (``semi.root``) from the spec's ``synth_unlabeled`` settings."""
    semi = getattr(spec.base, "semi", None)
    if spec.synth_unlabeled is not None and not semi.path(semi.unlabeled_ann, spec.base.data.root).exists():
        _generate(spec.synth_unlabeled, Path(semi.root), "the spec's synth_unlabeled settings, ")
    root = Path(spec.base.data.root)
    if (root / spec.base.data.train_ann).exists():
        return
    if spec.synth is None and "synthpose" not in root.name:
        raise FileNotFoundError(f"{spec.source}: data.root {root} has no {spec.base.data.train_ann}")
    from pose.synth import SynthConfig
    from pose.synth.config import crowd_config, quick_config

    if spec.synth is not None:
        profile, cfg = "the spec's synth settings, ", spec.synth
    elif root.name.endswith("-quick"):
        profile, cfg = "quick profile, ", quick_config(images)
    elif root.name.endswith(("-crowd", "-crowd-cp")):
        profile = "crowd profile, "
        cfg = crowd_config(images, seed=0, format="crowdpose" if root.name.endswith("-cp") else "coco")
    else:
        profile, cfg = "", SynthConfig(images=images, seed=0)
    _generate(cfg, root, profile)


def _generate(cfg: SynthConfig, root: Path, profile: str) -> None:
    from pose.synth import generate_dataset

    print(f"generating SynthPose ({profile}{cfg.format}, {cfg.images} train images) in {root} ...", flush=True)
    t0 = time.perf_counter()
    generate_dataset(cfg, root)
    print(f"generated in {time.perf_counter() - t0:.0f} s", flush=True)


def main(argv: list[str] | None = None) -> int:
    t0 = time.perf_counter()
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    console.setup(args.verbose)  # quiet unless --verbose: Ray's and MLflow's logs go to Ray's log files
    try:
        spec = AblationSpec.load(args.spec)
        ensure_synthpose(spec, args.synth_images)
    except (ValueError, FileNotFoundError) as e:
        print(f"pipelines/ablation.py: error: {e}", file=sys.stderr)
        return 2
    os.environ.setdefault("RAY_worker_niceness", "0")
    tracking_uri = resolve_tracking_uri(args.tracking_uri)
    server = None
    if tracking_uri.startswith("sqlite:///"):
        # trials log from several processes at once: front the SQLite file with a loopback server
        from mlflow.tracking import MlflowClient

        from orchestrator.mlflow_server import LocalTrackingServer
        from orchestrator.tracking import get_or_create_experiment

        # created on the file first, so its artifacts live at a plain path any local client can read
        get_or_create_experiment(MlflowClient(tracking_uri), args.experiment, tracking_uri)
        server = LocalTrackingServer(tracking_uri)
        server.launch()  # starts while Ray does
    import ray

    interrupted: AblationInterrupted | None = None
    try:
        address = args.address or os.environ.get("RAY_ADDRESS")
        if address:
            ray.init(address=address, **console.ray_init_kwargs())
        else:
            ray.init(include_dashboard=False, **console.ray_init_kwargs())
        console.ray_started()
        options = AblationOptions(workers=args.workers, use_gpu=args.gpu, max_concurrent_trials=args.max_concurrent,
                                  torch_threads=args.threads,
                                  experiment=args.experiment, storage_path=args.storage, output_dir=args.output_dir,
                                  restart=args.restart, log_model=not args.no_log_model,
                                  tracking_uri=server.wait_ready() if server is not None else tracking_uri)
        try:
            text = run_ablation(spec, options)
        except AblationInterrupted as stop:
            interrupted = stop
        except (UndeliveredRecords, TrackingUnavailable) as e:
            store = f" --tracking-uri {tracking_uri}" if server is not None else ""  # the SQLite file
            runs = Path(options.output_dir or spec.base.output_dir) / spec.name
            print(f"pipelines/ablation.py: error: {e}\nThe trials' MLflow records wait in their run "
                  "directories' mlflow-spool/. Once the tracking store is reachable, rerun this command (it "
                  "delivers them and logs the table), or deliver them alone with "
                  f"`poselab mlflow-replay {runs}{store}`.", file=sys.stderr)
            return 1
    finally:
        if server is not None:
            server.stop()
        ray.shutdown()
    if interrupted is not None:  # Ctrl+C: Tune saved its state; the same command resumes
        print()
        print(str(interrupted), end="")
        print(f"ablation interrupted after {(time.perf_counter() - t0) / 60:.1f} min")
        return 130
    print()
    print(text, end="")
    minutes = (time.perf_counter() - t0) / 60
    print(f"\nablation finished in {minutes:.1f} min; the table is logged to the parent run "
          f"(results/table.md, table.csv, table.json)")
    from mlflow.tracking import MlflowClient

    experiment = MlflowClient(tracking_uri).get_experiment_by_name(args.experiment)
    print(f"view it: {mlflow_ui_hint(tracking_uri, experiment and experiment.experiment_id)}")
    print(f"or print it again: poselab table {args.experiment} --ablation {spec.name}"
          + (f" --tracking-uri {tracking_uri}" if args.tracking_uri else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
