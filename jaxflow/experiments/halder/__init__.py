"""Presets for [H] Halder, *A solvable generative model with a linear, one-step
denoiser*: exact Gaussian distances, the relative distance and its transition."""

from ._distance import LinearDistanceVsN as LinearDistanceVsN
from ._steps import LinearSteps as LinearSteps
from ._transition_vs_d import LinearTransitionVsD as LinearTransitionVsD
from ._transition_vs_n import LinearTransition as LinearTransition


PRESETS: tuple = (LinearDistanceVsN, LinearTransition, LinearTransitionVsD, LinearSteps)
