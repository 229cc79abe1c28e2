import abc

import equinox as eqx

from .._custom_types import Point, Sigma


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
