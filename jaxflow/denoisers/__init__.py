"""Denoisers $D(y; \\sigma)$: the shallow ReLU network of [Z], its minimum-norm closed
forms, the empirical optimal denoiser, and the affine one-step denoiser of [H]."""

from ._base import AbstractDenoiser as AbstractDenoiser
from ._empirical import EmpiricalOptimal as EmpiricalOptimal
from ._linear import (
    AffineDenoiser as AffineDenoiser,
    fit_affine as fit_affine,
    fit_piecewise_affine as fit_piecewise_affine,
    one_step_gaussian as one_step_gaussian,
    PiecewiseAffine as PiecewiseAffine,
    wiener_affine as wiener_affine,
    wiener_piecewise_affine as wiener_piecewise_affine,
)
from ._minnorm import (
    MinNormObtuseSimplex as MinNormObtuseSimplex,
    MinNormOrthogonal as MinNormOrthogonal,
)
from ._relu import ShallowReLU as ShallowReLU
