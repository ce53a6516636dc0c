"""Ablation specs (YAML) and their expansion into a grid of trials.

A spec names a base config (a preset or a config file), dotted overrides applied to every trial, and
axes whose every combination is one trial::

    name: synth-semi-small                    # MLflow parent run name and Tune experiment name
    preset: synth100-supervised-r18-128x96    # or `config: base.yaml` (relative to the spec file)
    overrides:                                # optional, applied to the base for every trial
      train.epochs: 2
    axes:                                     # grid; key order = the order of the table's axes
      method: [supervised, posecons, posedual]
      augmentation: [affine, joint_cutout]
      label_budget: [100, 250]
      seed: [0, 1, 2]
      train.lr: [0.001]                       # any dotted config field is an axis too
    metric: AP                                # the table's main statistic (default AP)
    scheduler: fifo                           # fifo (default: every trial runs to the end) or asha
    stop_collapsed: false                     # stop trials the collapse rule flags (labelled in the table)
    when:                                     # optional: overrides for the trials with one axis value
      method=supervised: {train.epochs: 60}   #   ("axis=value" as the trial id writes it)
    synth: {profile: quick, images: 2000}     # optional: how to generate a missing SynthPose data.root
    synth_unlabeled: {format: aic, seed: 1}   # optional: the same for semi.root (semi.unlabeled=aic)
    warm_start: {seeds: [0, 1, 2]}            # optional: supervised runs first; their checkpoints start the
                                              #   grid's networks (model.init): orchestrator.warm_start

Named axes: ``method`` -> ``method.kind``, ``label_budget`` -> ``data.num_labeled``, ``seed`` ->
``train.seed`` and ``augmentation`` -> a bundle of :data:`AUGMENTATIONS` applied to ``method.hard``.
Values are set as typed values (not parsed from text), then the whole config is rebuilt with
:func:`pose.config.from_dict`, so every check of the typed config applies. Note that YAML 1.1 reads
``1e-3`` as a string: write ``1.0e-3`` or ``0.001``.

Supervised training has no hard view, so a supervised trial with an augmentation other than
``affine`` would repeat the affine trial: :func:`expand_grid` skips such combinations and lists
them in :attr:`GridPlan.skipped` (nothing is dropped silently).
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import re
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pose.config import KEYS_HINT, ConfigError, dict_paths, from_dict, to_dict, unknown_key_message
from pose.experiment import ExperimentConfig
from pose.tasks import AnyExperimentConfig, config_from_dict, load_experiment_file
from pose.methods.hard_view import HardViewConfig
from pose.names import closest, closest_keys, did_you_mean, suggest, with_suggestion
from pose.synth.config import SynthConfig, profile_config

if TYPE_CHECKING:
    from orchestrator.warm_start import WarmStartSpec

SPEC_KEYS = ("name", "preset", "config", "overrides", "axes", "metric", "scheduler", "stop_collapsed", "when",
             "synth", "synth_unlabeled", "warm_start")
"""The top-level keys of a spec; any other key is an error."""

AXIS_FIELDS: dict[str, str] = {
    "method": "method.kind", "label_budget": "data.num_labeled", "seed": "train.seed",
}
"""Named axes that set one config field."""

AUGMENTATION_AXIS = "augmentation"
AUGMENTATIONS: dict[str, HardViewConfig] = {
    "affine": HardViewConfig(),
    "joint_cutout": HardViewConfig(cutout_joints=5),
    "randaugment": HardViewConfig(randaugment=True, randaugment_n=2, randaugment_magnitude=20.0),
    "joint_cutout+randaugment": HardViewConfig(cutout_joints=5, randaugment=True, randaugment_n=2,
                                               randaugment_magnitude=20.0),
}
"""Values of the ``augmentation`` axis: the hard view of PoseCons / PoseDual on top of the extra affine
transform (the rows of the semi table, ``pose.presets._ROWS``). Only the fields in
:data:`AUGMENTATION_FIELDS` are taken from the bundle; the geometry of the hard view (rotation, scale,
cutout box size and jitter) stays as the base config and overrides set it."""

EMBEDDING_AXIS = "embedding"
EMBEDDINGS: dict[str, dict[str, Any]] = {
    "ae": {"loss.kind": "ae", "codec.embed_dim": 1},
    "ae-r8": {"loss.kind": "ae", "codec.embed_dim": 8},
    "ce": {"loss.kind": "ce", "codec.embed_dim": 8},
}
"""Values of the ``embedding`` axis of bottom-up ablations: classic Associative Embedding (R = 1),
AE with 8-dimensional tags and no coupling, and Coupled Embedding (R = 8; the paper). For other
dimensions, use the dotted axes ``loss.kind`` and ``codec.embed_dim`` instead."""

AUGMENTATION_FIELDS = ("randaugment", "randaugment_n", "randaugment_magnitude", "cutout_joints")
NO_AUGMENTATION = "affine"
SUPERVISED = "supervised"
MAX_TRIAL_ID_LENGTH = 100
"""Longer trial ids are cut and end in a hash of the full id."""

class UnknownFieldError(ConfigError):
    """A dotted key that is not a field of the spec's config (top-down or bottom-up)."""


_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")
_UNSAFE_RE = re.compile(r"[^A-Za-z0-9._+=,-]")


def _axis_fields(axis: str) -> tuple[str, ...]:
    """The dotted config fields an axis sets."""
    if axis == AUGMENTATION_AXIS:
        return tuple(f"method.hard.{f}" for f in AUGMENTATION_FIELDS)
    if axis == EMBEDDING_AXIS:
        return tuple(EMBEDDINGS["ce"])
    return (AXIS_FIELDS.get(axis, axis),)


def _overlaps(a: str, b: str) -> bool:
    """True when one dotted path is the other or contains it (``method`` and ``method.kind``)."""
    return a == b or a.startswith(b + ".") or b.startswith(a + ".")


def _float_hint(value: Any) -> str:
    """A hint for numbers that YAML 1.1 read as strings ("1e-3")."""
    if isinstance(value, str):
        try:
            float(value)
        except ValueError:
            return ""
        return f" (YAML reads {value} as a string: write it with a decimal point, e.g. 1.0e-3)"
    return ""


def set_fields(cfg: AnyExperimentConfig, items: Sequence[tuple[str, Any]]) -> AnyExperimentConfig:
    """A copy of ``cfg`` with dotted fields set to typed values, checked by :func:`from_dict`.

    Raises:
        UnknownFieldError: an unknown field (named).
        ConfigError: a value that does not fit.
        ValueError: a value the config's own checks reject.
    """
    data = to_dict(cfg)
    for key, value in items:
        parts = key.split(".")
        node: Any = data
        for i, part in enumerate(parts):
            if not isinstance(node, dict) or part not in node:
                raise UnknownFieldError(unknown_key_message(key, dict_paths(data)))
            if i == len(parts) - 1:
                node[part] = value
            else:
                node = node[part]
    return from_dict(type(cfg), data)


def unknown_axis_message(axis: str, base: AnyExperimentConfig) -> str:
    """``unknown axis 'x': not a named axis (...) nor a <config> field; did you mean: ...?``, naming the
    closest named axes (:data:`AXIS_FIELDS`, augmentation, embedding), then config keys of ``base``."""
    named = [*AXIS_FIELDS, AUGMENTATION_AXIS, EMBEDDING_AXIS]
    found = [*closest(axis, named), *closest_keys(axis, dict_paths(to_dict(base)))]
    return (f"unknown axis '{axis}': not a named axis ({', '.join(named)}) nor a {type(base).__name__} "
            f"field; {did_you_mean(found, hint=KEYS_HINT)}")


def _axis_items(axis: str, value: Any) -> list[tuple[str, Any]]:
    """The (dotted field, value) pairs one axis value sets."""
    if axis == AUGMENTATION_AXIS:
        if not isinstance(value, str) or value not in AUGMENTATIONS:
            raise ConfigError(with_suggestion(f"unknown augmentation {value!r} (choose from "
                                              f"{', '.join(AUGMENTATIONS)})", str(value), AUGMENTATIONS))
        bundle = AUGMENTATIONS[value]
        return [(f"method.hard.{f}", getattr(bundle, f)) for f in AUGMENTATION_FIELDS]
    if axis == EMBEDDING_AXIS:
        if not isinstance(value, str) or value not in EMBEDDINGS:
            raise ConfigError(with_suggestion(
                f"unknown embedding {value!r} (choose from {', '.join(EMBEDDINGS)})", str(value), EMBEDDINGS))
        return list(EMBEDDINGS[value].items())
    return [(AXIS_FIELDS.get(axis, axis), value)]


def _value_key(value: Any) -> str:
    """A canonical text of a value (tells 1 from True and "1"; lists are comparable)."""
    return json.dumps(value, sort_keys=True)


# ---------------------------------------------------------------------------------------------- trial ids
def _format_value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def trial_id_for(axes: Mapping[str, Any]) -> str:
    """``method=posedual,augmentation=joint_cutout,label_budget=100,seed=0`` for these axis values.

    Deterministic (no process-dependent hash). Characters outside ``[A-Za-z0-9._+=,-]`` become ``_``;
    when that changed the text or it is longer than :data:`MAX_TRIAL_ID_LENGTH`, the id ends in
    ``-`` and 8 hex digits of the SHA-1 of the axis values, so distinct values keep distinct ids.
    """
    readable = ",".join(f"{name}={_format_value(value)}" for name, value in axes.items())
    safe = _UNSAFE_RE.sub("_", readable)
    if safe == readable and len(safe) <= MAX_TRIAL_ID_LENGTH:
        return safe
    digest = hashlib.sha1(json.dumps(list(axes.items()), sort_keys=True).encode()).hexdigest()[:8]
    return f"{safe[: MAX_TRIAL_ID_LENGTH - 9]}-{digest}"


# ---------------------------------------------------------------------------------------------- spec
@dataclass(frozen=True)
class AblationSpec:
    """A parsed, validated ablation spec.

    Attributes:
        name: the ablation name (MLflow parent run name, Tune experiment name); ``[A-Za-z0-9._+-]``.
        base: the config every trial starts from: the preset or config file with ``overrides`` applied.
        overrides: the spec's ``overrides`` as (dotted key, value) pairs, in spec order.
        axes: (axis name, values) pairs in spec order; values as written in the spec.
        metric: the table's main statistic (a ``final/<metric>`` of the trials, e.g. "AP").
        source: the spec file (or "<dict>").
        scheduler: "fifo" (a controlled ablation: no trial is pruned) or "asha" (hyper-parameter
            sweeps: early stopping on the validation metric).
        stop_collapsed: stop a semi-supervised trial once the collapse monitor flags it; it is
            marked collapsed in the table either way.
        when: (axis, value, overrides) triples: the trials whose ``axis`` has ``value`` also get these
            (dotted key, value) overrides, after the axes' own fields (for example a longer schedule
            for supervised trials, whose epoch is a pass over the labeled set, not the unlabeled one).
        synth: how ``pipelines/ablation.py`` generates ``data.root`` when it is missing: a
            :class:`~pose.synth.SynthConfig` built from the spec's ``synth`` mapping (``profile``,
            ``images``, ``seed``, ``format`` and any other SynthConfig field), or ``None``.
        synth_unlabeled: the same for ``semi.root``, the unlabeled dataset of ``semi.unlabeled=aic`` (a
            SynthPose ``aic`` dataset of other images), or ``None``.
        warm_start: the warm-start stage (:class:`orchestrator.warm_start.WarmStartSpec`: supervised
            runs, one per seed, run before the grid; their checkpoints start the trials' networks), or
            ``None``.
    """

    name: str
    base: AnyExperimentConfig
    overrides: tuple[tuple[str, Any], ...]
    axes: tuple[tuple[str, tuple[Any, ...]], ...]
    metric: str = "AP"
    source: str = "<dict>"
    scheduler: str = "fifo"
    stop_collapsed: bool = False
    when: tuple[tuple[str, Any, tuple[tuple[str, Any], ...]], ...] = ()
    synth: SynthConfig | None = None
    synth_unlabeled: SynthConfig | None = None
    warm_start: WarmStartSpec | None = None

    @property
    def axis_names(self) -> list[str]:
        return [name for name, _ in self.axes]

    @classmethod
    def load(cls, path: str | Path) -> AblationSpec:
        """Read a YAML spec; a relative ``config:`` path is relative to the spec file's directory."""
        import yaml

        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"ablation spec not found: {path}")
        try:
            data = yaml.safe_load(path.read_text())
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: malformed YAML ({e})") from None
        return cls.from_dict(data, source=str(path), base_dir=path.parent)

    @classmethod
    def from_dict(cls, data: Any, source: str = "<dict>", base_dir: str | Path | None = None) -> AblationSpec:
        """Validate a parsed spec; every error is a :class:`ConfigError` naming ``source``.

        ``base_dir``: directory a relative ``config:`` path is relative to (default: the working
        directory).
        """
        def fail(msg: str) -> ConfigError:
            return ConfigError(f"{source}: {msg}")

        if not isinstance(data, dict):
            raise fail(f"an ablation spec is a mapping, got {type(data).__name__}")
        unknown = [str(k) for k in data if k not in SPEC_KEYS]
        if unknown:
            raise fail(f"unknown key(s) {', '.join(unknown)}; "
                       + suggest(unknown, SPEC_KEYS, hint=f"valid keys: {', '.join(SPEC_KEYS)}"))
        name = data.get("name")
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise fail(f"'name' must be a non-empty string of letters, digits and ._+- (got {name!r})")
        metric = data.get("metric", "AP")
        if not isinstance(metric, str) or not metric:
            raise fail(f"'metric' must be a statistic name such as AP (got {metric!r})")

        scheduler = data.get("scheduler", "fifo")
        if scheduler not in ("fifo", "asha"):
            raise fail(f"'scheduler' must be fifo or asha (got {scheduler!r})")
        stop_collapsed = data.get("stop_collapsed", False)
        if not isinstance(stop_collapsed, bool):
            raise fail(f"'stop_collapsed' must be true or false (got {stop_collapsed!r})")

        base = cls._base_config(data, base_dir, fail)
        overrides = data.get("overrides") or {}
        if not isinstance(overrides, dict):
            raise fail(f"'overrides' must be a mapping of dotted keys to values "
                       f"(got {type(overrides).__name__})")
        for key in overrides:
            if not isinstance(key, str) or _overlaps(key, "name"):
                raise fail(f"override {key!r} is not allowed (the config name is set per trial)")
        try:
            base = set_fields(base, list(overrides.items()))
        except ValueError as e:
            hint = "".join(_float_hint(v) for k, v in overrides.items() if k in str(e))
            raise fail(f"overrides: {e}{hint}") from None

        axes = cls._parse_axes(data.get("axes"), list(overrides), base, fail)
        when = cls._parse_when(data.get("when"), axes, base, fail)
        synth = cls._synth_config(data.get("synth"), fail)
        synth_unlabeled = cls._synth_config(data.get("synth_unlabeled"), fail, "synth_unlabeled")
        if synth_unlabeled is not None and not (isinstance(base, ExperimentConfig) and base.semi.root):
            raise fail("'synth_unlabeled' generates semi.root, the unlabeled dataset of semi.unlabeled=aic; "
                       "this spec's config has no semi.root")
        from orchestrator.warm_start import WarmStartSpec

        warm_start = WarmStartSpec.parse(data.get("warm_start"), base, base_dir, fail)
        spec = cls(name=name, base=base, overrides=tuple(overrides.items()), axes=axes, metric=metric,
                   source=source, scheduler=scheduler, stop_collapsed=stop_collapsed, when=when, synth=synth,
                   synth_unlabeled=synth_unlabeled, warm_start=warm_start)
        if warm_start is not None:
            warm_start.check_grid(expand_grid(spec).trials, fail)
        return spec

    def conditional_overrides(self, axes: Mapping[str, Any]) -> list[tuple[str, Any]]:
        """The ``when`` overrides that apply to a trial with these axis values, in spec order."""
        return [item for axis, value, items in self.when
                if _value_key(axes.get(axis)) == _value_key(value) for item in items]

    @staticmethod
    def _parse_when(data: Any, axes: tuple[tuple[str, tuple[Any, ...]], ...], base: AnyExperimentConfig,
                    fail: Callable[[str], ConfigError]) -> tuple[tuple[str, Any, tuple[tuple[str, Any], ...]], ...]:
        if data is None:
            return ()
        if not isinstance(data, dict):
            raise fail(f"'when' must be a mapping of 'axis=value' to overrides (got {type(data).__name__})")
        values_of = dict(axes)
        out = []
        for condition, items in data.items():
            axis, sep, text = str(condition).partition("=")
            if not sep or axis not in values_of:
                raise fail(f"when: {condition!r} must be 'axis=value' with one of the axes "
                           f"({', '.join(values_of)})")
            matches = [v for v in values_of[axis] if _format_value(v) == text]
            if not matches:
                raise fail(f"when: {condition!r}: {text!r} is not a value of axis '{axis}' "
                           f"({', '.join(_format_value(v) for v in values_of[axis])})")
            if not isinstance(items, dict) or not items:
                raise fail(f"when: {condition!r} must map to a non-empty mapping of dotted keys to values")
            for key in items:
                for other, _ in axes:
                    if any(_overlaps(str(key), field) for field in _axis_fields(other)):
                        raise fail(f"when: {condition!r}: override '{key}' conflicts with axis '{other}'")
            try:
                set_fields(set_fields(base, _axis_items(axis, matches[0])), list(items.items()))
            except ValueError as e:
                raise fail(f"when: {condition!r}: {e}{''.join(_float_hint(v) for v in items.values())}") from None
            out.append((axis, matches[0], tuple(items.items())))
        return tuple(out)

    @staticmethod
    def _synth_config(data: Any, fail: Callable[[str], ConfigError], key: str = "synth") -> SynthConfig | None:
        if data is None:
            return None
        if not isinstance(data, dict):
            raise fail(f"'{key}' must be a mapping such as {{profile: quick, images: 2000}} (got {data!r})")
        fields = dict(data)
        profile = fields.pop("profile", "default")
        known = {f.name for f in dataclasses.fields(SynthConfig)}
        unknown = [str(k) for k in fields if k not in known]
        if unknown:
            raise fail(f"{key}: unknown key(s) {', '.join(unknown)}; "
                       + suggest(unknown, ["profile", *sorted(known)],
                                 hint=f"profile or a SynthConfig field: {', '.join(sorted(known))}"))
        try:
            base = profile_config(profile, fields.pop("images", None), fields.pop("seed", 0),
                                  fields.pop("format", "coco"))
            return dataclasses.replace(base, **fields)
        except (TypeError, ValueError) as e:
            raise fail(f"{key}: {e}") from None

    @staticmethod
    def _base_config(data: dict, base_dir: str | Path | None,
                     fail: Callable[[str], ConfigError]) -> AnyExperimentConfig:
        from pose.presets import get_preset

        if ("preset" in data) == ("config" in data):
            raise fail("give exactly one of 'preset' (a name from pose.presets) and 'config' (a config file)")
        if "preset" in data:
            try:
                return get_preset(data["preset"]).config
            except ValueError as e:
                raise fail(str(e)) from None
        path = Path(data["config"])
        if not path.is_absolute() and base_dir is not None:
            path = Path(base_dir) / path
        try:
            return load_experiment_file(path)
        except (ValueError, FileNotFoundError) as e:
            raise fail(str(e)) from None

    @staticmethod
    def _parse_axes(axes: Any, override_keys: list[str], base: AnyExperimentConfig,
                    fail: Callable[[str], ConfigError]) -> tuple[tuple[str, tuple[Any, ...]], ...]:
        if not isinstance(axes, dict) or not axes:
            raise fail("'axes' must be a non-empty mapping of axis name to a list of values")
        out: list[tuple[str, tuple[Any, ...]]] = []
        claimed: dict[str, str] = {}  # dotted field -> axis setting it
        for axis, values in axes.items():
            if not isinstance(axis, str):
                raise fail(f"axis names are strings, got {axis!r}")
            if not isinstance(values, list):
                raise fail(f"axis '{axis}' must be a list of values (got {values!r})")
            if not values:
                raise fail(f"axis '{axis}' has no values")
            keys = [_value_key(v) for v in values]
            dupes = sorted({k for k in keys if keys.count(k) > 1})
            if dupes:
                raise fail(f"axis '{axis}' repeats value(s) {', '.join(dupes)}")
            for field in _axis_fields(axis):
                if _overlaps(field, "name"):
                    raise fail(f"axis '{axis}' is not allowed (the config name is set per trial)")
                for other_field, other in claimed.items():
                    if _overlaps(field, other_field):
                        raise fail(f"axes '{other}' and '{axis}' both set {min(field, other_field, key=len)}")
                for key in override_keys:
                    if _overlaps(field, key):
                        raise fail(f"override '{key}' conflicts with axis '{axis}' (which sets {field})")
            for field in _axis_fields(axis):
                claimed[field] = axis
            for value in values:
                try:
                    set_fields(base, _axis_items(axis, value))
                except UnknownFieldError:
                    raise fail(unknown_axis_message(axis, base)) from None
                except ValueError as e:
                    raise fail(f"axis '{axis}' value {value!r}: {e}{_float_hint(value)}") from None
            out.append((axis, tuple(values)))
        return tuple(out)


# ---------------------------------------------------------------------------------------------- trials
@dataclass(frozen=True)
class Trial:
    """One point of the grid.

    Attributes:
        trial_id: :func:`trial_id_for` of ``axes``: readable, deterministic, filesystem-safe.
        axes: axis name -> value, in spec order.
        config: the spec's base (with overrides) with this trial's axis values; ``config.name`` is
            ``<ablation name>/<trial_id>`` (so ``run_dir`` is ``output_dir/<ablation>/<trial_id>``).
    """

    trial_id: str
    axes: dict[str, Any]
    config: AnyExperimentConfig

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (the config via :func:`pose.config.to_dict`)."""
        return {"trial_id": self.trial_id, "axes": dict(self.axes), "config": to_dict(self.config)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Trial:
        """Inverse of :meth:`to_dict`; unknown keys, or an id that does not match the axes, are errors."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"trial: expected a mapping, got {type(data).__name__}")
        keys = {"trial_id", "axes", "config"}
        unknown = sorted(set(data) - keys)
        missing = sorted(keys - set(data))
        if unknown or missing:
            problems = ([f"unknown key(s) {unknown}"] if unknown else []) + (
                [f"missing key(s) {missing}"] if missing else [])
            raise ConfigError(f"trial: {', '.join(problems)} (keys: {sorted(keys)})")
        axes = dict(data["axes"])
        if trial_id_for(axes) != data["trial_id"]:
            raise ConfigError(f"trial: id {data['trial_id']!r} does not match its axes (expected "
                              f"{trial_id_for(axes)!r})")
        return cls(trial_id=data["trial_id"], axes=axes, config=config_from_dict(data["config"], "trial.config"))


@dataclass(frozen=True)
class SkippedCombination:
    """A grid point that is not run: its axis values, a short label and why."""

    axes: dict[str, Any]
    label: str
    reason: str


@dataclass(frozen=True)
class GridPlan:
    """The trials of a spec in grid order, and the combinations skipped (with reasons).

    Iterating over a plan (or ``len``) gives its trials.
    """

    trials: tuple[Trial, ...]
    skipped: tuple[SkippedCombination, ...]

    @property
    def combinations(self) -> int:
        return len(self.trials) + len(self.skipped)

    def __iter__(self) -> Iterator[Trial]:
        return iter(self.trials)

    def __len__(self) -> int:
        return len(self.trials)

    def skipped_summary(self) -> str:
        """One line such as ``skipped 12 of 48 combinations: supervised x joint_cutout (6): ...``
        ("" when nothing was skipped)."""
        if not self.skipped:
            return ""
        counts = Counter(s.label for s in self.skipped)
        reasons = list(dict.fromkeys(s.reason for s in self.skipped))
        parts = ", ".join(f"{label} ({n})" for label, n in counts.items())
        return (f"skipped {len(self.skipped)} of {self.combinations} combinations: {parts}: "
                f"{'; '.join(reasons)}")


_SKIP_REASON = "supervised training has no hard view, so these would repeat the affine trials"


def expand_grid(spec: AblationSpec) -> GridPlan:
    """Every combination of the axes (``itertools.product`` in axis order, so the last axis, e.g. the
    seed, varies fastest), minus supervised trials with an augmentation other than ``affine``.

    Raises:
        ConfigError: a combination the typed config rejects, or two combinations with one trial id.
    """
    names = spec.axis_names
    trials: list[Trial] = []
    skipped: list[SkippedCombination] = []
    seen: dict[str, dict[str, Any]] = {}
    for values in itertools.product(*(vals for _, vals in spec.axes)):
        axes = dict(zip(names, values))
        items = [item for name, value in axes.items() for item in _axis_items(name, value)]
        items += spec.conditional_overrides(axes)
        try:
            cfg = set_fields(spec.base, items)
        except ValueError as e:
            raise ConfigError(f"{spec.source}: the combination {axes} is not a valid config: {e}") from None
        aug = axes.get(AUGMENTATION_AXIS, NO_AUGMENTATION)
        if getattr(getattr(cfg, "method", None), "kind", None) == SUPERVISED and aug != NO_AUGMENTATION:
            skipped.append(SkippedCombination(axes, f"{SUPERVISED} x {aug}", _SKIP_REASON))
            continue
        trial_id = trial_id_for(axes)
        if trial_id in seen:
            raise ConfigError(f"{spec.source}: the combinations {seen[trial_id]} and {axes} share the "
                              f"trial id {trial_id!r}")
        seen[trial_id] = axes
        trials.append(Trial(trial_id, axes, dataclasses.replace(cfg, name=f"{spec.name}/{trial_id}")))
    return GridPlan(tuple(trials), tuple(skipped))
