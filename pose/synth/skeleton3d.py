"""The SynthPose body model: per-person proportions, joint-angle poses, forward kinematics, projection.

Body frame (metres): origin at the mid-hip point, ``x`` to the person's *left*, ``y`` up, ``z`` forward
(the way the chest faces). Camera frame: ``x`` right, ``y`` down, ``z`` away from the camera (pinhole
camera, perspective projection). A person facing the camera (yaw 0) has its left side on the image's
right.

The body is a set of solid primitives (tapered capsules for limbs and neck, ellipsoids for head,
torso, hands) that :mod:`pose.synth.raster` renders with a z-buffer. Internal joints are a superset of
the COCO, CrowdPose, MPII and AI Challenger keypoints, named like them (``top_head`` and ``neck`` for
CrowdPose; ``pelvis`` (mid-hip), ``thorax`` (mid-shoulder) and ``upper_neck`` (the bottom of the head) for
MPII), so a dataset's keypoints are picked by name from :class:`~pose.metainfo.DatasetMeta`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

JOINT_NAMES: tuple[str, ...] = (
    "pelvis", "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
    "left_toe", "right_toe", "neck", "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist", "left_hand", "right_hand", "head", "top_head", "nose",
    "left_eye", "right_eye", "left_ear", "right_ear", "thorax", "upper_neck",
)
NUM_BODY_JOINTS = 25
"""The body model's own joints come first; ``thorax`` and ``upper_neck`` (MPII's, derived from them:
:func:`forward_kinematics`) follow, so the first 25 indices never move."""
JOINT_INDEX: dict[str, int] = {n: i for i, n in enumerate(JOINT_NAMES)}

# How far (metres, for a 1.70 m person) a joint's own surface may lie in front of the joint centre:
# a joint is visible when nothing is nearer than (joint depth - tolerance) at its pixel.
_TOLERANCE_170: dict[str, float] = {
    "pelvis": 0.14, "hip": 0.12, "knee": 0.08, "ankle": 0.07, "toe": 0.05, "neck": 0.1,
    "shoulder": 0.09, "elbow": 0.07, "wrist": 0.06, "hand": 0.04, "head": 0.12, "top_head": 0.04,
    "nose": 0.02, "eye": 0.025, "ear": 0.03, "thorax": 0.14, "upper_neck": 0.1,
}


def _tolerance_key(name: str) -> str:
    for prefix in ("left_", "right_"):
        if name.startswith(prefix):
            return name[len(prefix):]
    return name


JOINT_TOLERANCE: np.ndarray = np.array([_TOLERANCE_170[_tolerance_key(n)] for n in JOINT_NAMES]) / 1.70


def rot_x(deg: float) -> np.ndarray:
    """(3, 3) rotation about x by ``deg`` degrees (right-handed)."""
    a = np.deg2rad(deg)
    c, s = np.cos(a), np.sin(a)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def rot_y(deg: float) -> np.ndarray:
    """(3, 3) rotation about y by ``deg`` degrees."""
    a = np.deg2rad(deg)
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def rot_z(deg: float) -> np.ndarray:
    """(3, 3) rotation about z by ``deg`` degrees."""
    a = np.deg2rad(deg)
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


# ---------------------------------------------------------------------------------------------- shape
@dataclass
class BodyShape:
    """Per-person proportions. ``height`` in metres; the other lengths are fractions of it.

    Attributes:
        height: standing height (m).
        build: girth factor (0.8 slim .. 1.4 heavy) scaling limb radii and torso depth.
        shoulder_half, hip_half: half the shoulder / hip joint separation.
        torso: hip line to shoulder line.
        upper_arm, forearm, hand, thigh, shin, foot: segment lengths.
        head_axes: (3,) head ellipsoid semi-axes (x width, y height, z depth).
        belly: extra abdominal depth factor.
    """

    height: float
    build: float
    shoulder_half: float
    hip_half: float
    torso: float
    upper_arm: float
    forearm: float
    hand: float
    thigh: float
    shin: float
    foot: float
    head_axes: tuple[float, float, float]
    belly: float


def sample_body_shape(rng: np.random.Generator) -> BodyShape:
    """Random adult (6% children) proportions with per-segment jitter (anthropometric means)."""
    child = rng.random() < 0.06
    height = float(rng.uniform(1.05, 1.45) if child else np.clip(rng.normal(1.70, 0.09), 1.48, 1.98))
    feminine = rng.random() < 0.5

    def j(mean: float, sd: float = 0.035) -> float:
        return mean * min(max(float(rng.normal(1.0, sd)), 1 - 2.5 * sd), 1 + 2.5 * sd)

    head_scale = 1.25 if child else 1.0
    return BodyShape(
        height=height,
        build=float(np.clip(rng.normal(1.0, 0.12), 0.8, 1.4)),
        shoulder_half=j(0.118 if feminine else 0.128),
        hip_half=j(0.056 if feminine else 0.051),
        torso=j(0.288 * (0.95 if child else 1.0), 0.025),
        upper_arm=j(0.186),
        forearm=j(0.146),
        hand=j(0.105),
        thigh=j(0.245 * (0.94 if child else 1.0), 0.025),
        shin=j(0.246 * (0.94 if child else 1.0), 0.025),
        foot=j(0.15),
        head_axes=(j(0.046 * head_scale), j(0.066 * head_scale), j(0.057 * head_scale)),
        belly=float(np.clip(rng.normal(1.0, 0.07), 0.9, 1.25)),
    )


# ---------------------------------------------------------------------------------------------- pose
ARM_LIMITS = np.array([[-60, 180], [-20, 175], [-70, 95], [0, 150], [-60, 70]], dtype=float)
"""Rows: shoulder flexion, abduction, internal rotation, elbow flexion, wrist flexion (degrees)."""
LEG_LIMITS = np.array([[-30, 130], [-20, 60], [-35, 40], [0, 155], [-35, 45]], dtype=float)
"""Rows: hip flexion, abduction, internal rotation, knee flexion, ankle dorsiflexion (degrees)."""
TORSO_LIMITS = np.array([[-25, 85], [-30, 30], [-40, 40]], dtype=float)
"""Rows: forward bend, side bend (to the left), twist (degrees)."""
HEAD_LIMITS = np.array([[-80, 80], [-45, 50], [-30, 30]], dtype=float)
"""Rows: yaw (to the left), pitch (down), roll (degrees)."""

POSE_CATEGORIES: dict[str, float] = {
    "standing": 0.20, "walking": 0.17, "running": 0.06, "arms_raised": 0.06, "one_arm_raised": 0.08,
    "reaching": 0.06, "akimbo": 0.05, "arms_crossed": 0.05, "sitting": 0.07, "sitting_ground": 0.03,
    "crouching": 0.05, "kneeling": 0.03, "bending": 0.05, "kicking": 0.02, "random": 0.02,
}
UPRIGHT_CATEGORIES: tuple[str, ...] = ("standing", "walking", "arms_raised", "one_arm_raised", "reaching",
                                       "akimbo", "arms_crossed")


@dataclass
class Pose:
    """Joint angles in degrees.

    Attributes:
        category: the pose family it was sampled from.
        torso: (3,) forward bend, side bend, twist.
        head: (3,) yaw, pitch, roll relative to the torso.
        arms: (2, 5) rows left, right; columns as :data:`ARM_LIMITS`.
        legs: (2, 5) rows left, right; columns as :data:`LEG_LIMITS`.
        contact: "feet" (standing on the ground), "seat" (sitting on a stool) or "ground" (sitting on it).
    """

    category: str
    torso: np.ndarray
    head: np.ndarray
    arms: np.ndarray
    legs: np.ndarray
    contact: str = "feet"

    def clipped(self) -> Pose:
        """A copy with every angle inside its joint limit."""
        return Pose(
            self.category,
            np.clip(self.torso, TORSO_LIMITS[:, 0], TORSO_LIMITS[:, 1]),
            np.clip(self.head, HEAD_LIMITS[:, 0], HEAD_LIMITS[:, 1]),
            np.clip(self.arms, ARM_LIMITS[:, 0], ARM_LIMITS[:, 1]),
            np.clip(self.legs, LEG_LIMITS[:, 0], LEG_LIMITS[:, 1]),
            self.contact,
        )


def neutral_pose() -> Pose:
    """Standing straight, arms slightly abducted and hanging, looking ahead."""
    arms = np.array([[0.0, 8.0, 0.0, 10.0, 0.0]] * 2)
    legs = np.array([[0.0, 3.0, 0.0, 3.0, 3.0]] * 2)
    return Pose("standing", np.zeros(3), np.zeros(3), arms, legs)


def sample_pose(rng: np.random.Generator, variety: float = 1.0, upright: bool = False) -> Pose:
    """Sample an anatomically plausible pose.

    Args:
        variety: scales the angle noise around each family's canonical angles and the share of
            uniformly random (within the joint limits) poses; 0 gives the canonical families only.
        upright: only standing-type families (crowds).
    """
    names = list(UPRIGHT_CATEGORIES if upright else POSE_CATEGORIES)
    w = np.array([POSE_CATEGORIES[n] for n in names])
    if "random" in names:
        w[names.index("random")] *= variety
    category = names[int(rng.choice(len(names), p=w / w.sum()))]
    p = neutral_pose()
    p.category = category
    arms, legs, torso, head = p.arms, p.legs, p.torso, p.head
    u = rng.uniform
    side = int(rng.integers(2))  # the "active" side for asymmetric families
    arms[:, 1] = u(4, 22, 2)
    arms[:, 3] = u(3, 35, 2)
    arms[:, 2] = u(-10, 25, 2)
    legs[:, 1] = u(0, 10, 2)
    legs[:, 3] = u(0, 10, 2)
    if category == "walking" or category == "running":
        run = category == "running"
        phase = u(0, 2 * np.pi)
        amp = u(28, 50) if run else u(12, 30)
        s = np.sin(phase + np.array([0.0, np.pi]))
        legs[:, 0] = amp * s
        swing = np.maximum(0, np.sin(phase + 1.2 + np.array([0, np.pi])))
        legs[:, 3] = (20 if run else 5) + (70 if run else 35) * swing
        arms[:, 0] = -0.9 * amp * s
        arms[:, 3] = u(70, 100, 2) if run else u(8, 35, 2)
        torso[0] = u(8, 20) if run else u(-3, 6)
    elif category == "arms_raised":
        if rng.random() < 0.5:
            arms[:, 0] = u(140, 180, 2)
            arms[:, 1] = u(0, 30, 2)
        else:
            arms[:, 1] = u(120, 170, 2)
            arms[:, 0] = u(-10, 40, 2)
        arms[:, 3] = u(0, 60, 2)
    elif category == "one_arm_raised":
        arms[side, 0] = u(60, 175)
        arms[side, 1] = u(10, 80)
        arms[side, 3] = u(10, 130)
        arms[side, 2] = u(-40, 20)
    elif category == "reaching":
        arms[side, 0] = u(60, 110)
        arms[side, 1] = u(-10, 50)
        arms[side, 3] = u(0, 30)
        if rng.random() < 0.4:
            arms[1 - side, 0] = u(40, 100)
            arms[1 - side, 3] = u(0, 60)
        torso[0] = u(0, 20)
    elif category == "akimbo":
        n = 2 if rng.random() < 0.6 else 1
        for s_ in ([0, 1] if n == 2 else [side]):
            arms[s_] = [u(-15, 10), u(30, 55), u(70, 95), u(95, 125), u(-10, 10)]
    elif category == "arms_crossed":
        arms[:, 0] = u(25, 55, 2)
        arms[:, 1] = u(-15, 5, 2)
        arms[:, 2] = u(60, 90, 2)
        arms[:, 3] = u(105, 140, 2)
    elif category == "sitting":
        legs[:, 0] = u(75, 100, 2)
        legs[:, 3] = u(70, 110, 2)
        legs[:, 1] = u(2, 25, 2)
        arms[:, 0] = u(10, 50, 2)
        arms[:, 3] = u(30, 90, 2)
        torso[0] = u(-10, 20)
        p.contact = "seat"
    elif category == "sitting_ground":
        legs[:, 0] = u(60, 100, 2)
        legs[:, 3] = u(20, 140, 2)
        legs[:, 1] = u(10, 40, 2)
        arms[:, 0] = u(-20, 50, 2)
        arms[:, 3] = u(10, 90, 2)
        torso[0] = u(-15, 25)
        p.contact = "ground"
    elif category == "crouching":
        legs[:, 0] = u(95, 125, 2)
        legs[:, 3] = u(110, 150, 2)
        legs[:, 1] = u(5, 35, 2)
        torso[0] = u(15, 45)
        arms[:, 0] = u(10, 70, 2)
        arms[:, 3] = u(10, 90, 2)
    elif category == "kneeling":
        legs[side] = [u(75, 95), u(0, 15), 0, u(75, 100), 0]
        legs[1 - side] = [u(-10, 15), u(0, 10), 0, u(85, 110), 0]
        torso[0] = u(-5, 15)
        arms[:, 0] = u(0, 60, 2)
        arms[:, 3] = u(10, 90, 2)
    elif category == "bending":
        torso[0] = u(40, 80)
        arms[:, 0] = torso[0] * u(0.6, 1.1, 2)
        arms[:, 3] = u(0, 40, 2)
        legs[:, 3] = u(0, 25, 2)
    elif category == "kicking":
        legs[side, 0] = u(40, 100)
        legs[side, 3] = u(0, 60)
        torso[0] = u(-15, 10)
        arms[:, 1] = u(20, 80, 2)
    elif category == "random":
        arms[:] = u(ARM_LIMITS[:, 0] * 0.8, ARM_LIMITS[:, 1] * 0.8, (2, 5))
        legs[:] = u([-20, -10, -20, 0, -10], [90, 45, 25, 120, 30], (2, 5))
        torso[:] = u(TORSO_LIMITS[:, 0] * 0.6, TORSO_LIMITS[:, 1] * 0.6)
    # keep feet roughly flat on the ground
    legs[:, 4] = legs[:, 3] - legs[:, 0] - torso[0] * 0.0 + u(-5, 5, 2)
    if category == "kneeling":
        legs[1 - side, 4] = u(-30, -10)
    # per-joint noise
    v = variety
    arms += rng.normal(0, 1, arms.shape) * np.array([9, 7, 12, 9, 10]) * v
    legs += rng.normal(0, 1, legs.shape) * np.array([5, 4, 6, 6, 6]) * v
    torso += rng.normal(0, 1, 3) * np.array([4, 4, 8]) * v
    head[:] = [rng.normal(0, 28 * min(1.0, v) + 1), rng.normal(4, 12 * v), rng.normal(0, 7 * v)]
    return p.clipped()


# ---------------------------------------------------------------------------------------------- primitives
@dataclass
class Capsule:
    """Tapered capsule (sphere-swept segment) between ``p0`` and ``p1`` with radii ``r0``, ``r1`` (m)."""

    part: str
    p0: np.ndarray
    p1: np.ndarray
    r0: float
    r1: float

    def transformed(self, rot: np.ndarray, trans: np.ndarray) -> Capsule:
        return Capsule(self.part, rot @ self.p0 + trans, rot @ self.p1 + trans, self.r0, self.r1)


@dataclass
class Ellipsoid:
    """Ellipsoid ``{center + axes @ q : |q| <= 1}``; ``axes`` (3, 3) columns are the semi-axis vectors,
    so ``q`` is the point's coordinate in the part's own frame (x left, y up, z forward)."""

    part: str
    center: np.ndarray
    axes: np.ndarray

    def transformed(self, rot: np.ndarray, trans: np.ndarray) -> Ellipsoid:
        return Ellipsoid(self.part, rot @ self.center + trans, rot @ self.axes)


Primitive = Capsule | Ellipsoid


@dataclass
class Body3D:
    """A posed body.

    Attributes:
        joints: (J, 3) joint positions (:data:`JOINT_NAMES` order).
        primitives: solid parts of the person.
        props: solids that are not the person (a stool to sit on).
        tolerance: (J,) visibility depth tolerance per joint (m).
        contact: (3,) ground contact point below the pelvis (the lowest body point's height).
    """

    joints: np.ndarray
    primitives: list[Primitive]
    props: list[Primitive] = field(default_factory=list)
    tolerance: np.ndarray = field(default_factory=lambda: np.zeros(len(JOINT_NAMES)))
    contact: np.ndarray = field(default_factory=lambda: np.zeros(3))

    def transformed(self, rot: np.ndarray, trans: np.ndarray) -> Body3D:
        """The body under ``p -> rot @ p + trans`` (e.g. body frame -> camera frame)."""
        return Body3D(
            joints=self.joints @ rot.T + trans,
            primitives=[p.transformed(rot, trans) for p in self.primitives],
            props=[p.transformed(rot, trans) for p in self.props],
            tolerance=self.tolerance,
            contact=rot @ self.contact + trans,
        )


def _ell(part: str, center: np.ndarray, frame: np.ndarray, semi: tuple[float, float, float]) -> Ellipsoid:
    return Ellipsoid(part, np.asarray(center, float), frame @ np.diag(semi))


def forward_kinematics(shape: BodyShape, pose: Pose, long_hair: bool = False) -> Body3D:
    """Pose the body in its own frame (m); ``rotation`` (yaw/pitch/roll) is applied by the caller.

    Returns the joints, the solid primitives and, for ``pose.contact == "seat"``, a stool prop.
    """
    H = shape.height
    b = shape.build
    J = np.zeros((len(JOINT_NAMES), 3))
    jx = JOINT_INDEX
    rt = rot_x(pose.torso[0]) @ rot_z(pose.torso[1]) @ rot_y(pose.torso[2])
    rh = rt @ rot_y(pose.head[0]) @ rot_x(pose.head[1]) @ rot_z(pose.head[2])
    eye3 = np.eye(3)
    prims: list[Primitive] = []

    torso_len = shape.torso * H
    neck_base = rt @ np.array([0.0, torso_len + 0.02 * H, -0.005 * H])
    J[jx["neck"]] = rt @ np.array([0.0, torso_len + 0.012 * H, -0.004 * H])
    head_c = neck_base + rh @ np.array([0.0, 0.093 * H, 0.012 * H])
    ha = tuple(a * H for a in shape.head_axes)
    head_axes = rh @ np.diag(ha)
    J[jx["head"]] = head_c
    J[jx["top_head"]] = head_c + head_axes @ np.array([0.0, 1.0, 0.0])
    # MPII's upper neck: the bottom of the head ellipsoid, the head top mirrored through the head centre
    # (the neck capsule reaches into the head above it, so the point sits on the neck as MPII marks it)
    J[jx["upper_neck"]] = head_c - head_axes @ np.array([0.0, 1.0, 0.0])
    for name, sgn in (("left", 1.0), ("right", -1.0)):
        e = np.array([0.37 * sgn, 0.13, 0.92])
        J[jx[f"{name}_eye"]] = head_c + head_axes @ (e / np.linalg.norm(e))
        d = np.array([sgn, 0.02, -0.12])
        ear_c = head_c + head_axes @ (d / np.linalg.norm(d))
        J[jx[f"{name}_ear"]] = ear_c + rh @ np.array([0.004 * H * sgn, 0.0, 0.0])
        prims.append(_ell(f"ear_{name[0]}", ear_c, rh, (0.007 * H, 0.019 * H, 0.011 * H)))
    nd = np.array([0.0, -0.12, 1.0])
    nose_c = head_c + head_axes @ (nd / np.linalg.norm(nd)) + rh @ np.array([0.0, 0.0, 0.002 * H])
    J[jx["nose"]] = nose_c + rh @ np.array([0.0, -0.004 * H, 0.011 * H])
    prims.append(Ellipsoid("head", head_c, head_axes))
    prims.append(_ell("nose", nose_c, rh, (0.009 * H, 0.015 * H, 0.011 * H)))
    if long_hair:
        prims.append(_ell("hair_back", head_c + rh @ np.array([0.0, -0.045 * H, -0.03 * H]), rh,
                          (0.047 * H, 0.075 * H, 0.032 * H)))
    prims.append(Capsule("neck", rt @ np.array([0.0, torso_len - 0.03 * H, -0.006 * H]),
                         head_c + rh @ np.array([0.0, -0.04 * H, -0.012 * H]), 0.029 * H * b ** 0.5,
                         0.027 * H * b ** 0.5))

    # torso: pelvis, belly, chest ellipsoids + trapezius capsules
    hip_w = shape.hip_half * H
    prims.append(_ell("pelvis", np.array([0.0, 0.01 * H, -0.004 * H]), eye3,
                      (hip_w + 0.043 * H * b, 0.062 * H, 0.058 * H * b)))
    prims.append(_ell("belly", rt @ np.array([0.0, 0.095 * H, 0.002 * H]), rt,
                      (0.076 * H * b, 0.1 * H, 0.05 * H * b * shape.belly)))
    sh_w = shape.shoulder_half * H
    prims.append(_ell("chest", rt @ np.array([0.0, 0.2 * H, 0.004 * H]), rt,
                      (sh_w * 0.85 * b ** 0.3, 0.1 * H, 0.06 * H * b)))
    J[jx["pelvis"]] = 0.0

    for side, (name, sgn) in enumerate((("left", 1.0), ("right", -1.0))):
        s = name[0]
        # arm
        flex, abd, tw, elb, wri = pose.arms[side]
        sh = rt @ np.array([sgn * sh_w, torso_len, -0.006 * H])
        r_ua = rt @ rot_z(sgn * abd) @ rot_x(-flex) @ rot_y(-sgn * tw)
        elbow = sh + r_ua @ np.array([0.0, -shape.upper_arm * H, 0.0])
        r_fa = r_ua @ rot_x(-elb)
        wrist = elbow + r_fa @ np.array([0.0, -shape.forearm * H, 0.0])
        r_hd = r_fa @ rot_x(-wri)
        hand_c = wrist + r_hd @ np.array([0.0, -0.42 * shape.hand * H, 0.0])
        J[jx[f"{name}_shoulder"]] = sh
        J[jx[f"{name}_elbow"]] = elbow
        J[jx[f"{name}_wrist"]] = wrist
        J[jx[f"{name}_hand"]] = wrist + r_hd @ np.array([0.0, -shape.hand * H, 0.0])
        prims.append(Capsule(f"trapezius_{s}", neck_base + rt @ np.array([0.0, -0.025 * H, -0.008 * H]),
                             sh + rt @ np.array([-sgn * 0.012 * H, 0.004 * H, -0.004 * H]),
                             0.03 * H * b ** 0.5, 0.026 * H * b))
        prims.append(_ell(f"shoulder_{s}", sh, r_ua, (0.031 * H * b, 0.033 * H * b, 0.031 * H * b)))
        prims.append(Capsule(f"upper_arm_{s}", sh, elbow, 0.029 * H * b, 0.023 * H * b))
        prims.append(Capsule(f"forearm_{s}", elbow, wrist, 0.022 * H * b, 0.016 * H * b))
        prims.append(_ell(f"hand_{s}", hand_c, r_hd, (0.011 * H, 0.047 * shape.hand / 0.105 * H, 0.025 * H)))
        # leg
        flex, abd, tw, knee, ank = pose.legs[side]
        hip = np.array([sgn * hip_w, 0.0, 0.0])
        r_th = rot_z(sgn * abd) @ rot_x(-flex) @ rot_y(-sgn * tw)
        knee_p = hip + r_th @ np.array([0.0, -shape.thigh * H, 0.0])
        r_sh = r_th @ rot_x(knee)
        ankle = knee_p + r_sh @ np.array([0.0, -shape.shin * H, 0.0])
        r_ft = r_sh @ rot_x(-ank)
        heel = ankle + r_ft @ np.array([0.0, -0.022 * H, -0.02 * H])
        toe = ankle + r_ft @ np.array([0.0, -0.026 * H, (shape.foot - 0.045) * H])
        J[jx[f"{name}_hip"]] = hip
        J[jx[f"{name}_knee"]] = knee_p
        J[jx[f"{name}_ankle"]] = ankle
        J[jx[f"{name}_toe"]] = toe
        prims.append(Capsule(f"thigh_{s}", hip, knee_p, 0.046 * H * b, 0.031 * H * b))
        prims.append(Capsule(f"shin_{s}", knee_p, ankle, 0.03 * H * b, 0.019 * H * b))
        prims.append(Capsule(f"foot_{s}", heel, toe, 0.019 * H, 0.016 * H))
    # MPII's thorax: the midpoint of the shoulder joints (the pelvis, the origin, is the mid-hip point)
    J[jx["thorax"]] = 0.5 * (J[jx["left_shoulder"]] + J[jx["right_shoulder"]])

    tol = JOINT_TOLERANCE * H
    # ground contact: lowest of the feet (and knees / seat when kneeling or sitting on the ground)
    low = [J[jx["left_ankle"], 1] - 0.045 * H, J[jx["right_ankle"], 1] - 0.045 * H,
           J[jx["left_toe"], 1] - 0.016 * H, J[jx["right_toe"], 1] - 0.016 * H]
    if pose.category == "kneeling":
        low += [J[jx["left_knee"], 1] - 0.03 * H, J[jx["right_knee"], 1] - 0.03 * H]
    if pose.contact == "ground":
        low = [-0.07 * H]
    ground = float(min(low))
    props: list[Primitive] = []
    if pose.contact == "seat":
        seat_y = -0.075 * H
        top = np.array([0.0, seat_y, -0.03 * H])
        props.append(_ell("stool_seat", top, eye3, (0.12 * H, 0.018 * H, 0.11 * H)))
        if seat_y - ground > 0.03 * H:
            props.append(Capsule("stool_leg", top + np.array([0.0, -0.01 * H, 0.0]),
                                 np.array([0.0, ground + 0.01 * H, -0.03 * H]), 0.018 * H, 0.025 * H))
    return Body3D(J, prims, props, tol, np.array([0.0, ground, 0.0]))


def body_rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """(3, 3) body-to-world rotation: yaw about the vertical, then pitch (lean forward), then roll."""
    return rot_y(yaw) @ rot_x(pitch) @ rot_z(roll)


# world (y up, z toward the viewer for a person at yaw 0) -> camera (y down, z away from the camera)
WORLD_TO_CAMERA = np.diag([1.0, -1.0, -1.0])


@dataclass
class Camera:
    """Pinhole camera: ``u = cx + f * x / z``, ``v = cy + f * y / z`` (pixel centres at integers).

    Attributes:
        f: focal length in pixels.
        cx, cy: principal point.
        width, height: image size.
        elevation: how far the camera looks down onto the people (degrees).
    """

    f: float
    cx: float
    cy: float
    width: int
    height: int
    elevation: float = 0.0

    def project(self, points: np.ndarray) -> np.ndarray:
        """(N, 3) camera-frame points -> (N, 2) pixel coordinates."""
        z = np.maximum(points[:, 2], 1e-6)
        return np.stack([self.cx + self.f * points[:, 0] / z, self.cy + self.f * points[:, 1] / z], axis=1)

    def place(self, body: Body3D, rotation: np.ndarray, u: float, v: float, depth: float) -> Body3D:
        """Camera-frame body whose ground contact point projects to pixel ``(u, v)`` at ``depth`` (m).

        Args:
            rotation: (3, 3) body-to-world rotation (:func:`body_rotation`).
        """
        rot = rot_x(self.elevation) @ WORLD_TO_CAMERA @ rotation
        contact = rot @ body.contact
        target = np.array([(u - self.cx) * depth / self.f, (v - self.cy) * depth / self.f, depth])
        return body.transformed(rot, target - contact)
