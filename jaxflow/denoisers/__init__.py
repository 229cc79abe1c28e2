"""Denoisers $D(y; \\sigma)$: the shallow ReLU network of [Z], its minimum-norm closed
forms, the empirical optimal denoiser, and the affine one-step denoiser of [H]."""

from ._base import AbstractDenoiser as AbstractDenoiser
from ._empirical import EmpiricalOptimal as EmpiricalOptimal
from ._minnorm import (
    MinNormObtuseSimplex as MinNormObtuseSimplex,
    MinNormOrthogonal as MinNormOrthogonal,
)
from ._relu import ShallowReLU as ShallowReLU
