"""poselab's MLflow experiments are model-training experiments: tagged so, and linked to the MLflow UI's
Model training view (MLflow 3 opens an experiment in its GenAI view otherwise)."""

from __future__ import annotations

from mlflow.tracking import MlflowClient

from orchestrator.cli import mlflow_ui_hint
from orchestrator.tracking import EXPERIMENT_KIND_TAG, experiment_ui_url, get_or_create_experiment


def test_experiments_are_created_and_reused_as_model_training(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    new = get_or_create_experiment(client, "fresh", uri)
    assert client.get_experiment(new).tags[EXPERIMENT_KIND_TAG] == "custom_model_development"

    old = client.create_experiment("older")  # made before poselab tagged its experiments
    assert EXPERIMENT_KIND_TAG not in client.get_experiment(old).tags
    assert get_or_create_experiment(client, "older", uri) == old
    assert client.get_experiment(old).tags[EXPERIMENT_KIND_TAG] == "custom_model_development"

    chosen = client.create_experiment("chosen", tags={EXPERIMENT_KIND_TAG: "genai_development"})
    assert get_or_create_experiment(client, "chosen", uri) == chosen  # a kind someone chose is kept
    assert client.get_experiment(chosen).tags[EXPERIMENT_KIND_TAG] == "genai_development"


def test_ui_links_open_the_model_training_view():
    assert experiment_ui_url("http://h:5000/", "3") == "http://h:5000/#/experiments/3?workflowType=machine_learning"
    assert experiment_ui_url("http://h:5000", "3", "abc") == \
        "http://h:5000/#/experiments/3/runs/abc?workflowType=machine_learning"
    assert mlflow_ui_hint("http://h:5000", "3") == "open http://h:5000/#/experiments/3?workflowType=machine_learning"
    hint = mlflow_ui_hint("sqlite:////x/mlflow.db", "1")
    assert hint.startswith("uv run mlflow ui --backend-store-uri sqlite:////x/mlflow.db --host 127.0.0.1")
    assert hint.endswith("(then open http://127.0.0.1:5000/#/experiments/1?workflowType=machine_learning)")
