"""What the presets of [Z] share: the closed form's $\\alpha$, the noise levels it is
valid for, and the dtype a preset computes in."""

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp


def closed_form_alpha(d: int, alpha: float | None) -> float:
    """The closed form's $\\alpha$ ($\\rho = \\alpha\\sigma$): `alpha`, or $\\sqrt{d}$ when
    it is `None` (the norm of a $d$-dimensional Gaussian noise vector; [Z], Section 2)."""
    return math.sqrt(d) if alpha is None else float(alpha)


def sigma_limit(d: int, lengths: Sequence[float], alpha: float | None) -> float:
    """The closed form's largest noise level (exclusive): $\\min_n L_n / (2\\alpha)$, above
    which the ramps of $h^*_{\\alpha\\sigma}$ would overlap."""
    return min(lengths) / (2 * closed_form_alpha(d, alpha))


def check_sigma(
    name: str, values: Sequence[float], d: int, lengths: Sequence[float], alpha: float | None
) -> None:
    """Refuse (`ValueError`, one line naming `name`, `lengths` and `alpha`) a noise level
    outside the closed form's range $0 < \\sigma < \\min_n L_n / (2\\alpha)$."""
    limit = sigma_limit(d, lengths, alpha)
    bad = [s for s in values if not 0 < s < limit]
    if bad:
        raise ValueError(
            f"{name}={bad[0]:g} is outside the closed form's range: it needs 0 < {name} < "
            f"min(lengths) / (2 alpha) = {limit:.4g} (alpha = {closed_form_alpha(d, alpha):.4g})."
        )


def float_dtype(name: str) -> jnp.dtype:
    """The dtype `name`, refusing float64 when JAX would silently compute in float32."""
    if name == "float64" and not jax.config.read("jax_enable_x64"):
        raise RuntimeError(
            "dtype=float64 needs double precision: call "
            "jax.config.update('jax_enable_x64', True) first (jaxflow.experiments.run does), "
            "or set dtype=float32."
        )
    return jnp.dtype(name)
