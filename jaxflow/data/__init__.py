"""Training sets and samplers: orthogonal points, obtuse simplices, Gaussian samples,
and index-keyed initial noises."""

from ._dataset import Dataset as Dataset
from ._forward import (
    forward_jump as forward_jump,
    forward_ve as forward_ve,
    masked_moments as masked_moments,
    ou_coefficients as ou_coefficients,
    ve_start as ve_start,
)
from ._gaussian import Gaussian as Gaussian
from ._starts import GaussianStarts as GaussianStarts
from ._synthetic import (
    isotropic_gaussian as isotropic_gaussian,
    obtuse_simplex as obtuse_simplex,
    orthogonal as orthogonal,
)
