"""Presets: lookup by name, and what an unknown name says."""

from __future__ import annotations

import pytest

from pose.presets import PRESETS, get_preset


def test_unknown_preset_suggests_at_most_five_close_names():
    with pytest.raises(ValueError, match=r"^unknown preset 'synth-r18-128x69'; did you mean: ") as info:
        get_preset("synth-r18-128x69")
    names = str(info.value).split("did you mean: ")[1].rstrip("?").split(", ")
    assert names[0] == "synth-r18-128x96" and len(names) <= 5 and set(names) <= set(PRESETS)


def test_unknown_preset_without_a_close_name_points_at_the_list():
    with pytest.raises(ValueError, match=r"^unknown preset 'nonsense'; `poselab presets` lists them all$"):
        get_preset("nonsense")
