"""Denoisers $D(y; \\sigma)$: the shallow ReLU network of [Z], its minimum-norm closed
forms, the empirical optimal denoiser, and the affine one-step denoiser of [H]; the
abstract classes say what a flow may rely on. Fitting them is [`jaxflow.training`][]'s."""

from ._affine import AffineDenoiser as AffineDenoiser, PiecewiseAffine as PiecewiseAffine
from ._base import (
    AbstractAffineDenoiser as AbstractAffineDenoiser,
    AbstractClosedFormMinNorm as AbstractClosedFormMinNorm,
    AbstractDenoiser as AbstractDenoiser,
)
from ._empirical import EmpiricalOptimal as EmpiricalOptimal
from ._minnorm import (
    MinNormObtuseSimplex as MinNormObtuseSimplex,
    MinNormOrthogonal as MinNormOrthogonal,
)
from ._per_level import PerLevelReLU as PerLevelReLU
from ._relu import ShallowReLU as ShallowReLU
