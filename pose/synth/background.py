"""Backgrounds, limb-like distractors and foreground occluders.

Backgrounds are textured and cluttered (gradients, a floor with perspective tiles, low-frequency
noise, random shapes and lines). Distractors are shaded capsules / jointed sticks / balls in skin and
clothing colours drawn behind every person, so that a detector cannot just look for skin-coloured
cylinders. Occluders (poles, boxes, bushes, boards, railings) are drawn *in front of* a chosen person
with the z-buffer, so they hide joints (which then get v=1).
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from pose.synth.materials import (
    Light,
    Material,
    hsv,
    lambert,
    random_cloth_color,
    random_hair_color,
    random_material,
    random_skin_color,
    texture,
)
from pose.synth.raster import (
    DISTRACTOR_ID,
    OCCLUDER_ID,
    Canvas,
    Fragments,
    raster_capsule,
    raster_ellipsoid,
    raster_flat,
)
from pose.synth.skeleton3d import Camera, Capsule, Ellipsoid

BACKGROUND_DEPTH = 400.0  # metres: distractors live here, behind every person


def _muted(rng: np.random.Generator) -> np.ndarray:
    return hsv(rng.random(), rng.uniform(0.05, 0.55), rng.uniform(0.25, 0.92))


def noise_field(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """(H, W) float32 zero-mean noise, half pixel-level grain and half smooth blotches (std ~0.7)."""
    fine = rng.standard_normal((height, width), dtype=np.float32)
    small = rng.standard_normal((max(2, height // 8), max(2, width // 8)), dtype=np.float32)
    coarse = cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)
    return 0.5 * fine + 0.8 * coarse


def render_background(rng: np.random.Generator, height: int, width: int, clutter: float) -> np.ndarray:
    """(H, W, 3) float32 RGB background in [0, 1]."""
    c1, c2 = _muted(rng), _muted(rng)
    ang = rng.uniform(0, 2 * np.pi)
    # smooth layers are computed on a grid 8x coarser and upsampled (linear: exact for the gradient)
    sh, sw = height // 8 + 2, width // 8 + 2
    xs = np.linspace(-0.5, 0.5, sw, dtype=np.float32)[None, :]
    ys = np.linspace(-0.5, 0.5, sh, dtype=np.float32)[:, None]
    t = np.clip(0.5 + math.cos(ang) * xs + math.sin(ang) * ys, 0, 1)[..., None]
    small = c1[None, None].astype(np.float32) * (1 - t) + c2[None, None].astype(np.float32) * t
    hy = -1
    f1 = c1
    floor = None
    if rng.random() < 0.55:  # floor below a horizon line
        hy = int(rng.uniform(0.3, 0.75) * height)
        f1 = _muted(rng)
        ramp = np.linspace(0.75, 1.1, sh, dtype=np.float32)[:, None, None]
        floor = np.broadcast_to(f1[None, None].astype(np.float32) * ramp, small.shape)
    blot = rng.standard_normal((int(rng.integers(3, 9)), int(rng.integers(3, 9)), 3)).astype(np.float32)
    blot = 1.0 + 0.12 * cv2.resize(blot, (sw, sh), interpolation=cv2.INTER_CUBIC)
    out = cv2.resize(np.clip(small * blot * 255.0, 0, 255).astype(np.uint8), (width, height),
                     interpolation=cv2.INTER_LINEAR)
    if floor is not None:
        fl = cv2.resize(np.clip(floor * blot * 255.0, 0, 255).astype(np.uint8), (width, height),
                        interpolation=cv2.INTER_LINEAR)
        out[hy:] = fl[hy:]
    out = np.ascontiguousarray(out)
    if hy >= 0 and rng.random() < 0.6:  # perspective tiles
        vx = rng.uniform(0.1, 0.9) * width
        col = tuple(int(c) for c in (f1 * rng.uniform(0.5, 0.8) * 255))
        for bx in np.linspace(-width, 2 * width, int(rng.integers(6, 16))):
            cv2.line(out, (int(vx), hy), (int(bx), height), col, 1, cv2.LINE_AA)
        y = float(hy) + 2.0
        step = rng.uniform(3, 8)
        while y < height:
            cv2.line(out, (0, int(y)), (width, int(y)), col, 1, cv2.LINE_AA)
            step *= 1.35
            y += step
    if rng.random() < 0.3 * min(1.0, clutter):  # a brick / tile wall section
        x0, y0 = int(rng.uniform(-0.2, 0.7) * width), int(rng.uniform(-0.2, 0.6) * height)
        x1, y1 = x0 + int(rng.uniform(0.3, 1.0) * width), y0 + int(rng.uniform(0.2, 0.7) * height)
        col = tuple(int(c) for c in (_muted(rng) * 255))
        bh = int(rng.integers(5, 16))
        bw = int(bh * rng.uniform(1.5, 3.5))
        for row, y in enumerate(range(y0, y1, bh)):
            cv2.line(out, (x0, y), (x1, y), col, 1, cv2.LINE_AA)
            off = (row % 2) * bw // 2
            for x in range(x0 + off, x1, bw):
                cv2.line(out, (x, y), (x, min(y + bh, y1)), col, 1)
    n_shapes = int(rng.poisson(14 * clutter))
    diag = math.hypot(width, height)
    for _ in range(n_shapes):
        kind = int(rng.integers(6))
        col = tuple(int(c) for c in ((_muted(rng) if rng.random() < 0.6 else random_cloth_color(rng)) * 255))
        cx, cy = int(rng.uniform(-0.1, 1.1) * width), int(rng.uniform(-0.1, 1.1) * height)
        size = int(diag * rng.uniform(0.02, 0.25))
        thick = -1 if rng.random() < 0.65 else int(rng.integers(1, 5))
        if kind == 0:
            w2, h2 = size, int(size * rng.uniform(0.3, 2.0))
            cv2.rectangle(out, (cx - w2 // 2, cy - h2 // 2), (cx + w2 // 2, cy + h2 // 2), col, thick,
                          cv2.LINE_AA)
        elif kind == 1:
            cv2.circle(out, (cx, cy), max(1, size // 2), col, thick, cv2.LINE_AA)
        elif kind == 2:
            cv2.ellipse(out, (cx, cy), (max(1, size // 2), max(1, int(size * rng.uniform(0.1, 0.6)))),
                        float(rng.uniform(0, 180)), 0, 360, col, thick, cv2.LINE_AA)
        elif kind == 3:
            n_pts = int(rng.integers(3, 7))
            pts = (np.array([cx, cy]) + rng.normal(0, size / 2, (n_pts, 2))).astype(np.int32)
            if thick < 0:
                cv2.fillPoly(out, [pts], col, cv2.LINE_AA)
            else:
                cv2.polylines(out, [pts], True, col, thick, cv2.LINE_AA)
        elif kind == 4:  # striped patch
            w2, h2 = size, int(size * rng.uniform(0.4, 1.5))
            x0, y0 = cx - w2 // 2, cy - h2 // 2
            col2 = tuple(int(c) for c in (_muted(rng) * 255))
            cv2.rectangle(out, (x0, y0), (x0 + w2, y0 + h2), col, -1)
            step = max(2, int(rng.integers(2, 9)))
            if rng.random() < 0.5:
                for x in range(x0, x0 + w2, 2 * step):
                    cv2.rectangle(out, (x, y0), (x + step - 1, y0 + h2), col2, -1)
            else:
                for y in range(y0, y0 + h2, 2 * step):
                    cv2.rectangle(out, (x0, y), (x0 + w2, y + step - 1), col2, -1)
        else:
            a = rng.uniform(0, np.pi)
            dx, dy = math.cos(a) * diag, math.sin(a) * diag
            cv2.line(out, (int(cx - dx), int(cy - dy)), (int(cx + dx), int(cy + dy)), col,
                     int(rng.integers(1, 4)), cv2.LINE_AA)
    if rng.random() < 0.5:  # soften some backgrounds (depth of field)
        out = cv2.GaussianBlur(out, (0, 0), float(rng.uniform(0.6, 2.0)))
    return cv2.multiply(out, 1.0 / 255.0, dtype=cv2.CV_32F)


def _to_camera(cam: Camera, u: float, v: float, z: float) -> np.ndarray:
    return np.array([(u - cam.cx) * z / cam.f, (v - cam.cy) * z / cam.f, z])


def _shade(frag: Fragments, mat: Material, light: Light, noise: np.ndarray, scale: float) -> np.ndarray:
    s = frag.local[:, 0] * scale
    a = frag.local[:, 1] * scale * 0.2
    col = texture(mat, s, a, noise[frag.ys, frag.xs])
    return np.clip(col * lambert(frag.normal, light)[:, None], 0.0, 1.0)


def draw_distractors(canvas: Canvas, rng: np.random.Generator, cam: Camera, count: int, person_px: float,
                     light: Light, noise: np.ndarray) -> None:
    """Draw ``count`` limb-like distractors (sticks, jointed arms/legs, balls) behind all people.

    Args:
        person_px: typical person height in this image (sets the distractor sizes).
    """
    for i in range(count):
        z = BACKGROUND_DEPTH + 0.5 * i
        m_per_px = z / cam.f
        skin = rng.random() < 0.5
        mat = (Material(random_skin_color(rng), np.zeros(3), "solid", 5.0, 0.0, 0.04) if skin
               else random_material(rng))
        length = person_px * rng.uniform(0.12, 0.4)
        radius = length * rng.uniform(0.07, 0.16)
        u, v = rng.uniform(0, canvas.width), rng.uniform(0, canvas.height)
        ang = rng.uniform(0, 2 * np.pi)
        kind = int(rng.choice(4, p=[0.4, 0.3, 0.15, 0.15]))
        if kind == 3:  # ball / head-like blob
            r = person_px * rng.uniform(0.04, 0.08)
            c = _to_camera(cam, u, v, z)
            ax = np.diag([r, r * rng.uniform(1.0, 1.3), r]) * m_per_px
            col = random_hair_color(rng) if rng.random() < 0.3 else mat.color
            frag = raster_ellipsoid(canvas, cam, Ellipsoid("ball", c, ax))
            if frag is not None:
                canvas.write(frag, _shade(frag, Material(col, col), light, noise, 1.0), DISTRACTOR_ID)
            continue
        pts = [(u, v)]
        n_seg = 1 if kind == 0 else 2
        for _ in range(n_seg):
            pts.append((pts[-1][0] + length * math.cos(ang), pts[-1][1] + length * math.sin(ang)))
            ang += rng.uniform(-1.6, 1.6)
        for k in range(n_seg):
            r0, r1 = radius * (1.0 - 0.15 * k), radius * (0.8 - 0.15 * k)
            cap = Capsule("stick", _to_camera(cam, *pts[k], z), _to_camera(cam, *pts[k + 1], z),
                          r0 * m_per_px, r1 * m_per_px)
            frag = raster_capsule(canvas, cam, cap)
            if frag is not None:
                canvas.write(frag, _shade(frag, mat, light, noise, length * m_per_px), DISTRACTOR_ID)
        if kind == 2:  # hand / foot at the end
            c = _to_camera(cam, *pts[-1], z - 0.01)
            ax = np.diag([radius * 1.3, radius * 1.8, radius]) * m_per_px
            frag = raster_ellipsoid(canvas, cam, Ellipsoid("blob", c, ax))
            if frag is not None:
                skin_mat = Material(random_skin_color(rng), np.zeros(3))
                canvas.write(frag, _shade(frag, skin_mat, light, noise, 1.0), DISTRACTOR_ID)


def draw_occluders(canvas: Canvas, rng: np.random.Generator, cam: Camera, count: int,
                   targets: list[tuple[float, float, float, float]], light: Light, noise: np.ndarray) -> None:
    """Draw ``count`` foreground objects, each just in front of a random target person.

    Args:
        targets: per person (u, v_feet, height_px, depth_m) in the image.
    """
    if not targets:
        return
    for _ in range(count):
        u, v, h, z_p = targets[int(rng.integers(len(targets)))]
        z = max(0.3, z_p - rng.uniform(0.3, 1.5))
        h = h * z_p / z  # the person's height in pixels at the occluder's depth
        kind = int(rng.choice(5, p=[0.25, 0.25, 0.2, 0.15, 0.15]))
        mat = random_material(rng, patterned=0.5)
        if kind == 0:  # pole (a shaded vertical capsule through the image)
            x = u + rng.uniform(-0.35, 0.35) * h
            r = h * rng.uniform(0.015, 0.05)
            top = -10.0 if rng.random() < 0.6 else v - h * rng.uniform(0.6, 1.3)
            cap = Capsule("pole", _to_camera(cam, x + rng.uniform(-0.05, 0.05) * h, top, z),
                          _to_camera(cam, x, canvas.height + 10.0, z), r * z / cam.f, r * z / cam.f)
            frag = raster_capsule(canvas, cam, cap)
            if frag is not None:
                canvas.write(frag, _shade(frag, mat, light, noise, 3.0), OCCLUDER_ID)
            continue
        if kind == 4:  # railing: a horizontal bar across at hip/chest height
            y = v - h * rng.uniform(0.35, 0.7)
            r = h * rng.uniform(0.012, 0.03)
            cap = Capsule("rail", _to_camera(cam, -10.0, y, z), _to_camera(cam, canvas.width + 10.0,
                          y + rng.uniform(-0.1, 0.1) * h, z), r * z / cam.f, r * z / cam.f)
            frag = raster_capsule(canvas, cam, cap)
            if frag is not None:
                canvas.write(frag, _shade(frag, mat, light, noise, 3.0), OCCLUDER_ID)
            continue
        w = int(h * rng.uniform(0.3, 0.9)) + 2
        hh = int(h * rng.uniform(0.2, 0.55)) + 2
        x0 = int(u + rng.uniform(-0.5, 0.2) * h)
        if kind == 1:  # box / crate standing on the ground
            y0 = int(v + rng.uniform(0.0, 0.08) * h - hh)
            mask = np.ones((hh, w), np.uint8)
        elif kind == 2:  # bush: a union of ellipses
            y0 = int(v + rng.uniform(0.0, 0.05) * h - hh)
            mask = np.zeros((hh, w), np.uint8)
            for _ in range(int(rng.integers(3, 8))):
                cx, cy = int(rng.uniform(0.15, 0.85) * w), int(rng.uniform(0.3, 1.0) * hh)
                cv2.ellipse(mask, (cx, cy), (max(1, int(w * rng.uniform(0.15, 0.4))),
                            max(1, int(hh * rng.uniform(0.25, 0.6)))), 0.0, 0, 360, 1, -1)
            mat = Material(hsv(rng.uniform(0.2, 0.4), rng.uniform(0.4, 0.9), rng.uniform(0.2, 0.6)),
                           hsv(rng.uniform(0.2, 0.4), 0.6, 0.3), "noise", 10.0, 0.0, 0.3)
        else:  # board / sign at body height
            hh = int(h * rng.uniform(0.12, 0.35)) + 2
            y0 = int(v - h * rng.uniform(0.4, 0.85))
            mask = np.ones((hh, w), np.uint8)
        frag = raster_flat(canvas, mask.astype(bool), x0, y0, z)
        if frag is not None:
            canvas.write(frag, _shade(frag, mat, light, noise, 1.0) * np.float32(0.9), OCCLUDER_ID)
