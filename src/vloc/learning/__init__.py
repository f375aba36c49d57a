"""Absolute pose regression (PoseNet, MapNet): networks, losses and CPU training."""
