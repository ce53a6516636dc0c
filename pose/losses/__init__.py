"""Losses."""
from pose.losses.heatmap import KeypointMSELoss

__all__ = ["KeypointMSELoss"]
