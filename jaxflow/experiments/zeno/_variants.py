r"""Training variants of the min-norm networks of [Z] compared side by side: one training
call per variant (all its levels in one program), every variant on the same copies of the
same points and from the same key, measured on the same fresh copies, and one table row
per variant and level. Shared by `zeno-training-copies` and `zeno-training-ablation`."""

import dataclasses
import math
from collections.abc import Mapping
from typing import Any, Literal

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pyarrow as pa

from ...data import forward_ve
from ...denoisers import MinNormObtuseSimplex, MinNormOrthogonal
from ...training import MinNormFit, MinNormTraining, train_min_norm
from .._params import at_least, param, positive
from .._preset import AbstractPreset
from ._trained import (
    CheaperInterpolant,
    DATA_SETS,
    DataSet,
    evaluate,
    largest_distance,
    MOST,
    subset_sums,
    timed_train,
    training_points,
)


@dataclasses.dataclass(frozen=True)
class _AbstractVariants(AbstractPreset):
    """Presets that train variants of [Z]'s networks side by side on orthogonal points
    $x_n = L e_n$ in $d$ dimensions, at the same noise levels, widths and step budgets,
    each measured on the same fresh copies. The final presets add what varies (the
    number of copies and online training; weight decay and dropout) and the data sets.
    """

    d: int = param(8, "dimension d of the space.", rule=at_least(1))
    n: int = param(
        8, "number N of orthogonal training points x_n = L e_n (N <= d).", rule=at_least(2)
    )
    length: float = param(1.0, "the length L of every training point.", rule=positive)
    sigmas: tuple[float, ...] = param(
        (0.1, 0.05, 0.025),
        "the noise levels, decreasing, in the units of L (each variant trains all of them).",
        rule=positive,
        distinct=True,
    )
    width: int = param(64, "K, ReLU units of each network.", rule=at_least(1))
    steps: int = param(40_000, "the most Adam steps per level.", rule=at_least(1))
    inner_steps: int = param(
        200,
        "Adam steps between multiplier updates (and points of the training curves).",
        rule=at_least(1),
    )
    tol: float = param(
        1e-4,
        "stop an augmented-Lagrangian level once its largest training residual is below this.",
        rule=positive,
    )
    fresh: int = param(
        32,
        "fresh copies per point on which every variant is measured (residual, distances).",
        rule=at_least(1),
    )
    cache: bool = param(
        True,
        "keep the trained stacks in the shared training cache and load them from there.",
    )
    dtype: Literal["float32", "float64"] = param("float64", "floating dtype of the training.")


# What varies between variants, in every row.
VARIANT_FIELDS = (
    pa.field("method", pa.string()),
    pa.field("copies", pa.int64()),
    pa.field("online", pa.bool_()),
    pa.field("weight_decay", pa.float64()),
    pa.field("dropout", pa.float64()),
)
SCHEMA = pa.schema(
    [
        pa.field("data_set", pa.string()),
        pa.field("reference", pa.string()),
        pa.field("variant", pa.string()),
        *VARIANT_FIELDS,
        pa.field("d", pa.int64()),
        pa.field("n", pa.int64()),
        pa.field("length", pa.float64()),
        pa.field("width", pa.int64()),
        pa.field("steps", pa.int64()),
        pa.field("fresh", pa.int64()),
        pa.field("seed", pa.int64()),
        pa.field("level", pa.int64()),
        pa.field("sigma", pa.float64()),
        pa.field("steps_taken", pa.int64()),
        pa.field("residual_train", pa.float64()),
        pa.field("mse_train", pa.float64()),
        pa.field("residual_fresh", pa.float64()),
        pa.field("cost", pa.float64()),
        pa.field("cost_raw", pa.float64()),
        pa.field("rho_hat", pa.float64()),
        pa.field("closed_form_valid", pa.bool_()),
        pa.field("closed_form_cost", pa.float64()),
        pa.field("cheaper_cost", pa.float64()),
        pa.field("cost_ratio", pa.float64()),
        pa.field("cheaper_ratio", pa.float64()),
        pa.field("distance_sums", pa.float64()),
        pa.field("distance_fresh", pa.float64()),
        pa.field("cheaper_distance_sums", pa.float64()),
        pa.field("cheaper_distance_fresh", pa.float64()),
    ]
)


def nested_copies(points, sigmas, key, m: int) -> jax.Array:
    """$M = m$ noisy copies per point and level, shape `(levels, n, m, d)`, copy $j$ drawn
    from `fold_in(key, j)`: the first $m$ copies are the same for every $M \\ge m$, so
    variants with more copies constrain a superset."""
    return jnp.concatenate(
        [
            forward_ve(jnp.asarray(points), jnp.asarray(sigmas), key=jr.fold_in(key, j))
            for j in range(m)
        ],
        axis=2,
    )


def variant_inputs(
    seed: int,
    data_set: DataSet,
    *,
    n: int,
    d: int,
    length: float,
    sigmas,
    copies: int,
    fresh: int,
    dtype: str,
):
    """`(points, sigmas, copies, key, fresh copies)` of one variant: the same points, the
    first `copies` of the same nested draw, the same training key and the same `fresh`
    copies per point for every variant of `data_set`."""
    key = jr.fold_in(jr.key(seed), DATA_SETS.index(data_set))
    copy_key, train_key, fresh_key = jr.split(key, 3)
    points = training_points(data_set, n, d, length, dtype)
    sigmas = np.asarray(sigmas, points.dtype)
    y = nested_copies(points, sigmas, copy_key, copies)
    evaluation = forward_ve(jnp.asarray(points), jnp.asarray(sigmas), key=fresh_key, draws=fresh)
    return points, sigmas, y, train_key, np.asarray(evaluation)


def compute_variant(
    config: MinNormTraining,
    data_set: DataSet,
    inputs,
    *,
    cache: bool,
    progress: bool,
) -> dict[str, np.ndarray]:
    """Train one variant (or load it from the training cache) and measure it: the
    library's diagnostics per level, and on the host, on the same fresh copies for every
    variant, the fresh residual and the distances to the closed form and to the cheaper
    interpolant."""
    points, sigmas, copies, key, fresh = inputs

    def train() -> MinNormFit:
        return train_min_norm(
            points,
            sigmas,
            config,
            key=key,
            copies=copies,
            cache=True if cache else None,
            progress=progress,
        )

    fit, seconds, from_cache = timed_train(train, cache)
    diag = fit.diagnostics
    levels = len(sigmas)
    host = np.asarray(points, np.float64)
    # The library's fresh draw has n M copies, more as M grows, and its largest residual
    # grows with the draw: every variant is measured on the same fresh copies instead.
    targets = np.repeat(host, fresh.shape[2], axis=0)
    nan = np.full(levels, np.nan)
    residual_fresh, distance_fresh, mse_train = nan.copy(), nan.copy(), nan.copy()
    cheaper_cost, cheaper_sums, cheaper_fresh = nan.copy(), nan.copy(), nan.copy()
    cheaper = None
    if data_set == "without-origin" and len(host) >= 2:
        cheaper = CheaperInterpolant.fit(host, np.asarray(copies, np.float64))
    sums = subset_sums(host, MOST)
    rho = np.asarray(diag.reference_rho, np.float64)
    closed_cost = np.asarray(diag.reference_cost, np.float64)
    for level in range(levels):
        net = fit.denoiser.network(level)
        # What weight decay trades against the cost: the mean squared residual on the
        # training copies, normalised as in the trainer's objective.
        own = np.asarray(copies[level], np.float64)
        r = evaluate(net, own.reshape(-1, host.shape[1])) - np.repeat(host, own.shape[1], 0)
        mse_train[level] = np.mean(np.sum(r**2, axis=1))
        y = np.asarray(fresh[level], np.float64).reshape(-1, host.shape[1])
        h = evaluate(net, y)
        residual_fresh[level] = largest_distance(h, targets)
        if not np.isfinite(closed_cost[level]):
            continue
        sigma = float(sigmas[level])
        closed = (MinNormObtuseSimplex if data_set == "with-origin" else MinNormOrthogonal)(
            jnp.asarray(host), alpha=rho[level] / sigma
        )
        # Its equivalent 2N-unit network, evaluated on the host like the trained one.
        ramps = evaluate(closed.network(jnp.asarray(sigma)), y)
        distance_fresh[level] = largest_distance(h, ramps)
        if cheaper is not None and cheaper.valid(level):
            cheaper_cost[level] = cheaper.cost(level)
            cheaper_sums[level] = largest_distance(evaluate(net, sums), cheaper(level, sums))
            cheaper_fresh[level] = largest_distance(h, cheaper(level, y))
    return {
        "sigmas": np.asarray(sigmas),
        "reference": np.asarray(diag.reference),
        "steps_taken": np.asarray(diag.steps),
        "residual_train": np.asarray(diag.residual_train),
        "mse_train": mse_train,
        "residual_fresh": residual_fresh,
        "cost": np.asarray(diag.cost),
        "cost_raw": np.asarray(diag.cost_raw),
        "rho_hat": rho,
        "closed_form_cost": closed_cost,
        "cheaper_cost": cheaper_cost,
        "distance_sums": np.asarray(diag.distance_sums),
        "distance_fresh": distance_fresh,
        "cheaper_distance_sums": cheaper_sums,
        "cheaper_distance_fresh": cheaper_fresh,
        "n": np.asarray(len(host)),
        "train_seconds": np.asarray(seconds),
        "from_cache": np.asarray(from_cache),
    }


def variant_rows(
    cell: Mapping[str, np.ndarray], fixed: Mapping[str, Any], varying: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """The table rows of one variant, one per level: `fixed` (the sizes, the data set, the
    variant's name) and `varying` (`VARIANT_FIELDS`) in every row."""

    def value(x):
        x = float(x)
        return x if math.isfinite(x) else None

    rows = []
    for level, sigma in enumerate(cell["sigmas"]):
        cost = float(cell["cost"][level])
        closed, cheaper = value(cell["closed_form_cost"][level]), value(cell["cheaper_cost"][level])
        rows.append(
            {
                **fixed,
                **varying,
                "reference": str(cell["reference"]),
                "n": int(cell["n"]),
                "level": level,
                "sigma": float(sigma),
                "steps_taken": int(cell["steps_taken"][level]),
                "residual_train": float(cell["residual_train"][level]),
                "mse_train": float(cell["mse_train"][level]),
                "residual_fresh": float(cell["residual_fresh"][level]),
                "cost": cost,
                "cost_raw": float(cell["cost_raw"][level]),
                "rho_hat": float(cell["rho_hat"][level]),
                "closed_form_valid": closed is not None,
                "closed_form_cost": closed,
                "cheaper_cost": cheaper,
                "cost_ratio": None if closed is None else cost / closed,
                "cheaper_ratio": None if cheaper is None else cost / cheaper,
                "distance_sums": value(cell["distance_sums"][level]),
                "distance_fresh": value(cell["distance_fresh"][level]),
                "cheaper_distance_sums": value(cell["cheaper_distance_sums"][level]),
                "cheaper_distance_fresh": value(cell["cheaper_distance_fresh"][level]),
            }
        )
    return rows


def check_sigmas(sigmas) -> None:
    """Refuse noise levels that are not decreasing (one line naming `sigmas`)."""
    if not all(a > b for a, b in zip(sigmas, sigmas[1:])):
        raise ValueError(f"sigmas={','.join(f'{s:g}' for s in sigmas)}: must be decreasing.")
