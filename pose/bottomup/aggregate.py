"""Test-time aggregation of bottom-up outputs at input resolution (spec §2 last item, §4.1-4.4).

Order for one image (spec §9 item 9):

1. per scale factor, the network runs on [image] or [image, hflip(image)] (batch 1 or 2);
   HigherHRNet's two heatmaps are merged by :func:`higher_average`;
2. :func:`project_to_input`: heatmaps and tags are resized bilinearly (align_corners=False) to the
   padded input size of scale factor 1 (``base_size``);
3. :func:`flip_merge`: heatmaps (orig + flipped back[flip_index]) / 2; tags concatenated
   [orig, flipped back[flip_index]] -> 2R dims;
4. :func:`merge_scales`: heatmaps averaged over the scale factors, tags from factor 1 only.

:func:`aggregate_outputs` chains 1-4; its result goes to
:func:`pose.bottomup.grouping.decode_people`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def higher_average(hm_quarter: torch.Tensor, hm_half: torch.Tensor) -> torch.Tensor:
    """HigherHRNet inference heatmaps: (bilinear_up(hm_1/4 -> 1/2 size) + hm_1/2) / 2.

    Args:
        hm_quarter: (B, K, h, w) heatmaps at 1/4 of the input.
        hm_half: (B, K, 2h, 2w) heatmaps at 1/2.

    Returns:
        (B, K, 2h, 2w) averaged heatmaps at 1/2.
    """
    if hm_quarter.ndim != 4 or hm_half.ndim != 4 or hm_quarter.shape[:2] != hm_half.shape[:2]:
        raise ValueError(f"higher_average: (B, K, h, w) and (B, K, 2h, 2w) expected, got "
                         f"{tuple(hm_quarter.shape)} and {tuple(hm_half.shape)}")
    up = F.interpolate(hm_quarter, size=hm_half.shape[2:], mode="bilinear", align_corners=False)
    return (up + hm_half) / 2


def project_to_input(heatmaps: torch.Tensor, tags: torch.Tensor,
                     size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Resize heatmaps and tags to the input size, bilinear with align_corners=False (spec §4.2).

    The reference resizes tags trilinearly over (H, W, R -> R), which is bilinear in space and the
    identity over R: each tag dimension is resized on its own here.

    Args:
        heatmaps: (B, K, h, w).
        tags: (B, K, h0, w0, R) (h0, w0 may differ from h, w: tags exist only at 1/4).
        size: (H, W) output size.

    Returns:
        heatmaps (B, K, H, W) and tags (B, K, H, W, R).
    """
    if heatmaps.ndim != 4 or tags.ndim != 5 or heatmaps.shape[:2] != tags.shape[:2]:
        raise ValueError(f"project_to_input: (B, K, h, w) heatmaps and (B, K, h0, w0, R) tags expected, got "
                         f"{tuple(heatmaps.shape)} and {tuple(tags.shape)}")
    size = (int(size[0]), int(size[1]))
    hm = F.interpolate(heatmaps, size=size, mode="bilinear", align_corners=False)
    b, k, h0, w0, r = tags.shape
    t = tags.permute(0, 1, 4, 2, 3).reshape(b, k * r, h0, w0)
    t = F.interpolate(t, size=size, mode="bilinear", align_corners=False)
    t = t.reshape(b, k, r, *size).permute(0, 1, 3, 4, 2).contiguous()
    return hm, t


def flip_back(heatmaps: torch.Tensor, tags: torch.Tensor | None,
              flip_index: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Outputs of a horizontally flipped image mapped back to the original frame.

    Args:
        heatmaps: (..., K, H, W).
        tags: (..., K, H, W, R) or None.
        flip_index: (K,) joint k of the original is joint flip_index[k] of the flipped image.

    Returns:
        heatmaps (..., K, H, W) mirrored in W and permuted over K; tags likewise (or None).
    """
    idx = torch.as_tensor(list(flip_index), dtype=torch.long, device=heatmaps.device)
    if len(idx) != heatmaps.shape[-3]:
        raise ValueError(f"flip_index has {len(idx)} entries for {heatmaps.shape[-3]} joint types")
    hm = heatmaps.flip(-1).index_select(-3, idx)
    t = None if tags is None else tags.flip(-2).index_select(-4, idx)
    return hm, t


def flip_merge(heatmaps: torch.Tensor, tags: torch.Tensor,
               flip_index: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Merge the outputs of [image, hflip(image)] (spec §4.3).

    Args:
        heatmaps: (2, K, H, W): index 0 the original image, 1 the flipped one.
        tags: (2, K, H, W, R) likewise.
        flip_index: (K,) the dataset's flip permutation.

    Returns:
        heatmaps (K, H, W) = (orig + flipped back) / 2 and tags (K, H, W, 2R) =
        concat([orig, flipped back], dim=-1).
    """
    if heatmaps.ndim != 4 or heatmaps.shape[0] != 2 or tags.ndim != 5 or tags.shape[0] != 2:
        raise ValueError(f"flip_merge: a batch of [orig, flipped] expected, got heatmaps "
                         f"{tuple(heatmaps.shape)} "
                         f"and tags {tuple(tags.shape)}")
    hm_b, tag_b = flip_back(heatmaps[1], tags[1], flip_index)
    return (heatmaps[0] + hm_b) / 2, torch.cat([tags[0], tag_b], dim=-1)


def merge_scales(heatmaps: Sequence[torch.Tensor], tags: Sequence[torch.Tensor],
                 scale_factors: Sequence[float]) -> tuple[torch.Tensor, torch.Tensor]:
    """Multi-scale merge (spec §4.4): heatmaps averaged, tags from the first factor (which must be 1).

    Args:
        heatmaps: one (K, H, W) per scale factor, all projected to the same input size.
        tags: one (K, H, W, D) per scale factor (only the first is used).
        scale_factors: the factors, first = 1.

    Returns:
        heatmaps (K, H, W) mean over factors, tags (K, H, W, D) of factor 1.
    """
    if not (len(heatmaps) == len(tags) == len(scale_factors)) or not scale_factors:
        raise ValueError(f"merge_scales: {len(heatmaps)} heatmaps, {len(tags)} tags and {len(scale_factors)} "
                         "scale factors: need one of each per factor")
    if float(scale_factors[0]) != 1.0:
        raise ValueError(f"merge_scales: the first scale factor must be 1 (tags come from it), "
                         f"got {list(scale_factors)}")
    shapes = {tuple(h.shape) for h in heatmaps}
    if len(shapes) != 1:
        raise ValueError(f"merge_scales: heatmaps of different sizes {sorted(shapes)}; project them first")
    return torch.stack(list(heatmaps)).mean(dim=0), tags[0]


def aggregate_outputs(outputs: Sequence[tuple[Sequence[torch.Tensor], torch.Tensor]], size: tuple[int, int],
                      scale_factors: Sequence[float] = (1.0,),
                      flip_index: Sequence[int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Steps 1-4 for one image: model outputs per scale factor -> maps for grouping.

    Args:
        outputs: per scale factor, the model's (heatmaps list, tags): heatmaps [(B, K, h, w)] or
            [(B, K, h, w), (B, K, 2h, 2w)] (HigherHRNet), tags (B, K, h, w, R); B = 2 ([orig, flipped])
            when ``flip_index`` is given, else 1.
        size: (H, W) padded input size of scale factor 1.
        scale_factors: one per output, the first 1.
        flip_index: the dataset's flip permutation, or None without flip test.

    Returns:
        heatmaps (K, H, W) and tags (K, H, W, D) with D = 2R with flip, else R.
    """
    hms, tgs = [], []
    for maps, tags in outputs:
        if len(maps) == 1:
            hm = maps[0]
        elif len(maps) == 2:
            hm = higher_average(maps[0], maps[1])
        else:
            raise ValueError(f"aggregate_outputs: 1 or 2 heatmap resolutions expected, got {len(maps)}")
        want = 2 if flip_index is not None else 1
        if hm.shape[0] != want:
            flip = "with" if want == 2 else "without"
            raise ValueError(f"aggregate_outputs: batch of {want} expected ({flip} flip), got {hm.shape[0]}")
        hm, tags = project_to_input(hm, tags, size)
        if flip_index is not None:
            hm, tags = flip_merge(hm, tags, flip_index)
        else:
            hm, tags = hm[0], tags[0]
        hms.append(hm)
        tgs.append(tags)
    return merge_scales(hms, tgs, scale_factors)
