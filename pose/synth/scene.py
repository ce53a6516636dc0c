"""Scene sampling: image size, camera, how many people, where they stand, how crowded the image is.

Every image is one of three scene kinds, picked by a low-discrepancy sequence over the image index
(so even a handful of images covers all kinds, in the configured proportions):

* ``sparse``: 1..5 people placed apart (crowdIndex ~0, CrowdPose "easy");
* ``group``: 2..8 people side by side in one or two rows, spacing tuned until the estimated
  crowdIndex is in [0.25, 0.7] ("medium");
* ``crowd``: 6..max_people people in 2-4 dense rows, spacing tuned until the estimated crowdIndex is
  >= 0.9 ("hard").

People stand on a ground plane seen by a pinhole camera at a random height and tilt, so nearer people
are larger and lower in the image. A person's depth sets its pixel size (``depth = f * height / px``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from pose.metainfo import CROWDPOSE
from pose.synth.config import SynthConfig
from pose.synth.materials import Appearance, sample_appearance
from pose.synth.skeleton3d import (
    JOINT_INDEX,
    Body3D,
    BodyShape,
    Camera,
    Pose,
    body_rotation,
    forward_kinematics,
    sample_body_shape,
    sample_pose,
)
from pose.synth.visibility import inside_image

SPLIT_CODES: dict[str, int] = {"train": 0, "val": 1, "unlabeled": 2}
SCENE_KINDS: tuple[str, ...] = ("sparse", "group", "crowd")
_GOLDEN = 0.6180339887498949

GROUP_CI = (0.25, 0.7)
CROWD_CI_MIN = 0.9
# The crowdIndex control counts the CrowdPose joints for either format, so that a seed gives the same
# images in both formats.
CI_JOINTS = np.array([JOINT_INDEX[n] for n in CROWDPOSE.keypoint_names])


def image_rng(seed: int, split: str, index: int, stream: int = 0) -> np.random.Generator:
    """The generator of one image: a function of (seed, split, index, stream) only, never of the
    process that draws it. Stream 0 renders the image, stream 1 draws its detections."""
    return np.random.default_rng(np.random.SeedSequence([seed, SPLIT_CODES[split], index, stream]))


def scene_kind(cfg: SynthConfig, split: str, index: int) -> str:
    """The scene kind of an image: a golden-ratio sequence over ``index`` (offset by seed and split)
    cut at ``crowd_fraction`` and ``crowd_fraction + group_fraction``."""
    offset = np.random.default_rng(np.random.SeedSequence([cfg.seed, SPLIT_CODES[split], 2**31])).random()
    u = (offset + index * _GOLDEN) % 1.0
    if u < cfg.crowd_fraction and cfg.max_people >= 3:
        return "crowd"
    if u < cfg.crowd_fraction + cfg.group_fraction and cfg.max_people >= 2:
        return "group"
    return "sparse"


@dataclass
class PersonSpec:
    """One person of a scene.

    Attributes:
        shape, pose, appearance: body, joint angles, looks.
        yaw, pitch, roll: body orientation (degrees; yaw 0 faces the camera, 180 shows the back).
        u, v: pixel where the ground contact point (below the pelvis) projects.
        depth: distance from the camera (m) along its axis.
        crowd: part of an iscrowd region (drawn, annotated only as the region's mask).
    """

    shape: BodyShape
    pose: Pose
    appearance: Appearance
    yaw: float
    pitch: float
    roll: float
    u: float
    v: float
    depth: float
    crowd: bool = False
    _local: Body3D | None = field(default=None, repr=False)

    def body_local(self) -> Body3D:
        """The posed body in its own frame (cached)."""
        if self._local is None:
            self._local = forward_kinematics(self.shape, self.pose, self.appearance.long_hair)
        return self._local

    def body_camera(self, cam: Camera) -> Body3D:
        """The body in the camera frame."""
        rot = body_rotation(self.yaw, self.pitch, self.roll)
        return cam.place(self.body_local(), rot, self.u, self.v, self.depth)

    def height_px(self, cam: Camera) -> float:
        """Standing height in pixels at this depth."""
        return cam.f * self.shape.height / self.depth


@dataclass
class SceneSpec:
    """Everything that is sampled before rendering.

    Attributes:
        camera: the camera (its width/height is the image size).
        kind: one of :data:`SCENE_KINDS`.
        people: annotated people (their index is their owner id in the render).
        crowd_people: people of the iscrowd region (may be empty).
        horizon, ground_k: ground plane: the feet of a person at depth z are at image row
            ``horizon + ground_k * f * 1.7 / z``.
    """

    camera: Camera
    kind: str
    people: list[PersonSpec]
    crowd_people: list[PersonSpec]
    horizon: float
    ground_k: float

    def feet_v(self, depth: float) -> float:
        return self.horizon + self.ground_k * self.camera.f * 1.7 / depth


def sample_image_size(rng: np.random.Generator, cfg: SynthConfig) -> tuple[int, int]:
    """(width, height): long side uniform in ``cfg.long_side``, aspect uniform in ``cfg.aspect``."""
    long = int(rng.integers(cfg.long_side[0], cfg.long_side[1] + 1))
    aspect = float(rng.uniform(*cfg.aspect))
    if aspect >= 1.0:
        return long, max(32, round(long / aspect))
    return max(32, round(long * aspect)), long


def estimate_crowd_index(people: list[PersonSpec], cam: Camera, kp_index: np.ndarray) -> float:
    """crowdIndex from projected joints (in-image joints count as labelled; boxes are their extent)."""
    pts, boxes = [], []
    for p in people:
        body = p.body_camera(cam)
        uv = cam.project(body.joints[kp_index])
        inside = inside_image(uv, cam.width, cam.height)
        uv = uv[inside]
        pts.append(uv)
        if len(uv) == 0:
            boxes.append(None)
            continue
        pad = 0.04 * p.height_px(cam)
        boxes.append((uv[:, 0].min() - pad, uv[:, 1].min() - pad, uv[:, 0].max() + pad, uv[:, 1].max() + pad))
    ratios = []
    for i, box in enumerate(boxes):
        if box is None:
            continue
        n_other = 0
        for j, uv in enumerate(pts):
            if j != i and len(uv):
                n_other += int(((uv[:, 0] >= box[0]) & (uv[:, 0] <= box[2]) & (uv[:, 1] >= box[1])
                                & (uv[:, 1] <= box[3])).sum())
        ratios.append(n_other / len(pts[i]))
    return float(np.mean(ratios)) if ratios else 0.0


def _orientation(rng: np.random.Generator, variety: float, yaw: float) -> tuple[float, float, float]:
    lim = 12.0 * max(variety, 0.1)
    return (float(yaw % 360.0), float(np.clip(rng.normal(0, 3.5 * variety), -lim, lim)),
            float(np.clip(rng.normal(0, 3.0 * variety), -lim, lim)))


def _new_person(rng: np.random.Generator, cfg: SynthConfig, upright: bool, yaw: float) -> PersonSpec:
    shape = sample_body_shape(rng)
    pose = sample_pose(rng, cfg.pose_variety, upright=upright)
    app = sample_appearance(rng)
    y, p, r = _orientation(rng, cfg.pose_variety, yaw)
    return PersonSpec(shape, pose, app, y, p, r, 0.0, 0.0, 1.0)


def _count(rng: np.random.Generator, lo: int, hi: int) -> int:
    hi = max(lo, hi)
    return int(rng.integers(lo, hi + 1))


def sample_scene(rng: np.random.Generator, cfg: SynthConfig, kind: str, width: int, height: int,
                 crowd_region: bool) -> SceneSpec:
    """Sample camera, people and their placement for one image.

    Args:
        kind: scene kind (:func:`scene_kind`).
        crowd_region: add an iscrowd region of tiny people.
    """
    fov = math.radians(rng.uniform(45, 70))
    f = width / (2 * math.tan(fov / 2))
    cam = Camera(f, (width - 1) / 2, (height - 1) / 2, width, height, float(rng.uniform(-3, 20)))
    mp, xp = cfg.min_people, cfg.max_people
    if kind == "crowd":
        n = _count(rng, max(mp, min(6, xp)), xp)
    elif kind == "group":
        n = _count(rng, max(mp, 2), min(xp, 8))
    else:
        n = _count(rng, mp, min(xp, max(mp, 5)))
    lo_px = max(float(cfg.min_person_px), cfg.person_height[0] * height)
    hi_px = max(lo_px, cfg.person_height[1] * height)
    k = float(rng.uniform(0.75, 1.3))  # camera height / 1.7 m
    people: list[PersonSpec] = []
    if kind == "sparse":
        h_ref = math.exp(rng.uniform(math.log(lo_px), math.log(hi_px)))
        v_ref = max(rng.uniform(0.55, 1.0) * height, min(0.97 * h_ref, 1.05 * height))
        horizon = v_ref - k * h_ref
        spec = SceneSpec(cam, kind, people, [], horizon, k)
        _place_sparse(rng, cfg, spec, n, h_ref, lo_px, hi_px)
    else:
        rows = 1 if (kind == "group" and n <= 4) else int(rng.integers(2, 3 if kind == "group" else 5))
        rows = min(rows, n)
        per_row = math.ceil(n / rows)
        spacing = rng.uniform(0.45, 0.75) if kind == "group" else rng.uniform(0.3, 0.5)
        z_fit = per_row * spacing * f / (0.95 * width)  # depth at which the front row spans the image
        h_fit = f * 1.7 / z_fit
        hi_g = max(lo_px, min(hi_px, h_fit))
        # groups and crowds lean to their largest fitting size (log-scale, u^0.6)
        h_ref = math.exp(math.log(lo_px) + rng.random() ** 0.6 * (math.log(hi_g) - math.log(lo_px)))
        v_ref = max(rng.uniform(0.6, 1.0) * height, min(0.97 * h_ref, 1.05 * height))
        horizon = v_ref - k * h_ref
        spec = SceneSpec(cam, kind, people, [], horizon, k)
        _place_rows(rng, cfg, spec, n, rows, spacing, f * 1.7 / h_ref)
    if crowd_region:
        spec.crowd_people = _crowd_region(rng, cfg, spec)
    return spec


def _place_sparse(rng: np.random.Generator, cfg: SynthConfig, spec: SceneSpec, n: int, h_ref: float,
                  lo_px: float, hi_px: float) -> None:
    cam = spec.camera
    W, H = cam.width, cam.height
    boxes: list[tuple[float, float, float, float]] = []
    for i in range(n):
        p = _new_person(rng, cfg, upright=False, yaw=rng.uniform(0, 360))
        best = None
        for attempt in range(25):
            h = h_ref if (i == 0 and attempt < 5) else h_ref * math.exp(rng.uniform(-0.6, 0.25))
            h = float(np.clip(h, cfg.min_person_px, hi_px * 1.05))
            depth = cam.f * 1.7 / h
            v = spec.feet_v(depth) + rng.normal(0, 0.02) * h
            if v < 0.35 * h or v - h > 0.85 * H:  # feet above the image or head below it
                continue
            half = 0.28 * h
            if rng.random() < cfg.truncation:
                edge = rng.uniform(-0.6, 0.5) * half * 2
                u = edge if rng.random() < 0.5 else W - 1 - edge
            else:
                u = rng.uniform(min(half, W / 2), max(W - half, W / 2))
            box = (u - half, v - h, u + half, v)
            own = (box[2] - box[0]) * (box[3] - box[1])
            overlap = max((_inter(box, b) / own for b in boxes), default=0.0)
            if best is None or overlap < best[0]:
                best = (overlap, u, v, depth, box)
            if overlap < 0.02:
                break
        if best is None:
            continue
        _, p.u, p.v, d, box = best
        p.depth = d
        boxes.append(box)
        spec.people.append(p)


def _inter(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    return max(0.0, w) * max(0.0, h)


def _place_rows(rng: np.random.Generator, cfg: SynthConfig, spec: SceneSpec, n: int, rows: int,
                spacing: float, z_ref: float) -> None:
    cam = spec.camera
    kind = spec.kind
    if kind == "crowd":
        facing = float(rng.choice([0.0, 180.0, 90.0, 270.0], p=[0.45, 0.25, 0.15, 0.15]))
    people, row_of, slot = [], [], []
    per_row = math.ceil(n / rows)
    for i in range(n):
        if kind == "crowd":
            yaw = facing + rng.normal(0, 25) if rng.random() < 0.8 else rng.uniform(0, 360)
        else:
            yaw = rng.normal(0, 30) if rng.random() < 0.6 else rng.uniform(0, 360)
        people.append(_new_person(rng, cfg, upright=(kind == "crowd" and rng.random() < 0.9), yaw=yaw))
        row_of.append(i // per_row)
        slot.append(i % per_row)
    row_depth = [z_ref]
    for _ in range(1, rows):
        row_depth.append(row_depth[-1] + rng.uniform(0.5, 1.2) * (1.0 if kind == "crowd" else 1.3))
    u_c = rng.uniform(0.3, 0.7) * cam.width
    jit_x = rng.normal(0, 0.06, n)
    jit_z = rng.normal(0, 0.12, n)
    jit_v = rng.normal(0, 0.015, n)
    count_row = [row_of.count(r) for r in range(rows)]

    def place(sp: float) -> None:
        for i, p in enumerate(people):
            r = row_of[i]
            z = max(0.8, row_depth[r] + jit_z[i])
            x_c = (u_c - cam.cx) * z_ref / cam.f
            x = x_c + (slot[i] - (count_row[r] - 1) / 2 + 0.5 * (r % 2)) * sp + jit_x[i] * sp
            p.depth = z
            p.u = cam.cx + cam.f * x / z
            p.v = spec.feet_v(z) + jit_v[i] * cam.f * 1.7 / z

    lo, hi = (GROUP_CI[0], GROUP_CI[1]) if kind == "group" else (CROWD_CI_MIN, 99.0)
    best: tuple[float, float] | None = None
    for _ in range(8):
        place(spacing)
        ci = estimate_crowd_index(people, cam, CI_JOINTS)
        err = max(lo - ci, ci - hi, 0.0)
        if best is None or err < best[0]:
            best = (err, spacing)
        if err == 0.0:
            break
        spacing *= 0.75 if ci < lo else 1.3
    assert best is not None
    place(best[1])
    spec.people.extend(people)


def _crowd_region(rng: np.random.Generator, cfg: SynthConfig, spec: SceneSpec) -> list[PersonSpec]:
    cam = spec.camera
    W, H = cam.width, cam.height
    h = float(rng.uniform(12, max(13, min(26, cfg.min_keypoint_px - 2))))
    z0 = cam.f * 1.7 / h
    v0 = spec.feet_v(z0)
    if not 0.25 * H + h < v0 < 0.8 * H:
        v0 = rng.uniform(0.3, 0.6) * H
    width = rng.uniform(0.25, 0.5) * W
    x0 = rng.uniform(0, W - width)
    out = []
    for _ in range(int(rng.integers(10, 25))):
        p = _new_person(rng, cfg, upright=True, yaw=rng.uniform(0, 360))
        p.depth = z0 * rng.uniform(0.95, 1.25)
        p.u = x0 + rng.uniform(0, width)
        p.v = v0 + (cam.f * 1.7 / p.depth - h) * spec.ground_k + rng.normal(0, 0.1) * h
        p.crowd = True
        out.append(p)
    return out
