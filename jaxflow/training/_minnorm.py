import dataclasses
import functools
import itertools
import math
import threading

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
from jaxtyping import Array, ArrayLike, Float, Int
from tqdm.auto import tqdm

from .._checks import check_points, is_concrete
from .._custom_types import PRNGKey
from .._sharding import gather, local_rows, pad, padded, per_device, shard
from ..data import forward_ve
from ..denoisers import PerLevelReLU, ShallowReLU
from ._cache import cached_train, configuration


METHODS = ("augmented_lagrangian", "weight_decay")
LEVEL_MAPS = ("auto", "map", "vmap")


@dataclasses.dataclass(frozen=True)
class MinNormTraining:
    r"""How [`jaxflow.training.train_min_norm`][] trains one `ShallowReLU` per noise level
    (docs/conventions.md#training-settings). Frozen and hashable: it is part of the
    compiled program and of the cache key, never traced.

    **Arguments:**

    - `method`: `"augmented_lagrangian"` (default): minimise the cost
      $C = \tfrac12\sum_k(|a_k|^2 + |w_k|^2)$ subject to $h(y_{nm}) = x_n$ with the
      augmented Lagrangian
      $C + \sum_{nm} \lambda_{nm} \cdot r_{nm} + \tfrac{\mu}{2} \sum_{nm} |r_{nm}|^2$,
      $r_{nm} = h(y_{nm}) - x_n$; Adam steps on it, and every `inner_steps` steps the
      multipliers move, $\lambda \leftarrow \lambda + \mu r$, and $\mu$ doubles (up to
      `penalty_max`) if the residual fell by less than the factor `stall`.
      `"weight_decay"`: Adam on $\frac{1}{NM}\sum_{nm} |r_{nm}|^2 + \lambda_{wd} C$.
    - `width`: $K$, the number of ReLU units. Default 64.
    - `copies`: $M$, noisy copies per point when they are drawn (and per step when
      `online`). Default 8.
    - `steps`: the most Adam steps. Default 40_000.
    - `inner_steps`: Adam steps between multiplier updates (and between the points of
      the training curves). Default 200.
    - `learning_rate`: Adam's step size, decaying exponentially from the first value to
      the second over `steps`. Default `(1e-2, 1e-4)`.
    - `penalty`, `penalty_max`, `stall`: $\mu$ at the start, its cap, and the stall
      factor. Defaults 100, 1000, 0.5.
    - `tol`: stop once the largest residual $\max_{nm} |r_{nm}|$ on the training copies
      is below it (augmented Lagrangian only). Default 1e-4, in the data's units.
    - `weight_decay`: $\lambda_{wd} \ge 0$ (weight decay only). Default 0.25, [Z]'s
      ablation.
    - `online`: draw fresh copies at every step instead of training on fixed ones. The
      multipliers then have no copy to attach to: the augmented Lagrangian becomes a
      quadratic penalty with the growing weight $\mu$. Default `False`.
    - `dropout`: the probability of dropping each hidden unit at each step (inverted
      dropout). Default 0.
    - `init_scale`: scale of the initial weights. Default 1. Every unit starts with its
      kink on a data point: $b_k = -w_k \cdot y_j$ for a random training copy $y_j$.
    - `level_map`: how the levels are mapped inside the one compiled program: `"map"`
      (`jax.lax.map`, one level after another), `"vmap"` (all at once), or `"auto"`
      (default): `"map"` on CPU, where each level already keeps the cores busy, else
      `"vmap"`. With several devices each maps its own share of the levels.
    """

    method: str = "augmented_lagrangian"
    width: int = 64
    copies: int = 8
    steps: int = 40_000
    inner_steps: int = 200
    learning_rate: tuple[float, float] = (1e-2, 1e-4)
    penalty: float = 100.0
    penalty_max: float = 1000.0
    stall: float = 0.5
    tol: float = 1e-4
    weight_decay: float = 0.25
    online: bool = False
    dropout: float = 0.0
    init_scale: float = 1.0
    level_map: str = "auto"

    def __post_init__(self):
        def positive_int(name):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` must be a positive int, got {value!r}.")

        if self.method not in METHODS:
            raise ValueError(f"`method` must be one of {METHODS}, got {self.method!r}.")
        if self.level_map not in LEVEL_MAPS:
            raise ValueError(f"`level_map` must be one of {LEVEL_MAPS}, got {self.level_map!r}.")
        for name in ("width", "copies", "steps", "inner_steps"):
            positive_int(name)
        lr = tuple(self.learning_rate)
        if len(lr) != 2 or not all(math.isfinite(v) and v > 0 for v in lr):
            raise ValueError(
                f"`learning_rate` must be two positive numbers (start, end), got {lr!r}."
            )
        object.__setattr__(self, "learning_rate", tuple(float(v) for v in lr))
        for name in ("penalty", "penalty_max", "tol", "init_scale"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"`{name}` must be positive and finite, got {value!r}.")
        if not self.penalty_max >= self.penalty:
            raise ValueError(
                f"`penalty_max` must be >= `penalty` = {self.penalty}, got {self.penalty_max}."
            )
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ValueError(f"`weight_decay` must be >= 0, got {self.weight_decay!r}.")
        if not 0 < self.stall <= 1:
            raise ValueError(f"`stall` must lie in (0, 1], got {self.stall!r}.")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"`dropout` must lie in [0, 1), got {self.dropout!r}.")

    @property
    def outer_steps(self) -> int:
        """The number of outer iterations (points of the training curves)."""
        return -(-self.steps // self.inner_steps)

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


class MinNormDiagnostics(eqx.Module):
    r"""What each trained level achieved ([`jaxflow.training.train_min_norm`][]); every
    array has a leading level axis.

    **Fields:**

    - `residual_train`: $\max_{nm} |h(y_{nm}) - x_n|$ on the training copies (for
      online training: on a fixed draw of `copies` copies per point).
    - `residual_fresh`: the same on fresh copies drawn after training.
    - `cost`: $C$ after the free rebalancing $|a_k| = |w_k|$, $\sum_k |a_k||w_k|$.
    - `cost_raw`: $\tfrac12\sum_k(|a_k|^2 + |w_k|^2)$ as trained.
    - `steps`: the Adam steps taken.
    - `reference`: which closed form the networks are compared with: `"minimum"`
      (obtuse or right-angled simplex with the apex as a training point, e.g. the origin
      with orthogonal points: the ramp form is the minimum-norm interpolant), `"upper
      bound"` (orthogonal points without the origin: the ramp form interpolates but a
      cheaper interpolant exists), or `"none"`.
    - `reference_rho`: $\hat\rho = \max |u_k \cdot (y_{nm} - x_n)|$ over the training
      copies and ramp directions: the ramp form with $\rho = \hat\rho$ interpolates
      every copy.
    - `reference_cost`: its cost $\sum_k 2L_k / (L_k - 2\hat\rho)$; NaN where
      $2\hat\rho \ge \min_k L_k$ (no closed form) or without a reference.
    - `distance_fresh`, `distance_sums`: $\max |h(y) - h^*_{\hat\rho}(y)|$ over fresh
      copies, and over every sum of one to four training points (the apex added for a
      simplex); NaN where `reference_cost` is.
    - `loss`, `residual`, `cost_curve`: the training curves, shape
      `(levels, outer_steps)`, one point per `inner_steps` steps, NaN after stopping.
    """

    residual_train: Float[Array, " levels"]
    residual_fresh: Float[Array, " levels"]
    cost: Float[Array, " levels"]
    cost_raw: Float[Array, " levels"]
    steps: Int[Array, " levels"]
    reference_rho: Float[Array, " levels"]
    reference_cost: Float[Array, " levels"]
    distance_fresh: Float[Array, " levels"]
    distance_sums: Float[Array, " levels"]
    loss: Float[Array, "levels outer"]
    residual: Float[Array, "levels outer"]
    cost_curve: Float[Array, "levels outer"]
    reference: str = eqx.field(static=True, default="none")


class MinNormFit(eqx.Module):
    """The result of [`jaxflow.training.train_min_norm`][]: the per-level denoiser and
    its diagnostics."""

    denoiser: PerLevelReLU
    diagnostics: MinNormDiagnostics


def balanced_cost(net: ShallowReLU) -> Float[Array, ""]:
    r"""$\sum_k |a_k||w_k|$: the cost $C$ after rescaling each unit so that
    $|a_k| = |w_k|$, which leaves the function unchanged (ReLU is positively
    homogeneous) and minimises $C$ over such rescalings."""
    return jnp.sum(jnp.linalg.norm(net.a, axis=-1) * jnp.linalg.norm(net.w, axis=-1))


def _forward(net: ShallowReLU, y: Float[Array, "p d"], keep=None) -> Float[Array, "p d"]:
    # Matrix form of ShallowReLU.__call__ over a batch: two matmuls per layer rather
    # than a vmap of matrix-vector products.
    hidden = jax.nn.relu(y @ net.w.T + net.b)
    if keep is not None:
        hidden = hidden * keep
    return hidden @ net.a + y @ net.v.T + net.c


def _reference(points: np.ndarray) -> tuple[str, np.ndarray, np.ndarray] | None:
    """The ramp closed form that fits `points`, if any: (kind, apex, edges)."""
    p = np.asarray(points, np.float64)
    tol = 1e-9 * max(1.0, float(np.max(np.abs(p))) ** 2)
    lengths_ok = lambda e: np.all(np.linalg.norm(e, axis=1) > 0)  # noqa: E731
    if p.shape[0] >= 2:
        edges = p[1:] - p[0]
        gram = edges @ edges.T
        np.fill_diagonal(gram, 0.0)
        if edges.shape[0] <= p.shape[1] and lengths_ok(edges) and np.all(gram <= tol):
            return "minimum", p[0], edges
    gram = p @ p.T
    np.fill_diagonal(gram, 0.0)
    if p.shape[0] <= p.shape[1] and lengths_ok(p) and np.all(np.abs(gram) <= tol):
        return "upper bound", np.zeros(p.shape[1]), p
    return None


def _subset_sums(apex: np.ndarray, edges: np.ndarray, most: int = 4) -> np.ndarray:
    rows = [
        apex + edges[list(c)].sum(0)
        for k in range(1, most + 1)
        for c in itertools.combinations(range(edges.shape[0]), k)
    ]
    return np.stack(rows)


def _init(cfg: MinNormTraining, y: Float[Array, "p d"], x, key) -> ShallowReLU:
    p, d = y.shape
    wkey, akey, jkey = jr.split(key, 3)
    w = cfg.init_scale * jr.normal(wkey, (cfg.width, d), y.dtype) / math.sqrt(d)
    a = cfg.init_scale * jr.normal(akey, (cfg.width, d), y.dtype) / math.sqrt(cfg.width)
    # Every kink starts on a data point: units that never switch inside the data carry
    # no gradient, and a kink at a copy starts the unit where the fit needs it.
    j = jr.randint(jkey, (cfg.width,), 0, p)
    b = -jnp.sum(w * y[j], axis=1)
    return ShallowReLU(a=a, w=w, b=b, v=jnp.zeros((d, d), y.dtype), c=jnp.mean(x, axis=0))


class _TrainingBar:
    """A progress bar over the Adam steps of every level, fed from inside the compiled
    program by `jax.debug.callback` once per outer iteration."""

    def __init__(self, sigmas, cfg: MinNormTraining):
        self.sigmas = np.asarray(sigmas)
        self.cfg = cfg
        self.shown = np.zeros(len(self.sigmas), np.int64)
        self.lock = threading.Lock()
        # The levels this process trains: all of them unless several processes share the
        # levels, each showing its own.
        levels = len(self.sigmas)
        mine = np.sum(local_rows(padded(levels)) < levels)
        self.bar = tqdm(total=int(mine) * cfg.steps, desc="training", unit="step")

    def report(self, level, i, residual, cost, stop):
        level, i = int(level), int(i)
        with self.lock:
            # Under vmap the body runs on for levels that have stopped; their reports are
            # dropped, as are those of the copies that pad the levels to the device count
            # (level -1). A level that stops early fills its share of the bar.
            if level < 0 or self.shown[level] >= self.cfg.steps:
                return
            taken = (
                self.cfg.steps
                if bool(stop)
                else min((i + 1) * self.cfg.inner_steps, self.cfg.steps)
            )
            self.bar.update(taken - self.shown[level])
            self.shown[level] = taken
            self.bar.set_postfix_str(
                f"level {level + 1}/{len(self.sigmas)} sigma={self.sigmas[level]:.3g} "
                f"residual={float(residual):.2e} cost={float(cost):.4g}",
                refresh=False,
            )

    def close(self):
        self.bar.close()


# The bars of the trainings in flight. Host callbacks run on XLA's threads, where a context
# variable of the caller is not set, so the callback reads this module-level stack.
_BARS: list[_TrainingBar] = []


def _report(level, i, residual, cost, stop):
    if _BARS:
        _BARS[-1].report(level, i, residual, cost, stop)


def _train_level(cfg: MinNormTraining, x, y, ref, sums, sigma, key, level=None):
    """Train one level; returns (network, diagnostics as a tuple of scalars, curves).
    With a `level` index, report each outer iteration to the progress bar."""
    n, m, d = y.shape
    dtype = y.dtype
    init_key, step_key, fresh_key = jr.split(key, 3)
    flat_y = y.reshape(n * m, d)
    targets = jnp.repeat(x, m, axis=0)
    net = _init(cfg, flat_y, x, init_key)
    lr0, lr1 = cfg.learning_rate

    def schedule(count):
        # Exponential decay from lr0 to lr1 over `steps`: an optax schedule, written out
        # so that the step count is cast explicitly (strict dtype promotion).
        frac = jnp.minimum(count.astype(dtype) / cfg.steps, 1.0)
        return lr0 * (lr1 / lr0) ** frac

    opt = optax.adam(schedule)
    params, static = eqx.partition(net, eqx.is_inexact_array)
    opt_state = opt.init(eqx.filter(net, eqx.is_inexact_array))
    lagrangian = cfg.method == "augmented_lagrangian"
    wd = jnp.asarray(cfg.weight_decay, dtype)

    def batch(step):
        if not cfg.online:
            return flat_y, targets
        z = jr.normal(jr.fold_in(step_key, 2 * step), (n * m, d), dtype)
        return targets + sigma * z, targets

    def keep(step):
        if cfg.dropout == 0:
            return None
        k = jr.fold_in(step_key, 2 * step + 1)
        return jr.bernoulli(k, 1 - cfg.dropout, (n * m, cfg.width)).astype(dtype) / (
            1 - cfg.dropout
        )

    def objective(params, lam, mu, step):
        net = eqx.combine(params, static)
        inputs, outputs = batch(step)
        r = _forward(net, inputs, keep(step)) - outputs
        if lagrangian:
            value = net.cost() + jnp.sum(lam * r) + 0.5 * mu * jnp.sum(r**2)
        else:
            value = jnp.mean(jnp.sum(r**2, axis=1)) + wd * net.cost()
        return value

    @eqx.filter_jit
    def make_step(params, opt_state, lam, mu, step):
        value, grads = jax.value_and_grad(objective)(params, lam, mu, step)
        # optax's bias correction raises a float to an int32 step count, which strict
        # dtype promotion refuses; the promotion there is harmless, so allow it locally.
        with jax.numpy_dtype_promotion("standard"):
            updates, opt_state = opt.update(grads, opt_state, params)
        return eqx.apply_updates(params, updates), opt_state, value

    def residuals(params):
        r = _forward(eqx.combine(params, static), flat_y) - targets
        return r, jnp.max(jnp.linalg.norm(r, axis=1))

    outer = cfg.outer_steps
    nan = jnp.full(outer, jnp.nan, dtype)

    def cond(carry):
        i, _, _, _, _, res, _ = carry[:7]
        go = i < outer
        if lagrangian:
            go = go & (res > cfg.tol)
        return go

    def body(carry):
        i, params, opt_state, lam, mu, res, prev, curves = carry

        def inner(j, state):
            params, opt_state, _ = state
            return make_step(params, opt_state, lam, mu, i * cfg.inner_steps + j)

        zero = jnp.zeros((), dtype)
        params, opt_state, value = jax.lax.fori_loop(
            0, cfg.inner_steps, inner, (params, opt_state, zero)
        )
        r, new_res = residuals(params)
        if lagrangian:
            if not cfg.online:
                lam = lam + mu * r
            mu = jnp.where(new_res > cfg.stall * res, jnp.minimum(2 * mu, cfg.penalty_max), mu)
        cost = balanced_cost(eqx.combine(params, static))
        if level is not None:
            # Reads values the loop computes anyway and returns nothing into it, so the
            # numbers are the same with and without the bar (tested).
            stop = i + 1 >= outer
            if lagrangian:
                stop = stop | ~(new_res > cfg.tol)
            jax.debug.callback(_report, level, i, new_res, cost, stop)
        loss_c, res_c, cost_c = curves
        curves = (loss_c.at[i].set(value), res_c.at[i].set(new_res), cost_c.at[i].set(cost))
        return i + 1, params, opt_state, lam, mu, new_res, res, curves

    inf = jnp.asarray(jnp.inf, dtype)
    carry = (
        jnp.zeros((), int),
        params,
        opt_state,
        jnp.zeros((n * m, d), dtype),
        jnp.asarray(cfg.penalty, dtype),
        inf,
        inf,
        (nan, nan, nan),
    )
    carry = jax.lax.while_loop(cond, body, carry)
    done, params = carry[0], carry[1]
    curves = carry[7]
    net = eqx.combine(params, static)

    # Diagnostics.
    _, res_train = residuals(params)
    fresh = targets + sigma * jr.normal(fresh_key, (n * m, d), dtype)
    res_fresh = jnp.max(jnp.linalg.norm(_forward(net, fresh) - targets, axis=1))
    if ref is None:
        rho = cost_ref = dist_fresh = dist_sums = jnp.full((), jnp.nan, dtype)
    else:
        apex, edges, owner = ref
        lengths = jnp.linalg.norm(edges, axis=1)
        units = edges / lengths[:, None]
        # The ramps with rho = rho-hat interpolate every copy: for copies of the point
        # owning edge k, u_k . (y - apex) >= L_k - rho-hat; for the others <= rho-hat.
        rho = jnp.max(jnp.abs((y - x[:, None, :]) @ units.T))
        valid = 2 * rho < jnp.min(lengths)
        cost_ref = jnp.where(valid, jnp.sum(2 * lengths / (lengths - 2 * rho)), jnp.nan)
        safe_rho = jnp.where(valid, rho, 0.0)
        del owner

        def closed_form(p):
            s = (p - apex) @ units.T
            return apex + jnp.clip((s - safe_rho) / (lengths - 2 * safe_rho), 0, 1) @ edges

        def distance(p):
            gap = jnp.max(jnp.linalg.norm(_forward(net, p) - closed_form(p), axis=1))
            return jnp.where(valid, gap, jnp.nan)

        dist_fresh = distance(fresh)
        dist_sums = distance(sums)
    stats = (
        res_train,
        res_fresh,
        balanced_cost(net),
        net.cost(),
        done * cfg.inner_steps,
        rho,
        cost_ref,
        dist_fresh,
        dist_sums,
    )
    return net, stats, curves


def _check_inputs(points, sigmas, copies, cfg):
    points = check_points(points, "points")
    n, d = points.shape
    if not isinstance(cfg, MinNormTraining):
        raise TypeError(f"`config` must be a MinNormTraining, got {type(cfg).__name__}.")
    sigmas = jnp.asarray(sigmas, points.dtype)
    if sigmas.ndim != 1 or sigmas.shape[0] < 1:
        raise ValueError(f"`sigmas` must have shape (levels,), got {sigmas.shape}.")
    if is_concrete(sigmas):
        s = np.asarray(sigmas)
        if not (np.all(s > 0) and np.all(np.diff(s) < 0)):
            raise ValueError(f"`sigmas` must be positive and decreasing, got {s}.")
    if copies is not None:
        copies = jnp.asarray(copies)
        want = (sigmas.shape[0], n, copies.shape[2] if copies.ndim == 4 else "M", d)
        if copies.ndim != 4 or copies.shape != want:
            raise ValueError(
                f"`copies` must have shape (levels, n, M, d) = {want}, got {copies.shape}; "
                "pass the noisy copies of `points` at each level."
            )
        if copies.dtype != points.dtype:
            raise TypeError(
                f"`copies` must have the dtype of `points` ({points.dtype}), got {copies.dtype}."
            )
    return points, sigmas, copies


def _train_all(cfg, points, sigmas, copies, ref, sums, keys, progress=False):
    """Every level in one compiled program, the levels split across every device (padded
    to a multiple of their number by repeating the last level, then trimmed); returns
    (networks, diagnostics, curves) with a leading level axis. With `progress`, each level
    reports to the progress bar under its index."""
    levels = sigmas.shape[0]
    index = None
    if progress:
        index = np.arange(padded(levels))
        index = jnp.asarray(np.where(index < levels, index, -1))
    mapped = shard((*pad((sigmas, copies, keys)), index))
    out = gather(_train_levels(cfg, points, ref, sums, mapped))
    return jax.tree.map(lambda x: x[:levels], out)


@eqx.filter_jit
def _train_levels(cfg, points, ref, sums, mapped):
    def one(args):
        sigma, y, key, level = args
        return _train_level(cfg, points, y, ref, sums, sigma, key, level)

    level_map = cfg.level_map
    if level_map == "auto":
        level_map = "map" if jax.default_backend() == "cpu" else "vmap"
    run = functools.partial(jax.lax.map, one) if level_map == "map" else jax.vmap(one)
    # Levels never interact: each device trains its own share, with no communication.
    return per_device(run)(mapped)


def train_min_norm(
    points: ArrayLike,
    sigmas: ArrayLike,
    config: MinNormTraining = MinNormTraining(),
    *,
    key: PRNGKey,
    copies: ArrayLike | None = None,
    cache=None,
    progress: bool = False,
) -> MinNormFit:
    r"""Train one minimum-norm shallow ReLU denoiser per noise level, all levels in one
    compiled program ([Z], Sections 2 and 6; docs/models.md#trained-networks).

    At each level $\sigma_l$ the network $h_l$ (a [`jaxflow.denoisers.ShallowReLU`][]
    of width $K$) approximately solves

    $$\min_\theta\ C(\theta) = \tfrac12 \sum_k (|a_k|^2 + |w_k|^2)
    \quad\text{subject to}\quad h_l(y_{nm}) = x_n,\qquad y_{nm} = x_n + \sigma_l z_{nm},$$

    by the augmented Lagrangian, or by weight decay (see
    [`jaxflow.training.MinNormTraining`][]). The levels are mapped inside one
    `jit`-compiled program (`jax.lax.map` on CPU, `jax.vmap` elsewhere), never by a
    Python loop, and split across every device (`jax.devices()`, of every process after
    `jax.distributed.initialize`), each training its own levels with no communication.
    With `jax.lax.map` the networks are bitwise the same on any number of devices.

    **Main arguments:**

    - `points`: the clean training points $x_n$, shape `(n, d)`.
    - `sigmas`: the noise levels, positive and decreasing, shape `(levels,)`; usually a
      flow's grid, e.g. `jaxflow.flows.Geometric().grid(sigma_max, sigma_min, steps)`.
    - `config`: a [`jaxflow.training.MinNormTraining`][]. Default: the augmented
      Lagrangian with its default settings.

    **Other arguments:**

    - `key`: PRNG key (keyword-only): the copies (unless given), the initialisation,
      online copies and dropout, and the fresh copies of the diagnostics.
    - `copies`: the noisy copies $y_{nm}$ to train on, shape `(levels, n, M, d)`.
      Default: `config.copies` per point drawn with [`jaxflow.data.forward_ve`][].
    - `cache`: `None` (default, no cache), `True` (the default folder,
      `$JAXFLOW_CACHE/training` or `~/.cache/jaxflow/training`) or a folder: load the
      stack from there when the same inputs and configuration were trained before,
      else train and save it (docs/conventions.md#training-cache).
    - `progress`: show a progress bar over the Adam steps of all levels, with the level,
      its current largest residual and its cost, updated once per outer iteration (every
      `config.inner_steps` steps) by a host callback from inside the compiled program.
      The networks are bitwise the same with and without it. With several processes,
      each shows the levels its own devices train. Default `False`.

    **Returns:** a [`jaxflow.training.MinNormFit`][]: the
    [`jaxflow.denoisers.PerLevelReLU`][] and its
    [`jaxflow.training.MinNormDiagnostics`][].

    Shapes are checked in the body, not by annotation, so that a wrong shape gets a
    one-line message naming the argument.

    **Raises:** `ValueError`/`TypeError` naming the argument for points of the wrong
    shape, levels that are not positive and decreasing, copies of the wrong shape.
    """
    points, sigmas, copies = _check_inputs(points, sigmas, copies, config)
    if not progress:
        return _train_or_load(points, sigmas, config, key, copies, cache)
    bar = _TrainingBar(sigmas, config)
    _BARS.append(bar)
    try:
        fit = jax.block_until_ready(_train_or_load(points, sigmas, config, key, copies, cache))
        jax.effects_barrier()  # every report delivered before the bar closes
        return fit
    finally:
        _BARS.remove(bar)
        bar.close()


def _train_or_load(points, sigmas, config, key, copies, cache) -> MinNormFit:
    if cache is not None and cache is not False:
        record, digest = configuration(points, sigmas, config, key, copies)
        kind, args = _prepare(points, sigmas, config, key, copies)
        # The structure to read back into: traced, never run (args[2] are the levels).
        like = eqx.filter_eval_shape(lambda args: _assemble(args[2], kind, args), args)
        train = lambda: _assemble(sigmas, kind, args)
        return cached_train(record, digest, cache, like=like, train=train)
    return _assemble(sigmas, *_prepare(points, sigmas, config, key, copies))


def _prepare(points, sigmas, config, key, copies):
    """Host-side preparation: the copies, the closed-form reference, the level keys."""
    copy_key, train_key = jr.split(key)
    if copies is None:
        copies = forward_ve(points, sigmas, key=copy_key, draws=config.copies)
    found = _reference(np.asarray(points)) if is_concrete(points) else None
    if found is None:
        kind, ref, sums = "none", None, jnp.zeros((1, points.shape[1]), points.dtype)
    else:
        kind, apex, edges = found
        ref = (jnp.asarray(apex, points.dtype), jnp.asarray(edges, points.dtype), None)
        sums = jnp.asarray(_subset_sums(apex, edges), points.dtype)
    keys = jr.split(train_key, sigmas.shape[0])
    return kind, (config, points, sigmas, copies, ref, sums, keys)


def _assemble(sigmas, kind, args, trained=None) -> MinNormFit:
    nets, stats, curves = _train_all(*args, progress=bool(_BARS)) if trained is None else trained
    diagnostics = MinNormDiagnostics(*stats, *curves, reference=kind)
    return MinNormFit(PerLevelReLU(sigmas, nets), diagnostics)
