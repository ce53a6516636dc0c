"""Render a sampled scene: background, distractors, people (z-buffered), occluders, camera effects.

:func:`render_scene` returns the final 8-bit image plus the depth / owner buffers and, per annotated
person, the projected joints and their visibility, from which :mod:`pose.synth.annotate` writes the
annotations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from pose.synth.background import draw_distractors, draw_occluders, noise_field, render_background
from pose.synth.config import SynthConfig
from pose.synth.materials import Light, sample_light, shade_fragments
from pose.synth.raster import CROWD_ID, PROP_ID, Canvas, raster_capsule, raster_ellipsoid
from pose.synth.scene import PersonSpec, SceneSpec
from pose.synth.skeleton3d import JOINT_INDEX, Body3D, Camera, Capsule, Ellipsoid
from pose.synth.visibility import joint_visibility


@dataclass
class RenderedPerson:
    """Projection of one annotated person (internal joints, :data:`~pose.synth.skeleton3d.JOINT_NAMES`).

    Attributes:
        uv: (J, 2) pixel coordinates of the joints.
        z: (J,) camera depth of the joints (m).
        tolerance: (J,) visibility tolerance (m).
        visibility: (J,) 0 outside the image, 1 occluded, 2 visible.
        height_px: standing height in pixels.
        depth: the person's depth (m).
        head_box: (4,) x1, y1, x2, y2: the box around the head ellipsoid's projection (MPII's head box,
            :func:`head_box`).
    """

    uv: np.ndarray
    z: np.ndarray
    tolerance: np.ndarray
    visibility: np.ndarray
    height_px: float
    depth: float
    head_box: np.ndarray


@dataclass
class SceneRender:
    """A rendered image and what is needed to annotate it.

    Attributes:
        image: (H, W, 3) uint8 RGB.
        depth: (H, W) float32 depth buffer (m, ``inf`` = background).
        ids: (H, W) int16 owner of each pixel (person index, :data:`~pose.synth.raster.CROWD_ID`, or a
            negative ``*_ID`` for background / distractors / occluders / props).
        extents: owner -> drawn box [x0, y0, x1, y1).
        people: per annotated person (index = owner id).
    """

    image: np.ndarray
    depth: np.ndarray
    ids: np.ndarray
    extents: dict[int, list[int]]
    people: list[RenderedPerson]


def render_person(canvas: Canvas, cam: Camera, person: PersonSpec, owner: int, light: Light,
                  noise: np.ndarray) -> Body3D:
    """Z-buffer every primitive of ``person`` into ``canvas`` as ``owner``; returns the camera-frame body."""
    local = person.body_local()
    body = person.body_camera(cam)
    app = person.appearance
    head_cam = next(p for p in body.primitives if p.part == "head")
    head_px = float(np.linalg.norm(head_cam.axes[:, 0])) * cam.f / max(float(head_cam.center[2]), 1e-3)
    strap = None
    if app.strap:
        j = local.joints
        sh = j[JOINT_INDEX["left_shoulder" if app.strap > 0 else "right_shoulder"], :2]
        hip = j[JOINT_INDEX["right_hip" if app.strap > 0 else "left_hip"], :2]
        strap = (sh, hip)
    for prim_c, prim_l in zip(body.primitives, local.primitives):
        if isinstance(prim_c, Ellipsoid):
            if head_px < 2.0 and prim_c.part in ("nose", "ear_l", "ear_r"):
                continue
            frag = raster_ellipsoid(canvas, cam, prim_c)
            center, axes, length = prim_l.center, prim_l.axes, 0.0
        else:
            frag = raster_capsule(canvas, cam, prim_c)
            center, axes, length = prim_l.p0, None, float(np.linalg.norm(prim_l.p1 - prim_l.p0))
        if frag is None:
            continue
        col = shade_fragments(prim_c.part, frag, app, light, noise, center, axes, length, head_px, strap)
        canvas.write(frag, col, owner)
    for prop_c, prop_l in zip(body.props, local.props):
        if isinstance(prop_c, Ellipsoid):
            frag = raster_ellipsoid(canvas, cam, prop_c)
            center, axes, length = prop_l.center, prop_l.axes, 0.0
        else:
            assert isinstance(prop_c, Capsule) and isinstance(prop_l, Capsule)
            frag = raster_capsule(canvas, cam, prop_c)
            center, axes, length = prop_l.p0, None, float(np.linalg.norm(prop_l.p1 - prop_l.p0))
        if frag is not None:
            canvas.write(frag, shade_fragments(prop_c.part, frag, app, light, noise, center, axes, length),
                         PROP_ID)
    return body


def finish_image(color: np.ndarray, rng: np.random.Generator, cfg: SynthConfig) -> np.ndarray:
    """Camera effects on a float RGB image: lighting field, colour cast, blur, noise, tone curve -> uint8
    RGB. (OpenCV array ops: they are several times faster than numpy temporaries here.)"""
    h, w = color.shape[:2]
    lt = cfg.lighting
    img = color
    gamma = 1.0
    if lt > 0:
        xs = np.linspace(-1, 1, w, dtype=np.float32)[None, :]
        ys = np.linspace(-1, 1, h, dtype=np.float32)[:, None]
        gx, gy = (float(g) * lt for g in rng.uniform(-0.35, 0.35, 2))
        vig = float(rng.uniform(0, 0.5)) * lt
        field = (1.0 + gx * xs - vig * 0.5 * xs * xs) + (gy * ys - vig * 0.5 * ys * ys)  # (H, W) float32
        cast = (1.0 + rng.normal(0, 0.07 * lt, 3)).astype(np.float32)
        gain = np.float32(math.exp(rng.normal(0, 0.25 * lt)))
        img = cv2.multiply(img, cv2.merge([field * np.float32(c * gain) for c in cast]))
        gamma = float(math.exp(rng.normal(0, 0.15 * lt)))
    sigma = max(0.45, float(rng.uniform(0, cfg.blur))) if cfg.blur > 0 else 0.0
    if sigma > 0:
        img = cv2.GaussianBlur(img, (0, 0), sigma)
    if cfg.blur > 0 and rng.random() < 0.08:  # motion blur
        n = int(rng.integers(3, 4 + int(3 * cfg.blur)))
        kernel = np.zeros((n, n), np.float32)
        cv2.line(kernel, (0, n // 2), (n - 1, n // 2), 1.0, 1)
        rot = cv2.getRotationMatrix2D(((n - 1) / 2, (n - 1) / 2), float(rng.uniform(0, 180)), 1.0)
        kernel = cv2.warpAffine(kernel, rot, (n, n))
        kernel /= max(float(kernel.sum()), 1e-6)
        img = cv2.filter2D(img, -1, kernel)
    std = float(rng.uniform(0, cfg.noise)) / 255.0
    if std > 0:  # uniform (unit variance) luminance noise per pixel, weaker colour noise in 2x2 blocks
        unit = np.float32(math.sqrt(12.0))
        lum = (rng.random((h, w), dtype=np.float32) - np.float32(0.5)) * unit
        chroma = (rng.random((3, (h + 1) // 2, (w + 1) // 2), dtype=np.float32) - np.float32(0.5)) * (
            np.float32(0.5) * unit)
        noise = cv2.merge([cv2.add(lum, cv2.resize(c, (w, h), interpolation=cv2.INTER_NEAREST))
                           for c in chroma])
        img = cv2.scaleAdd(noise, std, np.ascontiguousarray(img, dtype=np.float32))
    img = cv2.threshold(np.ascontiguousarray(img, dtype=np.float32), 0.0, 0.0, cv2.THRESH_TOZERO)[1]
    out = cv2.convertScaleAbs(img, alpha=255.0)  # rounds and saturates to uint8
    if gamma != 1.0:  # tone curve as a lookup table
        lut = np.clip(255.0 * (np.arange(256) / 255.0) ** gamma + 0.5, 0, 255).astype(np.uint8)
        out = cv2.LUT(out, lut)
    return out


def head_box(body: Body3D, cam: Camera) -> np.ndarray:
    """(4,) x1, y1, x2, y2: the head ellipsoid's extent under weak perspective at its centre's depth.

    An ellipsoid ``c + A u`` (|u| = 1) reaches ``||A[i]||`` (the norm of row i) from its centre along
    camera axis i, so the box is the projected centre +- ``f / z x`` those row norms (x and y).
    """
    head = next(p for p in body.primitives if p.part == "head")
    assert isinstance(head, Ellipsoid)
    cx, cy = cam.project(head.center[None])[0]
    half = cam.f / max(float(head.center[2]), 1e-3) * np.linalg.norm(head.axes[:2], axis=1)
    return np.array([cx - half[0], cy - half[1], cx + half[0], cy + half[1]])


def render_scene(spec: SceneSpec, rng: np.random.Generator, cfg: SynthConfig) -> SceneRender:
    """Render the scene; people are owners 0..n-1 in ``spec.people`` order."""
    cam = spec.camera
    W, H = cam.width, cam.height
    background = render_background(rng, H, W, cfg.clutter)
    noise = noise_field(rng, H, W)
    grain = float(rng.uniform(0.0, 0.05))  # surface grain of the background
    canvas = Canvas(cv2.scaleAdd(cv2.merge([noise, noise, noise]), grain, background))
    light = sample_light(rng)
    typical = float(np.median([p.height_px(cam) for p in spec.people])) if spec.people else 0.3 * H
    draw_distractors(canvas, rng, cam, int(rng.poisson(cfg.distractors)), typical, light, noise)
    for p in spec.crowd_people:
        render_person(canvas, cam, p, CROWD_ID, light, noise)
    bodies = [render_person(canvas, cam, p, i, light, noise) for i, p in enumerate(spec.people)]
    targets = [(p.u, p.v, p.height_px(cam), p.depth) for p in spec.people]
    draw_occluders(canvas, rng, cam, int(rng.poisson(cfg.occluders)), targets, light, noise)
    image = finish_image(canvas.color, rng, cfg)
    people = []
    for p, body in zip(spec.people, bodies):
        uv = cam.project(body.joints)
        z = body.joints[:, 2].copy()
        vis = joint_visibility(uv, z, body.tolerance, canvas.depth)
        people.append(RenderedPerson(uv, z, body.tolerance, vis, p.height_px(cam), p.depth, head_box(body, cam)))
    return SceneRender(image, canvas.depth, canvas.ids, canvas.extents, people)
