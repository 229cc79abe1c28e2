"""What the presets of [H]'s linear one-step model share: the sampling distribution
$p = \\mathcal{N}(m\\mathbf{1}, s^2 I_d)$, declared once, the loop over repetitions across
every device, and the statistics over repetitions that their tables report."""

import dataclasses
import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import pyarrow as pa
from jaxtyping import PyTree

from ..._sharding import gather, pad, per_device, shard
from ..._workarounds import map_lapack
from ...data import Gaussian
from .._params import at_least, param, positive
from .._preset import AbstractPreset


@dataclasses.dataclass(frozen=True)
class _AbstractSampling(AbstractPreset):
    """A preset of [H]'s linear one-step model (Section 2): training sets drawn from the
    sampling distribution $p = \\mathcal{N}(m\\mathbf{1}, s^2 I_d)$, in one dimension $d$
    ([`_AbstractLinearModel`][]) or several.

    **Fields:**

    - `m`: the mean of every coordinate of $p$.
    - `s`: the standard deviation $s$ of every coordinate of $p$.
    """

    m: float = param(10.0, "mean of every coordinate of p = N(m 1, s^2 I)")
    s: float = param(1.0, "standard deviation s of p", rule=positive)


@dataclasses.dataclass(frozen=True)
class _AbstractLinearModel(_AbstractSampling):
    """A preset of [H]'s linear one-step model in one dimension `d`."""

    d: int = param(100, "dimension d", rule=at_least(1))

    def sampling_distribution(self, dtype=None) -> Gaussian:
        """$p = \\mathcal{N}(m\\mathbf{1}, s^2 I_d)$."""
        return Gaussian.isotropic(self.d, mean=self.m, std=self.s, dtype=dtype)


def rep_stats(prefix: str, values) -> dict[str, float]:
    """Median, quartiles and mean of a quantity over repetitions, as the columns
    `<prefix>_median`, `_q25`, `_q75` and `_mean` (infinite where enough values are:
    the quantiles are order statistics, never interpolated between an infinite and a
    finite value)."""
    values = np.asarray(values, dtype=np.float64)
    q25, median, q75 = np.quantile(values, [0.25, 0.5, 0.75], method="lower")
    return {
        f"{prefix}_median": float(median),
        f"{prefix}_q25": float(q25),
        f"{prefix}_q75": float(q75),
        f"{prefix}_mean": float(np.mean(values)),
    }


def rep_stats_fields(prefix: str) -> list[pa.Field]:
    """The typed columns `rep_stats(prefix, ...)` fills, for a preset's `schema`."""
    return [pa.field(f"{prefix}_{k}", pa.float64()) for k in ("median", "q25", "q75", "mean")]


def training_sizes(d: int, n_over_d: tuple[float, ...]) -> tuple[int, ...]:
    """The training-set sizes $n = \\operatorname{round}(f d)$ for each fraction $f$, at
    least 2 (the fit needs a centred point), sorted and without repeats."""
    return tuple(sorted({max(2, round(f * d)) for f in n_over_d}))


def map_repetitions(body: Callable[..., PyTree], repetitions: int, *args) -> PyTree:
    """`body(r, *args)` for every repetition `r < repetitions`, stacked on a leading axis.

    The repetitions are split across every device of every process (`jaxflow._sharding`)
    and gathered back: their count is rounded up to a multiple of the device count by
    repeating the last one, then trimmed. On each device they run one at a time on XLA:CPU
    (`jax.lax.map`: a LAPACK call batched by vmap can deadlock its thread pool) and
    vmapped elsewhere. `args` (arrays, with the data of every repetition) reach every
    device whole. `body` is part of the compiled program: pass the same function for the
    same program.
    """
    index = pad(np.arange(repetitions, dtype=np.int32))
    out = gather(_map_repetitions(body, shard(jnp.asarray(index)), *args))
    return jax.tree.map(lambda x: x[:repetitions], out)


@functools.partial(jax.jit, static_argnums=0)
def _map_repetitions(body, index, *args):
    return per_device(lambda rows: map_lapack(lambda r: body(r, *args), rows))(index)
