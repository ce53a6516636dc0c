"""Bottom-up test fixtures: a constructed ground truth of large, well-separated people."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

# A standing person, (x, y) as fractions of its height, x relative to its centre line.
_COCO_POSE = {  # nose, eyes, ears, shoulders, elbows, wrists, hips, knees, ankles (left = person's left, image right)
    "nose": (0.0, 0.05), "left_eye": (0.03, 0.03), "right_eye": (-0.03, 0.03), "left_ear": (0.06, 0.05),
    "right_ear": (-0.06, 0.05), "left_shoulder": (0.12, 0.18), "right_shoulder": (-0.12, 0.18),
    "left_elbow": (0.16, 0.34), "right_elbow": (-0.16, 0.34), "left_wrist": (0.18, 0.48),
    "right_wrist": (-0.18, 0.48), "left_hip": (0.08, 0.52), "right_hip": (-0.08, 0.52),
    "left_knee": (0.09, 0.75), "right_knee": (-0.09, 0.75), "left_ankle": (0.10, 0.97),
    "right_ankle": (-0.10, 0.97)}
_CROWDPOSE_ORDER = ("left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
                    "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle", "head", "neck")
_CROWDPOSE_EXTRA = {"head": (0.0, 0.02), "neck": (0.0, 0.13)}


def _person(fmt: str, cx: float, top: float, height: float) -> list[float]:
    names = list(_COCO_POSE) if fmt == "coco" else list(_CROWDPOSE_ORDER)
    pose = {**_COCO_POSE, **_CROWDPOSE_EXTRA}
    kp = []
    for name in names:
        fx, fy = pose[name]
        kp += [round(cx + fx * height, 2), round(top + fy * height, 2), 2]
    return kp


def _write_separated_gt(root: Path, fmt: str, height: float, images: int = 3) -> Path:
    """A COCO-format ground truth of ``images`` 320x256 images, each with three upright people
    ``height`` pixels tall, 100 pixels apart (no image files: the round trip reads none)."""
    data = {"images": [], "annotations": [], "categories": [{"id": 1, "name": "person", "keypoints": [],
                                                              "skeleton": []}]}
    ann_id = 1
    for i in range(images):
        image = {"id": i + 1, "file_name": f"{i + 1}.jpg", "width": 320, "height": 256}
        if fmt == "crowdpose":
            image["crowdIndex"] = 0.0
        data["images"].append(image)
        for n, cx in enumerate((60.0, 160.0, 260.0)):
            top = 20.0 + 7.3 * i + 3.1 * n  # sub-pixel positions vary between people and images
            kp = _person(fmt, cx + 1.7 * i, top, height)
            xs, ys = kp[0::3], kp[1::3]
            bbox = [min(xs) - 4, min(ys) - 4, max(xs) - min(xs) + 8, max(ys) - min(ys) + 8]
            data["annotations"].append({"id": ann_id, "image_id": i + 1, "category_id": 1, "iscrowd": 0,
                                        "keypoints": kp, "num_keypoints": len(xs), "bbox": bbox,
                                        "area": bbox[2] * bbox[3]})
            ann_id += 1
    path = root / f"separated_{fmt}.json"
    path.write_text(json.dumps(data))
    return path



@pytest.fixture
def separated_gt(tmp_path) -> Callable[[str, float], Path]:
    """``separated_gt(fmt, height)`` -> a "coco" or "crowdpose" ground-truth file of three 320x256 images
    with three upright people ``height`` pixels tall, 100 pixels apart, each (no image files)."""
    return lambda fmt, height: _write_separated_gt(tmp_path, fmt, height)
