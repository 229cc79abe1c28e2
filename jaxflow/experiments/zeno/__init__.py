"""Presets for [Z] Zeno et al., *When Diffusion Models Memorize* (ICML 2025): minimum-norm
shallow ReLU denoisers, their score and probability flows, and virtual-point stability."""

from ._orthogonal_stability import OrthogonalStability
from ._probability_flow import OrthogonalProbabilityFlow
from ._score_flow import OrthogonalScoreFlow
from ._simplex_stability import ObtuseSimplexStability
from ._training import ZenoTraining
from ._training_ablation import ZenoTrainingAblation
from ._training_copies import ZenoTrainingCopies


PRESETS: tuple = (
    OrthogonalScoreFlow,
    OrthogonalProbabilityFlow,
    OrthogonalStability,
    ObtuseSimplexStability,
    ZenoTraining,
    ZenoTrainingCopies,
    ZenoTrainingAblation,
)
