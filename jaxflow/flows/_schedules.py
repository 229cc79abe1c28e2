import abc

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float


class AbstractSchedule(eqx.Module):
    r"""A decreasing grid of noise levels $\sigma_{\max} = \sigma_0 > \dots > \sigma_S$.

    The grid ends at $\sigma_S = \sigma_{\min}$. The schedule's shape only reparametrises
    time in the probability flow; it matters through where the solver's steps fall
    ([Z], Section 4; docs/models.md#probability-flow).
    """

    @abc.abstractmethod
    def grid(
        self, sigma_max: Float[ArrayLike, ""], sigma_min: Float[ArrayLike, ""], steps: int
    ) -> Float[Array, " grid"]:
        """The `steps + 1` noise levels, from `sigma_max` down to `sigma_min`."""


class Geometric(AbstractSchedule):
    r"""Geometric spacing, $\sigma_i = \sigma_{\max} (\sigma_{\min}/\sigma_{\max})^{i/S}$:
    uniform steps in $r = \ln(\sigma_{\max}/\sigma)$, the score-flow time of [Z]."""

    def grid(self, sigma_max, sigma_min, steps):
        frac = jnp.linspace(0.0, 1.0, steps + 1, dtype=jnp.result_type(sigma_max, float))
        grid = sigma_max * (sigma_min / sigma_max) ** frac
        # Pin the end points exactly; the power rounds them.
        return grid.at[0].set(sigma_max).at[-1].set(sigma_min)


class Karras(AbstractSchedule):
    r"""The EDM schedule of Karras et al. (2022), eq. (5):
    $\sigma_i = (\sigma_{\max}^{1/\rho} + \tfrac{i}{S}(\sigma_{\min}^{1/\rho} -
    \sigma_{\max}^{1/\rho}))^\rho$, with $\rho = 7$ by default."""

    rho: float = eqx.field(static=True, default=7.0)

    def grid(self, sigma_max, sigma_min, steps):
        frac = jnp.linspace(0.0, 1.0, steps + 1, dtype=jnp.result_type(sigma_max, float))
        lo, hi = sigma_min ** (1 / self.rho), sigma_max ** (1 / self.rho)
        grid = (hi + frac * (lo - hi)) ** self.rho
        return grid.at[0].set(sigma_max).at[-1].set(sigma_min)


SCHEDULES = {"geometric": Geometric(), "karras": Karras(), "edm": Karras()}


def as_schedule(schedule: str | AbstractSchedule) -> AbstractSchedule:
    if isinstance(schedule, AbstractSchedule):
        return schedule
    try:
        return SCHEDULES[schedule]
    except KeyError:
        raise ValueError(
            f"Unknown `schedule` {schedule!r}; choose one of {', '.join(SCHEDULES)} "
            "or pass an `AbstractSchedule`."
        ) from None
