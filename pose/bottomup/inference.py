"""Bottom-up inference and evaluation: whole images -> people -> COCO results -> AP.

Per image (spec section 4): ResizeAlign at every test scale factor, forward (with the horizontally
flipped image in the same batch when ``test.flip_test``), HigherHRNet heatmaps averaged at 1/2,
everything projected to the factor-1 input resolution, flip merge (heatmaps averaged, tags
concatenated), scale merge (heatmaps averaged, tags from factor 1), then the codec's decode (NMS,
top-k, grouping, offsets, score, refine) and back-projection to the original image.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np
import torch

from pose.bottomup.aggregate import aggregate_outputs
from pose.bottomup.codec import BottomUpCodec
from pose.bottomup.config import BottomUpTestConfig
from pose.bottomup.data import load_bottomup_images, resize_align
from pose.bottomup.diagnostics import BottomUpDiagnostics, Moments, correlation_image, nearest_peak_offsets, sample_tags
from pose.bottomup.method import BottomUpMethod
from pose.bottomup.oracle import OracleSwap
from pose.data.transforms import invert_affine, transform_points
from pose.evaluation.keypoint_eval import evaluate_keypoints, load_gt
from pose.metainfo import DatasetMeta

TAG_CORRELATION_IMAGE = "tag_correlation.png"  # written by BottomUpEvaluator.score, logged by the worker
PIXEL_CENTRE_SHIFT = 0.5  # decode's +0.5 (corner convention) undone before the centre-convention affine


def people_to_results(people: np.ndarray, scores: np.ndarray, image_id: int, max_people: int) -> list[dict]:
    """(P, K, 3) image-pixel people and (P,) scores -> COCO keypoint results (the ``max_people``
    highest-scoring people), each with the keypoints' bounding box."""
    order = np.argsort(-scores, kind="stable")[:max_people]
    results = []
    for i in order:
        kp = people[i]
        x0, y0 = kp[:, :2].min(axis=0)
        x1, y1 = kp[:, :2].max(axis=0)
        results.append({"image_id": int(image_id), "category_id": 1,
                        "keypoints": [round(float(v), 3) for v in kp.reshape(-1)],
                        "score": float(scores[i]),
                        "bbox": [float(x0), float(y0), float(x1 - x0), float(y1 - y0)]})
    return results


class BottomUpEvaluator:
    """Predicts people on whole validation images and computes AP/AR (COCO or CrowdPose protocol).

    Args:
        meta: dataset metainfo (flip indices, grouping order, OKS sigmas, protocol).
        codec: the codec whose ``decode`` groups the joints (its ``input_size`` is the test size).
        test: flip test, scale factors, size divisor, people kept per image.
        gt_file: COCO-format ground truth of the validation images (None: prediction only, no scoring and
            no oracle diagnosis).
        image_ids: the evaluated images (a subset of the GT's when ``data.max_val_images`` is set).
    """

    def __init__(self, meta: DatasetMeta, codec: BottomUpCodec, test: BottomUpTestConfig,
                 gt_file: str | Path | None, image_ids: list[int] | None = None) -> None:
        self.meta = meta
        self.codec = codec
        self.test = test
        self.gt_file = Path(gt_file) if gt_file is not None else None
        self.image_ids = image_ids
        self._gt = None
        self._gt_joints: dict[int, np.ndarray] | None = None

    @property
    def gt(self):
        if self._gt is None:
            self._gt = load_gt(self._gt_path())
        return self._gt

    @torch.no_grad()
    def predict_resized(self, method: BottomUpMethod, images: list[torch.Tensor], matrix: np.ndarray,
                        device: torch.device) -> tuple[np.ndarray, np.ndarray]:
        """People on one image already ResizeAligned at every test scale factor.

        Args:
            images: per scale factor (factor 1 first), (3, h_j, w_j) uint8 RGB.
            matrix: (2, 3) original image -> factor-1 image.

        Returns:
            people (P, K, 3) [x, y, val] in original image pixels, scores (P,).
        """
        return self.decode_outputs(*self.forward_scales(method, images, device), matrix)

    @torch.no_grad()
    def forward_scales(self, method: BottomUpMethod, images: list[torch.Tensor], device: torch.device
                       ) -> tuple[list[tuple[list[torch.Tensor], torch.Tensor]], tuple[int, int]]:
        """The network's outputs (:meth:`forward`) for one image at every test scale factor, and the
        (h, w) of the factor-1 image. ``images``: per scale factor, (3, h_j, w_j) uint8 RGB."""
        if len(images) != len(self.test.scale_factors):
            raise ValueError(f"{len(images)} resized images for scale factors {list(self.test.scale_factors)}")
        method.eval()
        outputs = [self.forward(method, x[None], device) for x in images]
        return outputs, (int(images[0].shape[1]), int(images[0].shape[2]))

    @torch.no_grad()
    def forward(self, method: BottomUpMethod, images: torch.Tensor, device: torch.device
                ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """The network's outputs for B resized images (B, 3, h, w) uint8 of one scale factor, with the
        mirrored images appended when ``test.flip_test`` (rows B..2B-1): heatmaps per resolution
        [(B', K, h_r, w_r)] and tags (B', K, h/4, w/4, R) float32, B' = 2B with the flip test, else B."""
        x = images.to(device)
        if self.test.flip_test:
            x = torch.cat([x, x.flip(-1)])
        heatmaps, tags = method.forward_images(x)
        return [h.float() for h in heatmaps], tags.float()

    def outputs_of(self, outputs: tuple[list[torch.Tensor], torch.Tensor], i: int, batch: int
                   ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Image ``i``'s rows of :meth:`forward`'s outputs for a batch of ``batch`` images (with its
        mirrored copy when ``test.flip_test``): what :meth:`decode_outputs` takes per scale factor."""
        rows = [i, batch + i] if self.test.flip_test else [i]
        heatmaps, tags = outputs
        return [h[rows] for h in heatmaps], tags[rows]

    def decode_outputs(self, outputs: list[tuple[list[torch.Tensor], torch.Tensor]],
                       base_size: tuple[int, int], matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One image's outputs per scale factor (:meth:`forward` of that image alone, or
        :meth:`outputs_of`) -> people (P, K, 3) in original image pixels and scores (P,).

        Args:
            base_size: (h, w) of the factor-1 resized image.
            matrix: (2, 3) original image -> factor-1 image.
        """
        return self.decode_maps(*self.aggregate(outputs, base_size), matrix)

    def aggregate(self, outputs: list[tuple[list[torch.Tensor], torch.Tensor]], base_size: tuple[int, int]
                  ) -> tuple[torch.Tensor, torch.Tensor]:
        """One image's outputs per scale factor -> heatmaps (K, H, W) and tags (K, H, W, D) at the
        factor-1 input size (flip and scales merged; D = 2R with the flip test)."""
        return aggregate_outputs(outputs, base_size, self.test.scale_factors,
                                 self.meta.flip_indices if self.test.flip_test else None)

    def decode_maps(self, hm: torch.Tensor, tg: torch.Tensor, matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Aggregated maps (:meth:`aggregate`) -> people (P, K, 3) in original image pixels, scores (P,)."""
        people, scores = self.codec.decode(hm.cpu(), tg.cpu(), self.meta.grouping_order)
        if len(people):
            # decode reports pixel i at i + 0.5 (the original's corner convention, where pixel i spans
            # [i, i + 1)); ResizeAlign's matrix maps pixel centres to pixel centres, so shift back first.
            back = invert_affine(np.asarray(matrix, dtype=np.float64))
            people = people.copy()
            xy = people[:, :, :2].reshape(-1, 2) - PIXEL_CENTRE_SHIFT
            people[:, :, :2] = transform_points(xy, back).reshape(people.shape[0], -1, 2)
        return people, scores

    @property
    def heatmap_stride(self) -> float:
        """Input pixels per pixel of the finest heatmap (4 for HRNet heads, 2 for HigherHRNet): the
        unit of the diagnostics' "heatmap pixels"."""
        return self.codec.input_size / self.codec.heatmap_sizes[-1]

    def resize(self, image: np.ndarray) -> tuple[list[torch.Tensor], np.ndarray]:
        """One RGB image (H, W, 3) uint8 ResizeAligned at every test scale factor: (3, h_j, w_j) uint8
        tensors (factor 1 first) and the (2, 3) matrix original image -> factor-1 image."""
        images, matrix = [], None
        for factor in self.test.scale_factors:
            resized, m = resize_align(image, self.codec.input_size, self.test.size_divisor, factor)
            matrix = m if matrix is None else matrix
            images.append(torch.from_numpy(np.ascontiguousarray(resized.transpose(2, 0, 1))))
        return images, matrix

    def predict_image(self, method: BottomUpMethod, image: np.ndarray, device: torch.device
                      ) -> tuple[np.ndarray, np.ndarray]:
        """One RGB image (H, W, 3) uint8 -> people (P, K, 3) in image pixels, scores (P,)."""
        images, matrix = self.resize(image)
        return self.predict_resized(method, images, matrix, device)

    def _gt_path(self) -> Path:
        if self.gt_file is None:
            raise ValueError("BottomUpEvaluator without a ground-truth file: it predicts, it cannot score")
        return self.gt_file

    def gt_joints(self, image_id: int) -> np.ndarray:
        """(N, K, 3) ground-truth joints of one validation image (for the oracle diagnosis)."""
        if self._gt_joints is None:
            gt_file = self._gt_path()
            records, _ = load_bottomup_images(gt_file, gt_file.parent, self.meta, train=False)
            self._gt_joints = {r.image_id: r.joints for r in records}
        if image_id not in self._gt_joints:
            raise KeyError(f"{self.gt_file}: no image with id {image_id}")
        return self._gt_joints[image_id]

    def predict(self, method: BottomUpMethod, items: Iterable[dict], device: torch.device
                ) -> tuple[dict[str, list[dict]], list[int], BottomUpDiagnostics]:
        """COCO results for every item of a :class:`pose.bottomup.data.ValImageDataset` (one image per
        item, un-collated), the ids of the images seen and the diagnostics gathered on the way.

        Results are keyed by source: ``"net"`` (the network), and with ``test.oracle_diagnosis``
        also ``"oracle_tags"`` and ``"oracle_heatmaps"`` (:class:`pose.bottomup.oracle.OracleSwap`).
        Diagnostics (:mod:`pose.bottomup.diagnostics`), from the network's own outputs: with
        ``test.oracle_diagnosis`` the signed offsets from the ground-truth joints to the nearest peaks;
        with R > 1 tag dimensions (and a ground-truth file) the tags at the ground-truth joints.
        """
        sources: dict[str, object] = {"net": method}
        if self.test.oracle_diagnosis:
            flip = self.meta.flip_indices
            sources["oracle_tags"] = OracleSwap(method, flip, heatmaps=False, tags=True)
            sources["oracle_heatmaps"] = OracleSwap(method, flip, heatmaps=True, tags=False)
        results: dict[str, list[dict]] = {name: [] for name in sources}
        seen: list[int] = []
        diag = BottomUpDiagnostics(
            offsets=Moments.empty(2) if self.test.oracle_diagnosis else None,
            tags=Moments.empty(self.codec.embed_dim) if self.codec.embed_dim > 1 and self.gt_file else None)
        for item in items:
            images = [item["image"]] + [item[f"image_{j}"] for j in range(1, len(self.test.scale_factors))]
            matrices = [item["matrix" if j == 0 else f"matrix_{j}"].numpy() for j in range(len(images))]
            image_id = int(item["image_id"])
            for name, source in sources.items():
                if isinstance(source, OracleSwap):
                    source.joints, source.matrices = self.gt_joints(image_id), list(matrices)
                    people, scores = self.predict_resized(source, images, matrices[0], device)
                else:
                    people, scores = self._predict_diagnosed(method, images, matrices[0], device, image_id, diag)
                results[name].extend(people_to_results(people, scores, image_id, self.test.max_people))
            seen.append(image_id)
        return results, seen, diag

    @torch.no_grad()
    def _predict_diagnosed(self, method: BottomUpMethod, images: list[torch.Tensor], matrix: np.ndarray,
                           device: torch.device, image_id: int, diag: BottomUpDiagnostics
                           ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`predict_resized`, adding the image's peak offsets and tag samples to ``diag``."""
        outputs, base_size = self.forward_scales(method, images, device)
        hm, tg = self.aggregate(outputs, base_size)
        if diag.offsets is not None:
            offsets, labelled = nearest_peak_offsets(hm, self.gt_joints(image_id), matrix, self.codec.grouping)
            diag.offsets.add(offsets / self.heatmap_stride)
            diag.joints += labelled
        if diag.tags is not None:  # factor 1, the unflipped image: (K, h0, w0, R)
            diag.tags.add(sample_tags(outputs[0][1][0], self.gt_joints(image_id), matrix, base_size))
        return self.decode_maps(hm, tg, matrix)

    def score(self, results: list[dict] | dict[str, list[dict]], out_dir: str | Path | None = None,
              diagnostics: BottomUpDiagnostics | None = None) -> dict[str, float]:
        """AP/AR of the network's results (a list, or :meth:`predict`'s dict); oracle sources add
        ``AP_<source>`` and ``AR50_<source>``; ``diagnostics`` add :meth:`BottomUpDiagnostics.stats`.
        With ``out_dir``, also writes ``results_<source>.json`` and, when the tags were sampled,
        ``tag_correlation.png`` (:func:`pose.bottomup.diagnostics.correlation_image`)."""
        by_source = {"net": results} if isinstance(results, list) else results
        if out_dir is not None:
            Path(out_dir).mkdir(parents=True, exist_ok=True)
            for name, res in by_source.items():
                (Path(out_dir) / f"results_{name}.json").write_text(json.dumps(res))
        stats = evaluate_keypoints(self.gt, by_source["net"], self.meta, image_ids=self.image_ids)
        for name, res in by_source.items():
            if name != "net":
                extra = evaluate_keypoints(self.gt, res, self.meta, image_ids=self.image_ids)
                stats[f"AP_{name}"], stats[f"AR50_{name}"] = extra["AP"], extra["AR50"]
        if diagnostics is not None:
            stats.update(diagnostics.stats())
            tags = diagnostics.tags
            if out_dir is not None and "tag_corr_offdiag" in stats and tags is not None:
                image = correlation_image(tags.correlation(), f"tag correlation (R={tags.dim}, {tags.count} joints)")
                cv2.imwrite(str(Path(out_dir) / TAG_CORRELATION_IMAGE), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        return stats
