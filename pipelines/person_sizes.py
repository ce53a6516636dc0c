"""Person sizes of a COCO-format split: people per image, box area and height relative to the image.

Counts the annotations the top-down loader trains on (not crowd, at least one labeled keypoint).
What decides how much of an image a top-down shard region covers (docs/data.md, "Benchmark").

    uv run python pipelines/person_sizes.py data/synthpose-640/annotations/person_keypoints_train.json

The last line printed is a JSON object of the figures.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("annotations", help="a COCO person_keypoints_*.json file")
    args = p.parse_args(argv)
    path = Path(args.annotations)
    if not path.exists():
        p.error(f"annotation file not found: {path}")
    data = json.loads(path.read_text())
    images = {im["id"]: im for im in data["images"]}
    people = [a for a in data["annotations"] if not a.get("iscrowd") and a.get("num_keypoints", 0) > 0]
    if not people:
        p.error(f"{path}: no annotation with labeled keypoints")
    area, height = [], []
    for a in people:
        im = images[a["image_id"]]
        area.append(a["bbox"][2] * a["bbox"][3] / (im["width"] * im["height"]))
        height.append(a["bbox"][3] / im["height"])
    per_image = len(people) / len({a["image_id"] for a in people})
    q = [10, 50, 90]
    result = {"people": len(people), "people_per_image": round(per_image, 2),
              "box_area_of_image_p10_p50_p90": [round(float(v), 3) for v in np.percentile(area, q)],
              "height_of_image_p10_p50_p90": [round(float(v), 3) for v in np.percentile(height, q)],
              "annotations": str(path)}
    print(f"{len(people)} people in {len({a['image_id'] for a in people})} images ({per_image:.2f} per image); "
          f"box area / image area p10/p50/p90 {result['box_area_of_image_p10_p50_p90']}; "
          f"box height / image height {result['height_of_image_p10_p50_p90']}")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
