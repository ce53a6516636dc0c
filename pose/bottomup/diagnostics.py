"""Bottom-up diagnostics computed beside evaluation: signed peak offsets and tag-dimension correlation.

- :func:`nearest_peak_offsets`: for every labelled ground-truth joint, the signed vector to the
  nearest predicted peak of its joint type (NMS + top-k of the aggregated heatmaps, with the
  decoder's quarter offsets). A constant mean vector means a coordinate bug; a zero mean with a
  wide spread means a poor fit.
- :func:`sample_tags`: the network's tags at the ground-truth joints; :meth:`Moments.correlation`
  of those samples is the correlation matrix of the tag dimensions, the Coupled Embedding paper's
  analysis (multi-dimensional Associative Embedding tags are highly linearly correlated; CE
  decorrelates them), summarised by :func:`mean_abs_off_diagonal`.

Everything accumulates in :class:`Moments` (count, sum, sum of outer products), which add across
images and ranks. Ray- and MLflow-free; the orchestrator logs the figures and the image.

Shape legend: N people, K joint types, H x W the aggregated maps (input pixels), h0 x w0 the tag map,
R tag dimensions, M samples, D sample dimensions.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from pose.bottomup.grouping import GroupingConfig, quarter_offsets, top_k_candidates


@dataclass
class Moments:
    """First and second moments of D-dimensional samples; ``+`` merges two (images, ranks).

    Attributes:
        count: M, the samples seen.
        total: (D,) float64 sum of the samples.
        outer: (D, D) float64 sum of their outer products.
    """

    count: int
    total: np.ndarray
    outer: np.ndarray

    @classmethod
    def empty(cls, dim: int) -> "Moments":
        if dim < 1:
            raise ValueError(f"Moments: dimension must be >= 1, got {dim}")
        return cls(0, np.zeros(dim), np.zeros((dim, dim)))

    @classmethod
    def of(cls, samples: np.ndarray) -> "Moments":
        """Moments of (M, D) samples."""
        x = np.asarray(samples, dtype=np.float64)
        if x.ndim != 2:
            raise ValueError(f"Moments.of: samples must be (M, D), got {x.shape}")
        return cls(int(x.shape[0]), x.sum(axis=0), x.T @ x)

    @property
    def dim(self) -> int:
        return int(self.total.shape[0])

    def __add__(self, other: "Moments") -> "Moments":
        if other.dim != self.dim:
            raise ValueError(f"Moments: cannot add dimension {other.dim} to dimension {self.dim}")
        return Moments(self.count + other.count, self.total + other.total, self.outer + other.outer)

    def add(self, samples: np.ndarray) -> "Moments":
        """In place: add (M, D) samples; returns self."""
        more = Moments.of(samples)
        if more.dim != self.dim:
            raise ValueError(f"Moments.add: samples of dimension {more.dim}, expected {self.dim}")
        self.count, self.total, self.outer = self.count + more.count, self.total + more.total, self.outer + more.outer
        return self

    def mean(self) -> np.ndarray:
        """(D,) sample mean (NaN without samples)."""
        return self.total / self.count if self.count else np.full(self.dim, np.nan)

    def covariance(self) -> np.ndarray:
        """(D, D) population covariance (NaN without samples)."""
        if not self.count:
            return np.full((self.dim, self.dim), np.nan)
        mu = self.mean()
        cov = self.outer / self.count - np.outer(mu, mu)
        cov[np.diag_indices(self.dim)] = np.maximum(np.diag(cov), 0.0)  # rounding can dip below 0
        return cov

    def std(self) -> np.ndarray:
        """(D,) population standard deviation per dimension."""
        return np.sqrt(np.diag(self.covariance()))

    def correlation(self) -> np.ndarray:
        """(D, D) Pearson correlation; a dimension without variance correlates 0 with the others
        (1 with itself). NaN without samples."""
        cov = self.covariance()
        if not self.count:
            return cov
        std = np.sqrt(np.diag(cov))
        scale = np.outer(std, std)
        tiny = scale <= 1e-12 * max(float(scale.max()), 1e-300)
        corr = np.where(tiny, 0.0, cov / np.where(tiny, 1.0, scale))
        corr[np.diag_indices(self.dim)] = 1.0
        return np.clip(corr, -1.0, 1.0)


def mean_abs_off_diagonal(matrix: np.ndarray) -> float:
    """Mean |C_ij| over i != j of a (D, D) matrix (NaN for D = 1): 1 for perfectly (anti-)correlated
    dimensions, about 0 for independent ones."""
    c = np.asarray(matrix, dtype=np.float64)
    if c.ndim != 2 or c.shape[0] != c.shape[1]:
        raise ValueError(f"mean_abs_off_diagonal: a square matrix expected, got {c.shape}")
    d = c.shape[0]
    if d < 2:
        return float("nan")
    return float(np.abs(c[~np.eye(d, dtype=bool)]).mean())


def tag_correlation(tags: np.ndarray) -> np.ndarray:
    """(R, R) correlation of the tag dimensions of (M, R) tag samples."""
    return Moments.of(tags).correlation()


def to_input(joints: np.ndarray, matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Labelled joints of (N, K, 3) image-pixel ground truth -> (J, 2) input pixels (pixel centres)
    through the (2, 3) image -> input matrix, and their (J,) joint types."""
    j = np.asarray(joints, dtype=np.float64)
    if j.ndim != 3 or j.shape[-1] != 3:
        raise ValueError(f"joints must be (N, K, 3), got {j.shape}")
    n_idx, k_idx = np.nonzero(j[..., 2] > 0)
    xy = j[n_idx, k_idx, :2] @ np.asarray(matrix, np.float64)[:, :2].T + np.asarray(matrix, np.float64)[:, 2]
    return xy, k_idx


def peak_positions(heatmaps: torch.Tensor, grouping: GroupingConfig
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The candidate peaks the decoder would group: NMS (``grouping.nms_kernel``), ``top_k`` per type,
    value > ``val_threshold``, at pixel + the quarter offset (``grouping.adjust``), pixel centres at
    integers (the decoder's +0.5 undone, as the inference's back-projection does).

    Args:
        heatmaps: (K, H, W) aggregated heatmaps at input resolution.

    Returns:
        xy (P, 2) float64 input pixels, joint types (P,) int64, values (P,).
    """
    hm = torch.as_tensor(heatmaps, dtype=torch.float32).detach().cpu()
    if hm.ndim != 3:
        raise ValueError(f"heatmaps must be (K, H, W), got {tuple(hm.shape)}")
    dummy = torch.zeros((*hm.shape, 1))
    cands = top_k_candidates(hm, dummy, grouping.nms_kernel, grouping.top_k)
    k_idx, m_idx = np.nonzero(cands.vals > grouping.val_threshold)
    x, y = cands.xy[k_idx, m_idx, 0], cands.xy[k_idx, m_idx, 1]
    if grouping.adjust and len(k_idx):
        dx, dy = quarter_offsets(hm.numpy(), k_idx, x, y)
    else:
        dx = dy = np.zeros(len(k_idx))
    xy = np.stack([x + dx, y + dy], axis=1).astype(np.float64)
    return xy, k_idx.astype(np.int64), cands.vals[k_idx, m_idx].astype(np.float64)


def nearest_peak_offsets(heatmaps: torch.Tensor, joints: np.ndarray, matrix: np.ndarray,
                         grouping: GroupingConfig) -> tuple[np.ndarray, int]:
    """Signed offsets from each labelled ground-truth joint to the nearest peak of its joint type.

    Args:
        heatmaps: (K, H, W) aggregated heatmaps at input resolution (flip / scales merged).
        joints: (N, K, 3) ground truth in original image pixels (v <= 0: unlabelled).
        matrix: (2, 3) original image -> input (factor 1) pixels.
        grouping: NMS kernel, top-k, value threshold and quarter offset of the decoder.

    Returns:
        (J', 2) peak - joint in input pixels for the joints whose type has at least one peak, and J,
        the number of labelled joints.
    """
    gt, gt_k = to_input(joints, matrix)
    if not len(gt):
        return np.zeros((0, 2)), 0
    peaks, peak_k, _ = peak_positions(heatmaps, grouping)
    out = []
    for k in np.unique(gt_k):
        pk = peaks[peak_k == k]
        if not len(pk):
            continue
        g = gt[gt_k == k]
        d2 = ((pk[None] - g[:, None]) ** 2).sum(axis=-1)  # (J_k, P_k)
        out.append(pk[d2.argmin(axis=1)] - g)
    return (np.concatenate(out) if out else np.zeros((0, 2))), int(len(gt))


def sample_tags(tags: torch.Tensor, joints: np.ndarray, matrix: np.ndarray, input_hw: tuple[int, int]
                ) -> np.ndarray:
    """The tags at the labelled ground-truth joints (nearest tag-map pixel; joints outside skipped).

    Args:
        tags: (K, h0, w0, R) one image's tags as the network outputs them (no flip, factor 1).
        joints: (N, K, 3) ground truth in original image pixels.
        matrix: (2, 3) original image -> input pixels.
        input_hw: the input's (H, W); the tag map's stride is H / h0 (pixel q covers input pixel
            centre ``stride * q + (stride - 1) / 2``, as bilinear up-sampling places it).

    Returns:
        (M, R) float64 tag vectors.
    """
    t = torch.as_tensor(tags).detach().float().cpu().numpy()
    if t.ndim != 4:
        raise ValueError(f"tags must be (K, h0, w0, R), got {t.shape}")
    _, h0, w0, r = t.shape
    gt, gt_k = to_input(joints, matrix)
    stride_y, stride_x = input_hw[0] / h0, input_hw[1] / w0
    qx = np.round((gt[:, 0] - (stride_x - 1) / 2) / stride_x).astype(np.int64) if len(gt) else np.zeros(0, np.int64)
    qy = np.round((gt[:, 1] - (stride_y - 1) / 2) / stride_y).astype(np.int64) if len(gt) else np.zeros(0, np.int64)
    inside = (qx >= 0) & (qx < w0) & (qy >= 0) & (qy < h0)
    return t[gt_k[inside], qy[inside], qx[inside]].astype(np.float64).reshape(-1, r)


def correlation_image(matrix: np.ndarray, title: str = "tag correlation", cell: int = 56) -> np.ndarray:
    """A (D, D) correlation matrix drawn as a blue (-1) / white (0) / red (+1) grid with the values
    written in the cells and ``title`` plus the mean |off-diagonal| above it: (H, W, 3) uint8 RGB."""
    c = np.asarray(matrix, dtype=np.float64)
    d = c.shape[0]
    top, left = 40, 28
    img = np.full((top + d * cell + 8, left + d * cell + 8, 3), 255, np.uint8)
    blue, white, red = np.array([59, 76, 192.0]), np.array([247, 247, 247.0]), np.array([180, 4, 38.0])
    for i in range(d):
        for j in range(d):
            v = float(np.clip(np.nan_to_num(c[i, j]), -1, 1))
            colour = white + (red - white) * v if v >= 0 else white + (blue - white) * -v
            y0, x0 = top + i * cell, left + j * cell
            img[y0:y0 + cell, x0:x0 + cell] = colour.astype(np.uint8)
            ink = (255, 255, 255) if abs(v) > 0.6 else (0, 0, 0)
            cv2.putText(img, f"{v:.2f}", (x0 + 6, y0 + cell // 2 + 5), cv2.FONT_HERSHEY_SIMPLEX, 0.42, ink, 1,
                        cv2.LINE_AA)
        cv2.putText(img, str(i), (6, top + i * cell + cell // 2 + 5), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1)
        cv2.putText(img, str(i), (left + i * cell + cell // 2 - 4, top - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.45,
                    (0, 0, 0), 1)
    summary = mean_abs_off_diagonal(c)
    cv2.putText(img, f"{title}: mean |off-diag| {summary:.3f}", (6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5,
                (0, 0, 0), 1, cv2.LINE_AA)
    return img


@dataclass
class BottomUpDiagnostics:
    """What one rank's validation accumulates beside the COCO results; ``+`` merges ranks.

    Attributes:
        offsets: moments of the (dx, dy) peak - joint offsets in heatmap pixels (with
            ``test.oracle_diagnosis``), else None.
        joints: labelled ground-truth joints the offsets looked for (those without a peak of their
            type add no offset).
        tags: moments of the network's tags at ground-truth joints (R > 1), else None.
    """

    offsets: Moments | None = None
    joints: int = 0
    tags: Moments | None = None

    def __add__(self, other: "BottomUpDiagnostics") -> "BottomUpDiagnostics":
        def plus(a: Moments | None, b: Moments | None) -> Moments | None:
            return b if a is None else a if b is None else a + b

        return BottomUpDiagnostics(plus(self.offsets, other.offsets), self.joints + other.joints,
                                   plus(self.tags, other.tags))

    def stats(self) -> dict[str, float]:
        """Figures for the evaluation's stats: ``peak_dx``, ``peak_dy`` (signed mean, heatmap px),
        ``peak_dx_std``, ``peak_dy_std`` (their spread), ``peak_found`` (fraction of labelled joints
        with a peak of their type; 0 and no offsets when no peak passes the value threshold) and
        ``tag_corr_offdiag`` (mean |off-diagonal| correlation of the tag dimensions); each only when
        measured."""
        out: dict[str, float] = {}
        if self.offsets is not None and self.joints:
            out["peak_found"] = self.offsets.count / self.joints
        if self.offsets is not None and self.offsets.count:
            mean, std = self.offsets.mean(), self.offsets.std()
            out.update(peak_dx=float(mean[0]), peak_dy=float(mean[1]), peak_dx_std=float(std[0]),
                       peak_dy_std=float(std[1]))
        if self.tags is not None and self.tags.dim > 1 and self.tags.count > 1:
            out["tag_corr_offdiag"] = mean_abs_off_diagonal(self.tags.correlation())
        return out
