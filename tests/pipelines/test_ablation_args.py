"""pipelines/ablation.py's command line (parsing only; the runs are in tests/orchestrator/test_ablation.py)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _ablation_script():
    spec = importlib.util.spec_from_file_location("pipelines_ablation", REPO / "pipelines" / "ablation.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_threads_and_concurrency_are_parsed():
    args = _ablation_script().parse_args(["spec.yaml", "--threads", "1", "--max-concurrent", "2"])
    assert (args.spec, args.threads, args.max_concurrent) == ("spec.yaml", 1, 2)
    assert _ablation_script().parse_args([]).threads is None  # derived from the cores


@pytest.mark.parametrize("flag", ["--threads", "--max-concurrent"])
def test_a_count_below_one_is_an_error_naming_the_flag(flag, capsys):
    with pytest.raises(SystemExit) as info:
        _ablation_script().parse_args(["spec.yaml", flag, "0"])
    assert info.value.code == 2 and f"{flag} must be at least 1, got 0" in capsys.readouterr().err
