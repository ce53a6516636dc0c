"""Suggestions for unknown names (``pose.names``)."""

from __future__ import annotations

import re

from pose.names import (MAX_SUGGESTIONS, closest, closest_keys, did_you_mean, suggest, suggest_keys,
                        with_suggestion)

PATHS = ["name", "train", "train.epochs", "train.lr", "train.seed", "train.batch_size", "model", "model.arch",
         "model.depth", "data", "data.root", "data.num_labeled"]


def suggested(message: str) -> list[str]:
    """The names after ``did you mean:`` in an error message ([] when there is none)."""
    found = re.search(r"did you mean: (.*)\?$", message)
    return found.group(1).split(", ") if found else []


def test_closest_is_best_first_case_insensitive_and_empty_when_nothing_is_close():
    assert closest("synth-r18-128x69", ["synth-r18-128x96", "coco-r50", "synth-hrnet-w16-128x96"]) == [
        "synth-r18-128x96", "synth-hrnet-w16-128x96"]
    assert closest("COCO", ["crowdpose", "coco"]) == ["coco"]
    assert closest("xyz", ["coco", "crowdpose"]) == []


def test_suggest_names_at_most_n_and_falls_back_to_the_hint():
    choices = [f"preset-{i}" for i in range(20)]
    text = suggest("preset-1", choices)
    assert text.startswith("did you mean: preset-1") and len(suggested(text)) == MAX_SUGGESTIONS
    assert len(suggested(suggest("preset-1", choices, n=2))) == 2
    assert suggest("zzz", choices, hint="see `poselab presets`") == "see `poselab presets`"
    assert suggest("zzz", choices) == ""


def test_several_names_merge_their_suggestions_without_repeats():
    assert suggest(["epohcs", "epochz", "bach_size"], ["epochs", "batch_size", "lr"]) == \
        "did you mean: epochs, batch_size?"
    assert did_you_mean(["a", "b", "a", "c"], n=2) == "did you mean: a, b?"
    assert did_you_mean([], hint="none") == "none"


def test_with_suggestion_appends_only_a_non_empty_text():
    assert with_suggestion("bad 'cooc'", "cooc", ["coco"]) == "bad 'cooc'; did you mean: coco?"
    assert with_suggestion("bad 'x'", "x", ["coco"]) == "bad 'x'"


def test_closest_keys_tries_the_siblings_then_any_key_with_a_close_last_part():
    assert closest_keys("train.ephocs", PATHS) == ["train.epochs"]
    assert closest_keys("trian.epochs", PATHS) == ["train.epochs"]  # the section misspelt
    assert closest_keys("epochs", PATHS) == ["train.epochs"]  # the section left out
    assert closest_keys("model.lr", PATHS) == ["train.lr"]  # the wrong section
    assert closest_keys("model.bogus", PATHS) == []
    assert suggest_keys(["train.ephocs", "model.detph"], PATHS) == "did you mean: train.epochs, model.depth?"
    assert suggest_keys("zzz.qqq", PATHS, hint="h") == "h"
