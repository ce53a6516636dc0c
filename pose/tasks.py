"""The two experiment kinds and how a config says which it is: the top-level ``task`` field
(``topdown``, the default, or ``bottomup``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Union

from pose.bottomup.config import BottomUpExperimentConfig
from pose.config import ConfigError, from_dict, read_config_data
from pose.experiment import ExperimentConfig
from pose.names import with_suggestion

AnyExperimentConfig = Union[ExperimentConfig, BottomUpExperimentConfig]
TASKS: dict[str, type] = {"topdown": ExperimentConfig, "bottomup": BottomUpExperimentConfig}


def config_class(data: dict[str, Any], source: str = "config") -> type:
    """The config dataclass named by ``data["task"]`` (top-down when absent)."""
    task = data.get("task", "topdown")
    if task not in TASKS:
        raise ConfigError(with_suggestion(f"{source}: task: {task!r} is not one of {list(TASKS)}", str(task),
                                          TASKS))
    return TASKS[task]


def config_from_dict(data: dict[str, Any], source: str = "config") -> AnyExperimentConfig:
    """A plain dict (``to_dict`` output, a parsed file) -> the typed config of its task."""
    cls = config_class(data, source)
    try:
        return from_dict(cls, data)
    except ValueError as e:  # ConfigError, and the checks of the configs' __post_init__
        raise ConfigError(f"{source}: {e}") from None


def load_experiment_file(path: str | Path) -> AnyExperimentConfig:
    """A JSON/YAML experiment file of either task."""
    return config_from_dict(read_config_data(path), str(path))


def is_bottomup(cfg: Any) -> bool:
    return isinstance(cfg, BottomUpExperimentConfig)
