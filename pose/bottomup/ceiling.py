"""The round-trip ceiling of a bottom-up setting: the training codec's targets through the real inference.

A network that fits its training targets perfectly outputs, for every test image, exactly what
:meth:`pose.bottomup.codec.BottomUpCodec.encode` makes of that image's ground truth. :class:`CodecOracle`
stands in for the network and outputs those targets (heatmaps at every resolution, of the image and of
its mirror for the flip test) with ground-truth tags; :func:`round_trip` runs it through the evaluator's
own path (ResizeAlign, flip and scale aggregation, NMS / top-k, grouping, quarter offsets, refinement,
back-projection) and scores the people. Its AP is the ceiling of the setting before any training, and
its signed mean joint error exposes a coordinate-convention mismatch between encoding and decoding
(a half-pixel bug shows as a constant vector).

Units: image pixels (the original image) and *heatmap pixels*: pixels of the finest heatmap
(:attr:`pose.bottomup.inference.BottomUpEvaluator.heatmap_stride` input pixels each).

Shape legend: N people, K joint types, B = 1 or 2 (flip test), H x W the input, R tag dimensions.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from pose.bottomup.codec import BottomUpCodec
from pose.bottomup.data import BottomUpImage, val_item
from pose.bottomup.inference import BottomUpEvaluator, people_to_results
from pose.bottomup.oracle import render_oracle_maps
from pose.data.transforms import transform_points


TIE_NOISE = 1e-5  # breaks the exact plateaus of exact targets (see CodecOracle)


class CodecOracle:
    """A perfect fit of the training targets, in place of a :class:`pose.bottomup.method.BottomUpMethod`.

    For an input batch of the current image (and its mirror with the flip test) it returns what the
    training codec encodes from the ground truth mapped into that input: heatmaps at every resolution
    of ``codec.heatmap_sizes`` and, as tags, the ground truth's identities (each pixel carries the
    constant tag of the person whose joint of that type is nearest, :func:`render_oracle_maps`).

    Set ``joints`` ((N, K, 3) image pixels) and ``matrices`` (one (2, 3) image -> input matrix per test
    scale factor, in call order) before each image.

    Exact targets have exact plateaus: a Gaussian centred on heatmap pixel q, up-sampled x4, has equal
    values at input pixels 4q + 1 and 4q + 2 (in x and in y), and max-pool NMS keeps every pixel of a
    plateau, so each joint would become up to four candidates and each person up to four people. A
    trained network never outputs exact ties; ``tie_noise`` adds uniform noise of that amplitude to the
    heatmaps (far below the difference between genuine neighbours, ~1e-3 near a peak), which breaks
    the ties at random, without bias. ``tie_noise=0`` keeps the exact targets.

    Args:
        codec: the experiment's codec (the data pipeline's object; its input size and heatmap sizes
            set the strides).
        flip_indices: the dataset's flip permutation (the mirrored input's joints swap labels).
        tie_noise: amplitude of the tie-breaking noise (>= 0).
        seed: seed of that noise.
    """

    def __init__(self, codec: BottomUpCodec, flip_indices: Sequence[int], tie_noise: float = TIE_NOISE,
                 seed: int = 0) -> None:
        if not tie_noise >= 0:
            raise ValueError(f"CodecOracle: tie_noise must be >= 0, got {tie_noise}")
        self.codec = codec
        self.flip_indices = np.asarray(flip_indices, dtype=np.int64)
        self.tie_noise = tie_noise
        self.rng = np.random.default_rng(seed)
        self.joints: np.ndarray | None = None
        self.matrices: list[np.ndarray] = []

    def eval(self) -> "CodecOracle":
        return self

    def codec_for(self, height: int, width: int) -> BottomUpCodec:
        """The codec for a square of side max(H, W) with the same strides (its targets, cropped to
        H x W, are those of an H x W input: the targets are local and clipped at the same borders)."""
        side = max(height, width)
        sizes = []
        for s in self.codec.heatmap_sizes:
            if (side * s) % self.codec.input_size:
                raise ValueError(f"CodecOracle: input {width}x{height} is not a whole number of heatmap pixels "
                                 f"at {s}/{self.codec.input_size}")
            sizes.append(side * s // self.codec.input_size)
        return dataclasses.replace(self.codec, input_size=side, heatmap_sizes=tuple(sizes))

    def targets(self, joints_in: np.ndarray, height: int, width: int) -> tuple[list[np.ndarray], np.ndarray]:
        """Heatmaps [(K, h_i, w_i)] and tags (K, h_0, w_0, R) for (N, K, 3) joints in input pixels."""
        codec = self.codec_for(height, width)
        corners = np.zeros((len(joints_in), 4, 2))  # box scales feed the loss only
        encoded = codec.encode(joints_in, corners)
        heatmaps = []
        for hm, s in zip(encoded.heatmaps, codec.heatmap_sizes):
            f = s / codec.input_size
            hm = hm[:, : round(height * f), : round(width * f)]
            if self.tie_noise:
                hm = hm + self.tie_noise * self.rng.random(hm.shape, dtype=np.float32)
            heatmaps.append(hm)
        h0, w0 = heatmaps[0].shape[1:]
        _, tags = render_oracle_maps(joints_in, np.array([[1.0, 0, 0], [0, 1.0, 0]]), (height, width), (h0, w0),
                                     self.codec.embed_dim)
        return heatmaps, tags

    @torch.no_grad()
    def forward_images(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """(B, 3, H, W) -> (heatmaps per resolution (B, K, h_i, w_i), tags (B, K, h_0, w_0, R)); row 1
        of a batch of two is the mirrored image."""
        if self.joints is None or not self.matrices:
            raise RuntimeError("CodecOracle: set joints and matrices for the image first")
        b, _, height, width = x.shape
        if b not in (1, 2):
            raise ValueError(f"CodecOracle: a batch of the image (and its mirror) expected, got {b}")
        matrix = self.matrices.pop(0)
        joints = np.asarray(self.joints, dtype=np.float64).copy()
        if joints.size:
            joints[..., :2] = transform_points(joints[..., :2].reshape(-1, 2), matrix).reshape(*joints.shape[:2], 2)
        rows = [self.targets(joints, height, width)]
        if b == 2:
            mirrored = joints[:, self.flip_indices].copy()
            mirrored[..., 0] = width - 1 - mirrored[..., 0]
            rows.append(self.targets(mirrored, height, width))
        heatmaps = [torch.from_numpy(np.stack([r[0][i] for r in rows])).float() for i in range(len(rows[0][0]))]
        tags = torch.from_numpy(np.stack([r[1] for r in rows])).float()
        return heatmaps, tags


@dataclass(frozen=True)
class Ceiling:
    """The round-trip figures of one setting on one set of images.

    Attributes:
        images, people: images scored and ground-truth people with a labelled joint.
        joints: labelled joints of the people matched to a prediction (the error statistics' sample).
        unmatched: ground-truth people left without a predicted person.
        ap, ap50, ar: COCO / CrowdPose AP, AP50 and AR of the decoded people.
        median_px, median_hm: median joint error (Euclidean) in image and heatmap pixels.
        mean_dx_px, mean_dy_px, mean_dx_hm, mean_dy_hm: signed mean error (prediction - truth) per axis.
        heatmap_stride: input pixels per heatmap pixel.
    """

    images: int
    people: int
    joints: int
    unmatched: int
    ap: float
    ap50: float
    ar: float
    median_px: float
    median_hm: float
    mean_dx_px: float
    mean_dy_px: float
    mean_dx_hm: float
    mean_dy_hm: float
    heatmap_stride: float


def match_people(pred: np.ndarray, gt: np.ndarray) -> list[tuple[int, int]]:
    """Pairs (gt index, prediction index) minimising the mean distance over each ground-truth person's
    labelled joints (Hungarian); people without labelled joints are not matched.

    Args:
        pred: (P, K, 3) predicted people; gt: (N, K, 3) ground truth (v > 0 labelled).
    """
    labelled = gt[..., 2] > 0  # (N, K)
    rows = np.flatnonzero(labelled.any(axis=1))
    if not len(rows) or not len(pred):
        return []
    d = np.linalg.norm(gt[rows, None, :, :2] - pred[None, :, :, :2], axis=-1)  # (N', P, K)
    w = labelled[rows, None, :]
    cost = (d * w).sum(axis=-1) / w.sum(axis=-1)
    r, c = linear_sum_assignment(cost)
    return [(int(rows[i]), int(j)) for i, j in zip(r, c)]


def round_trip(evaluator: BottomUpEvaluator, records: Sequence[BottomUpImage], tie_noise: float = TIE_NOISE
               ) -> Ceiling:
    """Encode every record's ground truth with ``evaluator.codec`` and decode it through the evaluator.

    Args:
        evaluator: the experiment's evaluator (codec, test settings, metainfo, ground-truth file for
            the AP; its ``image_ids`` must be those of ``records``).
        records: the validation images (only their size and people are used: no image file is read).
        tie_noise: :class:`CodecOracle`'s tie-breaking noise (0: exact targets, exact plateaus).
    """
    if not records:
        raise ValueError("round_trip: no images")
    oracle = CodecOracle(evaluator.codec, evaluator.meta.flip_indices, tie_noise)
    factors = tuple(evaluator.test.scale_factors)
    results: list[dict] = []
    errors_px, errors_hm = [], []
    people = unmatched = 0
    for record in records:
        blank = np.zeros((record.height, record.width, 3), np.uint8)
        item = val_item(blank, record, evaluator.codec.input_size, evaluator.test.size_divisor, factors)
        images = [torch.from_numpy(item["image" if j == 0 else f"image_{j}"]) for j in range(len(factors))]
        matrices = [item["matrix" if j == 0 else f"matrix_{j}"] for j in range(len(factors))]
        oracle.joints, oracle.matrices = record.joints, list(matrices)
        pred, scores = evaluator.predict_resized(oracle, images, matrices[0], torch.device("cpu"))
        results.extend(people_to_results(pred, scores, record.image_id, evaluator.test.max_people))
        gt = np.asarray(record.joints, dtype=np.float64)
        pairs = match_people(pred, gt)
        people += int((gt[..., 2] > 0).any(axis=1).sum())
        unmatched += int((gt[..., 2] > 0).any(axis=1).sum()) - len(pairs)
        scale = float(np.sqrt(abs(np.linalg.det(matrices[0][:, :2]))))  # image -> input (uniform)
        for n, p in pairs:
            lab = gt[n, :, 2] > 0
            e = pred[p, lab, :2].astype(np.float64) - gt[n, lab, :2]
            errors_px.append(e)
            errors_hm.append(e * scale / evaluator.heatmap_stride)
    stats = evaluator.score(results)
    e_px = np.concatenate(errors_px) if errors_px else np.zeros((0, 2))
    e_hm = np.concatenate(errors_hm) if errors_hm else np.zeros((0, 2))
    nan = float("nan")
    return Ceiling(
        images=len(records), people=people, joints=len(e_px), unmatched=unmatched,
        ap=float(stats["AP"]), ap50=float(stats["AP50"]), ar=float(stats["AR"]),
        median_px=float(np.median(np.linalg.norm(e_px, axis=1))) if len(e_px) else nan,
        median_hm=float(np.median(np.linalg.norm(e_hm, axis=1))) if len(e_hm) else nan,
        mean_dx_px=float(e_px[:, 0].mean()) if len(e_px) else nan,
        mean_dy_px=float(e_px[:, 1].mean()) if len(e_px) else nan,
        mean_dx_hm=float(e_hm[:, 0].mean()) if len(e_hm) else nan,
        mean_dy_hm=float(e_hm[:, 1].mean()) if len(e_hm) else nan,
        heatmap_stride=float(evaluator.heatmap_stride))
