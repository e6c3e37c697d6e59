"""Plots: training curves (more to come: class activation maps, goodness maps)."""
