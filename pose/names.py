"""Suggestions for unknown names: ``unknown preset 'x'; did you mean: a, b?`` instead of every valid name.

One place for every "unknown ..." error of poselab (presets, config keys, datasets, method kinds,
ablation axes): :func:`closest` finds the valid names nearest to a wrong one (``difflib``, case
insensitive), :func:`suggest` words them; :func:`closest_keys` and :func:`suggest_keys` do the same for
dotted config keys. Pure standard library (``pose`` never imports ray or mlflow).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence

MAX_SUGGESTIONS = 5
"""At most this many names are suggested."""

CUTOFF = 0.6
"""Least ``difflib`` similarity (0..1) of a suggested name; ``difflib``'s own default."""


def closest(name: str, choices: Iterable[str], n: int = MAX_SUGGESTIONS, cutoff: float = CUTOFF) -> list[str]:
    """Up to ``n`` of ``choices`` nearest to ``name``, best first; ``[]`` when none is at least ``cutoff``
    similar. Case is ignored (``COCO`` finds ``coco``)."""
    by_lower: dict[str, str] = {}
    for choice in choices:
        by_lower.setdefault(str(choice).lower(), str(choice))
    matches = difflib.get_close_matches(str(name).lower(), list(by_lower), n=n, cutoff=cutoff)
    return [by_lower[m] for m in matches]


def suggest(name: str | Sequence[str], choices: Iterable[str], n: int = MAX_SUGGESTIONS,
            hint: str = "") -> str:
    """``"did you mean: a, b?"`` naming the (at most ``n``) ``choices`` closest to ``name``, or ``hint``
    when none is close (``""`` without a hint).

    ``name`` may be several wrong names (``unknown keys a, b``): their suggestions are merged in the
    order of the names, without repeats, ``n`` in all.
    """
    pool = [str(c) for c in choices]
    return did_you_mean([m for one in _as_list(name) for m in closest(one, pool, n)], n, hint)


def with_suggestion(message: str, name: str | Sequence[str], choices: Iterable[str], n: int = MAX_SUGGESTIONS,
                    hint: str = "") -> str:
    """``message``, then ``"; "`` and :func:`suggest`'s text (``message`` alone when that text is empty)."""
    text = suggest(name, choices, n, hint)
    return f"{message}; {text}" if text else message


def closest_keys(key: str, paths: Sequence[str], n: int = MAX_SUGGESTIONS) -> list[str]:
    """Up to ``n`` of the dotted config ``paths`` (sections and leaves) nearest to the unknown dotted
    ``key``: first the keys beside its first unknown part (``train.ephocs`` -> ``train.epochs``,
    ``trian.epochs`` -> ``train.epochs``), else any path whose last part is close to ``key``'s last
    part (``epochs`` -> ``train.epochs``, ``model.lr`` -> ``train.lr``)."""
    known = set(paths)
    parts = key.split(".")
    i = next((j for j in range(len(parts)) if ".".join(parts[: j + 1]) not in known), len(parts) - 1)
    head = ".".join(parts[:i]) + "." if i else ""
    rest = "".join("." + p for p in parts[i + 1:])
    siblings = [p[len(head):] for p in paths if p.startswith(head) and "." not in p[len(head):]]
    found = [head + s + rest if head + s + rest in known else head + s
             for s in closest(parts[i], siblings, n)]
    if not found:
        by_last: dict[str, list[str]] = {}
        for p in paths:
            by_last.setdefault(p.rsplit(".", 1)[-1], []).append(p)
        found = [p for last in closest(parts[-1], by_last, n) for p in by_last[last]]
    return list(dict.fromkeys(found))[:n]


def suggest_keys(keys: str | Sequence[str], paths: Sequence[str], n: int = MAX_SUGGESTIONS,
                 hint: str = "") -> str:
    """:func:`suggest` for unknown dotted config keys (:func:`closest_keys`), or ``hint``."""
    return did_you_mean([m for key in _as_list(keys) for m in closest_keys(key, paths, n)], n, hint)


def did_you_mean(found: Iterable[str], n: int = MAX_SUGGESTIONS, hint: str = "") -> str:
    """The wording of :func:`suggest`: ``"did you mean: a, b?"`` naming the first ``n`` of ``found``
    (repeats dropped), or ``hint`` when ``found`` is empty."""
    names = list(dict.fromkeys(found))[:n]
    return f"did you mean: {', '.join(names)}?" if names else hint


def _as_list(names: str | Sequence[str]) -> list[str]:
    return [names] if isinstance(names, str) else list(names)
