"""`poselab predict` end to end on tiny checkpoints (one or two training steps): the real coco-mini
photographs with their ground-truth boxes and their detections, a video made here, a bottom-up model on
crowded SynthPose, and the one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from pose.cli import main
from pose.config import apply_overrides
from pose.engine.trainer import Trainer
from pose.inference.media import VideoWriter
from pose.inference.render import draw_results
from pose.metainfo import COCO
from pose.presets import get_preset
from pose.tasks import config_from_dict

torch.set_num_threads(2)

GT = "annotations/person_keypoints_val2017.json"
DETECTIONS = "person_detection_results/COCO_val2017_detections_AP_H_56_person.json"


def _quiet(metrics, step) -> None:
    pass


def _topdown(coco_mini: Path, out_dir: Path, *extra: str):
    return apply_overrides(get_preset("synth-r18-128x96").config, [
        f"data.root={coco_mini}", f"data.train_ann={GT}", "data.train_images=images/val2017",
        f"data.val_ann={GT}", "data.val_images=images/val2017", "data.num_workers=0",
        "codec.input_size=[32,64]", "codec.heatmap_size=[8,16]", "model.deconv_channels=16",
        "data.num_labeled=4", "train.batch_size=4", "train.epochs=1", "train.lr_steps=[1]",
        "test.batch_size=8", f"output_dir={out_dir}", *extra])


@pytest.fixture(scope="module")
def topdown_run(coco_mini, tmp_path_factory) -> Path:
    """A top-down run directory (one training step on coco-mini; its evaluation wrote results_net.json)."""
    out = tmp_path_factory.mktemp("predict-topdown")
    Trainer(_topdown(coco_mini, out, "name=td"), log_metrics=_quiet).fit()
    return out / "td"


@pytest.fixture(scope="module")
def bottomup_run(crowd_dataset, tmp_path_factory) -> Path:
    """A bottom-up run directory (two steps on crowded SynthPose); grouping keeps every candidate so the
    untrained network still yields people."""
    out = tmp_path_factory.mktemp("predict-bottomup")
    cfg = apply_overrides(get_preset("synthcrowd-ce-hrnet-w8h32-128").config, [
        f"data.root={crowd_dataset('coco')}", "data.num_workers=0", f"output_dir={out}", "name=bu",
        "train.epochs=1", "train.batch_size=6", "train.warmup_iters=2", "codec.grouping.val_threshold=-1",
        "codec.grouping.top_k=3"])
    Trainer(cfg, log_metrics=_quiet).fit()
    return out / "bu"


def _predict(*args: str) -> int:
    return main(["predict", *args, "--no-progress"])


def _results(out: Path) -> list[dict]:
    return json.loads((out / "results.json").read_text())


def _same_results(got: list[dict], expected: list[dict]) -> None:
    def key(r: dict) -> tuple:
        return r["image_id"], -r["score"], r["keypoints"]

    got, expected = sorted(got, key=key), sorted(expected, key=key)
    assert len(got) == len(expected) > 0
    for g, e in zip(got, expected):
        assert g["image_id"] == e["image_id"] and g["category_id"] == 1
        assert g["score"] == pytest.approx(e["score"], abs=1e-5)
        np.testing.assert_allclose(g["keypoints"], e["keypoints"], atol=2e-3)


def test_ground_truth_boxes_reproduce_the_evaluation_and_every_image_is_rendered(topdown_run, coco_mini,
                                                                                tmp_path):
    out = tmp_path / "out"
    images = coco_mini / "images" / "val2017"
    assert _predict("--model", str(topdown_run), "--input", str(images), "--out", str(out),
                    "--boxes", str(coco_mini / GT), "--batch-size", "5") == 0
    results = _results(out)
    _same_results(results, json.loads((topdown_run / "results_net.json").read_text()))
    names = {int(im["id"]): im["file_name"] for im in json.loads((coco_mini / GT).read_text())["images"]}
    assert all(r["file_name"] == names[r["image_id"]] for r in results)
    for name in names.values():
        rendered = cv2.imread(str(out / "images" / name))
        assert rendered is not None and rendered.shape == cv2.imread(str(images / name)).shape


def test_detections_reproduce_the_evaluation_with_detector_boxes(topdown_run, coco_mini, tmp_path):
    out = tmp_path / "out"
    images = coco_mini / "images" / "val2017"
    assert _predict("--model", str(topdown_run / "best.pth"), "--input", str(images), "--out", str(out),
                    "--boxes", str(coco_mini / DETECTIONS), "--ann", str(coco_mini / GT),
                    "--det-score-threshold", "0.5", "--no-render") == 0
    assert not (out / "images").exists()
    # the evaluation of the same weights on the detector's boxes (data.val_boxes)
    state = torch.load(topdown_run / "best.pth", map_location="cpu", weights_only=False)
    cfg = apply_overrides(config_from_dict(state["config"]), [
        f"data.val_boxes={DETECTIONS}", "data.det_score_threshold=0.5", "name=dets",
        f"output_dir={tmp_path}"])
    evaluation = Trainer(cfg, log_metrics=_quiet)
    evaluation.method.load_state_dict(state["method"])
    evaluation.evaluate()
    _same_results(_results(out), json.loads((tmp_path / "dets" / "results_net.json").read_text()))


def test_the_whole_image_is_the_default_box_and_ids_are_running_indices(topdown_run, coco_mini, tmp_path):
    images = sorted((coco_mini / "images" / "val2017").iterdir())
    model = ["--model", str(topdown_run)]
    assert _predict(*model, "--input", str(images[2]), "--out", str(tmp_path / "one")) == 0
    one = _results(tmp_path / "one")
    assert [(r["image_id"], r["file_name"]) for r in one] == [(0, images[2].name)]
    assert (tmp_path / "one" / "images" / images[2].name).is_file()
    assert _predict(*model, "--input", str(images[0].parent), "--out", str(tmp_path / "all"), "--no-render",
                    "--batch-size", "3") == 0
    every = _results(tmp_path / "all")
    assert [(r["image_id"], r["file_name"]) for r in every] == [(i, p.name) for i, p in enumerate(images)]
    assert every[2]["keypoints"] == one[0]["keypoints"]  # batching does not change a crop's result


def test_a_video_gives_results_per_frame_and_an_mp4(topdown_run, coco_mini, tmp_path):
    photos = sorted((coco_mini / "images" / "val2017").iterdir())[:3]
    writer = VideoWriter(tmp_path / "clip.mp4", fps=5.0)
    for photo in photos:
        writer.write(cv2.cvtColor(cv2.resize(cv2.imread(str(photo)), (160, 120)), cv2.COLOR_BGR2RGB))
    writer.close()
    out = tmp_path / "out"
    clip = ["--model", str(topdown_run), "--input", str(tmp_path / "clip.mp4"), "--out", str(out)]
    assert _predict(*clip) == 0
    assert [(r["image_id"], r["file_name"]) for r in _results(out)] == [(i, "clip.mp4") for i in range(3)]
    video = cv2.VideoCapture(str(out / "clip.mp4"))
    assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == 3
    assert (int(video.get(cv2.CAP_PROP_FRAME_WIDTH)), int(video.get(cv2.CAP_PROP_FRAME_HEIGHT))) == (160, 120)
    video.release()
    # a detections file refers to frame numbers: two people in frame 1, none elsewhere
    dets = [{"image_id": 1, "category_id": 1, "bbox": [10, 10, 40, 80], "score": 0.9},
            {"image_id": 1, "category_id": 1, "bbox": [90, 20, 50, 90], "score": 0.8}]
    (tmp_path / "dets.json").write_text(json.dumps(dets))
    assert _predict(*clip, "--boxes", str(tmp_path / "dets.json"), "--no-render") == 0
    assert {r["image_id"] for r in _results(out)} == {1}


def test_bottomup_reproduces_the_evaluation_in_batches_of_one_size(bottomup_run, crowd_dataset, tmp_path,
                                                                   capsys):
    root = crowd_dataset("coco")
    images, gt = root / "images" / "val", root / "annotations" / "person_keypoints_val.json"
    expected = json.loads((bottomup_run / "results_net.json").read_text())
    for batch in ("1", "3"):  # three of the four validation images ResizeAlign to one size: one forward pass
        out = tmp_path / f"b{batch}"
        assert _predict("--model", str(bottomup_run), "--input", str(images), "--out", str(out),
                        "--ann", str(gt), "--batch-size", batch) == 0
        _same_results(_results(out), expected)
        assert len(list((out / "images").iterdir())) == 4
    capsys.readouterr()
    assert _predict("--model", str(bottomup_run), "--input", str(images), "--out", str(tmp_path),
                    "--boxes", str(gt)) == 2
    assert "is a bottom-up model" in capsys.readouterr().err


def _error_cases(run: Path, coco_mini: Path, tmp: Path) -> dict[str, tuple[list[str], str]]:
    image = coco_mini / "images" / "val2017" / "000000000785.jpg"
    (tmp / "notes.txt").write_text("not an image")
    (tmp / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    state = torch.load(run / "best.pth", map_location="cpu", weights_only=False)
    torch.save({"method": state["method"]}, tmp / "noconfig.pth")
    model = ["--model", str(run)]
    return {
        "missing input": (model + ["--input", str(tmp / "nothing.jpg")], "nothing.jpg"),
        "unknown extension": (model + ["--input", str(tmp / "notes.txt")], "unknown extension '.txt'"),
        "unreadable image": (model + ["--input", str(tmp / "broken.jpg")], f"cannot decode image: {tmp}"),
        "checkpoint without config": (["--model", str(tmp / "noconfig.pth"), "--input", str(image)],
                                      "noconfig.pth: the checkpoint has no 'config'"),
        "missing checkpoint": (["--model", str(tmp / "none.pth"), "--input", str(image)], "none.pth"),
        "threshold without detections": (model + ["--input", str(image), "--det-score-threshold", "0.3"],
                                         "--det-score-threshold applies to a detections --boxes file only"),
        "image not in the annotations": (model + ["--input", str(tmp / "broken.jpg"), "--ann",
                                                  str(coco_mini / GT)], "lists no image named 'broken.jpg'"),
        "runs URI without MLflow": (["--model", "runs:/abc", "--input", str(image)], "runs:/abc"),
    }


@pytest.mark.parametrize("case", ["missing input", "unknown extension", "unreadable image",
                                  "checkpoint without config", "missing checkpoint",
                                  "threshold without detections", "image not in the annotations",
                                  "runs URI without MLflow", "cuda"])
def test_bad_input_is_a_one_line_error_naming_it(topdown_run, coco_mini, tmp_path, capsys, case):
    if case == "cuda":
        if torch.cuda.is_available():
            pytest.skip("CUDA is available here")
        args, message = ["--model", str(topdown_run), "--input", str(coco_mini / "images" / "val2017"),
                         "--device", "cuda"], "--device cuda: CUDA is not available"
    else:
        args, message = _error_cases(topdown_run, coco_mini, tmp_path)[case]
    assert _predict(*args, "--out", str(tmp_path / "out")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("poselab predict: error: ") and message in err[0], err


def test_drawn_results_follow_the_skeleton_above_the_threshold():
    image = np.zeros((64, 64, 3), np.uint8)
    kps = np.zeros((COCO.num_keypoints, 3), np.float32)
    kps[:, 0], kps[:, 1] = np.linspace(8, 56, COCO.num_keypoints), 32
    kps[:, 2] = 0.9
    drawn = draw_results(image, [{"keypoints": kps.reshape(-1).tolist()}], COCO, threshold=0.2)
    assert drawn.any() and not image.any()
    kps[:, 2] = 0.1
    assert not draw_results(image, [{"keypoints": kps.reshape(-1).tolist()}], COCO, threshold=0.2).any()
