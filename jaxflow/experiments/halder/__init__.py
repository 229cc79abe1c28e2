"""Presets for [H] Halder, *A solvable generative model with a linear, one-step
denoiser*: exact Gaussian distances, the relative distance and its transition."""

from ._distance import LinearDistanceVsN as LinearDistanceVsN
from ._steps import LinearSteps as LinearSteps


PRESETS: tuple = (LinearDistanceVsN, LinearSteps)
