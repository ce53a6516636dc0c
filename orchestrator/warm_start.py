"""The warm-start stage of an ablation: supervised trainings, one per seed, whose checkpoints start the
grid's networks (``model.init``; a stand-in for the paper's ImageNet initialisation, docs/deviations.md).

In a spec::

    warm_start:
      preset: synth-r18-128x96      # optional (or `config:`, relative to the spec file); default: the
                                    #   spec's base config (preset/config + overrides)
      overrides: {train.epochs: 40, train.lr_steps: [30]}   # dotted overrides of the stage's base
      seeds: [0, 1, 2]              # one supervised training per seed

The stage's config is its base with ``method.kind=supervised`` and the overrides; stage run ``seed=s``
(``train.seed=s``) runs in ``<output_dir>/<ablation>/warm_start/seed=<s>``. It runs first, as its own Tune
grid, in the same :func:`orchestrator.ablation.run_ablation` call. Then every grid trial gets
``model.init`` = the stage's ``last.pth`` of the trial's own ``train.seed``; PoseDual trials also get
``model.init_net2`` = that of the next seed in ``seeds`` (cyclic), so their two networks start apart.
``model.pretrained`` of the grid's trials is dropped (the stage trained from it; ``model.init`` replaces
the whole network).

Spec errors (:class:`~pose.config.ConfigError` naming the spec file): unknown keys, no ``seeds``, an
override of a field the stage sets, a grid trial whose seed the stage does not train, a PoseDual trial
with fewer than 2 seeds, a trial that sets ``model.init`` itself, and a stage model that differs from a
trial's (its checkpoints would not fit).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.ablation_spec import Trial, set_fields, trial_id_for
from pose.config import ConfigError
from pose.experiment import ExperimentConfig
from pose.models.warm_start import RUN_CHECKPOINT
from pose.tasks import AnyExperimentConfig, load_experiment_file

STAGE = "warm_start"
"""The stage's name: the ``poselab.stage`` tag of its MLflow runs and the directory of its runs."""

WARM_START_KEYS = ("preset", "config", "overrides", "seeds")
"""The keys of a spec's ``warm_start`` mapping; any other key is an error."""

STAGE_FIELDS = ("name", "method.kind", "train.seed", "model.init", "model.init_net2")
"""Fields the stage sets itself (overrides may not)."""

MODEL_FIELDS = ("arch", "depth", "resnet_stages", "width", "deconv_channels", "num_deconv")
"""Model fields that must agree between the stage and the grid (else the checkpoints do not fit)."""

DUAL = "posedual"


def _overlaps(a: str, b: str) -> bool:
    return a == b or a.startswith(b + ".") or b.startswith(a + ".")


@dataclass(frozen=True)
class WarmStartSpec:
    """A parsed ``warm_start`` stage.

    Attributes:
        base: the stage's config before its seed: its base with ``method.kind=supervised`` and
            ``overrides``.
        seeds: the stage's seeds, in spec order (one supervised training each).
        origin: where the base came from (``preset <name>``, ``config <path>`` or ``the spec's base``).
        overrides: the stage's overrides as (dotted key, value) pairs, in spec order.
    """

    base: ExperimentConfig
    seeds: tuple[int, ...]
    origin: str
    overrides: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def parse(cls, data: Any, spec_base: AnyExperimentConfig, base_dir: str | Path | None,
              fail: Callable[[str], ConfigError]) -> WarmStartSpec | None:
        """The stage of a spec's ``warm_start`` value (None when absent); errors through ``fail``."""
        from pose.presets import get_preset

        if data is None:
            return None
        if not isinstance(data, dict):
            raise fail(f"'warm_start' must be a mapping with 'seeds' (and optionally 'preset' or 'config', "
                       f"'overrides'), got {data!r}")
        unknown = [str(k) for k in data if k not in WARM_START_KEYS]
        if unknown:
            raise fail(f"warm_start: unknown key(s) {', '.join(unknown)} "
                       f"(valid keys: {', '.join(WARM_START_KEYS)})")
        if "preset" in data and "config" in data:
            raise fail("warm_start: give at most one of 'preset' and 'config' (default: the spec's base "
                       "config)")
        try:
            if "preset" in data:
                base, origin = get_preset(data["preset"]).config, f"preset {data['preset']}"
            elif "config" in data:
                path = Path(data["config"])
                path = path if path.is_absolute() or base_dir is None else Path(base_dir) / path
                base, origin = load_experiment_file(path), f"config {path}"
            else:
                base, origin = spec_base, "the spec's base"
        except (ValueError, FileNotFoundError) as e:
            raise fail(f"warm_start: {e}") from None
        if not isinstance(base, ExperimentConfig):
            raise fail(f"warm_start: {origin} is a {type(base).__name__}; warm starts are for top-down "
                       "models")

        seeds = data.get("seeds")
        if (not isinstance(seeds, list) or not seeds
                or any(isinstance(s, bool) or not isinstance(s, int) for s in seeds)):
            raise fail(f"warm_start: 'seeds' must be a non-empty list of integers (got {seeds!r})")
        if len(set(seeds)) != len(seeds):
            raise fail(f"warm_start: 'seeds' repeats a seed ({seeds})")

        overrides = data.get("overrides") or {}
        if not isinstance(overrides, dict):
            raise fail(f"warm_start: 'overrides' must be a mapping of dotted keys to values "
                       f"(got {overrides!r})")
        for key in overrides:
            taken = [f for f in STAGE_FIELDS if _overlaps(str(key), f)]
            if taken:
                raise fail(f"warm_start: override {key!r} is not allowed (the stage sets "
                           f"{', '.join(taken)}: a supervised run per seed of 'seeds')")
        try:
            base = set_fields(base, [("method.kind", "supervised"), *overrides.items()])
        except ValueError as e:
            raise fail(f"warm_start: overrides: {e}") from None
        if base.model.init is not None:
            raise fail(f"warm_start: {origin} sets model.init={base.model.init!r}: the stage trains from "
                       "scratch (or from model.pretrained), and its checkpoints start every trial")
        return cls(base=base, seeds=tuple(seeds), origin=origin, overrides=tuple(overrides.items()))

    def describe(self) -> dict[str, Any]:
        """The stage as plain values (MLflow params of the parent run, ``results/grid.json``)."""
        return {"base": self.origin, "overrides": dict(self.overrides), "seeds": list(self.seeds)}

    def next_seed(self, seed: int) -> int:
        """The seed after ``seed`` in ``seeds`` (cyclic): the source of a PoseDual trial's ``net2``."""
        return self.seeds[(self.seeds.index(seed) + 1) % len(self.seeds)]

    def stage_trials(self, ablation: str) -> tuple[Trial, ...]:
        """One supervised trial per seed: id ``seed=<s>``, config name ``<ablation>/warm_start/seed=<s>``
        (so its run directory is ``<output_dir>/<ablation>/warm_start/seed=<s>``)."""
        trials = []
        for seed in self.seeds:
            axes = {"seed": seed}
            trial_id = trial_id_for(axes)
            cfg = set_fields(self.base, [("train.seed", seed)])
            cfg = dataclasses.replace(cfg, name=f"{ablation}/{STAGE}/{trial_id}")
            trials.append(Trial(trial_id, axes, cfg))
        return tuple(trials)

    def check_grid(self, trials: Sequence[Trial], fail: Callable[[str], ConfigError]) -> None:
        """Errors (through ``fail``) for grid trials the stage cannot start (see the module docstring)."""
        stage_model = {f: getattr(self.base.model, f) for f in MODEL_FIELDS}
        for trial in trials:
            cfg = trial.config
            if not isinstance(cfg, ExperimentConfig):
                raise fail(f"warm_start: trial {trial.trial_id} is a {type(cfg).__name__}; warm starts are "
                           "for top-down models")
            if cfg.model.init is not None or cfg.model.init_net2 is not None:
                raise fail(f"warm_start: trial {trial.trial_id} sets model.init itself ({cfg.model.init!r}); "
                           "with a warm_start stage the stage's checkpoints start every trial")
            seed = cfg.train.seed
            if seed not in self.seeds:
                raise fail(f"warm_start: trial {trial.trial_id} has train.seed {seed}, which the stage does "
                           f"not train (seeds: {list(self.seeds)})")
            if cfg.method.kind == DUAL and len(self.seeds) < 2:
                raise fail(f"warm_start: PoseDual trial {trial.trial_id} needs at least 2 seeds (net1 starts "
                           f"from its seed's run, net2 from the next seed's), got {list(self.seeds)}")
            model = {f: getattr(cfg.model, f) for f in MODEL_FIELDS}
            if model != stage_model or cfg.data.dataset != self.base.data.dataset:
                raise fail(f"warm_start: the stage's model {stage_model} ({self.base.data.dataset} "
                           f"keypoints) differs from trial {trial.trial_id}'s {model} ({cfg.data.dataset}): "
                           "its checkpoints would not fit")

    def attach(self, trials: Sequence[Trial], stage_trials: Sequence[Trial]) -> tuple[Trial, ...]:
        """The grid trials with ``model.init`` = the ``last.pth`` of their seed's stage run (PoseDual also
        ``model.init_net2`` = the next seed's) and no ``model.pretrained``. ``stage_trials``: as
        :meth:`stage_trials` gave them, with their final output directory."""
        checkpoints = {t.config.train.seed: str(t.config.run_dir / RUN_CHECKPOINT) for t in stage_trials}
        out = []
        for trial in trials:
            cfg = trial.config
            seed = cfg.train.seed
            net2 = checkpoints[self.next_seed(seed)] if cfg.method.kind == DUAL else None
            model = dataclasses.replace(cfg.model, pretrained=None, init=checkpoints[seed], init_net2=net2)
            out.append(dataclasses.replace(trial, config=dataclasses.replace(cfg, model=model)))
        return tuple(out)

    def label_note(self, trials: Sequence[Trial]) -> str:
        """A warning when the stage sees more labels than a trial's budget (``data.num_labeled``; 0 = all):
        that trial's networks then start from labels beyond its budget. "" otherwise."""
        def size(n: int) -> float:
            return math.inf if n == 0 else n

        if not trials:
            return ""
        stage = self.base.data.num_labeled
        smallest = min((t.config.data.num_labeled for t in trials), key=size)
        if size(stage) <= size(smallest):
            return ""
        seen = "every labeled instance" if stage == 0 else f"{stage} labeled instances"
        return (f"note: the warm-start stage trains on {seen} (data.num_labeled={stage}), more than the "
                f"smallest label budget of the grid ({smallest}): those trials start from labels beyond "
                f"their budget (warm_start: {{overrides: {{data.num_labeled: {smallest}}}}} avoids it)")
