"""The ablation result table from MLflow runs (one SQLite store per module; no Ray)."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pandas as pd
import pytest

from orchestrator.table import (TableError, add_table_subcommand, build_table, collect_trials, format_text,
                                parent_tags, run_table_command, table_numbers, to_markdown,
                                trial_tags)
from orchestrator.table_artifacts import log_table

AXES = ["method", "augmentation", "label_budget", "seed"]
EXPERIMENT = "semi-exp"


def _tid(method: str, aug: str, budget: int, seed: int) -> str:
    return f"method={method},augmentation={aug},label_budget={budget},seed={seed}"


# (method, augmentation, budget, seed, status, collapsed, AP or None, start time)
TRIALS = [
    ("supervised", "affine", 100, 0, "FINISHED", False, 0.30, 2100),
    ("supervised", "affine", 100, 1, "FINISHED", False, 0.32, 2101),
    ("supervised", "affine", 100, 2, "FINISHED", False, 0.34, 2102),
    ("supervised", "affine", 250, 0, "FINISHED", False, 0.45, 2103),
    ("supervised", "affine", 250, 1, "KILLED", False, None, 2104),
    ("posedual", "joint_cutout", 100, 0, "FINISHED", False, 0.40, 2105),
    ("posedual", "joint_cutout", 100, 1, "FINISHED", True, 0.42, 2106),
    ("posedual", "joint_cutout", 100, 2, "FAILED", False, 0.05, 2107),  # logged, but must not be averaged
    ("posedual", "joint_cutout", 250, 0, "FINISHED", False, 0.50, 2108),
    ("posedual", "joint_cutout", 250, 1, "RUNNING", False, None, 2109),
    ("posedual", "joint_cutout", 250, 2, "FAILED", False, None, 2110),  # first attempt of a retried trial
    ("posedual", "joint_cutout", 250, 2, "FINISHED", False, 0.52, 2111),  # ... and the retry
]


def _run(client, exp_id: str, tags: dict, start: int, status: str = "FINISHED",
         metrics: dict | None = None) -> str:
    run = client.create_run(exp_id, start_time=start, tags=tags)
    for key, value in (metrics or {}).items():
        client.log_metric(run.info.run_id, key, value)
    if status != "RUNNING":
        client.set_terminated(run.info.run_id, status)
    return run.info.run_id


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> dict:
    from mlflow.tracking import MlflowClient

    root = tmp_path_factory.mktemp("mlflow_table")
    uri = f"sqlite:///{root}/mlflow.db"
    client = MlflowClient(tracking_uri=uri)
    exp_id = client.create_experiment(EXPERIMENT, artifact_location=(root / "artifacts").as_uri())
    axes_json = json.dumps(AXES)
    # An older launch of the same ablation and another ablation: both must be ignored.
    old = _run(client, exp_id,
               {"poselab.ablation": "semi", "poselab.role": "parent", "poselab.axes": axes_json}, 1000)
    _run(client, exp_id, {"mlflow.parentRunId": old, "poselab.role": "trial",
                          "poselab.trial_id": _tid("supervised", "affine", 100, 0),
                          "poselab.axis.method": '"supervised"', "poselab.axis.augmentation": '"affine"',
                          "poselab.axis.label_budget": "100", "poselab.axis.seed": "0",
                          "poselab.collapsed": "false"}, 1001, metrics={"final/AP": 0.99})
    _run(client, exp_id,
         {"poselab.ablation": "other", "poselab.role": "parent", "poselab.axes": '["seed"]'}, 1500)
    parent = _run(client, exp_id, {"poselab.ablation": "semi", "poselab.role": "parent",
                                   "poselab.axes": axes_json}, 2000, status="RUNNING")
    for method, aug, budget, seed, status, collapsed, ap, start in TRIALS:
        tags = {"mlflow.parentRunId": parent, "poselab.role": "trial",
                "poselab.trial_id": _tid(method, aug, budget, seed),
                "poselab.axis.method": json.dumps(method), "poselab.axis.augmentation": json.dumps(aug),
                "poselab.axis.label_budget": json.dumps(budget), "poselab.axis.seed": json.dumps(seed),
                "poselab.collapsed": "true" if collapsed else "false"}
        metrics = {} if ap is None else {"final/AP": ap, "final/AP50": ap + 0.2, "train/loss": 1.0}
        _run(client, exp_id, tags, start, status=status, metrics=metrics)
    _run(client, exp_id, {"mlflow.parentRunId": parent, "poselab.role": "worker"}, 2200,
         metrics={"final/AP": 0.0})  # a nested run that is not a trial
    empty_exp = client.create_experiment("empty-exp", artifact_location=(root / "artifacts2").as_uri())
    _run(client, empty_exp, parent_tags("lonely", ["seed"]), 3000, status="RUNNING")
    return {"uri": uri, "client": client, "parent": parent, "exp_id": exp_id}


@pytest.fixture(scope="module")
def trials(store) -> pd.DataFrame:
    parent, df = collect_trials(store["client"], EXPERIMENT, "semi")
    assert parent.run_id == store["parent"] and parent.axes == tuple(AXES)
    return df


def test_contract_helpers_write_the_tags_the_reader_expects(store):
    tags = trial_tags("p1", "t1", {"method": "posedual", "label_budget": 100}, collapsed=True)
    assert tags == {"mlflow.parentRunId": "p1", "poselab.role": "trial", "poselab.trial_id": "t1",
                    "poselab.axis.method": '"posedual"', "poselab.axis.label_budget": "100",
                    "poselab.collapsed": "true"}
    assert parent_tags("semi", AXES) == {"poselab.ablation": "semi", "poselab.role": "parent",
                                         "poselab.axes": json.dumps(AXES)}


def test_collect_trials_reads_the_newest_parent_and_one_row_per_trial(store, trials):
    assert len(trials) == 11  # 12 trial runs, one trial retried; the old launch and the worker run excluded
    assert list(trials.columns[:6]) == ["trial_id", "run_id", *AXES]
    assert {"status", "collapsed", "attempts", "AP", "AP50"} <= set(trials.columns)
    assert "train/loss" not in trials.columns and "loss" not in trials.columns
    assert 0.99 not in set(trials["AP"])
    retried = trials[trials["trial_id"] == _tid("posedual", "joint_cutout", 250, 2)].iloc[0]
    assert retried["status"] == "FINISHED" and retried["attempts"] == 2
    assert retried["AP"] == pytest.approx(0.52)
    assert set(trials["label_budget"]) == {100, 250} and all(type(v) is int for v in trials["label_budget"])
    assert trials["collapsed"].sum() == 1
    newest, _ = collect_trials(store["client"], EXPERIMENT)  # no ablation: the newest parent of any ablation
    assert newest.run_id == store["parent"]


def test_unknown_experiment_or_ablation_is_an_error_naming_it(store):
    with pytest.raises(TableError, match="no MLflow experiment named 'nope'"):
        collect_trials(store["client"], "nope")
    with pytest.raises(TableError, match=r"ablation 'missing' in experiment 'semi-exp'.*other, semi"):
        collect_trials(store["client"], EXPERIMENT, "missing")


def test_numbers_average_finished_trials_and_count_the_rest(trials):
    numbers = table_numbers(trials, AXES, "AP")
    assert set(numbers["stat"]) == {"AP", "AP50"}
    ap = numbers[numbers["stat"] == "AP"].set_index(["method", "augmentation", "label_budget"])
    sup = ap.loc[("supervised", "affine", 100)]
    assert sup["mean"] == pytest.approx(0.32) and sup["std"] == pytest.approx(0.02) and sup["n"] == 3
    pd100 = ap.loc[("posedual", "joint_cutout", 100)]
    assert pd100["mean"] == pytest.approx(0.41) and pd100["std"] == pytest.approx(math.sqrt(2) * 0.01)
    assert (pd100["n"], pd100["n_runs"], pd100["n_failed"], pd100["n_collapsed"]) == (2, 3, 1, 1)
    assert pd100["collapsed_trials"] == _tid("posedual", "joint_cutout", 100, 1)
    assert pd100["excluded_trials"] == _tid("posedual", "joint_cutout", 100, 2)
    pd250 = ap.loc[("posedual", "joint_cutout", 250)]
    assert pd250["mean"] == pytest.approx(0.51) and (pd250["n"], pd250["n_running"]) == (2, 1)
    sup250 = ap.loc[("supervised", "affine", 250)]
    assert (sup250["n"], sup250["n_killed"]) == (1, 1) and math.isnan(sup250["std"])
    records = json.loads(numbers.to_json(orient="records"))
    assert len(records) == 8 and records[0]["method"] == "supervised" and records[0]["label_budget"] == 100
    with pytest.raises(TableError, match="no finished trial logged final/APx"):
        table_numbers(trials, AXES, "APx")


def test_paper_table_cells(trials):
    table = build_table(trials, AXES)
    assert list(table.index) == [("supervised", "affine"), ("posedual", "joint_cutout")]
    assert list(table.columns) == ["100", "250"] and table.columns.name == "label_budget"
    assert table.loc[("supervised", "affine"), "100"] == "32.0 ± 2.0 (3)"
    assert table.loc[("supervised", "affine"), "250"] == "45.0 (1 of 2; 1 killed)"
    assert table.loc[("posedual", "joint_cutout"), "100"] == "41.0 ± 1.4 (2 of 3; 1 failed)†"
    assert table.loc[("posedual", "joint_cutout"), "250"] == "51.0 ± 1.4 (2 of 3; 1 running)"
    notes = table.attrs["footnotes"]
    assert any(n.startswith("† ") and _tid("posedual", "joint_cutout", 100, 1) in n for n in notes)
    ap50 = build_table(trials, AXES, metric="AP50")
    assert ap50.loc[("supervised", "affine"), "100"] == "52.0 ± 2.0 (3)"


def test_other_varied_axes_become_rows_and_fixed_ones_footnotes():
    df = pd.DataFrame({
        "trial_id": ["a", "b", "c", "d"], "run_id": ["1", "2", "3", "4"],
        "method": ["posecons"] * 4, "train.lr": [0.002, 0.001, 0.002, 0.001], "model.depth": [18] * 4,
        "status": ["FINISHED"] * 3 + ["SCHEDULED"], "collapsed": [False] * 4, "attempts": [1] * 4,
        "AP": [0.5, 0.6, 0.7, math.nan],
    })
    axes = ["method", "train.lr", "model.depth"]
    table = build_table(df, axes)  # no seed axis, no column axis
    assert list(table.index) == [("posecons", "0.001"), ("posecons", "0.002")]
    assert list(table.columns) == ["AP"]
    assert table["AP"].tolist() == ["60.0 (1 of 2; 1 running)", "60.0 ± 14.1 (2)"]
    assert "fixed: model.depth=18" in table.attrs["footnotes"]
    assert "across trials" in table.attrs["footnotes"][0]
    with pytest.raises(TableError, match="no trial runs"):
        build_table(df.iloc[:0], axes)


def test_markdown_and_text(trials):
    table = build_table(trials, AXES)
    md = to_markdown(table, title="semi: AP")
    lines = md.splitlines()
    assert lines[0] == "### semi: AP" and lines[1] == ""
    assert lines[2] == "| method | augmentation | label_budget=100 | label_budget=250 |"
    assert lines[3] == "|:---|:---|---:|---:|"
    assert lines[4] == "| supervised | affine | 32.0 ± 2.0 (3) | 45.0 (1 of 2; 1 killed) |"
    assert lines[5].startswith("| posedual | joint_cutout | 41.0 ± 1.4 (2 of 3; 1 failed)† |")
    assert lines[6] == "" and lines[-1].startswith("† averages include collapsed trials")
    assert all(line.count("|") == 5 for line in lines[2:6])
    assert to_markdown(table, footnotes=[]).splitlines()[-1].startswith("| posedual")

    text = format_text(table, title="semi: AP", footnotes=[])
    rows = text.splitlines()[2:]
    assert rows[0].split() == ["method", "augmentation", "label_budget=100", "label_budget=250"]
    assert set(rows[1]) == {"-", " "}
    assert rows[2].endswith("45.0 (1 of 2; 1 killed)") and rows[3].endswith("51.0 ± 1.4 (2 of 3; 1 running)")
    # cells are right-aligned in columns of one width
    end = rows[2].index("32.0") + len("32.0 ± 2.0 (3)")
    assert end == rows[3].index("41.0") + len("41.0 ± 1.4 (2 of 3; 1 failed)†")


def test_pckh_columns_are_shown_x100_like_ap(store):
    """MPII trials log final/PCKh, final/PCKh_0.1 and the groups (MLflow-safe names, fractions in [0, 1]);
    the table reads them in that order and shows them x100, as AP."""
    from orchestrator.table import default_scale
    from pose.evaluation.pckh import PCKH_STAT_NAMES

    assert default_scale("PCKh") == default_scale("PCKh_0.1") == default_scale("PCKh_Wrist") == 100.0
    assert default_scale("AP") == 100.0 and default_scale("loss") == 1.0
    client = store["client"]
    exp_id = client.create_experiment("mpii-exp", artifact_location=(Path(store["uri"][len("sqlite:///"):]).parent
                                                                     / "artifacts-mpii").as_uri())
    parent = _run(client, exp_id, parent_tags("mpii", ["method", "seed"]), 5000, status="RUNNING")
    for method, seed, pckh, start in (("supervised", 0, 0.80, 5001), ("supervised", 1, 0.82, 5002),
                                      ("posedual", 0, 0.85, 5003), ("posedual", 1, 0.86, 5004)):
        metrics = {f"final/{name}": pckh - (0.4 if "0.1" in name else 0.0) for name in reversed(PCKH_STAT_NAMES)}
        _run(client, exp_id, trial_tags(parent, f"method={method},seed={seed}", {"method": method, "seed": seed}),
             start, metrics=metrics)
    _, df = collect_trials(client, "mpii-exp", "mpii")
    assert [c for c in df.columns if c.startswith("PCKh")] == list(PCKH_STAT_NAMES)
    table = build_table(df, ["method", "seed"], metric="PCKh")
    assert table.attrs["scale"] == 100.0
    assert table.loc[("supervised",), "PCKh"] == "81.0 ± 1.4 (2)"
    assert table.loc[("posedual",), "PCKh"] == "85.5 ± 0.7 (2)"
    low = build_table(df, ["method", "seed"], metric="PCKh_0.1")
    assert low.loc[("supervised",), "PCKh_0.1"] == "41.0 ± 1.4 (2)"


def _artifact_paths(client, run_id: str) -> set[str]:
    return {f.path for f in client.list_artifacts(run_id, "results")}


def test_log_table_writes_the_artifacts_to_the_parent_run(store, trials, tmp_path):
    client = store["client"]
    numbers, table = table_numbers(trials, AXES), build_table(trials, AXES)
    md = to_markdown(table, title="semi")
    written = log_table(client, store["parent"], numbers, table, md)
    assert written == ["results/table.json", "results/table.csv", "results/table.md",
                       "results/ap_vs_budget.png"]
    assert _artifact_paths(client, store["parent"]) == set(written)
    log_table(client, store["parent"], numbers, table, md, plot=False)  # re-logging replaces, not appends
    local = Path(client.download_artifacts(store["parent"], "results", str(tmp_path)))
    assert (local / "table.md").read_text() == md
    back = pd.read_json(local / "table.json", orient="split")
    assert len(back) == len(numbers)
    assert back["mean"].tolist() == pytest.approx(numbers["mean"].tolist(), nan_ok=True)
    csv = pd.read_csv(local / "table.csv")
    assert list(csv.columns) == list(numbers.columns) and len(csv) == len(numbers)
    assert (local / "ap_vs_budget.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_is_skipped_with_a_warning_without_matplotlib(store, trials, monkeypatch, caplog):
    client = store["client"]
    run = _run(client, store["exp_id"], parent_tags("plotless", AXES), 4000, status="RUNNING")
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` raises ImportError
    table = build_table(trials, AXES)
    with caplog.at_level("WARNING", logger="orchestrator.table_artifacts"):
        written = log_table(client, run, table_numbers(trials, AXES), table, to_markdown(table))
    assert written == ["results/table.json", "results/table.csv", "results/table.md"]
    assert _artifact_paths(client, run) == set(written)
    assert [r.getMessage() for r in caplog.records] == ["matplotlib is not installed: skipping the plot "
                                                        "results/ap_vs_budget.png"]


def test_table_command(store, capsys):
    assert run_table_command(EXPERIMENT, ablation="semi", tracking_uri=store["uri"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"semi: AP (experiment {EXPERIMENT}, parent run {store['parent']})")
    assert "32.0 ± 2.0 (3)" in out and "† averages include collapsed trials" in out
    assert ("posedual - supervised, augmentation=joint_cutout, label_budget=100: +10.0 ± 0.0 (2 pairs, higher "
            "in 2; by seed: 0 +10.0, 1 +10.0)") in out  # under the table: paired with Supervised seed by seed

    assert run_table_command(EXPERIMENT, ablation="semi", tracking_uri=store["uri"], as_json=True) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["parent_run_id"] == store["parent"] and payload["axes"] == AXES and payload["trials"] == 11
    first = payload["numbers"][0]
    assert (first["method"], first["label_budget"], first["stat"], first["n"]) == ("supervised", 100, "AP", 3)
    assert first["mean"] == pytest.approx(0.32)
    assert payload["paired"]["baseline"] == "method=supervised"
    assert [(r["label_budget"], r["n"]) for r in payload["paired"]["rows"]] == [(100, 2), (250, 1)]

    assert run_table_command("empty-exp", tracking_uri=store["uri"]) == 1
    assert "'lonely'" in capsys.readouterr().out
    assert run_table_command("nope", tracking_uri=store["uri"]) == 2
    assert "poselab table: error: no MLflow experiment named 'nope'" in capsys.readouterr().err


def test_table_subcommand_parses_and_runs(store, capsys):
    import argparse

    parser = argparse.ArgumentParser(prog="poselab")
    add_table_subcommand(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["table", EXPERIMENT, "--ablation", "semi", "--tracking-uri", store["uri"],
                              "--json", "--metric", "AP50"])
    assert (args.experiment, args.ablation, args.json, args.metric, args.log) == (EXPERIMENT, "semi", True,
                                                                                  "AP50", False)
    assert args.func(args) == 0
    assert json.loads(capsys.readouterr().out)["metric"] == "AP50"


def test_an_oracle_teacher_trial_is_marked_in_the_table_and_the_command(store, capsys, tmp_path):
    client = store["client"]
    exp = client.create_experiment("oracle-exp", artifact_location=(tmp_path / "artifacts").as_uri())
    axes = ["method", "seed"]
    parent = _run(client, exp, parent_tags("oracle", axes), 5000, status="RUNNING")
    for i, (method, seed, diagnosis) in enumerate([("posecons", 0, None), ("posecons", 1, None),
                                                   ("posedual", 0, "oracle_teacher")]):
        tags = trial_tags(parent, f"{method}-{seed}", {"method": method, "seed": seed}, collapsed=False)
        if diagnosis:
            tags["poselab.diagnosis"] = diagnosis
        _run(client, exp, tags, 5001 + i, metrics={"final/AP": 0.3 + 0.1 * i})
    _, df = collect_trials(client, "oracle-exp", "oracle")
    assert df.set_index("trial_id")["diagnosis"].to_dict() == {"posecons-0": "", "posecons-1": "",
                                                               "posedual-0": "oracle_teacher"}
    assert "diagnosis" not in table_numbers(df, axes)["stat"].tolist()  # a tag, not a statistic
    table = build_table(df, axes)
    assert table.loc["posecons", "AP"] == "35.0 ± 7.1 (2)"
    assert table.loc["posedual", "AP"] == "50.0 (1)‡"
    assert "‡ oracle teacher (diagnosis only): posedual-0" in table.attrs["footnotes"]
    assert run_table_command("oracle-exp", ablation="oracle", tracking_uri=store["uri"]) == 0
    out = capsys.readouterr().out
    assert "50.0 (1)‡" in out and "‡ oracle teacher (diagnosis only): posedual-0" in out
    plain = build_table(df.drop(columns="diagnosis"), axes)  # a table of trials from before the tag
    assert plain.loc["posedual", "AP"] == "50.0 (1)" and not any("‡" in n for n in plain.attrs["footnotes"])


def test_a_run_of_an_oracle_config_gets_the_diagnosis_tag():
    from orchestrator.train import config_tags
    from pose.config import apply_overrides
    from pose.experiment import ExperimentConfig

    oracle = apply_overrides(ExperimentConfig(), ["method.kind=posedual", "method.teacher=oracle"])
    assert config_tags(oracle) == {"poselab.diagnosis": "oracle_teacher"}
    assert config_tags(ExperimentConfig()) == {}
    assert config_tags(apply_overrides(oracle, ["method.teacher=network"])) == {}


def test_warm_start_stage_runs_are_a_line_under_the_table_not_cells(store, capsys):
    from orchestrator.stage_table import collect_stage, stage_summary, stage_tags

    client, exp_id = store["client"], store["exp_id"]
    parent = _run(client, exp_id, parent_tags("warmed", ["method", "seed"]), 5000)
    tags = trial_tags(parent, "method=posedual,seed=0", {"method": "posedual", "seed": 0})
    _run(client, exp_id, tags, 5010, metrics={"final/AP": 0.5})
    for seed, status, ap, start in [(1, "FINISHED", 0.32, 5002), (0, "FINISHED", 0.30, 5001),
                                    (2, "FAILED", None, 5003)]:
        tags = stage_tags(parent, "warm_start", f"seed={seed}", {"seed": seed})
        _run(client, exp_id, tags, start, status=status, metrics={} if ap is None else {"final/AP": ap})
    assert stage_tags("p", "warm_start", "seed=1", {"seed": 1}) == {
        "mlflow.parentRunId": "p", "poselab.role": "stage", "poselab.stage": "warm_start",
        "poselab.trial_id": "seed=1", "poselab.axis.seed": "1"}

    ablation, df = collect_trials(client, EXPERIMENT, "warmed")
    assert list(df.trial_id) == ["method=posedual,seed=0"]  # the stage's runs are no trials of the table
    stage = collect_stage(client, ablation)
    assert list(stage.seed) == [0, 1, 2] and list(stage.status) == ["FINISHED", "FINISHED", "FAILED"]
    line = ("warm_start stage (supervised starts of the grid's networks), AP x100 by seed: seed=0 30.0, "
            "seed=1 32.0, seed=2 — (failed); mean 31.0 ± 1.4 (2 of 3)")
    assert stage_summary(stage) == line and stage_summary(stage.iloc[:0]) == ""

    assert run_table_command(EXPERIMENT, ablation="warmed", tracking_uri=store["uri"]) == 0
    out = capsys.readouterr().out
    assert out.rstrip().endswith(line) and "posedual" in out and "warm_start" not in out.split(line)[0]
    assert run_table_command(EXPERIMENT, ablation="warmed", tracking_uri=store["uri"], as_json=True) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["trials"] == 1 and [r["seed"] for r in payload["warm_start"]] == [0, 1, 2]
    assert run_table_command(EXPERIMENT, ablation="semi", tracking_uri=store["uri"]) == 0
    assert "warm_start" not in capsys.readouterr().out  # no stage, no line
