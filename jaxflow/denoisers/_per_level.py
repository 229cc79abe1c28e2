import diffrax as dfx
import equinox as eqx
import jax.numpy as jnp
import jax.tree_util as jtu
import numpy as np
from jaxtyping import Array, Float, Int

from .._checks import is_concrete
from .._custom_types import Point, Sigma
from ._base import AbstractDenoiser
from ._relu import ShallowReLU


def _grid_tolerance(dtype) -> float:
    # A grid rebuilt from (sigma_max, sigma_min, steps) by a schedule may differ from the
    # stored one by a few roundings of a power; 64 ulps accepts that and nothing else
    # (neighbouring levels of any useful grid differ by far more).
    return 64 * float(jnp.finfo(dtype).eps)


class PerLevelReLU(AbstractDenoiser):
    r"""One trained [`jaxflow.denoisers.ShallowReLU`][] per noise level of a grid
    ([Z], Sections 2 and 6; docs/models.md#trained-networks):

    $$D(y; \sigma_l) = h_l(y) = \sum_{k=1}^K a_{lk}\, \mathrm{relu}(w_{lk} \cdot y + b_{lk})
    + V_l y + c_l,$$

    where $h_l$ is the network trained on the noisy copies $x_n + \sigma_l z$. Only the
    grid's levels are served: any other $\sigma$ is refused, so that every evaluation of
    a flow uses the network trained at that level. Run
    [`jaxflow.flows.probability_flow`][] with `**denoiser.flow_options()`: it steps on
    exactly this grid, and Euler's and Heun's stages both evaluate at grid levels only
    (Heun's second stage at the next level down). The score flow takes one level,
    `denoiser.network(l)`.

    `__call__` handles one point; batch it with `jax.vmap`. Build it with
    [`jaxflow.training.train_min_norm`][].

    **Fields:**

    - `sigmas`: the noise levels $\sigma_0 > \sigma_1 > \dots > 0$, shape `(levels,)`.
    - `networks`: a `ShallowReLU` whose arrays have a leading level axis: `a`, `w` of
      shape `(levels, K, d)`, `b` of shape `(levels, K)`, `v` of shape `(levels, d, d)`,
      `c` of shape `(levels, d)`.
    """

    sigmas: Float[Array, " levels"]
    networks: ShallowReLU

    def __check_init__(self):
        levels = self.sigmas.shape[0] if self.sigmas.ndim == 1 else None
        if levels is None or self.networks.w.ndim != 3 or self.networks.w.shape[0] != levels:
            raise ValueError(
                "`networks` must hold one ShallowReLU per level (arrays with a leading axis "
                f"of length {levels}), got `w` of shape {self.networks.w.shape}."
            )
        if is_concrete(self.sigmas):
            s = np.asarray(self.sigmas)
            if not (np.all(s > 0) and np.all(np.diff(s) < 0)):
                raise ValueError(f"`sigmas` must be positive and decreasing, got {s}.")

    @property
    def levels(self) -> int:
        return self.sigmas.shape[0]

    def network(self, level: int | Int[Array, ""]) -> ShallowReLU:
        """The network trained at level index `level` (a `ShallowReLU` on its own)."""
        return jtu.tree_map(lambda x: x[level], self.networks)

    def level(self, sigma: Sigma) -> Int[Array, ""]:
        r"""The index $l$ with $\sigma_l = \sigma$ (to 64 ulps).

        **Raises:** `ValueError` at trace time when `sigma` and the grid are concrete
        values and `sigma` is not on the grid; otherwise an `EquinoxRuntimeError` at run
        time (under `jit` and `vmap` too).
        """
        sigma = jnp.asarray(sigma, self.sigmas.dtype)
        if sigma.ndim:
            raise ValueError(f"`sigma` must be a scalar, got shape {sigma.shape}.")
        tol = _grid_tolerance(self.sigmas.dtype)
        gap = jnp.abs(self.sigmas / sigma - 1)
        index = jnp.argmin(gap)
        message = (
            "`sigma` is not one of the levels the networks were trained at; run the flow on "
            "the denoiser's own grid (`**denoiser.flow_options()`)."
        )
        if is_concrete(sigma) and is_concrete(self.sigmas):
            if not float(gap[index]) <= tol:
                raise ValueError(f"{message[:-1]}, got sigma={float(sigma)!r}.")
            return index
        return eqx.error_if(index, ~(gap[index] <= tol), message)

    def __call__(self, y: Point, sigma: Sigma) -> Point:
        return self.network(self.level(sigma))(y)

    def flow_options(self) -> dict:
        """Keyword arguments for [`jaxflow.flows.probability_flow`][] that step on exactly
        this grid: `sigma_max`, `sigma_min` and a `diffrax.StepTo` on the levels."""
        return dict(
            sigma_max=self.sigmas[0],
            sigma_min=self.sigmas[-1],
            stepsize_controller=dfx.StepTo(ts=self.sigmas),
        )
