"""Warm starts (``model.init``): whole networks from earlier poselab checkpoints, strictly checked."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pose.config import ConfigError, apply_overrides, to_dict
from pose.engine.components import build_method, rng_state
from pose.methods import Method
from pose.models import ModelConfig, load_network_checkpoint
from pose.presets import get_preset

torch.set_num_threads(2)

SMALL = ["model.deconv_channels=16", "model.num_deconv=3", "codec.input_size=[64,96]",
         "codec.heatmap_size=[16,24]"]


def _cfg(kind: str = "supervised", *extra: str):
    return apply_overrides(get_preset("synth-r18-128x96").config, [*SMALL, f"method.kind={kind}", *extra])


def _method(cfg) -> Method:
    return build_method(cfg, cfg.data.metainfo())


def _save_run(tmp_path: Path, name: str, kind: str, seed: int, *extra: str) -> tuple[Path, Method]:
    """A run directory holding ``last.pth``: a training state as the loops write it (random, distinct
    weights and BN statistics; the RNG state included, so the file needs NumPy under weights_only)."""
    cfg = _cfg(kind, f"name={name}", *extra)
    method = _method(cfg)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for t in method.state_dict().values():
            if t.is_floating_point():
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
    run = tmp_path / name
    run.mkdir()
    state = {"method": method.state_dict(), "optimizer": {}, "scheduler": {}, "epoch": 7, "step": 70,
             "best_ap": 0.1, "rng": [rng_state()], "collapse": None, "config": to_dict(cfg),
             "mlflow_run_id": f"run-{name}"}
    torch.save(state, run / "last.pth")
    return run, method


def _assert_same(net: torch.nn.Module, source: torch.nn.Module) -> None:
    mine, theirs = net.state_dict(), source.state_dict()
    assert list(mine) == list(theirs)
    for key in mine:
        assert torch.equal(mine[key], theirs[key]), key


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict[str, tuple[Path, Method]]:
    root = tmp_path_factory.mktemp("warm_sources")
    return {"sup0": _save_run(root, "sup0", "supervised", 0),
            "sup1": _save_run(root, "sup1", "supervised", 1),
            "dual": _save_run(root, "dual", "posedual", 2)}


def test_supervised_and_posecons_start_from_the_checkpoint_file_or_run_dir(sources):
    run, source = sources["sup0"]
    for kind, init in (("supervised", run / "last.pth"), ("posecons", run)):
        method = _method(_cfg(kind, f"model.init={init}"))
        _assert_same(method.networks["net"], source.networks["net"])
    fresh = _method(_cfg("supervised"))  # without model.init nothing is loaded
    assert not torch.equal(fresh.networks["net"].head.final_layer.weight,
                           source.networks["net"].head.final_layer.weight)


def test_posedual_nets_start_from_two_checkpoints_primary_networks(sources):
    (sup_run, sup), (dual_run, dual) = sources["sup1"], sources["dual"]
    method = _method(_cfg("posedual", f"model.init={sup_run}", f"model.init_net2={dual_run / 'last.pth'}"))
    _assert_same(method.networks["net1"], sup.networks["net"])
    _assert_same(method.networks["net2"], dual.networks["net1"])  # a PoseDual checkpoint gives its net1
    nets = method.networks
    assert not torch.equal(nets["net1"].head.final_layer.weight, nets["net2"].head.final_layer.weight)


def test_load_report_names_the_source(sources):
    run, _ = sources["dual"]
    net = _method(_cfg()).networks["net"]
    report = load_network_checkpoint(net, run)
    assert report.path == run / "last.pth" and report.network == "net1" and report.epoch == 7
    assert report.run_name == "dual" and report.mlflow_run_id == "run-dual"
    assert report.tensors == len(net.state_dict()) and "epoch 7" in report.describe()


def _edited_copy(tmp_path: Path, run: Path, edit) -> Path:
    state = torch.load(run / "last.pth", weights_only=False)
    edit(state["method"])
    path = tmp_path / "edited.pth"
    torch.save(state, path)
    return path


def test_missing_unexpected_and_misshapen_keys_are_errors_naming_the_file(sources, tmp_path):
    run, _ = sources["sup0"]
    net = _method(_cfg()).networks["net"]
    before = {k: v.clone() for k, v in net.state_dict().items()}

    missing = _edited_copy(tmp_path, run, lambda sd: sd.pop("networks.net.head.final_layer.weight"))
    with pytest.raises(ValueError, match=r"edited\.pth does not fit .*1 of \d+ keys are missing.*"
                                         r"head\.final_layer\.weight"):
        load_network_checkpoint(net, missing)
    extra = _edited_copy(tmp_path, run, lambda sd: sd.update({"networks.net.head.extra": torch.zeros(3)}))
    with pytest.raises(ValueError, match=r"edited\.pth does not fit .*1 keys the model lacks: head\.extra"):
        load_network_checkpoint(net, extra)
    wider = _method(_cfg("supervised", "model.deconv_channels=32")).networks["net"]
    with pytest.raises(ValueError, match=r"sup0/last\.pth does not fit .*other shapes: "
                                         r"head\.deconv_layers\.0\.weight: checkpoint \(512, 16, 4, 4\) vs "
                                         r"model \(512, 32, 4, 4\).*checkpoint's "
                                         r"run used model .*'deconv_channels': 16"):
        load_network_checkpoint(wider, run)
    for key, value in net.state_dict().items():  # a refused checkpoint leaves the network as it was
        assert torch.equal(value, before[key]), key


def test_sources_that_are_not_poselab_checkpoints(sources, tmp_path):
    net = _method(_cfg()).networks["net"]
    plain = tmp_path / "plain.pth"
    torch.save(net.state_dict(), plain)
    with pytest.raises(ValueError, match=r"plain\.pth is not a poselab training state .*model\.pretrained"):
        load_network_checkpoint(net, plain)
    no_net = tmp_path / "no_net.pth"
    torch.save({"method": {"networks.student.w": torch.zeros(1)}}, no_net)
    with pytest.raises(ValueError, match=r"no primary network \(net or net1\).*networks: student"):
        load_network_checkpoint(net, no_net)
    text = tmp_path / "text.pth"
    text.write_text("not a checkpoint")
    with pytest.raises(ValueError, match="is not a readable torch checkpoint"):
        load_network_checkpoint(net, text)
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        load_network_checkpoint(net, tmp_path / "nowhere.pth")
    (tmp_path / "empty_run").mkdir()
    with pytest.raises(FileNotFoundError, match="run directory .*empty_run has no last.pth"):
        load_network_checkpoint(net, tmp_path / "empty_run")
    with pytest.raises(ValueError, match=r"runs:/abc123.* is an MLflow run URI: pose/ does not talk to "):
        _method(_cfg("supervised", "model.init=runs:/abc123"))


def test_the_same_checkpoint_for_both_posedual_networks_is_an_error(sources):
    run, _ = sources["sup0"]
    with pytest.raises(ValueError, match="same checkpoint .*sup0/last.pth: PoseDual's two networks"):
        _method(_cfg("posedual", f"model.init={run}", f"model.init_net2={run / 'last.pth'}"))


@pytest.mark.parametrize("overrides, message", [
    (["method.kind=posedual", "model.init=a"], "model.init='a' without model.init_net2: PoseDual's two"),
    (["method.kind=posedual", "model.init=a", "model.init_net2=a"], "both 'a': PoseDual's two networks"),
    (["method.kind=supervised", "model.init=a", "model.init_net2=b"], "kind='supervised' has one network"),
    (["method.kind=posecons", "model.init=a", "model.init_net2=b"], "method.kind='posecons' has one network"),
    (["model.init_net2=b"], "set model.init .* too"),
    (["model.init=a", "model.pretrained=r18.pth"], "replaces the whole network, so model.pretrained"),
    (["model.init="], "model.init: expected a checkpoint file"),
])
def test_config_errors(overrides, message):
    with pytest.raises(ValueError, match=message):
        apply_overrides(get_preset("synth-r18-128x96").config, overrides)


def test_valid_configs_and_the_typed_fields():
    cfg = apply_overrides(get_preset("synth-r18-128x96").config,
                          ["method.kind=posedual", "model.init=runs/a", "model.init_net2=runs/b"])
    assert (cfg.model.init, cfg.model.init_net2) == ("runs/a", "runs/b")
    assert ModelConfig().init is None and ModelConfig().init_net2 is None
    with pytest.raises(ConfigError, match="unknown config key"):
        apply_overrides(cfg, ["model.init_net3=x"])
