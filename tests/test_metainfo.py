"""Dataset metainfo: what an unknown dataset name or metainfo key says; the MPII and AI Challenger layouts
and their joint correspondence."""

from __future__ import annotations

import pytest

from pose.metainfo import COCO, DatasetMeta, get_metainfo


def test_unknown_dataset_suggests_the_closest_builtin():
    with pytest.raises(ValueError, match=r"^unknown dataset 'cocoo'; did you mean: coco\?$"):
        get_metainfo("cocoo")
    with pytest.raises(ValueError, match=r"^unknown dataset 'CrowdPose'; did you mean: crowdpose\?$"):
        get_metainfo("CrowdPose")


def test_unknown_dataset_without_a_close_name_lists_the_builtins():
    with pytest.raises(ValueError, match=r"unknown dataset 'posetrack'; expected one of \['aic', 'coco', "
                                         r"'crowdpose', 'mpii'\] or a metainfo \.json file"):
        get_metainfo("posetrack")


def test_unknown_metainfo_key_suggests_the_field():
    with pytest.raises(ValueError, match=r"unknown metainfo keys: \['sigma'\]; did you mean: sigmas\?"):
        DatasetMeta.from_dict({**COCO.to_dict(), "sigma": []})


def test_mpii_layout_is_the_standard_order_with_mirrored_flip_pairs():
    from pose.metainfo import MPII

    assert get_metainfo("mpii") is MPII and MPII.num_keypoints == 16
    assert MPII.keypoint_names[:6] == ("right_ankle", "right_knee", "right_hip", "left_hip", "left_knee", "left_ankle")
    assert MPII.keypoint_names[6:10] == ("pelvis", "thorax", "upper_neck", "head_top")
    assert MPII.keypoint_names[10:] == ("right_wrist", "right_elbow", "right_shoulder", "left_shoulder", "left_elbow",
                                        "left_wrist")
    _check_flip_pairs_mirror_names(MPII)
    assert len(MPII.skeleton) == 15  # a tree over 16 joints


def test_aic_layout_sigmas_and_flip_pairs():
    from pose.metainfo import AIC

    assert get_metainfo("aic") is AIC and AIC.num_keypoints == 14
    assert AIC.keypoint_names == (
        "right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow", "left_wrist",
        "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle", "head_top", "neck")
    _check_flip_pairs_mirror_names(AIC)
    # The official AIC evaluation's delta (= 2 sigma) for the right shoulder and the neck
    assert 2 * AIC.sigmas[0] == pytest.approx(0.02776304) and 2 * AIC.sigmas[13] == pytest.approx(0.02472346)
    assert AIC.sigmas[AIC.index("right_hip")] == max(AIC.sigmas)  # the hips are the loosest


def _check_flip_pairs_mirror_names(meta: DatasetMeta) -> None:
    for i, name in enumerate(meta.keypoint_names):
        partner = meta.keypoint_names[meta.flip_indices[i]]
        if name.startswith(("left_", "right_")):
            side, other = ("left_", "right_") if name.startswith("left_") else ("right_", "left_")
            assert partner == other + name[len(side):], (name, partner)
        else:
            assert partner == name


def test_aic_to_mpii_correspondence_by_name():
    from pose.metainfo import AIC, AIC_TO_MPII, MPII

    assert len(AIC_TO_MPII) == 13  # 12 limb joints and the head top; AIC's neck has no MPII joint
    for a, m in AIC_TO_MPII:
        assert AIC.keypoint_names[a] == MPII.keypoint_names[m]
    assert AIC.index("neck") not in {a for a, _ in AIC_TO_MPII}
    assert {MPII.index(n) for n in ("pelvis", "thorax", "upper_neck")}.isdisjoint({m for _, m in AIC_TO_MPII})
    assert (AIC.index("right_shoulder"), MPII.index("right_shoulder")) in AIC_TO_MPII
    assert (AIC.index("head_top"), MPII.index("head_top")) in AIC_TO_MPII
    # flipping commutes with the correspondence: mirror partners map onto mirror partners
    pairs = dict(AIC_TO_MPII)
    for a, m in AIC_TO_MPII:
        assert pairs[int(AIC.flip_indices[a])] == MPII.flip_indices[m]


def test_remap_keypoints_carries_aic_people_into_mpii_order():
    import numpy as np

    from pose.metainfo import AIC, AIC_TO_MPII, MPII, remap_keypoints

    kps = np.arange(2 * 3 * 14 * 2, dtype=np.float32).reshape(2, 3, 14, 2)  # (batch, people, K_aic, 2)
    vis = np.ones((2, 3, 14), np.float32)
    vis[0, 0, AIC.index("left_wrist")] = 0
    out, out_vis = remap_keypoints(kps, vis, AIC_TO_MPII, MPII.num_keypoints)
    assert out.shape == (2, 3, 16, 2) and out_vis.shape == (2, 3, 16)
    np.testing.assert_array_equal(out[..., MPII.index("left_knee"), :], kps[..., AIC.index("left_knee"), :])
    assert out_vis[0, 0, MPII.index("left_wrist")] == 0 and out_vis[0, 1, MPII.index("left_wrist")] == 1
    for name in ("pelvis", "thorax", "upper_neck"):  # no AIC source: zeros, not visible
        assert not out[..., MPII.index(name), :].any() and not out_vis[..., MPII.index(name)].any()
    assert out_vis.sum() == 2 * 3 * 13 - 1
