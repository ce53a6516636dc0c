"""Dataset metainfo: what an unknown dataset name or metainfo key says."""

from __future__ import annotations

import pytest

from pose.metainfo import COCO, DatasetMeta, get_metainfo


def test_unknown_dataset_suggests_the_closest_builtin():
    with pytest.raises(ValueError, match=r"^unknown dataset 'cocoo'; did you mean: coco\?$"):
        get_metainfo("cocoo")
    with pytest.raises(ValueError, match=r"^unknown dataset 'CrowdPose'; did you mean: crowdpose\?$"):
        get_metainfo("CrowdPose")


def test_unknown_dataset_without_a_close_name_lists_the_builtins():
    with pytest.raises(ValueError, match=r"unknown dataset 'mpii'; expected one of \['coco', 'crowdpose'\] "
                                         r"or a metainfo \.json file"):
        get_metainfo("mpii")


def test_unknown_metainfo_key_suggests_the_field():
    with pytest.raises(ValueError, match=r"unknown metainfo keys: \['sigma'\]; did you mean: sigmas\?"):
        DatasetMeta.from_dict({**COCO.to_dict(), "sigma": []})
