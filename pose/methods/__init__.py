"""Training methods behind one interface: a step returns losses and diagnostics."""
from pose.methods.base import Method, StepOutput
from pose.methods.supervised import Supervised

__all__ = ["Method", "StepOutput", "Supervised"]
