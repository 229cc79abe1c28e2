import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from .._checks import check_same_dtype, is_concrete
from ..denoisers import MinNormOrthogonal
from ._integrate import check_batch
from ._probability import _check_levels


def _frame(denoiser: MinNormOrthogonal, y0, name: str):
    if not isinstance(denoiser, MinNormOrthogonal):
        raise TypeError(
            f"{name} is exact for `MinNormOrthogonal` only (the coordinates decouple on "
            f"orthogonal data); got {type(denoiser).__name__}. Solve it with the flows."
        )
    if jnp.ndim(y0) != 2 or y0.shape[1] != denoiser.points.shape[1]:
        raise ValueError(
            f"`y0` must have shape (batch, {denoiser.points.shape[1]}), got {jnp.shape(y0)}."
        )
    check_batch(y0)
    check_same_dtype(denoiser.points, "denoiser", y0, "y0")
    lengths = jnp.linalg.norm(denoiser.points, axis=1)
    units = denoiser.points / lengths[:, None]
    return lengths, units, y0 @ units.T


def score_flow_limit(
    denoiser: MinNormOrthogonal, y0: Float[Array, "batch d"]
) -> Float[Array, "batch d"]:
    r"""Where the score flow of the closed-form denoiser goes as $t \to \infty$
    ([Z], Section 4; docs/models.md#score-flow): the hyperbox vertex nearest the start,
    $\sum_n [u_n \cdot y_0 \ge L_n/2]\, x_n$; the off-span part decays like $e^{-t}$.

    **Arguments:** the closed-form `denoiser` and starts `y0` of shape `(batch, d)`.
    """
    _frame(denoiser, y0, "score_flow_limit")
    return _score_flow_limit(denoiser, y0)


@eqx.filter_jit
def _score_flow_limit(denoiser, y0):
    lengths, _, s0 = _frame(denoiser, y0, "score_flow_limit")
    return (s0 >= lengths / 2).astype(y0.dtype) @ denoiser.points


def exact_probability_flow(
    denoiser: MinNormOrthogonal,
    y0: Float[Array, "batch d"],
    *,
    sigma_max: Float[ArrayLike, ""],
    sigma_min: Float[ArrayLike, ""],
) -> Float[Array, "batch d"]:
    r"""The exact endpoint of the probability flow of the closed-form denoiser
    ([Z], Section 4; docs/models.md#probability-flow), coordinate by coordinate. With $s_0 = u_n
    \cdot y_0$, $\rho = \alpha\sigma$ and $q = \sigma_{\min}/\sigma_{\max}$:

    - $s_0 \le \rho_{\max}$ (flat at 0): $s = s_0 q$;
    - $s_0 \ge L_n - \rho_{\max}$ (flat at $L_n$): $s = L_n + (s_0 - L_n) q$;
    - otherwise (ramp): $s = L_n/2 + (s_0 - L_n/2)(L_n - 2\rho_{\min})/(L_n - 2\rho_{\max})$;

    and the component off the span of the data is multiplied by $q$. Each coordinate stays
    in the region it starts in. The schedule does not enter: it only reparametrises time.

    **Arguments:** the closed-form `denoiser`, starts `y0` of shape `(batch, d)`, and the
    noise levels $\sigma_{\max} > \sigma_{\min} > 0$ with $2\alpha\sigma_{\max} < \min_n L_n$.

    **Returns:** the endpoints $y(\sigma_{\min})$, shape `(batch, d)`.
    """
    _frame(denoiser, y0, "exact_probability_flow")
    sigma_max, sigma_min = _check_levels(sigma_max, sigma_min, y0.dtype, "exact_probability_flow")
    if is_concrete(sigma_max) and is_concrete(denoiser.points):
        if not float(sigma_max) < float(denoiser.max_sigma):
            raise ValueError(
                f"`sigma_max` must be below the closed form's `max_sigma` = "
                f"{float(denoiser.max_sigma):.6g} (2 * alpha * sigma_max < min_n L_n), got "
                f"{float(sigma_max)}."
            )
    return _exact_probability_flow(denoiser, y0, sigma_max, sigma_min)


@eqx.filter_jit
def _exact_probability_flow(denoiser, y0, sigma_max, sigma_min):
    lengths, units, s0 = _frame(denoiser, y0, "exact_probability_flow")
    rho_max, rho_min = denoiser.alpha * sigma_max, denoiser.alpha * sigma_min
    rho_max = eqx.error_if(
        rho_max,
        (2 * rho_max >= jnp.min(lengths)) | ~(sigma_max > sigma_min) | ~(sigma_min > 0),
        "exact_probability_flow needs sigma_max > sigma_min > 0 and "
        "2 * alpha * sigma_max < min_n L_n.",
    )
    q = sigma_min / sigma_max
    ramp = lengths / 2 + (s0 - lengths / 2) * (lengths - 2 * rho_min) / (lengths - 2 * rho_max)
    flat_top = lengths + (s0 - lengths) * q
    s = jnp.where(s0 <= rho_max, s0 * q, jnp.where(s0 >= lengths - rho_max, flat_top, ramp))
    return s @ units + q * (y0 - s0 @ units)
