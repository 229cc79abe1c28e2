"""Fitting denoisers to training data: the affine denoisers of the linear one-step model,
by least squares on noisy copies or in their noise-averaged (Wiener) limit, one noise
level or a grid of them."""

from ._affine import fit_affine as fit_affine, wiener_affine as wiener_affine
from ._cache import default_cache_dir as default_cache_dir
from ._minnorm import (
    balanced_cost as balanced_cost,
    MinNormDiagnostics as MinNormDiagnostics,
    MinNormFit as MinNormFit,
    MinNormTraining as MinNormTraining,
    train_min_norm as train_min_norm,
)
from ._piecewise import (
    fit_piecewise_affine as fit_piecewise_affine,
    wiener_piecewise_affine as wiener_piecewise_affine,
)
