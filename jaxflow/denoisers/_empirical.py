import equinox as eqx
import jax

from .._checks import check_points
from .._custom_types import Point, Points, Sigma
from .._numerics import gaussian_log_weights
from ._base import AbstractDenoiser


class EmpiricalOptimal(AbstractDenoiser):
    r"""The optimal denoiser of the empirical distribution: the posterior mean under
    $p_\sigma = \frac1N \sum_n \mathcal{N}(x_n, \sigma^2 I)$,

    $$D(y; \sigma) = \sum_n \mathrm{softmax}_n\!\left(-\frac{|y - x_n|^2}{2\sigma^2}\right) x_n.$$

    Its probability flow returns a training point: the denoiser that memorizes.

    !!! note
        The logits are formed from $(y - x_n)/\sigma$ and normalised so that the nearest
        point's is exactly 0 (`jaxflow._numerics.gaussian_log_weights`), so the output
        stays finite down to $\sigma = 10^{-6}$ and below, and far from the data, in float32.

    **Arguments:**

    - `points`: the training set, shape `(n, d)`.
    """

    points: Points

    def __check_init__(self):
        check_points(self.points, "points")

    def __call__(self, y: Point, sigma: Sigma) -> Point:
        sigma = eqx.error_if(
            sigma, sigma <= 0, "EmpiricalOptimal needs sigma > 0; sigma = 0 has no posterior."
        )
        return jax.nn.softmax(gaussian_log_weights(y, self.points, sigma)) @ self.points
