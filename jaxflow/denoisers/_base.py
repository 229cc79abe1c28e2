import abc

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Float

from .._custom_types import Point, Points, Sigma
from ..data import Dataset


class AbstractDenoiser(eqx.Module):
    r"""A denoiser $D(y; \sigma) \approx \mathbb{E}[x \mid x + \sigma \varepsilon = y]$.

    Every denoiser maps one point and a noise level to one point; callers batch it with
    `jax.vmap`. The flows of [`jaxflow.flows`][] accept any callable with this
    signature: these modules, a user's own `eqx.Module`, or a plain function.

    The score follows as $s(y) = (D(y; \sigma) - y) / \sigma^2$.
    """

    @abc.abstractmethod
    def __call__(self, y: Point, sigma: Sigma) -> Point:
        """**Arguments:** `y` of shape `(d,)` and a scalar `sigma`.

        **Returns:** the denoised point, shape `(d,)`.
        """


class AbstractAffineDenoiser(AbstractDenoiser):
    r"""A denoiser that is affine in $y$ at every noise level,
    $D(y; \sigma) = W(\sigma)\, y + b(\sigma)$.

    Gaussians stay Gaussian under such a denoiser, so the flows can propagate them in
    closed form ([`jaxflow.flows.gaussian_probability_flow`][]). Subclasses hold their
    maps in `weight` and `bias` and say which one serves a noise level through `at`.

    **Attributes the base relies on:**

    - `weight`: $W$, shape `(..., d, d)`.
    - `bias`: $b$, shape `(..., d)`.
    """

    weight: eqx.AbstractVar[Float[Array, "... d d"]]
    bias: eqx.AbstractVar[Float[Array, "... d"]]

    @abc.abstractmethod
    def at(self, sigma: Sigma) -> "AbstractAffineDenoiser":
        """The affine map used at noise level `sigma`: a denoiser whose `weight` has shape
        `(d, d)` and whose `bias` has shape `(d,)`."""

    def __call__(self, y: Point, sigma: Sigma) -> Point:
        at = self.at(sigma)
        return at.weight @ y + at.bias


class AbstractClosedFormMinNorm(AbstractDenoiser):
    r"""A minimum-norm shallow ReLU denoiser known in closed form: one clipped ramp per
    edge of a hyperbox with apex $a$ and edges $e_n$ ([Z], Section 4;
    [models](../docs/models.md#closed-forms)),

    $$h^*_\rho(y) = a + \sum_n e_n\, \mathrm{clip}\!\left(
    \frac{u_n \cdot (y - a) - \rho}{L_n - 2\rho}, 0, 1\right), \qquad
    \rho = \alpha\sigma,\ L_n = |e_n|,\ u_n = e_n / L_n,$$

    valid while $2\rho < \min_n L_n$.

    **Attributes the base relies on:**

    - `points`: the training set, shape `(n, d)`; for a simplex the apex comes first.
    - `alpha`: $\alpha$, the noise ball's radius in units of $\sigma$, a scalar.
    - `simplex` (class variable): whether `points[0]` is the apex of an obtuse simplex
      rather than a training point of orthogonal data with the apex at the origin.
    """

    points: eqx.AbstractVar[Points]
    alpha: eqx.AbstractVar[Float[Array, ""]]
    simplex: eqx.AbstractClassVar[bool]

    @property
    def apex(self) -> Float[Array, " d"]:
        """The hyperbox's apex $a$: $x_0$ for a simplex, else the origin."""
        return Dataset(self.points, self.simplex).apex

    @property
    def edges(self) -> Float[Array, "m d"]:
        """The hyperbox's edges $e_n$, one per row."""
        return Dataset(self.points, self.simplex).edges

    @property
    def max_sigma(self) -> Float[Array, ""]:
        r"""The largest valid noise level, $\min_n L_n / (2\alpha)$ (exclusive)."""
        return jnp.min(jnp.linalg.norm(self.edges, axis=1)) / (2 * self.alpha)

    @abc.abstractmethod
    def network(self, sigma: Sigma) -> AbstractDenoiser:
        r"""The equivalent $2m$-unit [`jaxflow.denoisers.ShallowReLU`][] at `sigma`, with
        $V = 0$, $c = a$ and cost $\sum_n 2 L_n / (L_n - 2\rho)$."""
