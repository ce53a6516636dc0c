"""The SynthPose driver: one image at a time (:func:`generate_image`) and whole datasets in parallel
(:func:`generate_dataset`).

Every image is drawn from its own generator seeded by ``(seed, split, index)``, so the output does
not depend on the number of processes or their scheduling; the main process collects the per-image
records in index order, numbers the annotations and writes the JSON files with fixed rounding.

Layout written under ``out_dir`` (formats coco and crowdpose; mpii and aic write their datasets' own
layouts instead, :mod:`pose.synth.layouts`, and ``synthpose.json``)::

    images/{train,val,unlabeled}/<image id, 12 digits>.jpg
    annotations/person_keypoints_train.json
    annotations/person_keypoints_val.json
    annotations/image_info_unlabeled.json              (images only)
    person_detection_results/val_detections.json
    person_detection_results/unlabeled_detections.json
    synthpose.json                                     (resolved config + summary; written last)
"""

from __future__ import annotations

import json
import multiprocessing
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from pose.metainfo import DatasetMeta, get_metainfo
from pose.synth.annotate import (
    crowd_annotation,
    crowd_index,
    crowd_level,
    keypoint_joint_index,
    person_annotation,
)
from pose.synth.config import OWN_LAYOUT_FORMATS, SynthConfig
from pose.synth.detections import simulate_detections
from pose.synth.layouts import AIC_SPLIT_DIRS, image_dir, write_layout
from pose.synth.progress import ProgressBar
from pose.synth.render import SceneRender, render_scene
from pose.synth.scene import image_rng, sample_image_size, sample_scene, scene_kind

SPLITS: tuple[str, ...] = ("train", "val", "unlabeled")
SPLIT_ID_BASE: dict[str, int] = {"train": 0, "val": 10_000_000, "unlabeled": 20_000_000}
OUTPUT_NAMES: tuple[str, ...] = ("images", "annotations", "person_detection_results", "synthpose.json", "annot",
                                  *AIC_SPLIT_DIRS.values())
FORMAT_VERSION = 1


def image_id(split: str, index: int) -> int:
    """Image id (also the file name stem): ``base(split) + index + 1``; train from 1, val from
    10,000,001, unlabeled from 20,000,001."""
    return SPLIT_ID_BASE[split] + index + 1


def image_file_name(split: str, index: int) -> str:
    return f"{image_id(split, index):012d}.jpg"


@dataclass
class ImageResult:
    """What one worker returns for one image.

    Attributes:
        image: the COCO ``images`` record.
        annotations: records without ``id`` (person annotations first, then the crowd region).
        detections: simulated detections (val and unlabeled splits).
        stats: counters for the summary.
        render: the scene render, when requested (tests, debugging).
    """

    image: dict
    annotations: list[dict]
    detections: list[dict]
    stats: dict
    render: SceneRender | None = field(default=None, repr=False)


def generate_image(cfg: SynthConfig, split: str, index: int, meta: DatasetMeta | None = None,
                   out_dir: str | Path | None = None, keep_render: bool = False) -> ImageResult:
    """Render and annotate one image; write its JPEG under ``out_dir/images/<split>/`` when given.

    The image depends on ``(cfg, split, index)`` only (not on ``cfg.format``); the annotations use
    ``meta`` (default: the metainfo of ``cfg.format``).
    """
    meta = meta or get_metainfo(cfg.format)
    kp_index = keypoint_joint_index(meta)
    rng = image_rng(cfg.seed, split, index)
    width, height = sample_image_size(rng, cfg)
    kind = scene_kind(cfg, split, index)
    region = cfg.crowd_region_every > 0 and index % cfg.crowd_region_every == 0
    spec = sample_scene(rng, cfg, kind, width, height, crowd_region=region)
    render = render_scene(spec, rng, cfg)
    quality = int(rng.integers(cfg.jpeg_quality[0], cfg.jpeg_quality[1] + 1))
    img_id = image_id(split, index)
    name = image_file_name(split, index)
    if out_dir is not None:
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(render.image, cv2.COLOR_RGB2BGR),
                               [cv2.IMWRITE_JPEG_QUALITY, quality])
        if not ok:
            raise RuntimeError(f"JPEG encoding failed for {split}/{name}")
        (Path(out_dir) / image_dir(cfg.format, split) / name).write_bytes(buf.tobytes())
    coco_polys = cfg.format == "coco" and split != "unlabeled"
    anns = []
    for i in range(len(spec.people)):
        ann = person_annotation(render, i, kp_index, cfg, with_segmentation=coco_polys)
        if ann is not None:
            anns.append(ann)
    ci = crowd_index(anns)
    image = {"id": img_id, "file_name": name, "width": width, "height": height}
    if cfg.format == "crowdpose":
        image["crowdIndex"] = round(ci, 2)
    detections: list[dict] = []
    own_layout = cfg.format in OWN_LAYOUT_FORMATS
    if split in ("val", "unlabeled") and not own_layout:
        detections = simulate_detections(image_rng(cfg.seed, split, index, stream=1), anns, width, height,
                                         img_id, cfg)
    crowd = crowd_annotation(render, meta.num_keypoints)
    if crowd is not None:
        anns.append(crowd)
    for a in anns:
        a.pop("_quality", None)
        if cfg.format != "mpii":
            a.pop("_head_box", None)
    people_anns = [a for a in anns if not a["iscrowd"]]
    kps = np.array([a["keypoints"] for a in people_anns], np.float64).reshape(-1, 3)
    stats = {
        "kind": kind,
        "people": len(spec.people),
        "instances": len(people_anns),
        "with_keypoints": sum(1 for a in people_anns if a["num_keypoints"] > 0),
        "crowd_regions": int(crowd is not None),
        "visible": int((kps[:, 2] == 2).sum()),
        "occluded": int((kps[:, 2] == 1).sum()),
        "crowd_level": crowd_level(round(ci, 2)),
    }
    return ImageResult(image, anns, detections, stats, render if keep_render else None)


# ---------------------------------------------------------------------------------------------- workers
@dataclass
class _Packed:
    """An :class:`ImageResult` with its records already serialised (small to pickle and to keep)."""

    image: str
    annotations: list[str]
    detections: list[str]
    stats: dict
    image_id: int


def _pack(r: ImageResult) -> _Packed:
    return _Packed(_dumps(r.image), [_dumps(a) for a in r.annotations], [_dumps(d) for d in r.detections],
                   r.stats, r.image["id"])


_WORKER: dict = {}


def _init_worker(cfg: SynthConfig, out_dir: str) -> None:
    cv2.setNumThreads(1)
    _WORKER["cfg"] = cfg
    _WORKER["out_dir"] = out_dir
    _WORKER["meta"] = get_metainfo(cfg.format)


def _work(task: tuple[str, int]) -> _Packed:
    split, index = task
    return _pack(generate_image(_WORKER["cfg"], split, index, _WORKER["meta"], _WORKER["out_dir"]))


# ---------------------------------------------------------------------------------------------- dataset
def _dumps(obj: object) -> str:
    """The one JSON encoding of every file: compact separators, ASCII."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=True)


def _prepare_out_dir(out: Path, overwrite: bool, fmt: str) -> None:
    if out.exists() and not out.is_dir():
        raise ValueError(f"output path {out} exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    entries = sorted(p.name for p in out.iterdir())
    if entries:
        ours = set(entries) <= set(OUTPUT_NAMES)
        interrupted = ours and "synthpose.json" not in entries
        if not (overwrite or interrupted):
            raise ValueError(f"output directory {out} is not empty (use --overwrite to replace a SynthPose "
                             "dataset there)")
        for name in OUTPUT_NAMES:  # remove only what SynthPose writes
            p = out / name
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()
    for split in SPLITS:
        if fmt not in OWN_LAYOUT_FORMATS or split != "unlabeled":
            (out / image_dir(fmt, split)).mkdir(parents=True, exist_ok=True)
    if fmt not in OWN_LAYOUT_FORMATS:
        (out / "annotations").mkdir(exist_ok=True)
        (out / "person_detection_results").mkdir(exist_ok=True)


def _write_coco(path: Path, head: dict, results: list[_Packed], category: dict,
                ann_id_start: int | None) -> None:
    """Write ``{info, licenses, images, annotations?, categories}`` exactly as ``_dumps`` of the whole
    document would, streaming the pre-serialised records; annotation ids count up from ``ann_id_start``
    (None: an image-info file without annotations)."""
    with open(path, "w", encoding="ascii") as f:
        f.write(_dumps(head)[:-1] + ',"images":[')
        f.write(",".join(r.image for r in results))
        f.write("]")
        if ann_id_start is not None:
            f.write(',"annotations":[')
            next_id, first = ann_id_start, True
            for r in results:
                for a in r.annotations:
                    f.write(("" if first else ",") + f'{{"id":{next_id},"image_id":{r.image_id},' + a[1:])
                    next_id += 1
                    first = False
            f.write("]")
        f.write(',"categories":[' + _dumps(category) + "]}")


def _write_coco_layout(cfg: SynthConfig, meta: DatasetMeta, out: Path, results: dict[str, list[_Packed]]) -> None:
    """The COCO / CrowdPose files: keypoints of train and val, the unlabeled image list, detections."""
    category = meta.coco_category()
    head = {"info": {"description": f"SynthPose ({cfg.format} keypoints), procedurally generated by poselab",
                     "version": str(FORMAT_VERSION), "seed": cfg.seed}, "licenses": []}
    for split in ("train", "val"):
        _write_coco(out / "annotations" / f"person_keypoints_{split}.json", head, results[split], category,
                    SPLIT_ID_BASE[split] + 1)
    _write_coco(out / "annotations" / "image_info_unlabeled.json", head, results["unlabeled"], category, None)
    for split in ("val", "unlabeled"):
        dets = [d for r in results[split] for d in r.detections]
        (out / "person_detection_results" / f"{split}_detections.json").write_text("[" + ",".join(dets) + "]",
                                                                                  encoding="ascii")


def _split_summary(results: list[_Packed], labelled: bool, with_dets: bool) -> dict:
    s: dict = {"images": len(results), "people": sum(r.stats["people"] for r in results)}
    if labelled:
        s["instances"] = sum(r.stats["instances"] for r in results)
        s["instances_with_keypoints"] = sum(r.stats["with_keypoints"] for r in results)
        s["zero_keypoint_instances"] = s["instances"] - s["instances_with_keypoints"]
        s["crowd_regions"] = sum(r.stats["crowd_regions"] for r in results)
        s["keypoints_visible"] = sum(r.stats["visible"] for r in results)
        s["keypoints_occluded"] = sum(r.stats["occluded"] for r in results)
        s["crowd_index"] = {lvl: sum(1 for r in results if r.stats["crowd_level"] == lvl)
                            for lvl in ("easy", "medium", "hard")}
    s["scenes"] = {k: sum(1 for r in results if r.stats["kind"] == k) for k in ("sparse", "group", "crowd")}
    if with_dets:
        s["detections"] = sum(len(r.detections) for r in results)
    return s


def generate_dataset(cfg: SynthConfig, out_dir: str | Path, progress: bool = True,
                     overwrite: bool = False) -> dict:
    """Generate a SynthPose dataset under ``out_dir`` with ``cfg.num_workers`` processes.

    Args:
        cfg: the configuration (``format``, sizes, seed, difficulty knobs).
        out_dir: output directory; it must be empty or absent, unless ``overwrite`` (then the SynthPose
            outputs in it are replaced; other files are kept) or it only holds the outputs of an
            interrupted run (no ``synthpose.json``), which are replaced.
        progress: show a progress bar on stderr.

    Returns:
        The summary: ``format``, ``seed``, ``keypoints`` (K), per split ``images``, ``people`` (rendered
        people, without the iscrowd regions), ``instances`` (person annotations), keypoint counts,
        crowdIndex levels, scene kinds and detections; plus ``seconds``, ``images_per_second`` and
        ``workers`` (only in the return value: ``synthpose.json`` stays byte-identical across runs).

    Raises:
        ValueError: the output directory is not usable.
    """
    out = Path(out_dir)
    meta = get_metainfo(cfg.format)
    keypoint_joint_index(meta)  # fail early on an unsupported layout
    _prepare_out_dir(out, overwrite, cfg.format)
    sizes = cfg.split_sizes()
    workers = max(1, min(cfg.num_workers, sum(sizes.values())))
    t0 = time.perf_counter()
    results: dict[str, list[_Packed]] = {}
    pool = None
    if workers > 1:
        pool = multiprocessing.get_context("spawn").Pool(workers, _init_worker, (cfg, str(out)))
    try:
        for split in SPLITS:
            n = sizes[split]
            bar = ProgressBar(n, split, enabled=progress)
            tasks = [(split, i) for i in range(n)]
            res: list[_Packed] = []
            if pool is None:
                for split_, i in tasks:
                    res.append(_pack(generate_image(cfg, split_, i, meta, out)))
                    bar.update()
            else:
                chunk = max(1, min(8, n // (workers * 6)))
                for r in pool.imap(_work, tasks, chunksize=chunk):
                    res.append(r)
                    bar.update()
            bar.close()
            results[split] = res
    except BaseException:
        if pool is not None:
            pool.terminate()
            pool.join()
        raise
    if pool is not None:
        pool.close()
        pool.join()
    seconds = time.perf_counter() - t0

    own_layout = cfg.format in OWN_LAYOUT_FORMATS
    if own_layout:
        records = write_layout(cfg.format, out, {split: [(json.loads(r.image), [json.loads(a) for a in r.annotations])
                                                         for r in results[split]] for split in ("train", "val")})
    else:
        _write_coco_layout(cfg, meta, out, results)
    summary = {
        "format": cfg.format,
        "seed": cfg.seed,
        "keypoints": meta.num_keypoints,
        "splits": {
            "train": _split_summary(results["train"], True, False),
            "val": _split_summary(results["val"], True, not own_layout),
            "unlabeled": _split_summary(results["unlabeled"], False, not own_layout),
        },
    }
    if own_layout:  # MPII: people with labeled joints; AIC: images with people
        for split, n in records.items():
            summary["splits"][split]["records"] = n
    config = cfg.resolved().to_dict()
    config.pop("workers")
    card = {"generator": "poselab.synth", "version": FORMAT_VERSION, "config": config, "summary": summary}
    (out / "synthpose.json").write_text(json.dumps(card, indent=2) + "\n", encoding="ascii")
    total = sum(sizes.values())
    return {**summary, "seconds": round(seconds, 2),
            "images_per_second": round(total / max(seconds, 1e-9), 2), "workers": workers}
