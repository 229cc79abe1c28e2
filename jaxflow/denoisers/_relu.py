import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, Float

from .._checks import check_finite, check_int, check_key
from .._custom_types import Point, PRNGKey, Sigma
from ._base import AbstractDenoiser


class ShallowReLU(AbstractDenoiser):
    r"""The shallow ReLU denoiser with a linear skip unit of [Z], Section 2
    (docs/models.md#shallow-relu-denoisers):

    $$h(y) = \sum_{k=1}^K a_k\, \mathrm{relu}(w_k \cdot y + b_k) + V y + c.$$

    One network serves one noise level, so `sigma` is ignored by `__call__`.

    **Fields:**

    - `a`: output weights $a_k$, shape `(K, d)`.
    - `w`: input weights $w_k$, shape `(K, d)`.
    - `b`: biases $b_k$, shape `(K,)`.
    - `v`: the skip matrix $V$, shape `(d, d)`.
    - `c`: the output bias $c$, shape `(d,)`.
    """

    a: Float[Array, "K d"]
    w: Float[Array, "K d"]
    b: Float[Array, " K"]
    v: Float[Array, "d d"]
    c: Float[Array, " d"]

    def __check_init__(self):
        if self.w.ndim != 2:
            raise ValueError(f"ShallowReLU field `w` must have shape (K, d), got {self.w.shape}.")
        k, d = self.w.shape
        shapes = {"a": (k, d), "b": (k,), "v": (d, d), "c": (d,)}
        for name, shape in shapes.items():
            if getattr(self, name).shape != shape:
                raise ValueError(
                    f"ShallowReLU field `{name}` must have shape {shape} to match "
                    f"`w` of shape {(k, d)}, got {getattr(self, name).shape}."
                )
        for name in ("a", "w", "b", "v", "c"):
            check_finite(getattr(self, name), name)

    @classmethod
    def random(cls, d: int, width: int, *, key: PRNGKey, dtype=None) -> "ShallowReLU":
        """A randomly initialised network: LeCun-normal weights, zero skip and biases."""
        d, width = check_int(d, "d", minimum=1), check_int(width, "width", minimum=1)
        check_key(key)
        dtype = jnp.result_type(float) if dtype is None else dtype
        wkey, akey = jr.split(key)
        return cls(
            a=jr.normal(akey, (width, d), dtype) / jnp.sqrt(width),
            w=jr.normal(wkey, (width, d), dtype) / jnp.sqrt(d),
            b=jnp.zeros(width, dtype),
            v=jnp.zeros((d, d), dtype),
            c=jnp.zeros(d, dtype),
        )

    @property
    def width(self) -> int:
        return self.w.shape[0]

    def __call__(self, y: Point, sigma: Sigma | None = None) -> Point:
        del sigma
        return jax.nn.relu(self.w @ y + self.b) @ self.a + self.v @ y + self.c

    def cost(self) -> Float[Array, ""]:
        r"""The representation cost $C = \tfrac12 \sum_k (|a_k|^2 + |w_k|^2)$.

        Only the ReLU units' weights are penalised; $V$, $c$ and $b_k$ are free.
        """
        return 0.5 * (jnp.sum(self.a**2) + jnp.sum(self.w**2))
