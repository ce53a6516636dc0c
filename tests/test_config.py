import pytest

from pose.config import ConfigError, apply_overrides, from_dict, load_config_file, to_dict
from pose.experiment import ExperimentConfig
from pose.presets import PRESETS


def test_round_trip_of_every_preset():
    for preset in PRESETS.values():
        assert from_dict(ExperimentConfig, to_dict(preset.config)) == preset.config


def test_unknown_key_is_an_error_naming_it():
    with pytest.raises(ConfigError, match="train.learning_rate"):
        from_dict(ExperimentConfig, {"train": {"learning_rate": 0.1}})
    with pytest.raises(ConfigError, match="unknown config key: model.detph"):
        apply_overrides(ExperimentConfig(), ["model.detph=18"])


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
