"""Z-buffer rasterisation of solid primitives (ellipsoids, tapered capsules, flat masks) with numpy.

A :class:`Canvas` holds the colour image, a per-pixel depth (metres along the camera axis; ``inf``
where nothing was drawn) and a per-pixel owner id. Rasterising a primitive returns the
:class:`Fragments` that are nearer than what the canvas already holds; the caller colours them and
writes them back with :meth:`Canvas.write`. Depth within one primitive uses the weak-perspective
approximation at the primitive's own depth, which is exact enough for occlusion reasoning.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from pose.synth.skeleton3d import Camera, Capsule, Ellipsoid

NEAR = 0.05  # metres: primitives closer than this to the camera are not drawn

BACKGROUND_ID = -1
DISTRACTOR_ID = -2
OCCLUDER_ID = -3
PROP_ID = -4
CROWD_ID = 1000  # people of an iscrowd region (not annotated individually)


class Canvas:
    """Render target.

    Attributes:
        color: (H, W, 3) float32 RGB in [0, 1].
        depth: (H, W) float32, metres (``inf`` = nothing drawn; the background).
        ids: (H, W) int16 owner of each pixel: person index, or one of the ``*_ID`` constants.
        extents: owner id -> [x0, y0, x1, y1] (exclusive) box containing every pixel it was ever drawn on.
    """

    def __init__(self, background: np.ndarray) -> None:
        self.color = np.ascontiguousarray(background, dtype=np.float32)
        self.height, self.width = self.color.shape[:2]
        self.depth = np.full((self.height, self.width), np.inf, np.float32)
        self.ids = np.full((self.height, self.width), BACKGROUND_ID, np.int16)
        self.extents: dict[int, list[int]] = {}

    def write(self, frag: Fragments, colors: np.ndarray, owner: int) -> None:
        """Store ``colors`` (n, 3), the fragments' depth and ``owner`` at the fragments' pixels."""
        self.color[frag.ys, frag.xs] = colors
        self.depth[frag.ys, frag.xs] = frag.depth
        self.ids[frag.ys, frag.xs] = owner
        box = frag.box
        old = self.extents.get(owner)
        if old is None:
            self.extents[owner] = list(box)
        else:
            self.extents[owner] = [min(old[0], box[0]), min(old[1], box[1]), max(old[2], box[2]),
                                   max(old[3], box[3])]


@dataclass
class Fragments:
    """Pixels of one primitive that passed the depth test.

    Attributes:
        ys, xs: (n,) pixel rows / columns.
        depth: (n,) float32 surface depth (m).
        normal: (n, 3) float32 unit surface normal in the camera frame (``z < 0`` faces the camera).
        local: (n, 3) float32 surface coordinates: ellipsoids give the point on the unit sphere of the
            part's own frame (x left, y up, z forward); capsules give (t along the axis 0..1, signed
            lateral offset -1..1, facing 0..1).
        box: (x0, y0, x1, y1) exclusive pixel box that contains all fragments.
    """

    ys: np.ndarray
    xs: np.ndarray
    depth: np.ndarray
    normal: np.ndarray
    local: np.ndarray
    box: tuple[int, int, int, int]

    def __len__(self) -> int:
        return len(self.ys)


def _box(canvas: Canvas, x_lo: float, x_hi: float, y_lo: float,
         y_hi: float) -> tuple[int, int, int, int] | None:
    x0, x1 = max(0, math.floor(x_lo)), min(canvas.width, math.ceil(x_hi) + 1)
    y0, y1 = max(0, math.floor(y_lo)), min(canvas.height, math.ceil(y_hi) + 1)
    if x0 >= x1 or y0 >= y1:
        return None
    return x0, y0, x1, y1


def raster_ellipsoid(canvas: Canvas, cam: Camera, ell: Ellipsoid) -> Fragments | None:
    """Visible (nearer than the canvas) pixels of a camera-frame ellipsoid, or None."""
    cz = float(ell.center[2])
    if cz <= NEAR:
        return None
    s = cam.f / cz
    uc, vc = cam.cx + s * ell.center[0], cam.cy + s * ell.center[1]
    a = ell.axes * s  # pixel units
    ex, ey = math.sqrt(float(a[0] @ a[0])), math.sqrt(float(a[1] @ a[1]))
    if ex < 0.3 or ey < 0.3:
        return None
    box = _box(canvas, uc - ex, uc + ex, vc - ey, vc + ey)
    if box is None:
        return None
    x0, y0, x1, y1 = box
    try:
        m = np.linalg.inv(a).astype(np.float32)
    except np.linalg.LinAlgError:
        return None
    dx = np.arange(x0, x1, dtype=np.float32) - np.float32(uc)
    dy = np.arange(y0, y1, dtype=np.float32)[:, None] - np.float32(vc)
    # q(dz) = m[:, 0] dx + m[:, 1] dy + m[:, 2] dz lies on the unit sphere where |q|^2 = 1: a quadratic in
    # dz whose discriminant is a 2D quadratic form in (dx, dy), evaluated on the whole box.
    m0, m1, m3 = m[:, 0], m[:, 1], m[:, 2]
    aa = float(m3 @ m3)
    al, be = float(m3 @ m0), float(m3 @ m1)
    g00, g01, g11 = float(m0 @ m0), float(m0 @ m1), float(m1 @ m1)
    bb = al * dx + be * dy
    disc = bb * bb - aa * ((g00 * dx + 2.0 * g01 * dy) * dx + (g11 * dy * dy - 1.0))
    yy, xx = np.nonzero(disc > 0)
    if len(yy) == 0:
        return None
    b_ = bb[yy, xx]
    dz = (-b_ - np.sqrt(disc[yy, xx])) / aa
    depth = (cz + dz / s).astype(np.float32)
    ys, xs = yy + y0, xx + x0
    keep = depth < canvas.depth[ys, xs]
    if not keep.any():
        return None
    ys, xs, dz, depth = ys[keep], xs[keep], dz[keep], depth[keep]
    px_, py_ = (xs - x0).astype(np.float32) + dx[0], (ys - y0).astype(np.float32) + dy[0, 0]
    q = np.outer(px_, m0) + np.outer(py_, m1) + np.outer(dz, m3)  # (n, 3) point on the unit sphere
    normal = q @ m  # (M^T q)^T
    normal /= np.linalg.norm(normal, axis=1, keepdims=True) + 1e-9
    return Fragments(ys, xs, depth, normal.astype(np.float32), q.astype(np.float32), (x0, y0, x1, y1))


def raster_capsule(canvas: Canvas, cam: Camera, cap: Capsule) -> Fragments | None:
    """Visible pixels of a camera-frame tapered capsule, or None."""
    z0, z1 = float(cap.p0[2]), float(cap.p1[2])
    if min(z0, z1) <= NEAR:
        return None
    s0, s1 = cam.f / z0, cam.f / z1
    u0, v0 = cam.cx + s0 * cap.p0[0], cam.cy + s0 * cap.p0[1]
    u1, v1 = cam.cx + s1 * cap.p1[0], cam.cy + s1 * cap.p1[1]
    r0, r1 = cap.r0 * s0, cap.r1 * s1
    if max(r0, r1) < 0.3:
        return None
    box = _box(canvas, min(u0 - r0, u1 - r1), max(u0 + r0, u1 + r1), min(v0 - r0, v1 - r1),
               max(v0 + r0, v1 + r1))
    if box is None:
        return None
    x0, y0, x1, y1 = box
    ddx, ddy = np.float32(u1 - u0), np.float32(v1 - v0)
    l2 = max(float(ddx * ddx + ddy * ddy), 1e-6)
    gx = np.arange(x0, x1, dtype=np.float32) - np.float32(u0)
    gy = np.arange(y0, y1, dtype=np.float32)[:, None] - np.float32(v0)
    t = np.clip((gx * ddx + gy * ddy) * np.float32(1.0 / l2), 0.0, 1.0)
    ex = gx - t * ddx
    ey = gy - t * ddy
    d2 = ex * ex + ey * ey
    r = np.float32(r0) + t * np.float32(r1 - r0)
    yy, xx = np.nonzero(d2 < r * r)
    if len(yy) == 0:
        return None
    t, ex, ey, r = t[yy, xx], ex[yy, xx], ey[yy, xx], r[yy, xx]
    h = np.sqrt(np.maximum(r * r - d2[yy, xx], 0.0))
    st = s0 + t * (s1 - s0)
    depth = (z0 + t * (z1 - z0) - h / st).astype(np.float32)
    ys, xs = yy + y0, xx + x0
    keep = depth < canvas.depth[ys, xs]
    if not keep.any():
        return None
    ys, xs, t, ex, ey = ys[keep], xs[keep], t[keep], ex[keep], ey[keep]
    r, h, depth = r[keep], h[keep], depth[keep]
    inv_r = 1.0 / np.maximum(r, 1e-6)
    normal = np.stack([ex * inv_r, ey * inv_r, -h * inv_r], axis=1)
    side = (ey * ddx - ex * ddy) * np.float32(1.0 / math.sqrt(l2)) * inv_r
    local = np.stack([t, side, h * inv_r], axis=1)
    return Fragments(ys, xs, depth, normal.astype(np.float32), local.astype(np.float32), (x0, y0, x1, y1))


def raster_flat(canvas: Canvas, mask: np.ndarray, x0: int, y0: int, depth: float) -> Fragments | None:
    """Pixels of a flat (constant-depth, camera-facing) shape given as a boolean ``mask`` (h, w) whose
    top-left pixel is ``(x0, y0)`` (may extend past the image), nearer than the canvas."""
    h, w = mask.shape
    cx0, cy0 = max(0, x0), max(0, y0)
    cx1, cy1 = min(canvas.width, x0 + w), min(canvas.height, y0 + h)
    if cx0 >= cx1 or cy0 >= cy1:
        return None
    sub = mask[cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0]
    yy, xx = np.nonzero(sub)
    ys, xs = yy + cy0, xx + cx0
    keep = canvas.depth[ys, xs] > depth
    if not keep.any():
        return None
    ys, xs = ys[keep], xs[keep]
    n = len(ys)
    normal = np.tile(np.array([[0.0, 0.0, -1.0]], np.float32), (n, 1))
    local = np.stack([(xs - x0) / max(w, 1), (ys - y0) / max(h, 1), np.zeros(n)], axis=1).astype(np.float32)
    return Fragments(ys, xs, np.full(n, depth, np.float32), normal, local, (cx0, cy0, cx1, cy1))
