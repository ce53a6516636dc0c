"""Oracle maps for bottom-up diagnosis: heatmaps and tags rendered from the ground truth, alone or
swapped into a trained network's output.

A bottom-up AP mixes two errors: where the joints are (heatmaps) and whose they are (tags). Replacing
one of the two by the ground truth's separates them:

- *oracle tags* (network heatmaps, ground-truth identities): the AP the network's localisation allows;
- *oracle heatmaps* (ground-truth joints, network tags): how well the embedding groups people, the
  quantity Coupled Embedding changes, free of localisation error.

Shape legend: N people, K joint types, h x w a heatmap, R tag dimensions, B = 1 or 2 (flip test).
"""

from __future__ import annotations

import numpy as np
import torch

from pose.data.transforms import transform_points

ORACLE_SIGMA = 1.5  # heatmap pixels
ORACLE_TAG_SPACING = 3.0  # between consecutive people's tags: above any grouping threshold


def render_oracle_maps(joints: np.ndarray, matrix: np.ndarray, input_hw: tuple[int, int],
                       heatmap_hw: tuple[int, int], embed_dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian heatmaps at the ground-truth joints and each person's constant tag around them.

    Args:
        joints: (N, K, 3) [x, y, v] in original image pixels (v <= 0: unlabelled).
        matrix: (2, 3) original image -> network input (pixel centres).
        input_hw: the network input's (H, W).
        heatmap_hw: the rendered map's (h, w); its stride is H / h.
        embed_dim: R.

    Returns:
        heatmaps (K, h, w) in [0, 1]; tags (K, h, w, R): at every pixel, ``ORACLE_TAG_SPACING * (n + 1)``
        of the person n whose joint of that type is nearest (0 where no person has it labelled).
    """
    k = joints.shape[1] if joints.ndim == 3 else 0
    h, w = heatmap_hw
    stride = input_hw[0] / h
    shift = (stride - 1) / 2  # bilinear up-sampling maps map pixel q to input pixel stride * q + shift
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    heat = np.zeros((k, h, w))
    tags = np.zeros((k, h, w, embed_dim))
    best = np.full((k, h, w), np.inf)
    for n, person in enumerate(joints):
        pts = (transform_points(person[:, :2], matrix) - shift) / stride
        for j in np.flatnonzero(person[:, 2] > 0):
            d2 = (xs - pts[j, 0]) ** 2 + (ys - pts[j, 1]) ** 2
            heat[j] = np.maximum(heat[j], np.exp(-d2 / (2 * ORACLE_SIGMA**2)))
            closer = d2 < best[j]
            best[j][closer] = d2[closer]
            tags[j][closer] = ORACLE_TAG_SPACING * (n + 1)
    return heat, tags


class OracleSwap:
    """Stands in for a :class:`pose.bottomup.method.BottomUpMethod` in
    :meth:`pose.bottomup.inference.BottomUpEvaluator.predict_resized`: the network's heatmaps and/or
    tags are replaced by oracle maps of the current image.

    Set ``joints`` (the image's (N, K, 3) ground truth) and ``matrices`` (one (2, 3) image -> input
    matrix per test scale factor, in call order) before each image.

    Args:
        method: the trained method, or None when both maps are oracles.
        flip_indices: the dataset's flip permutation (the flipped half of a flip-test batch gets the
            mirrored oracle maps).
        embed_dim: R of the oracle tags when ``method`` is None (else the network's).
        heatmaps, tags: which of the two to replace.
    """

    def __init__(self, method, flip_indices: list[int], embed_dim: int = 1, *, heatmaps: bool, tags: bool) -> None:
        if method is None and not (heatmaps and tags):
            raise ValueError("OracleSwap without a method must replace both heatmaps and tags")
        self.method = method
        self.flip_indices = torch.as_tensor(flip_indices)
        self.embed_dim = embed_dim
        self.swap_heatmaps, self.swap_tags = heatmaps, tags
        self.joints: np.ndarray | None = None
        self.matrices: list[np.ndarray] = []

    def eval(self) -> "OracleSwap":
        if self.method is not None:
            self.method.eval()
        return self

    def _mirror(self, t: torch.Tensor, width_dim: int, batch: int) -> torch.Tensor:
        if batch == 1:
            return t
        return torch.cat([t, t.flip(width_dim)[:, self.flip_indices]])

    @torch.no_grad()
    def forward_images(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """(B, 3, H, W) uint8 -> (heatmaps per resolution (B, K, h_i, w_i), tags (B, K, h_0, w_0, R))."""
        if self.joints is None or not self.matrices:
            raise RuntimeError("OracleSwap: set joints and matrices for the image first")
        b, _, hin, win = x.shape
        matrix = self.matrices.pop(0)
        if self.method is not None:
            heatmaps, tags = self.method.forward_images(x)
            hm_sizes = [tuple(h.shape[-2:]) for h in heatmaps]
            embed_dim = tags.shape[-1]
        else:
            heatmaps, tags, hm_sizes, embed_dim = None, None, [(hin // 4, win // 4)], self.embed_dim
        if self.swap_heatmaps:
            rendered = [render_oracle_maps(self.joints, matrix, (hin, win), hw, embed_dim)[0] for hw in hm_sizes]
            heatmaps = [self._mirror(torch.from_numpy(r).float()[None], -1, b) for r in rendered]
        if self.swap_tags:
            _, t = render_oracle_maps(self.joints, matrix, (hin, win), hm_sizes[0], embed_dim)
            tags = self._mirror(torch.from_numpy(t).float()[None], -2, b)
        return heatmaps, tags
