"""Min-norm training of one ShallowReLU per noise level, checked against closed forms
written here in NumPy, independently of the code under test."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import jax.tree_util as jtu
import jaxflow as jf
import numpy as np
import pytest
from jaxflow.denoisers import PerLevelReLU
from jaxflow.training import MinNormTraining, train_min_norm


D = 8
SIGMAS = np.array([0.1, 0.05])
CONFIG = MinNormTraining(width=64, copies=8, steps=40_000)


def _copies(points, sigmas, m, seed):
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((len(sigmas), points.shape[0], m, points.shape[1]))
    return points[None, :, None, :] + sigmas[:, None, None, None] * z


def _oracle_cost(apex, edges, points, copies):
    """The ramp form fitted to the copies' own extent: rho-hat = max |u_k . (y - x_n)|,
    cost sum_k 2 L_k / (L_k - 2 rho-hat), per level."""
    lengths = np.linalg.norm(edges, axis=1)
    units = edges / lengths[:, None]
    out = []
    for y in copies:
        rho = np.max(np.abs(np.einsum("nmd,kd->nmk", y - points[:, None, :], units)))
        assert 2 * rho < lengths.min()
        out.append(np.sum(2 * lengths / (lengths - 2 * rho)))
    return np.array(out)


def _max_residual(net, points, copies):
    y = copies.reshape(-1, points.shape[1])
    out = jax.vmap(net)(jnp.asarray(y))
    return float(
        np.max(np.linalg.norm(np.asarray(out) - np.repeat(points, copies.shape[1], 0), axis=1))
    )


@pytest.fixture(scope="module")
def simplex():
    # Right-angled simplex {0, e_1, ..., e_8}: the origin is a training point, so the ramp
    # form is the minimum-norm interpolant of balls.
    points = np.concatenate([np.zeros((1, D)), np.eye(D)])
    copies = _copies(points, SIGMAS, CONFIG.copies, 0)
    fit = train_min_norm(points, SIGMAS, CONFIG, key=jr.key(0), copies=jnp.asarray(copies))
    return points, copies, fit


@pytest.fixture(scope="module")
def orthogonal():
    points = np.eye(D)
    copies = _copies(points, SIGMAS, CONFIG.copies, 1)
    fit = train_min_norm(points, SIGMAS, CONFIG, key=jr.key(1), copies=jnp.asarray(copies))
    return points, copies, fit


def test_interpolates_at_most_oracle_cost_with_origin(simplex):
    points, copies, fit = simplex
    oracle = _oracle_cost(points[0], points[1:] - points[0], points, copies)
    diag = fit.diagnostics
    assert diag.reference == "minimum"
    for level in range(len(SIGMAS)):
        # Independently of the diagnostics: evaluate the trained network here.
        assert _max_residual(fit.denoiser.network(level), points, copies[level]) < 1e-3
    assert np.all(np.asarray(diag.residual_train) < 1e-3)
    assert np.all(np.asarray(diag.cost) <= 1.1 * oracle)
    np.testing.assert_allclose(diag.reference_cost, oracle, rtol=1e-10)


def test_orthogonal_without_origin_below_known_interpolant(orthogonal):
    points, copies, fit = orthogonal
    # The ramp form with rho-hat interpolates every copy: an upper bound, not the minimum.
    known = _oracle_cost(np.zeros(D), points, points, copies)
    diag = fit.diagnostics
    assert diag.reference == "upper bound"
    assert np.all(np.asarray(diag.residual_train) < 1e-3)
    assert np.all(np.asarray(diag.cost) <= 1.1 * known)
    assert np.all(np.isfinite(np.asarray(diag.distance_sums)))
    assert np.asarray(diag.residual).shape == (len(SIGMAS), CONFIG.outer_steps)


def test_weight_decay_lower_cost_higher_residual_monotone(simplex):
    points, copies, fit = simplex
    level = 1
    results = []
    for lam in (1e-4, 1e-3, 1e-2):
        cfg = MinNormTraining(method="weight_decay", weight_decay=lam, width=64, steps=10_000)
        d = train_min_norm(
            points, SIGMAS[level:], cfg, key=jr.key(0), copies=jnp.asarray(copies[level:])
        ).diagnostics
        results.append((float(d.cost[0]), float(d.residual_train[0])))
    costs, residuals = np.array(results).T
    assert np.all(np.diff(costs) < 0) and np.all(np.diff(residuals) > 0)
    assert costs[0] < float(fit.diagnostics.cost[level])
    assert residuals[0] > float(fit.diagnostics.residual_train[level])


SMALL = MinNormTraining(width=16, copies=4, steps=400, inner_steps=100)


def _small_points():
    return np.concatenate([np.zeros((1, 4)), np.eye(4)])


def _equal(a, b):
    la, lb = jtu.tree_leaves(a), jtu.tree_leaves(b)
    return len(la) == len(lb) and all(
        np.array_equal(np.asarray(x), np.asarray(y), equal_nan=True) for x, y in zip(la, lb)
    )


def test_deterministic_bitwise():
    a = train_min_norm(_small_points(), SIGMAS, SMALL, key=jr.key(3))
    b = train_min_norm(_small_points(), SIGMAS, SMALL, key=jr.key(3))
    assert _equal(a, b)


def test_level_map_and_options_run():
    for cfg in (
        MinNormTraining(width=8, copies=2, steps=200, inner_steps=100, level_map="vmap"),
        MinNormTraining(width=8, copies=2, steps=200, inner_steps=100, online=True, dropout=0.1),
    ):
        fit = train_min_norm(_small_points(), SIGMAS, cfg, key=jr.key(0))
        assert np.all(np.isfinite(np.asarray(fit.diagnostics.cost)))


def test_cache_round_trip_retrain_and_truncation(tmp_path):
    points = _small_points()
    fit = train_min_norm(points, SIGMAS, SMALL, key=jr.key(4), cache=tmp_path)
    (leaves,) = tmp_path.glob("*.eqx")
    assert leaves.with_suffix(".json").exists()
    stamp = leaves.stat().st_mtime_ns
    again = train_min_norm(points, SIGMAS, SMALL, key=jr.key(4), cache=tmp_path)
    assert leaves.stat().st_mtime_ns == stamp  # loaded, not trained again
    assert _equal(fit, again)
    y = jnp.asarray(np.random.default_rng(0).standard_normal((5, 4)))
    out = jax.vmap(lambda p: fit.denoiser(p, SIGMAS[1]))(y)
    out2 = jax.vmap(lambda p: again.denoiser(p, SIGMAS[1]))(y)
    assert np.array_equal(np.asarray(out), np.asarray(out2))
    # A changed parameter trains anew, beside the first stack.
    changed = MinNormTraining(width=16, copies=4, steps=300, inner_steps=100)
    train_min_norm(points, SIGMAS, changed, key=jr.key(4), cache=tmp_path)
    assert len(list(tmp_path.glob("*.eqx"))) == 2
    # A truncated file is refused with a clear message and trained again.
    leaves.write_bytes(leaves.read_bytes()[:100])
    with pytest.warns(UserWarning, match="truncated"):
        redone = train_min_norm(points, SIGMAS, SMALL, key=jr.key(4), cache=tmp_path)
    assert _equal(fit, redone)
    # A corrupt file of the right size too.
    data = bytearray(leaves.read_bytes())
    data[-1] ^= 0xFF
    leaves.write_bytes(bytes(data))
    with pytest.warns(UserWarning, match="corrupt"):
        train_min_norm(points, SIGMAS, SMALL, key=jr.key(4), cache=tmp_path)


@pytest.fixture(scope="module")
def per_level():
    sigmas = jf.flows.Geometric().grid(jnp.asarray(0.2), jnp.asarray(0.02), 3)
    cfg = MinNormTraining(width=8, copies=2, steps=100, inner_steps=100)
    return sigmas, train_min_norm(_small_points(), sigmas, cfg, key=jr.key(0)).denoiser


def test_per_level_denoiser_on_grid_and_flow(per_level):
    sigmas, den = per_level
    y0 = jnp.asarray(np.random.default_rng(1).standard_normal((6, 4)))
    # Each level uses its own network.
    for level in range(4):
        want = jax.vmap(den.network(level))(y0)
        got = jax.vmap(lambda y, s=sigmas[level]: den(y, s))(y0)
        assert np.array_equal(np.asarray(want), np.asarray(got))
    # Euler on exactly the grid: compare with the update written out by hand.
    sol = jf.flows.probability_flow(den, y0, solver="euler", **den.flow_options())
    y = np.asarray(y0)
    for level in range(3):
        s0, s1 = float(sigmas[level]), float(sigmas[level + 1])
        h = np.asarray(jax.vmap(den.network(level))(jnp.asarray(y)))
        y = y + (s1 - s0) * (y - h) / s0
    np.testing.assert_allclose(np.asarray(sol.ys), y, rtol=1e-12, atol=1e-12)
    # Heun's second stage lands on the next level, and the schedule rebuilds the grid.
    jf.flows.probability_flow(den, y0, solver="heun", **den.flow_options())
    jf.flows.probability_flow(
        den, y0, sigma_max=sigmas[0], sigma_min=sigmas[-1], steps=3, solver="heun"
    )
    # Off the grid: refused at trace time when concrete, at run time when traced.
    with pytest.raises(ValueError, match="`sigma`"):
        den(y0[0], 0.1)
    with pytest.raises(eqx.EquinoxRuntimeError, match="`sigma`"):
        eqx.filter_jit(lambda d, y, s: d(y, s))(den, y0[0], jnp.asarray(0.1))
    with pytest.raises(eqx.EquinoxRuntimeError, match="`sigma`"):
        jf.flows.probability_flow(den, y0, sigma_max=sigmas[0], sigma_min=sigmas[-1], steps=5)


def test_per_level_flow_endpoints_do_not_depend_on_the_chunking(per_level):
    # More starts than one block: a small chunk size (rounded up to a block) solves them
    # in two chunks, the second one padded.
    _, den = per_level
    y0 = jnp.asarray(np.random.default_rng(2).standard_normal((jf.flows.block_size() + 5, 4)))
    flow = lambda chunk: (
        jf.flows.probability_flow(den, y0, solver="heun", chunk_size=chunk, **den.flow_options()).ys
    )
    assert np.array_equal(np.asarray(flow(None)), np.asarray(flow(7)))


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda p, s: MinNormTraining(width=0), "`width`"),
        (lambda p, s: MinNormTraining(weight_decay=-1.0), "`weight_decay`"),
        (lambda p, s: MinNormTraining(method="sgd"), "`method`"),
        (lambda p, s: MinNormTraining(dropout=1.0), "`dropout`"),
        (lambda p, s: train_min_norm(p, s[::-1], SMALL, key=jr.key(0)), "`sigmas`"),
        (lambda p, s: train_min_norm(p, -s, SMALL, key=jr.key(0)), "`sigmas`"),
        (lambda p, s: train_min_norm(p[0], s, SMALL, key=jr.key(0)), "`points`"),
        (
            lambda p, s: train_min_norm(p, s, SMALL, key=jr.key(0), copies=np.zeros((2, 5, 3))),
            "`copies`",
        ),
        (
            lambda p, s: PerLevelReLU(
                jnp.asarray(s),
                jax.vmap(lambda k: jf.ShallowReLU.random(4, 3, key=k))(jr.split(jr.key(0), 3)),
            ),
            "`networks`",
        ),
    ],
)
def test_bad_inputs(call, match):
    with pytest.raises((ValueError, TypeError), match=match) as info:
        call(_small_points(), SIGMAS)
    assert "\n" not in str(info.value)
