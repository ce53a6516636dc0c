"""Region encoding benchmark: bytes, decode time and re-encoding error of top-down shard regions.

The same regions (``margin_region`` of the first instances of a split, as ``poselab shards`` cuts
them) encoded four ways, side by side in one run:

* ``q95``: JPEG quality 95 at the margin box (the shards' default before ``quality="source"``);
* ``q95 aligned``: the same, the box grown to the source's block grid (``align_to_blocks``);
* ``source``: the source image's quality and chroma subsampling (``read_jpeg_header``), margin box;
* ``source aligned``: both (the default of ``poselab shards``).

For each: KiB per region, full and 1/2-size decode time per region (``cv2.imdecode``, one thread,
median of ``--repeats`` passes in which the encodings take turns), and the re-encoding error (mean absolute difference from the source
image's decoded pixels under the region, 0..255). The source images themselves are listed for
scale (their bytes and decode time per *instance*: what a per-instance file loader pays).

    uv run python bench/bench_region_encoding.py --data data/synthpose-640 --instances 400

The last line printed is a JSON object; ``bytes_vs_q95`` and ``error_vs_q95`` (default against the
former default) first.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from pose.data.coco import load_gt_instances
from pose.data.jpeg_header import align_to_blocks, read_jpeg_header
from pose.data.shards.options import ShardOptions
from pose.data.shards.regions import margin_region, region_jpeg_params
from pose.metainfo import get_metainfo

WAYS = {"q95": (95, False), "q95 aligned": (95, True), "source": ("source", False), "source aligned": ("source", True)}


def _decode_ms(sets: dict[str, list[np.ndarray]], flags: int, repeats: int) -> dict[str, float]:
    """Median ms per buffer of each set; the sets take turns in every repeat (a drifting machine
    shifts them alike)."""
    times: dict[str, list[float]] = {name: [] for name in sets}
    for _ in range(repeats):
        for name, buffers in sets.items():
            t0 = time.process_time()
            for b in buffers:
                cv2.imdecode(b, flags)
            times[name].append((time.process_time() - t0) / len(buffers) * 1e3)
    return {name: float(np.median(t)) for name, t in times.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="data/synthpose", help="COCO-format root (default: %(default)s)")
    p.add_argument("--split", default="train", help="split (default: %(default)s)")
    p.add_argument("--instances", type=int, default=400, help="first instances of the split (default: %(default)s)")
    p.add_argument("--repeats", type=int, default=5, help="decode passes; the median counts (default: %(default)s)")
    args = p.parse_args(argv)
    cv2.setNumThreads(1)
    data = Path(args.data)
    ann = data / "annotations" / f"person_keypoints_{args.split}.json"
    if not ann.exists():
        p.error(f"annotation file not found: {ann}")
    meta = get_metainfo("coco")
    instances = load_gt_instances(ann, data / "images" / args.split, meta, 0.75)[: args.instances]
    opts = ShardOptions()
    encoded: dict[str, list[np.ndarray]] = {w: [] for w in WAYS}
    errors: dict[str, list[float]] = {w: [] for w in WAYS}
    sources: list[np.ndarray] = []
    cached = None
    for inst in instances:
        if cached is None or cached[0] != inst.image_path:
            raw = Path(inst.image_path).read_bytes()
            cached = (inst.image_path, raw, cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_COLOR),
                      read_jpeg_header(raw))
        _, raw, image, header = cached
        sources.append(np.frombuffer(raw, np.uint8))
        h, w = image.shape[:2]
        box = margin_region(inst.center, inst.scale, w, h, 1.0 + opts.scale_factor, 2.0 * opts.rot_factor)
        for way, (quality, aligned) in WAYS.items():
            x0, y0, x1, y1 = align_to_blocks(box, header.block, w, h) if aligned and header else box
            region = image[y0:y1, x0:x1]
            buf = cv2.imencode(".jpg", region, region_jpeg_params(ShardOptions(quality=quality), header))[1]
            encoded[way].append(buf)
            back = cv2.imdecode(buf, cv2.IMREAD_COLOR)
            errors[way].append(float(np.abs(back.astype(np.int16) - region).mean()))

    full, half = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION, cv2.IMREAD_REDUCED_COLOR_2
    sets = {"source image (per instance)": sources, **encoded}
    full_ms, half_ms = _decode_ms(sets, full, args.repeats), _decode_ms(sets, half, args.repeats)
    errors["source image (per instance)"] = [0.0]
    rows = {name: {"kib": np.mean([len(b) for b in bufs]) / 1024, "decode_ms": full_ms[name],
                   "decode_half_ms": half_ms[name], "error": float(np.mean(errors[name]))}
            for name, bufs in sets.items()}
    print(f"{len(instances)} instances of {args.data}/{args.split}; "
          f"{len({i.image_id for i in instances})} images")
    print(f"{'encoding':<30}{'KiB':>8}{'decode ms':>11}{'1/2 ms':>9}{'error':>8}")
    for name, r in rows.items():
        print(f"{name:<30}{r['kib']:>8.1f}{r['decode_ms']:>11.3f}{r['decode_half_ms']:>9.3f}{r['error']:>8.2f}")
    default, old = rows["source aligned"], rows["q95"]
    result = {
        "bytes_vs_q95": round(default["kib"] / old["kib"], 3),
        "error_vs_q95": round(default["error"] / old["error"], 3),
        "decode_vs_q95": round(default["decode_ms"] / old["decode_ms"], 3),
        "rows": {k: {m: round(float(v), 3) for m, v in r.items()} for k, r in rows.items()},
        "instances": len(instances),
        "command": "python " + shlex.join(["bench/bench_region_encoding.py", *(sys.argv[1:] if argv is None else argv)]),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
