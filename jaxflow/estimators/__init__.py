"""Jit-compiled estimators: hyperbox coordinates, endpoint classes and memorization
rates, confidence intervals, virtual-point stability, Gaussian distances, relative
distances and memorization-to-generalization transitions."""
