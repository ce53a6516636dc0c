"""Visibility rules on hand-built scenes (internal API) and on generated images."""

from __future__ import annotations

import numpy as np
import pytest

from pose.metainfo import AIC, COCO, CROWDPOSE, MPII, DatasetMeta
from pose.synth import SynthConfig, generate_image
from pose.synth.annotate import keypoint_joint_index, person_annotation
from pose.synth.materials import sample_appearance
from pose.synth.render import render_scene
from pose.synth.scene import PersonSpec, SceneSpec
from pose.synth.skeleton3d import JOINT_INDEX, Camera, neutral_pose, sample_body_shape

QUIET = SynthConfig(distractors=0.0, occluders=0.0, clutter=0.3)
J = JOINT_INDEX


def _person(cam: Camera, yaw: float, u: float, height_px: float, seed: int = 0,
            v: float | None = None) -> PersonSpec:
    rng = np.random.default_rng(seed)
    shape = sample_body_shape(rng)
    depth = cam.f * shape.height / height_px
    return PersonSpec(shape, neutral_pose(), sample_appearance(rng), yaw, 0.0, 0.0, u,
                      cam.height * 0.95 if v is None else v, depth)


def _render(people: list[PersonSpec], cam: Camera, seed: int = 0):
    return render_scene(SceneSpec(cam, "sparse", people, [], 0.0, 1.0), np.random.default_rng(seed), QUIET)


def _cam(w: int = 200, h: int = 260) -> Camera:
    return Camera(300.0, (w - 1) / 2, (h - 1) / 2, w, h, 0.0)


def test_keypoint_names_map_to_the_body_model():
    for meta in (COCO, CROWDPOSE, MPII, AIC):
        idx = keypoint_joint_index(meta)
        assert len(idx) == meta.num_keypoints and len(set(idx.tolist())) == meta.num_keypoints
    odd = DatasetMeta("odd", ("nose", "tail"), (), (0.1, 0.1), (), (0, 1))
    with pytest.raises(ValueError, match="tail"):
        keypoint_joint_index(odd)


def test_mpii_joints_are_derived_from_the_body():
    """Pelvis = mid-hip, thorax = mid-shoulder (3D midpoints, so within a pixel of the 2D ones), upper neck
    between the neck's base and the head top, the head box around the head (MPII's head segment)."""
    cam = _cam()
    front = _render([_person(cam, 0.0, cam.cx, 230)], cam).people[0]
    uv, vis = front.uv, front.visibility

    def mid(a, b):
        return (uv[J[a]] + uv[J[b]]) / 2

    assert np.linalg.norm(uv[J["pelvis"]] - mid("left_hip", "right_hip")) < 1.0
    assert np.linalg.norm(uv[J["thorax"]] - mid("left_shoulder", "right_shoulder")) < 1.0
    assert uv[J["neck"], 1] > uv[J["upper_neck"], 1] > uv[J["head"], 1] > uv[J["top_head"], 1]  # y grows down
    x1, y1, x2, y2 = front.head_box
    for name in ("upper_neck", "top_head", "nose", "left_ear", "right_ear"):
        x, y = uv[J[name]]
        assert x1 - 1 <= x <= x2 + 1 and y1 - 1 <= y <= y2 + 1, name
    # the head segment (upper neck to head top) spans the box's height, as MPII's head boxes do
    assert abs(np.linalg.norm(uv[J["top_head"]] - uv[J["upper_neck"]]) - (y2 - y1)) < 1.5
    assert all(vis[J[n]] == 2 for n in ("pelvis", "thorax", "upper_neck", "top_head"))
    # seen from behind the thorax and the pelvis are still labelled (occluded by the body's own back)
    back = _render([_person(cam, 180.0, cam.cx, 230)], cam).people[0].visibility
    assert back[J["thorax"]] in (1, 2) and back[J["pelvis"]] in (1, 2)


def test_face_points_follow_the_head():
    cam = _cam()
    front = _render([_person(cam, 0.0, cam.cx, 230)], cam).people[0].visibility
    back = _render([_person(cam, 180.0, cam.cx, 230)], cam).people[0].visibility
    for name in ("nose", "left_eye", "right_eye"):
        assert front[J[name]] == 2, name
        assert back[J[name]] == 1, name
    # yaw 90: the person faces image-right and shows its right side; its left ear/eye are hidden
    side = _render([_person(cam, 90.0, cam.cx, 230)], cam).people[0].visibility
    assert side[J["right_ear"]] == 2 and side[J["left_ear"]] == 1
    other = _render([_person(cam, 270.0, cam.cx, 230)], cam).people[0].visibility
    assert other[J["left_ear"]] == 2 and other[J["right_ear"]] == 1


def test_far_side_joints_hidden_by_own_body():
    cam = _cam()
    vis = _render([_person(cam, 90.0, cam.cx, 230)], cam).people[0].visibility
    assert vis[J["right_shoulder"]] == 2 and vis[J["left_shoulder"]] == 1
    assert vis[J["right_knee"]] == 2 and vis[J["left_knee"]] == 1
    assert vis[J["right_elbow"]] == 2 and vis[J["left_elbow"]] == 1


def test_joints_behind_a_nearer_person_are_occluded():
    cam = _cam()
    back = _person(cam, 0.0, cam.cx, 150, seed=1, v=cam.height * 0.8)
    front = _person(cam, 0.0, cam.cx + 5, 240, seed=2)
    r = _render([back, front], cam)
    pb, pf = r.people
    covered = 0
    for j in range(len(pb.uv)):
        if pb.visibility[j] == 0:
            continue
        x, y = round(pb.uv[j, 0]), round(pb.uv[j, 1])
        if r.ids[y, x] == 1:  # the front person's body is at this joint's pixel
            assert pb.visibility[j] == 1
            covered += 1
    assert covered >= 6
    assert pb.visibility[J["left_shoulder"]] == 1 and pb.visibility[J["right_hip"]] == 1
    assert pf.visibility[J["left_shoulder"]] == 2 and pf.visibility[J["right_hip"]] == 2


def test_truncated_person_has_zeroed_joints_outside():
    cam = _cam()
    r = _render([_person(cam, 0.0, 2.0, 230)], cam)  # half of the body is left of the image
    p = r.people[0]
    assert (p.visibility == 0).any() and (p.visibility > 0).any()
    ann = person_annotation(r, 0, keypoint_joint_index(COCO), QUIET, with_segmentation=True)
    kp = np.asarray(ann["keypoints"]).reshape(-1, 3)
    assert (kp[kp[:, 2] == 0, :2] == 0).all()
    assert (kp[kp[:, 2] > 0, 0] >= 0).all() and ann["bbox"][0] == 0.0


def test_tiny_and_hidden_people():
    cam = _cam()
    tiny = _person(cam, 0.0, 40.0, 26, v=120.0)
    hidden = _person(cam, 0.0, cam.cx, 40, seed=3, v=110.0)
    wall = _person(cam, 0.0, cam.cx, 250, seed=4)  # stands right in front of the hidden one
    r = _render([tiny, hidden, wall], cam)
    kp = keypoint_joint_index(COCO)
    a_tiny = person_annotation(r, 0, kp, QUIET, with_segmentation=True)
    assert a_tiny is not None and a_tiny["num_keypoints"] == 0
    assert a_tiny["keypoints"] == [0] * (3 * COCO.num_keypoints)
    a_hidden = person_annotation(r, 1, kp, QUIET, with_segmentation=True)
    assert a_hidden is None  # entirely behind the torso of the near person: not annotated
    assert person_annotation(r, 2, kp, QUIET, with_segmentation=True)["num_keypoints"] > 10


def test_generated_crowd_labels_match_the_depth_buffer():
    cfg = SynthConfig(format="crowdpose", long_side=(224, 224), crowd_fraction=1.0, group_fraction=0.0,
                      seed=2)
    res = generate_image(cfg, "train", 1, keep_render=True)
    r = res.render
    assert res.stats["kind"] == "crowd" and len(r.people) >= 6
    occluded_by_people = 0
    for i, p in enumerate(r.people):
        for j in keypoint_joint_index(CROWDPOSE):
            if p.visibility[j] == 0:
                continue
            x, y = round(p.uv[j, 0]), round(p.uv[j, 1])
            assert 0 <= p.uv[j, 0] <= r.depth.shape[1] - 1 and 0 <= p.uv[j, 1] <= r.depth.shape[0] - 1
            nearer = r.depth[y, x] < p.z[j] - p.tolerance[j]
            assert p.visibility[j] == (1 if nearer else 2)
            owner = int(r.ids[y, x])
            if owner not in (i, -1) and 0 <= owner < len(r.people) and nearer:
                occluded_by_people += 1
    assert occluded_by_people > 0
