import pytest

from pose.config import ConfigError, apply_overrides, from_dict, load_config_file, to_dict
from pose.experiment import ExperimentConfig
from pose.bottomup.config import BottomUpExperimentConfig
from pose.presets import PRESETS
from pose.tasks import config_class, config_from_dict, load_experiment_file


def test_round_trip_of_every_preset():
    for preset in PRESETS.values():
        assert config_from_dict(to_dict(preset.config)) == preset.config
        assert type(preset.config) is config_class(to_dict(preset.config))


def test_task_selects_the_config_class(tmp_path):
    bottomup = tmp_path / "bu.yaml"
    bottomup.write_text("task: bottomup\nname: x\nloss: {kind: ae}\ncodec: {embed_dim: 1}\n")
    cfg = load_experiment_file(bottomup)
    assert isinstance(cfg, BottomUpExperimentConfig) and cfg.loss.kind == "ae"
    assert isinstance(load_experiment_file(_write(tmp_path / "td.yaml", "name: y\n")), ExperimentConfig)
    with pytest.raises(ConfigError, match="task: 'sideways'"):
        load_experiment_file(_write(tmp_path / "bad.yaml", "task: sideways\n"))
    with pytest.raises(ConfigError, match="bad2.yaml: .*semi"):  # a top-down section in a bottom-up file
        load_experiment_file(_write(tmp_path / "bad2.yaml", "task: bottomup\nsemi: {}\n"))
    with pytest.raises(ConfigError, match="bottom.yaml: .*codec.heatmap_sizes"):
        load_experiment_file(_write(tmp_path / "bottom.yaml", "task: bottomup\nmodel: {head: higher}\n"))


def _write(path, text):
    path.write_text(text)
    return path


def test_unknown_key_is_an_error_naming_it():
    with pytest.raises(ConfigError, match="train.learning_rate"):
        from_dict(ExperimentConfig, {"train": {"learning_rate": 0.1}})
    with pytest.raises(ConfigError, match="unknown config key: model.detph"):
        apply_overrides(ExperimentConfig(), ["model.detph=18"])


def _suggested(message: str) -> list[str]:
    """The names after ``did you mean:`` in an error message."""
    return message.split("did you mean: ")[1].rstrip("?").split(", ")


def test_unknown_keys_suggest_the_closest_keys():
    with pytest.raises(ConfigError, match=r"unknown config key: train\.ephocs \(in override "
                                          r"'train\.ephocs=3'\); did you mean: train\.epochs\?$"):
        apply_overrides(ExperimentConfig(), ["train.ephocs=3"])
    with pytest.raises(ConfigError, match=r"did you mean: train\.epochs\?$"):
        apply_overrides(ExperimentConfig(), ["epochs=3"])  # the section left out
    with pytest.raises(ConfigError, match=r"unknown config key\(s\): train\.bach_size, train\.ephocs; ") \
            as info:
        from_dict(ExperimentConfig, {"train": {"ephocs": 3, "bach_size": 2}})
    assert _suggested(str(info.value)) == ["train.batch_size", "train.epochs"]
    with pytest.raises(ConfigError, match=r"unknown config key\(s\): model\.lr; did you mean: train\.lr\?$"):
        from_dict(ExperimentConfig, {"model": {"lr": 0.1}})  # the wrong section of a file
    with pytest.raises(ConfigError, match=r"unknown config key: bogus .*; `poselab train CONFIG "
                                          r"--print-config`"):
        apply_overrides(ExperimentConfig(), ["bogus=1"])


def test_unknown_method_kind_and_other_choices_suggest_the_closest():
    with pytest.raises(ConfigError, match=r"method\.kind: 'posedaul' is not one of \['supervised', "
                                          r"'posecons', 'posedual'\]; did you mean: posedual\?$") as info:
        apply_overrides(ExperimentConfig(), ["method.kind=posedaul"])
    assert _suggested(str(info.value)) == ["posedual"]
    with pytest.raises(ConfigError, match=r"task: 'topdwn' is not one of .*; did you mean: topdown\?$"):
        config_class({"task": "topdwn"})


def test_overrides_types_and_nesting():
    cfg = apply_overrides(ExperimentConfig(), ["train.lr=0.002", "train.lr_steps=[3,4]", "test.flip_test=false",
                                               "codec.input_size=[96,128]", "data.root=/x"])
    assert cfg.train.lr == 0.002 and cfg.train.lr_steps == (3, 4) and cfg.test.flip_test is False
    assert cfg.codec.input_size == (96, 128) and cfg.data.root == "/x"
    with pytest.raises(ConfigError, match="train.epochs: expected an integer"):
        apply_overrides(ExperimentConfig(), ["train.epochs=abc"])
    with pytest.raises(ConfigError, match="not of the form key=value"):
        apply_overrides(ExperimentConfig(), ["train.epochs"])


def test_invalid_values_are_rejected():
    with pytest.raises((ConfigError, ValueError)):
        apply_overrides(ExperimentConfig(), ["train.amp=fp8"])
    with pytest.raises((ConfigError, ValueError)):
        apply_overrides(ExperimentConfig(), ["model.depth=19"])


def test_config_files(tmp_path):
    p = tmp_path / "exp.yaml"
    p.write_text("name: x\ntrain:\n  epochs: 3\n")
    cfg = load_config_file(ExperimentConfig, p)
    assert cfg.name == "x" and cfg.train.epochs == 3
    bad = tmp_path / "bad.json"
    bad.write_text('{"trian": {}}')
    with pytest.raises(ConfigError, match=r"bad.json: unknown config key\(s\): trian"):
        load_config_file(ExperimentConfig, bad)


def test_an_oracle_teacher_needs_unlabeled_ground_truth(tmp_path):
    oracle = apply_overrides(ExperimentConfig(), ["method.kind=posecons", "method.teacher=oracle"])
    assert oracle.semi.unlabeled == "train_gt" and oracle.diagnosis == "oracle_teacher"
    assert ExperimentConfig().method.teacher == "network" and ExperimentConfig().diagnosis == ""
    with pytest.raises(ConfigError, match=r"method.teacher=oracle needs .*semi.unlabeled=train_gt, got "
                                          r"semi.unlabeled=detections"):
        apply_overrides(oracle, ["semi.unlabeled=detections"])
    path = _write(tmp_path / "oracle.yaml",
                  "method: {kind: posedual, teacher: oracle}\nsemi: {unlabeled: detections}\n")
    with pytest.raises(ConfigError, match=r"oracle.yaml: method.teacher=oracle needs"):
        load_experiment_file(path)
    with pytest.raises(ConfigError, match=r"method.teacher: 'teacher' is not one of \['network', 'oracle'\]"):
        apply_overrides(oracle, ["method.teacher=teacher"])
    # a supervised run has no teacher: the choice is ignored, like the semi section, and is no diagnosis
    sup = apply_overrides(oracle, ["method.kind=supervised", "semi.unlabeled=detections"])
    assert sup.diagnosis == ""
