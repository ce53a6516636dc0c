"""Top-down pose models: SimpleBaseline (ResNet + deconv head) and HRNet, built from a ModelConfig."""

from pose.models.build import TopDownModel, build_topdown_model
from pose.models.config import ModelConfig
from pose.models.heads import DeconvHead, HeatmapHead
from pose.models.hrnet import HRNetBackbone, HighResolutionModule
from pose.models.pretrained import CLASSIFIER_PREFIXES, LoadReport, load_backbone_checkpoint, read_state_dict
from pose.models.simple_baseline import ResNetBackbone
from pose.models.warm_start import InitReport, init_networks, load_network_checkpoint

__all__ = [
    "CLASSIFIER_PREFIXES",
    "DeconvHead",
    "HRNetBackbone",
    "HeatmapHead",
    "HighResolutionModule",
    "InitReport",
    "LoadReport",
    "ModelConfig",
    "ResNetBackbone",
    "TopDownModel",
    "build_topdown_model",
    "init_networks",
    "load_backbone_checkpoint",
    "load_network_checkpoint",
    "read_state_dict",
]
