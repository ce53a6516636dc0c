"""Appearance of people: skin tones, hair, clothing materials with textures, face and clothing details.

Colours are RGB floats in [0, 1]. :func:`shade_fragments` colours the rasterised pixels of one body
part: it picks the part's material, evaluates the texture in body-surface coordinates (so stripes follow
the body), paints the face (eyes, brows, mouth; hair on the back of the head) from the head's own
surface coordinates, adds the plausible asymmetric details (chest logo on the left, watch on the left
wrist, a bag strap over one shoulder) and applies Lambert lighting.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass, field

import numpy as np

from pose.synth.raster import Fragments

PATTERNS: tuple[str, ...] = ("solid", "stripes", "vstripes", "checks", "noise", "gradient")


@dataclass
class Material:
    """A textured surface.

    Attributes:
        color, color2: (3,) RGB base and secondary colour.
        pattern: one of :data:`PATTERNS`.
        freq: pattern frequency (cycles per metre of body surface).
        phase: pattern phase (radians).
        rough: amplitude of the per-pixel fabric noise.
    """

    color: np.ndarray
    color2: np.ndarray
    pattern: str = "solid"
    freq: float = 10.0
    phase: float = 0.0
    rough: float = 0.06


@dataclass
class Appearance:
    """Everything that decides how one person looks (see :func:`sample_appearance`)."""

    skin: Material
    hair: Material
    top: Material
    bottom: Material
    shoes: Material
    sleeves: str = "long"  # long | short | none
    legwear: str = "long"  # long | shorts | dress
    hair_style: str = "short"  # short | long | bald | cap
    hair_line: float = 0.4
    hair_side: float = -0.1
    nape: float = -0.2
    cap: np.ndarray = field(default_factory=lambda: np.zeros(3))
    beard: bool = False
    eye: np.ndarray = field(default_factory=lambda: np.array([0.12, 0.08, 0.06]))
    lips: np.ndarray = field(default_factory=lambda: np.array([0.6, 0.3, 0.3]))
    logo: np.ndarray | None = None
    zipper: bool = False
    back_print: np.ndarray | None = None
    watch: np.ndarray | None = None
    strap: int = 0  # 0 none, +1 over the left shoulder, -1 over the right
    strap_color: np.ndarray = field(default_factory=lambda: np.zeros(3))
    belt: np.ndarray | None = None
    furniture: Material | None = None

    @property
    def long_hair(self) -> bool:
        return self.hair_style == "long"


def hsv(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, float(np.clip(s, 0, 1)), float(np.clip(v, 0, 1))))


def random_skin_color(rng: np.random.Generator) -> np.ndarray:
    """A skin tone between very light and very dark (RGB)."""
    t = rng.random() ** 0.9
    light, dark = np.array([0.96, 0.80, 0.69]), np.array([0.30, 0.19, 0.13])
    c = light * (1 - t) + dark * t
    c *= rng.normal(1.0, 0.04, 3).clip(0.9, 1.1)
    return c.clip(0, 1)


def random_hair_color(rng: np.random.Generator) -> np.ndarray:
    palette = np.array([[0.05, 0.04, 0.04], [0.16, 0.10, 0.07], [0.32, 0.20, 0.12], [0.55, 0.40, 0.22],
                        [0.80, 0.68, 0.45], [0.55, 0.22, 0.10], [0.62, 0.62, 0.62], [0.85, 0.85, 0.82]])
    w = np.array([0.3, 0.22, 0.16, 0.08, 0.08, 0.05, 0.07, 0.04])
    c = palette[int(rng.choice(len(palette), p=w))]
    return (c * rng.normal(1.0, 0.08, 3).clip(0.8, 1.2)).clip(0, 1)


def random_cloth_color(rng: np.random.Generator) -> np.ndarray:
    """Clothing colour: a third neutral (black/white/grey/navy/denim/khaki), the rest any hue."""
    if rng.random() < 0.35:
        neutral = np.array([[0.08, 0.08, 0.09], [0.92, 0.92, 0.90], [0.5, 0.5, 0.52], [0.12, 0.15, 0.3],
                            [0.25, 0.35, 0.55], [0.72, 0.65, 0.48], [0.3, 0.25, 0.2]])
        c = neutral[int(rng.integers(len(neutral)))]
        return (c * rng.normal(1.0, 0.07, 3).clip(0.8, 1.2)).clip(0, 1)
    return hsv(rng.random(), rng.uniform(0.25, 0.95), rng.uniform(0.2, 0.95))


def random_material(rng: np.random.Generator, color: np.ndarray | None = None,
                    patterned: float = 0.45) -> Material:
    """A clothing-like material; ``patterned`` is the chance of a non-solid pattern."""
    c = random_cloth_color(rng) if color is None else color
    pattern = "solid"
    if rng.random() < patterned:
        pattern = str(rng.choice(PATTERNS[1:]))
    c2 = random_cloth_color(rng) if rng.random() < 0.6 else (c * rng.uniform(0.45, 0.8)).clip(0, 1)
    return Material(c, c2, pattern, float(rng.uniform(6, 28)), float(rng.uniform(0, 2 * np.pi)),
                    float(rng.uniform(0.03, 0.12)))


def sample_appearance(rng: np.random.Generator) -> Appearance:
    """Random clothing, skin, hair and details for one person."""
    skin_c = random_skin_color(rng)
    skin = Material(skin_c, skin_c * 0.85, "solid", 10.0, 0.0, 0.03)
    hair_c = random_hair_color(rng)
    hair = Material(hair_c, hair_c * 0.7, "vstripes", float(rng.uniform(60, 120)), 0.0, 0.08)
    top = random_material(rng)
    bottom = random_material(rng, patterned=0.25)
    shoes = Material(random_cloth_color(rng) * rng.uniform(0.3, 1.0), np.zeros(3), "solid", 10.0, 0.0, 0.05)
    app = Appearance(skin=skin, hair=hair, top=top, bottom=bottom, shoes=shoes)
    app.sleeves = str(rng.choice(["long", "short", "none"], p=[0.45, 0.42, 0.13]))
    app.legwear = str(rng.choice(["long", "shorts", "dress"], p=[0.68, 0.2, 0.12]))
    app.hair_style = str(rng.choice(["short", "long", "bald", "cap"], p=[0.5, 0.3, 0.08, 0.12]))
    app.hair_line = float(rng.uniform(0.25, 0.55))
    app.hair_side = float(rng.uniform(-0.35, 0.1))
    app.nape = float(rng.uniform(-0.45, -0.05))
    app.cap = random_cloth_color(rng)
    app.beard = bool(rng.random() < 0.1)
    app.eye = np.array([0.1, 0.07, 0.05]) * rng.uniform(0.6, 1.6)
    app.lips = (skin_c * np.array([0.85, 0.55, 0.55])).clip(0, 1)
    if rng.random() < 0.35:
        app.logo = random_cloth_color(rng)
    app.zipper = bool(rng.random() < 0.3)
    if rng.random() < 0.15:
        app.back_print = random_cloth_color(rng)
    if rng.random() < 0.3:
        app.watch = random_cloth_color(rng) * 0.6
    if rng.random() < 0.2:
        app.strap = 1 if rng.random() < 0.5 else -1
        app.strap_color = random_cloth_color(rng) * 0.7
    if rng.random() < 0.3:
        app.belt = random_cloth_color(rng) * 0.5
    app.furniture = Material(hsv(rng.uniform(0.05, 0.12), rng.uniform(0.3, 0.7), rng.uniform(0.25, 0.7)),
                             np.zeros(3), "vstripes", float(rng.uniform(20, 60)), 0.0, 0.1)
    return app


@dataclass
class Light:
    """Directional light in the camera frame.

    Attributes:
        direction: (3,) unit vector the light travels along (``z > 0``: from behind the camera).
        ambient, diffuse: Lambert terms.
    """

    direction: np.ndarray
    ambient: float
    diffuse: float


def sample_light(rng: np.random.Generator) -> Light:
    d = np.array([rng.uniform(-0.8, 0.8), rng.uniform(0.1, 1.0), rng.uniform(0.2, 1.2)])
    return Light(d / np.linalg.norm(d), float(rng.uniform(0.35, 0.6)), float(rng.uniform(0.45, 0.75)))


def lambert(normal: np.ndarray, light: Light) -> np.ndarray:
    """(n,) shading factor for (n, 3) camera-frame normals, with rim darkening."""
    diff = np.maximum(0.0, -(normal @ light.direction.astype(np.float32)))
    rim = 0.78 + 0.22 * np.clip(-normal[:, 2], 0.0, 1.0)
    return (light.ambient + light.diffuse * diff) * rim


def texture(mat: Material, s: np.ndarray, a: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """(n, 3) colours of ``mat`` at surface coordinates ``s`` (along the body, m), ``a`` (across, m)."""
    c1 = mat.color.astype(np.float32)
    c2 = mat.color2.astype(np.float32)
    f = 2 * np.pi * mat.freq
    if mat.pattern == "stripes":
        w = (np.sin(f * s + mat.phase) > 0.2).astype(np.float32)
    elif mat.pattern == "vstripes":
        w = (np.sin(f * a + mat.phase) > 0.3).astype(np.float32)
    elif mat.pattern == "checks":
        w = ((np.sin(f * s + mat.phase) * np.sin(f * a)) > 0).astype(np.float32)
    elif mat.pattern == "gradient":
        w = (0.5 + 0.5 * np.sin(f * 0.15 * s + mat.phase)).astype(np.float32)
    elif mat.pattern == "noise":
        w = np.clip(0.5 + 1.5 * noise, 0, 1).astype(np.float32)
    else:
        w = np.zeros(len(s), np.float32)
    col = c1[None] * (1 - w[:, None]) + c2[None] * w[:, None]
    return col * (1.0 + mat.rough * noise)[:, None]


def _part_material(part: str, app: Appearance) -> Material:
    base = part.rsplit("_", 1)[0] if part[-2:] in ("_l", "_r") else part
    if base in ("chest", "belly", "trapezius"):
        return app.top
    if base in ("shoulder", "upper_arm"):
        return app.skin if app.sleeves == "none" else app.top
    if base == "forearm":
        return app.top if app.sleeves == "long" else app.skin
    if base == "pelvis":
        return app.top if app.legwear == "dress" else app.bottom
    if base == "thigh":
        return app.top if app.legwear == "dress" else app.bottom
    if base == "shin":
        return app.bottom if app.legwear == "long" else app.skin
    if base == "foot":
        return app.shoes
    if base.startswith("hair"):
        return app.hair
    if base.startswith("stool"):
        return app.furniture or app.shoes
    return app.skin


def surface_coords(part_body_center: np.ndarray, part_body_axes: np.ndarray | None, frag: Fragments,
                   length: float) -> tuple[np.ndarray, np.ndarray]:
    """Body-surface texture coordinates (s along the body, a across), metres.

    Ellipsoids: the body-frame height and a horizontal arc coordinate of the surface point.
    Capsules: distance along the axis and the lateral offset times the radius (``length`` is the
    capsule length, ``part_body_axes`` None).
    """
    if part_body_axes is not None:
        p = part_body_center[None] + frag.local @ part_body_axes.T  # (n, 3) body-frame surface point
        r = float(np.linalg.norm(part_body_axes[:, 0]))
        return p[:, 1].astype(np.float32), (np.arctan2(p[:, 0], p[:, 2]) * r).astype(np.float32)
    return frag.local[:, 0] * length, frag.local[:, 1] * 0.03


def _head_colors(frag: Fragments, app: Appearance, noise: np.ndarray, head_px: float) -> np.ndarray:
    q = frag.local
    qx, qy, qz = q[:, 0], q[:, 1], q[:, 2]
    col = np.tile(app.skin.color.astype(np.float32), (len(q), 1))
    col *= (1.0 + 0.03 * noise)[:, None]
    hair_c = app.hair.color.astype(np.float32)
    if app.hair_style == "bald":
        hair = (qz < -0.25) & (qy > -0.35) & (qy < 0.15)
    elif app.hair_style == "long":
        hair = (qy > app.hair_line) | ((qz < app.hair_side + 0.15) & (qy > -0.95))
    else:
        hair = (qy > app.hair_line) | ((qz < app.hair_side) & (qy > app.nape))
    strands = 1.0 + 0.12 * np.sin(qx * 60.0 + qy * 25.0)
    col[hair] = hair_c * strands[hair, None]
    if app.hair_style == "cap":
        cap = qy > 0.42
        col[cap] = app.cap.astype(np.float32)
        brim = (qy > 0.3) & (qy <= 0.42) & (qz > 0.55)
        col[brim] = app.cap.astype(np.float32) * 0.7
    if head_px >= 3.5:
        for sgn in (1.0, -1.0):
            e = np.array([0.37 * sgn, 0.13, 0.92], np.float32)
            e /= np.linalg.norm(e)
            white = ((qx - e[0]) / 0.13) ** 2 + ((qy - e[1]) / 0.075) ** 2 < 1.0
            col[white & ~hair] = np.float32(0.88) * app.skin.color.astype(np.float32) ** 0.3
            pupil = ((qx - e[0]) / 0.075) ** 2 + ((qy - e[1]) / 0.075) ** 2 < 1.0
            col[pupil] = app.eye.astype(np.float32)
            brow = ((qx - e[0] - 0.02 * sgn) / 0.16) ** 2 + ((qy - e[1] - 0.16) / 0.04) ** 2 < 1.0
            col[brow & (qz > 0)] = hair_c * 0.9
        mouth = (qx / 0.2) ** 2 + ((qy + 0.52) / 0.06) ** 2 < 1.0
        if app.beard:
            beard = (qy < -0.3) & (qz > -0.3) & ~mouth
            col[beard] = hair_c
        col[mouth & (qz > 0)] = app.lips.astype(np.float32)
    return col


def shade_fragments(part: str, frag: Fragments, app: Appearance, light: Light, noise_field: np.ndarray,
                    body_center: np.ndarray, body_axes: np.ndarray | None, length: float,
                    head_px: float = 10.0,
                    strap_line: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """(n, 3) lit colours of the fragments of body part ``part``.

    Args:
        noise_field: (H, W) float32 image-wide zero-mean noise (fabric grain).
        body_center, body_axes: the primitive in the body frame (ellipsoid centre and axes; for a
            capsule its first end point and None).
        length: capsule length (m), for texture coordinates.
        head_px: head radius in pixels (face details are drawn from 3.5 px).
        strap_line: body-frame (x, y) end points of the bag strap on the torso, when worn.
    """
    noise = noise_field[frag.ys, frag.xs]
    if part == "head":
        col = _head_colors(frag, app, noise, head_px)
    else:
        mat = _part_material(part, app)
        s, a = surface_coords(body_center, body_axes, frag, length)
        col = texture(mat, s, a, noise)
        q = frag.local
        if part == "chest" and mat is app.top:
            if app.logo is not None:
                logo = ((q[:, 2] > 0.5) & (q[:, 0] > 0.18) & (q[:, 0] < 0.55) & (q[:, 1] > 0.0)
                        & (q[:, 1] < 0.42))
                col[logo] = app.logo.astype(np.float32)
            if app.back_print is not None:
                bp = (q[:, 2] < -0.45) & (np.abs(q[:, 0]) < 0.5) & (np.abs(q[:, 1] - 0.05) < 0.4)
                col[bp] = app.back_print.astype(np.float32)
        if app.zipper and part in ("chest", "belly") and mat is app.top:
            col[(q[:, 2] > 0.7) & (np.abs(q[:, 0]) < 0.035)] *= 0.55
        if app.belt is not None and part == "pelvis" and app.legwear != "dress":
            col[(q[:, 1] > 0.5) & (q[:, 1] < 0.72)] = app.belt.astype(np.float32)
        if app.watch is not None and part == "forearm_l":
            col[(q[:, 0] > 0.82) & (q[:, 0] < 0.97)] = app.watch.astype(np.float32)
        if strap_line is not None and part in ("chest", "belly") and body_axes is not None:
            p = body_center[None] + frag.local @ body_axes.T
            a0, a1 = strap_line
            d = a1 - a0
            nrm = np.array([-d[1], d[0]]) / (np.linalg.norm(d) + 1e-9)
            dist = np.abs((p[:, :2] - a0[None]) @ nrm)
            col[dist < 0.025] = app.strap_color.astype(np.float32)
    return np.clip(col * lambert(frag.normal, light)[:, None], 0.0, 1.0)
