"""Training methods behind one interface: a step returns losses and diagnostics."""
from pose.methods.base import Method, StepOutput
from pose.methods.collapse import CollapseMonitor, CollapseRule, is_collapsed
from pose.methods.consistency import PoseCons, PoseDual
from pose.methods.hard_view import HardView, HardViewConfig
from pose.methods.supervised import Supervised

__all__ = ["CollapseMonitor", "CollapseRule", "HardView", "HardViewConfig", "Method", "PoseCons", "PoseDual",
           "StepOutput", "Supervised", "is_collapsed"]
