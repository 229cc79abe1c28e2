"""Correctness of the probability flow and the score flow ([Z], Section 4;
docs/models.md#score-flow, docs/models.md#probability-flow).

Each flow is checked against an answer computed independently in NumPy (`helpers.py`):
the exact per-coordinate solution for the closed-form denoiser, nearest-vertex rounding,
and the closed-form flow of a linear denoiser.
"""

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import jaxflow as jf
import numpy as np
import pytest
from helpers import (
    count_compilations,
    exact_linear_flow,
    exact_probability_flow,
    fitted_order,
    FLAT_L,
    FLAT_ZERO,
    flow_regions,
    linear_denoiser,
    nearest_vertex,
    orthogonal_points,
    RAMP,
    tree_allclose,
    tree_equal,
    without_runtime_typechecks,
)


# Rotated orthogonal data with unequal lengths and d > N, so that starts have a
# component off the span of the training points.
D, LENGTHS, ALPHA = 8, np.array([1.0, 1.5, 2.0, 2.5, 3.0]), 1.0
SIGMA_MAX, SIGMA_MIN = 0.4, 1e-3  # 2 alpha sigma_max = 0.8 < min L = 1


def _problem(seed=0, batch=10_000, spread=(-0.5, 1.5), off_span=1.0):
    """Points and starts whose coordinates s_n = u_n . y0 are uniform on
    `spread` * L_n (all three regions of the flow), plus a Gaussian off-span part."""
    rng = np.random.default_rng(seed)
    points = orthogonal_points(rng, D, LENGTHS)
    units = points / LENGTHS[:, None]
    s0 = rng.uniform(*spread, size=(batch, LENGTHS.size)) * LENGTHS
    perp = off_span * rng.normal(size=(batch, D))
    perp -= perp @ units.T @ units
    return points, s0 @ units + perp


def _coordinates(y, points):
    lengths = np.linalg.norm(points, axis=1)
    return np.asarray(y, np.float64) @ (points / lengths[:, None] ** 2).T


def _off_span(y, points):
    units = points / np.linalg.norm(points, axis=1, keepdims=True)
    y = np.asarray(y, np.float64)
    return y - y @ units.T @ units


# ---------------------------------------------------------------------------------------
# Probability flow against the exact solution of [Z], Section 4; docs/models.md#probability-flow.
# ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def exact_problem():
    points, y0 = _problem()
    exact = exact_probability_flow(
        y0, points, alpha=ALPHA, sigma_max=SIGMA_MAX, sigma_min=SIGMA_MIN
    )
    regions = flow_regions(y0, points, ALPHA * SIGMA_MAX)
    # The starts exercise every region of every coordinate.
    for n in range(LENGTHS.size):
        assert np.all(np.bincount(regions[:, n], minlength=3) > 500)
    return points, y0, exact


# Objects as in `diffrax.diffeqsolve`, and the string aliases that presets use.
_PID = dfx.PIDController(rtol=1e-8, atol=1e-8, pcoeff=0.3, icoeff=0.4)


@pytest.mark.parametrize(
    "solver, schedule, controller",
    [
        (jf.flows.ExplicitHeun(), jf.flows.Geometric(), dfx.ConstantStepSize()),
        ("heun", "karras", dfx.ConstantStepSize()),
        (dfx.Euler(), jf.flows.Geometric(), dfx.ConstantStepSize()),
        ("euler", jf.flows.Karras(), dfx.ConstantStepSize()),
        (dfx.Tsit5(), jf.flows.Geometric(), _PID),
        ("tsit5", "geometric", _PID),
    ],
)
def test_probability_flow_matches_exact_solution_float64(
    exact_problem, solver, schedule, controller
):
    points, y0, exact = exact_problem
    denoiser = jf.MinNormOrthogonal(jnp.asarray(points), alpha=ALPHA)
    sol = jf.probability_flow(
        denoiser,
        jnp.asarray(y0),
        sigma_max=SIGMA_MAX,
        sigma_min=SIGMA_MIN,
        steps=256,
        solver=solver,
        schedule=schedule,
        stepsize_controller=controller,
    )
    assert sol.ys.dtype == jnp.float64
    error = np.max(np.abs(np.asarray(sol.ys) - exact))
    assert error <= 1e-6
    # Every exact solution here is affine in sigma (flat regions: s or s - L_n is
    # proportional to sigma; ramp: s - L_n/2 is proportional to L_n - 2 alpha sigma;
    # off the span: proportional to sigma). A Runge-Kutta method whose stage times are
    # the row sums of its tableau evaluates the field on the exact line, so it
    # reproduces an affine solution exactly: Euler and Heun on any grid are exact up to
    # round-off (measured 9e-15). Tsit5's tableau holds that row-sum condition only to
    # the precision its coefficients are written in (measured 3e-11).
    assert error <= (1e-9 if isinstance(controller, dfx.PIDController) else 1e-13)


@pytest.mark.parametrize(
    "solver, schedule, bound",
    [
        ("heun", "geometric", 1e-4),
        ("euler", "karras", 1e-4),
        pytest.param("tsit5", "geometric", 2e-4, marks=pytest.mark.slow),
    ],
)
def test_probability_flow_matches_exact_solution_float32(exact_problem, solver, schedule, bound):
    """Measured max errors over the 10^4 starts (|y| <= 3.2), float32, 256 steps:
    Heun geometric 4.9e-6, Heun Karras 7.5e-6, Euler geometric 4.9e-6, Euler Karras 7.3e-6,
    Tsit5 2.3e-5 (rtol = atol = 1e-6). The bound for the fixed-grid solvers is
    steps * eps32 * max|y| ~ 1e-4 (round-off accumulating over 256 steps, no truncation
    error); Tsit5's steps are chosen from round-off-level error estimates, so it gets 2x.
    """
    points, y0, exact = exact_problem
    denoiser = jf.MinNormOrthogonal(jnp.asarray(points, jnp.float32), alpha=ALPHA)
    sol = jf.probability_flow(
        denoiser,
        jnp.asarray(y0, jnp.float32),
        sigma_max=SIGMA_MAX,
        sigma_min=SIGMA_MIN,
        steps=256,
        solver=solver,
        schedule=schedule,
    )
    assert sol.ys.dtype == jnp.float32
    error = np.max(np.abs(np.asarray(sol.ys, np.float64) - exact))
    print(f"float32 {solver}/{schedule}: max error {error:.2e}")
    assert error <= bound


# ---------------------------------------------------------------------------------------
# Score flow ends at the nearest hyperbox vertex ([Z], Section 4; docs/models.md#score-flow).
# ---------------------------------------------------------------------------------------


def test_score_flow_ends_at_nearest_vertex():
    points, y0 = _problem(seed=1)
    denoiser = jf.MinNormOrthogonal(jnp.asarray(points), alpha=ALPHA)
    # rho = 0.4: the slowest ramp (L = 3) repels from L/2 at rate 2 rho / (L - 2 rho)
    # = 0.36, so t1 = 60 escapes from 1e-8 away from L/2 and then decays on the flat.
    sol = jf.score_flow(denoiser, jnp.asarray(y0), sigma=0.4, t1=60.0, steps=512)
    indicator, vertex = nearest_vertex(y0, points)
    np.testing.assert_array_equal(_coordinates(sol.ys, points) >= 0.5, indicator)  # 100%
    assert np.max(np.abs(np.asarray(sol.ys) - vertex)) < 1e-6


def test_score_flow_off_span_component_decays_like_exp_minus_t():
    points, y0 = _problem(seed=2, batch=64)
    denoiser = jf.MinNormOrthogonal(jnp.asarray(points), alpha=ALPHA)
    ts = np.array([0.5, 1.0, 2.0, 5.0, 10.0])
    sol = jf.score_flow(denoiser, jnp.asarray(y0), sigma=0.4, t1=10.0, steps=1000, save_ts=ts)
    perp0 = _off_span(y0, points)
    perp = _off_span(np.asarray(sol.trajectory), points)  # (batch, save, d)
    # D(y) lies in the span, so off the span dy/dt = -y exactly. Heun's relative error
    # on it is about t h^2 / 6 = 1.7e-4 at t = 10, h = 0.01 (measured 1.7e-4, the
    # saved states also carrying the dense output's interpolation error).
    expected = np.exp(-ts)[None, :, None] * perp0[:, None, :]
    np.testing.assert_allclose(perp, expected, rtol=3e-4, atol=1e-14)
    np.testing.assert_allclose(
        _off_span(np.asarray(sol.ys), points), np.exp(-10.0) * perp0, rtol=3e-4
    )


# ---------------------------------------------------------------------------------------
# Vertex versus manifold endpoints across a sweep of sigma_max ([Z], Section 4;
# docs/models.md#probability-flow).
# ---------------------------------------------------------------------------------------

SWEEP = np.array([0.05, 0.15, 0.3, 0.45])  # rho_max = alpha sigma_max; 2 rho_max < min L


def _sweep_starts(seed=3, batch=2000, margin=0.01):
    """Starts with one coordinate inside (0, L_n), at least `margin` L_n from every region
    edge of the sweep, and the others outside [0, L_n] (flat for every sigma_max), so
    that the nearest hyperbox point is a non-vertex point of the boundary; one start in
    ten has every coordinate outside (its nearest hyperbox point is a vertex)."""
    rng = np.random.default_rng(seed)
    points = orthogonal_points(rng, D, LENGTHS)
    units = points / LENGTHS[:, None]
    n = LENGTHS.size
    inside = np.arange(n)[None] == rng.integers(0, n, size=(batch, 1))
    inside[: batch // 10] = False
    f_out = np.where(
        rng.uniform(size=(batch, n)) < 0.5,
        rng.uniform(-0.5, -0.05, (batch, n)),
        rng.uniform(1.05, 1.5, (batch, n)),
    )
    edges = np.concatenate(
        [ALPHA * SWEEP[None] / LENGTHS[:, None], 1 - ALPHA * SWEEP[None] / LENGTHS[:, None]], axis=1
    )
    f_in = rng.uniform(size=(batch, n))
    for _ in range(100):  # resample the ones too close to a region edge
        close = np.any(np.abs(f_in[:, :, None] - edges[None]) < margin, axis=-1)
        if not close.any():
            break
        f_in = np.where(close, rng.uniform(size=(batch, n)), f_in)
    else:
        raise AssertionError("could not place starts away from the region edges")
    s0 = np.where(inside, f_in, f_out) * LENGTHS
    perp = 0.5 * rng.normal(size=(batch, D))
    perp -= perp @ units.T @ units
    return points, s0 @ units + perp


def test_probability_flow_vertex_or_manifold_endpoint_follows_starting_region():
    points, y0 = _sweep_starts()
    denoiser = jf.MinNormOrthogonal(jnp.asarray(points), alpha=ALPHA)
    coords0 = _coordinates(y0, points)
    nearest_is_vertex = np.all((coords0 <= 0) | (coords0 >= 1), axis=1)
    np.testing.assert_array_equal(nearest_is_vertex, np.arange(len(y0)) < len(y0) // 10)
    indicator0, vertex0 = nearest_vertex(y0, points)
    # Flat coordinates end within |f| sigma_min / sigma_max <= 1e-4 of 0 or 1, ramp ones at
    # least `margin` = 0.01 inside: a tolerance in between separates them.
    tol = 3e-3
    save_sigmas = np.array([1e-2, 1e-3])
    vertex_rates = []
    for sigma_max in SWEEP:  # one compilation for the whole sweep
        sol = jf.probability_flow(
            denoiser,
            jnp.asarray(y0),
            sigma_max=sigma_max,
            sigma_min=1e-5,
            steps=16,
            save_sigmas=save_sigmas,
        )
        ys = np.asarray(sol.ys)
        for k, sigma in enumerate(save_sigmas):
            exact = exact_probability_flow(
                y0, points, alpha=ALPHA, sigma_max=sigma_max, sigma_min=sigma
            )
            np.testing.assert_allclose(np.asarray(sol.trajectory)[:, k], exact, rtol=0, atol=1e-12)
        regions = flow_regions(y0, points, ALPHA * sigma_max)
        coords = _coordinates(ys, points)
        # Each coordinate stays in its region: flats end at 0 or 1, ramps strictly inside.
        np.testing.assert_array_equal(np.abs(coords) < tol, regions == FLAT_ZERO)
        np.testing.assert_array_equal(np.abs(coords - 1) < tol, regions == FLAT_L)
        np.testing.assert_array_equal((coords > tol) & (coords < 1 - tol), regions == RAMP)
        assert np.max(np.abs(_off_span(ys, points))) < tol
        at_vertex = np.all(np.abs(coords - np.round(coords)) < tol, axis=1)
        on_boundary = np.any((np.abs(coords) < tol) | (np.abs(coords - 1) < tol), axis=1)
        # The theorem: a vertex exactly when no coordinate started on a ramp ...
        np.testing.assert_array_equal(at_vertex, np.all(regions != RAMP, axis=1))
        # ... else a manifold point: a non-vertex point of the boundary.
        np.testing.assert_array_equal(on_boundary, np.ones(len(y0), bool))
        # A start whose nearest hyperbox point is a vertex ends at that vertex.
        np.testing.assert_array_equal(
            (coords[nearest_is_vertex] > 0.5), indicator0[nearest_is_vertex]
        )
        np.testing.assert_allclose(
            ys[nearest_is_vertex], vertex0[nearest_is_vertex], atol=tol * LENGTHS.max()
        )
        vertex_rates.append(at_vertex.mean())
    # Started early (large sigma_max) the flow reaches vertices; started late, manifold points.
    assert np.all(np.diff(vertex_rates) > 0), vertex_rates
    print("fraction at vertices by sigma_max:", dict(zip(SWEEP.tolist(), vertex_rates)))
    assert vertex_rates[0] < 0.25 and vertex_rates[-1] > 0.45, vertex_rates  # measured 0.145, 0.527


# ---------------------------------------------------------------------------------------
# Convergence order on a smooth problem with a closed-form flow.
# ---------------------------------------------------------------------------------------


# One function object for every call: a plain function is a static argument of the
# compiled solve, so a fresh closure would compile again.
_LINEAR = linear_denoiser(1.0)


def _check_order(solver, order, tol, steps):
    # D(y; sigma) = c y / (c + sigma^2) is smooth, so the fixed-grid solvers reach their
    # classical order; the geometric and Karras grids are smooth reparametrisations of a
    # uniform grid and share one compilation per step count. Measured fitted orders
    # (geometric, Karras): steps 16-64, Euler 0.974, 0.976 and Heun 2.054, 2.037;
    # steps 32-512, Euler 0.992, 0.993 and Heun 2.016, 2.011.
    rng = np.random.default_rng(4)
    y0 = 10 * rng.normal(size=(4, 3))
    sigma_max, sigma_min = 10.0, 0.02
    exact = exact_linear_flow(y0, c=1.0, sigma_max=sigma_max, sigma=sigma_min)
    for schedule in ("geometric", "karras"):
        errors = []
        for n in steps:
            sol = jf.probability_flow(
                _LINEAR,
                jnp.asarray(y0),
                sigma_max=sigma_max,
                sigma_min=sigma_min,
                steps=n,
                solver=solver,
                schedule=schedule,
            )
            errors.append(np.max(np.abs(np.asarray(sol.ys) - exact)))
        fitted = fitted_order(steps, errors)
        assert abs(fitted - order) < tol, (schedule, fitted, errors)


# Each step count compiles once; the tolerance on the fitted slope follows each method's
# pre-asymptotic drift (Euler's error ratio approaches 2 from below, Heun's 4 from above).
@pytest.mark.parametrize("solver, order, tol", [("euler", 1.0, 0.1), ("heun", 2.0, 0.15)])
def test_probability_flow_convergence_order(solver, order, tol):
    _check_order(solver, order, tol, steps=[16, 32, 64])


@pytest.mark.slow
@pytest.mark.parametrize("solver, order, tol", [("euler", 1.0, 0.05), ("heun", 2.0, 0.05)])
def test_probability_flow_convergence_order_long_sweep(solver, order, tol):
    _check_order(solver, order, tol, steps=[32, 64, 128, 256, 512])


# ---------------------------------------------------------------------------------------
# Chunking: the same numbers whatever the chunk size.
# ---------------------------------------------------------------------------------------

BATCH = 50


@pytest.fixture(scope="module")
def chunk_problem():
    points, y0 = _problem(seed=5, batch=BATCH)
    denoiser = jf.MinNormOrthogonal(jnp.asarray(points), alpha=ALPHA)
    starts = jf.GaussianStarts(jnp.asarray(points.sum(0) / 2), 1.0, num_starts=BATCH, key=jr.key(7))
    return denoiser, jnp.asarray(y0), starts


def _pflow(denoiser, y0, chunk_size, solver="heun"):
    return jf.probability_flow(
        denoiser,
        y0,
        sigma_max=SIGMA_MAX,
        sigma_min=SIGMA_MIN,
        steps=32,
        solver=solver,
        chunk_size=chunk_size,
    )


@pytest.mark.parametrize("chunk_size", [7, 10, 33])
def test_chunked_endpoints_are_bitwise_identical(chunk_problem, chunk_size):
    denoiser, y0, starts = chunk_problem
    for start in (y0, starts):
        whole, chunked = _pflow(denoiser, start, None), _pflow(denoiser, start, chunk_size)
        assert tree_equal(
            (whole.ys, whole.num_steps, whole.result),
            (chunked.ys, chunked.num_steps, chunked.result),
        )


def test_chunked_score_flow_endpoints_are_bitwise_identical(chunk_problem):
    denoiser, _, starts = chunk_problem
    score = lambda c: jf.score_flow(denoiser, starts, sigma=0.3, t1=5.0, steps=16, chunk_size=c).ys
    assert tree_equal(score(None), score(7))


@pytest.mark.parametrize("chunk_size", [7, 33, 300])
def test_chunked_endpoints_are_bitwise_identical_in_float32(chunk_problem, chunk_size):
    # XLA's CPU dot kernels round differently for different batch sizes (7 rows vs 50);
    # the flows compute every row inside a block of one fixed shape, so float32 chunks
    # must still agree to the last bit.
    denoiser, y0, _ = chunk_problem
    denoiser32 = jf.MinNormOrthogonal(denoiser.points.astype(jnp.float32), alpha=ALPHA)
    y32 = y0.astype(jnp.float32)
    assert tree_equal(_pflow(denoiser32, y32, None).ys, _pflow(denoiser32, y32, chunk_size).ys)


def test_gaussian_starts_flow_equals_flow_of_materialized_starts(chunk_problem):
    denoiser, _, starts = chunk_problem
    # The flow draws each start's noise from (key, global index), so the chunked lazy
    # draw is the same array as drawing everything up front.
    assert tree_equal(
        _pflow(denoiser, starts, 7).ys, _pflow(denoiser, starts.materialize(), None).ys
    )
    other = jf.GaussianStarts(starts.centre, 1.0, num_starts=BATCH, key=jr.key(8))
    assert not np.any(
        np.all(
            np.asarray(_pflow(denoiser, other, None).ys)
            == np.asarray(_pflow(denoiser, starts, None).ys),
            axis=1,
        )
    )


# ---------------------------------------------------------------------------------------
# The interface: any denoiser callable, and errors named clearly.
# ---------------------------------------------------------------------------------------


class _Shrink(eqx.Module):
    """A user's denoiser: the optimal denoiser of N(0, c I)."""

    c: jnp.ndarray

    def __call__(self, y, sigma):
        return self.c / (self.c + sigma**2) * y


def test_flows_accept_plain_function_and_user_module():
    y0 = jnp.asarray(np.random.default_rng(6).normal(size=(5, 3)))
    kwargs = dict(sigma_max=5.0, sigma_min=0.1, steps=64)
    by_function = jf.probability_flow(_LINEAR, y0, **kwargs).ys
    by_module = jf.probability_flow(_Shrink(jnp.asarray(1.0)), y0, **kwargs).ys
    assert tree_allclose(by_function, by_module, rtol=1e-14, atol=1e-14)
    exact = exact_linear_flow(np.asarray(y0), c=1.0, sigma_max=5.0, sigma=0.1)
    assert tree_allclose(np.asarray(by_module), exact, rtol=1e-3, atol=1e-4)
    # The score flow of a linear shrinkage: dy/dt = -(sigma^2 / (c + sigma^2)) y.
    score = jf.score_flow(_LINEAR, y0, sigma=1.0, t1=3.0, steps=64).ys
    assert tree_allclose(np.asarray(score), np.asarray(y0) * np.exp(-3.0 / 2.0), rtol=1e-3)


def test_flows_refuse_malformed_starts():
    f = linear_denoiser(1.0)
    # The test suite's runtime shape checks would refuse these first, with a TypeError;
    # a user sees the library's own messages.
    with pytest.raises(TypeError, match=r"y0"):
        jf.probability_flow(f, jnp.ones(3), sigma_max=1.0, sigma_min=0.1)
    with without_runtime_typechecks():
        with pytest.raises(
            ValueError, match=r"`y0` must be a batch of points of shape \(batch, d\)"
        ):
            jf.probability_flow(f, jnp.ones(3), sigma_max=1.0, sigma_min=0.1)
        with pytest.raises(ValueError, match=r"shape \(batch, d\)"):
            jf.score_flow(f, jnp.ones((2, 3, 4)), sigma=1.0, t1=1.0)
        with pytest.raises(TypeError, match="`y0` must be floating point, got dtype int32"):
            jf.probability_flow(f, jnp.ones((2, 3), jnp.int32), sigma_max=1.0, sigma_min=0.1)
    with pytest.raises(ValueError, match="Unknown `solver`"):
        jf.probability_flow(f, jnp.ones((2, 3)), sigma_max=1.0, sigma_min=0.1, solver="rk4")
    with pytest.raises(ValueError, match="Unknown `schedule`"):
        jf.probability_flow(f, jnp.ones((2, 3)), sigma_max=1.0, sigma_min=0.1, schedule="cosine")


def test_step_to_controller_steps_on_its_grid():
    # An explicit grid is the same program as the schedule that would build it.
    y0 = jnp.asarray(np.random.default_rng(8).normal(size=(5, 3)))
    kwargs = dict(sigma_max=5.0, sigma_min=0.1, steps=24)
    grid = jf.flows.Karras().grid(jnp.asarray(5.0), jnp.asarray(0.1), 24)
    by_schedule = jf.probability_flow(_LINEAR, y0, schedule=jf.flows.Karras(), **kwargs)
    by_grid = jf.probability_flow(_LINEAR, y0, stepsize_controller=dfx.StepTo(grid), **kwargs)
    assert tree_equal(by_schedule.ys, by_grid.ys)
    np.testing.assert_array_equal(by_grid.num_steps, 24)


def test_flows_refuse_a_controller_that_is_not_one():
    # The test suite's runtime type checks would refuse it first; a user sees this message.
    with without_runtime_typechecks(), pytest.raises(TypeError, match="`stepsize_controller`"):
        jf.probability_flow(
            _LINEAR, jnp.ones((2, 3)), sigma_max=1.0, sigma_min=0.1, stepsize_controller="pid"
        )


@pytest.mark.parametrize("sigma_max, sigma_min", [(0.1, 1.0), (1.0, 1.0), (1.0, 0.0)])
def test_probability_flow_refuses_sigma_max_not_above_sigma_min(sigma_max, sigma_min):
    f, y0 = linear_denoiser(1.0), jnp.ones((2, 3))
    # Concrete levels are refused on the host, in one line naming the argument ...
    with pytest.raises(ValueError, match=r"`sigma_m(ax|in)` must") as refused:
        jf.probability_flow(f, y0, sigma_max=sigma_max, sigma_min=sigma_min)
    assert "\n" not in str(refused.value)
    # ... traced ones inside the compiled program.
    solve = eqx.filter_jit(lambda a, b: jf.probability_flow(f, y0, sigma_max=a, sigma_min=b).ys)
    with pytest.raises(eqx.EquinoxRuntimeError, match="sigma_max > sigma_min > 0"):
        solve(sigma_max, sigma_min)


def test_score_flow_refuses_nonpositive_time():
    f, y0 = linear_denoiser(1.0), jnp.ones((2, 3))
    with pytest.raises(ValueError, match="`t1` must be positive and finite, got 0.0"):
        jf.score_flow(f, y0, sigma=1.0, t1=0.0)
    solve = eqx.filter_jit(lambda t1: jf.score_flow(f, y0, sigma=1.0, t1=t1).ys)
    with pytest.raises(eqx.EquinoxRuntimeError, match="t1 > 0"):
        solve(0.0)


class _Poisoned(eqx.Module):
    """Shrinks towards 0, but returns inf above the noise level `above` for starts with
    y[0] > 0: those trajectories blow up on a fixed grid, the others stay finite."""

    above: jnp.ndarray

    def __call__(self, y, sigma):
        return jnp.where((y[0] > 0) & (sigma > self.above), jnp.inf, y / (1 + sigma**2))


def _poisoned_problem():
    y0 = jnp.asarray(np.random.default_rng(7).normal(size=(6, 3)))
    bad = np.asarray(y0[:, 0] > 0)
    assert 0 < bad.sum() < len(bad)
    return y0, bad


def test_failed_trajectories_raise_or_are_reported_per_trajectory():
    y0, bad = _poisoned_problem()
    # Tsit5 ("tsit5": adaptive steps) with too few steps: every trajectory fails.
    kwargs = dict(sigma_max=10.0, sigma_min=1e-3, solver="tsit5", max_steps=2)
    with pytest.raises(eqx.EquinoxRuntimeError, match="maximum number of solver steps"):
        jf.probability_flow(_LINEAR, y0, **kwargs)
    sol = jf.probability_flow(_LINEAR, y0, throw=False, **kwargs)
    assert not np.any(sol.successful)
    assert np.all(np.asarray(sol.result == jf.flows.RESULTS.max_steps_reached))

    # On a fixed grid diffrax itself reports success; the flow marks the rows whose
    # state is not finite, and only those.
    poisoned, kwargs = _Poisoned(jnp.asarray(0.0)), dict(sigma_max=1.0, sigma_min=0.1, steps=8)
    with pytest.raises(eqx.EquinoxRuntimeError, match="non-finite"):
        jf.probability_flow(poisoned, y0, **kwargs)
    sol = jf.probability_flow(poisoned, y0, throw=False, **kwargs)
    np.testing.assert_array_equal(sol.result == jf.flows.RESULTS.nonfinite_state, bad)
    np.testing.assert_array_equal(sol.successful, ~bad)
    assert np.all(np.isfinite(np.asarray(sol.ys)[~bad]))
    # The same statuses, bitwise, whatever the chunking.
    chunked = jf.probability_flow(poisoned, y0, throw=False, chunk_size=4, **kwargs)
    np.testing.assert_array_equal(chunked.ys, sol.ys)  # NaN rows included
    assert tree_equal(chunked.result, sol.result)
    # The score flow too.
    with pytest.raises(eqx.EquinoxRuntimeError, match="non-finite"):
        jf.score_flow(poisoned, y0, sigma=1.0, t1=1.0, steps=8)
    score = jf.score_flow(poisoned, y0, sigma=1.0, t1=1.0, steps=8, throw=False)
    np.testing.assert_array_equal(score.successful, ~bad)


def test_raise_on_failure_leaves_the_solution_it_checks_readable():
    # The flows check their own endpoints in place (donated, no copy); the public method
    # must not consume a solution its caller still holds.
    y0, bad = _poisoned_problem()
    kwargs = dict(sigma_max=1.0, sigma_min=0.1, steps=8, throw=False)
    sol = jf.probability_flow(_Poisoned(jnp.asarray(1.0)), y0, **kwargs)
    checked = sol.raise_on_failure()
    np.testing.assert_array_equal(np.asarray(sol.ys), np.asarray(checked.ys))
    failed = jf.probability_flow(_Poisoned(jnp.asarray(0.0)), y0, **kwargs)
    with pytest.raises(eqx.EquinoxRuntimeError, match="non-finite"):
        failed.raise_on_failure()
    assert np.all(np.isfinite(np.asarray(failed.ys)[~bad]))


def test_flow_runs_and_raises_under_jit():
    y0, bad = _poisoned_problem()
    shrink = _Shrink(jnp.asarray(1.0))
    # The default `throw=True` traces: its check is part of the compiled program.
    flow = jax.jit(lambda s: jf.probability_flow(shrink, y0, sigma_max=s, sigma_min=1e-2).ys)
    eager = jf.probability_flow(shrink, y0, sigma_max=0.05, sigma_min=1e-2).ys
    assert tree_allclose(flow(0.05), eager, rtol=1e-14, atol=1e-14)

    poisoned = jax.jit(lambda den, s: jf.probability_flow(den, y0, sigma_max=s, sigma_min=1e-2).ys)
    np.testing.assert_allclose(poisoned(_Poisoned(jnp.asarray(1.0)), 0.05), eager, rtol=1e-2)
    # A plain `jax.jit` re-raises the callback's error as its own type (a `ValueError` in
    # jax 0.10), with the message; `eqx.filter_jit` raises `EquinoxRuntimeError`.
    with pytest.raises(Exception, match="non-finite"):
        jax.block_until_ready(poisoned(_Poisoned(jnp.asarray(0.0)), 0.05))
    with pytest.raises(eqx.EquinoxRuntimeError, match="non-finite"):
        eqx.filter_jit(poisoned)(_Poisoned(jnp.asarray(0.0)), 0.05)
    statuses = jax.jit(
        lambda den: jf.probability_flow(den, y0, sigma_max=0.05, sigma_min=1e-2, throw=False)
    )(_Poisoned(jnp.asarray(0.0))).result
    np.testing.assert_array_equal(statuses == jf.flows.RESULTS.nonfinite_state, bad)


@pytest.mark.parametrize("chunk_size", [None, 4])
def test_failure_status_per_row_under_vmap(chunk_size):
    y0, bad = _poisoned_problem()
    poisoned = _Poisoned(jnp.asarray(1.0))  # blows up only if sigma_max > 1
    sigma_max = jnp.asarray([0.5, 2.0, 4.0])

    def flow(s, throw):
        return jf.probability_flow(
            poisoned, y0, sigma_max=s, sigma_min=0.1, steps=8, chunk_size=chunk_size, throw=throw
        )

    sol = jax.vmap(lambda s: flow(s, False))(sigma_max)
    expected = (np.asarray(sigma_max) > 1)[:, None] & bad[None]
    np.testing.assert_array_equal(sol.result == jf.flows.RESULTS.nonfinite_state, expected)
    np.testing.assert_array_equal(sol.successful, ~expected)
    with pytest.raises(eqx.EquinoxRuntimeError, match="non-finite"):
        jax.vmap(lambda s: flow(s, True).ys)(sigma_max)
    assert np.all(np.isfinite(np.asarray(jax.vmap(lambda s: flow(s, True).ys)(sigma_max[:1]))))


# ---------------------------------------------------------------------------------------
# Gradients under jit against central finite differences (float64).
# ---------------------------------------------------------------------------------------


def _relu_problem():
    key_net, key_b, key_y = jr.split(jr.key(11), 3)
    net = jf.ShallowReLU.random(3, 8, key=key_net)
    # Nonzero biases, so that every parameter enters the flow.
    net = eqx.tree_at(lambda m: m.b, net, 0.3 * jr.normal(key_b, (8,)))
    return net, jr.normal(key_y, (4, 3))


def _flow_loss(net, sigma_max, y0):
    ys = jf.probability_flow(net, y0, sigma_max=sigma_max, sigma_min=1e-2, steps=16).ys
    return jnp.sum(jnp.sin(ys))


def test_gradient_in_sigma_max_matches_central_differences():
    net, y0 = _relu_problem()
    sigma_max, h = 0.7, 1e-5
    grad = jax.jit(jax.grad(lambda s: _flow_loss(net, s, y0)))(sigma_max)
    loss = jax.jit(lambda s: _flow_loss(net, s, y0))
    fd = (loss(sigma_max + h) - loss(sigma_max - h)) / (2 * h)
    print(f"d/dsigma_max: grad {float(grad):.12g}, fd {float(fd):.12g}")
    assert abs(float(fd)) > 1e-2  # the loss does depend on sigma_max
    # Truncation h^2 |f'''| / 6 and round-off eps |f| / h are both below 1e-10 here.
    assert abs(grad - fd) <= 1e-8 * max(1.0, abs(float(fd)))


def test_gradient_in_denoiser_weights_matches_central_differences():
    net, y0 = _relu_problem()
    sigma_max, h = jnp.asarray(0.7), 1e-6
    grads = eqx.filter_jit(eqx.filter_grad(_flow_loss))(net, sigma_max, y0)
    params, static = eqx.partition(net, eqx.is_inexact_array)
    leaves, treedef = jax.tree.flatten(params)
    keys = jr.split(jr.key(12), len(leaves))
    direction = jax.tree.unflatten(treedef, [jr.normal(k, x.shape) for k, x in zip(keys, leaves)])
    loss = eqx.filter_jit(lambda p: _flow_loss(eqx.combine(p, static), sigma_max, y0))
    shifted = lambda t: jax.tree.map(lambda p, v: p + t * v, params, direction)
    fd = (loss(shifted(h)) - loss(shifted(-h))) / (2 * h)
    along = sum(jnp.vdot(g, v) for g, v in zip(jax.tree.leaves(grads), jax.tree.leaves(direction)))
    print(f"directional derivative in the weights: grad {float(along):.12g}, fd {float(fd):.12g}")
    assert abs(float(fd)) > 1e-2
    assert abs(along - fd) <= 1e-7 * max(1.0, abs(float(fd)))
    # Every field of the network gets a gradient.
    assert all(np.any(np.asarray(g) != 0) for g in jax.tree.leaves(grads))


# ---------------------------------------------------------------------------------------
# New noise levels, same shapes: no new compilation.
# ---------------------------------------------------------------------------------------


def test_new_noise_levels_do_not_recompile(chunk_problem):
    denoiser, y0, _ = chunk_problem  # shapes shared with the chunking tests
    # Warm up with each kind of scalar: the first JAX scalar compiles its own (one-off)
    # conversion outside the flow.
    flow = lambda hi, lo: jf.probability_flow(denoiser, y0, sigma_max=hi, sigma_min=lo, steps=32)
    flow(0.4, 1e-3)
    flow(jnp.asarray(0.4), jnp.asarray(1e-3))
    score = lambda sigma, t1: jf.score_flow(denoiser, y0, sigma=sigma, t1=t1, steps=16)
    score(0.3, 5.0)
    with count_compilations() as compiled:
        flow(0.3, 2e-3)
        flow(jnp.asarray(0.2), jnp.asarray(1e-2))
        score(0.2, 7.0)
    assert compiled[0] == 0


def test_new_weights_do_not_recompile(chunk_problem):
    denoiser, y0, _ = chunk_problem
    flow = lambda den: jf.probability_flow(den, y0, sigma_max=0.4, sigma_min=1e-3, steps=32)
    flow(denoiser)
    moved = jf.MinNormOrthogonal(denoiser.points * 1.01, alpha=ALPHA)
    with count_compilations() as compiled:
        flow(moved)  # a module: its arrays are traced
    assert compiled[0] == 0


def test_library_exact_probability_flow_matches_independent_oracle():
    rng = np.random.default_rng(21)
    points = orthogonal_points(rng, 9, np.linspace(1.0, 2.0, 6))
    y0 = rng.normal(0.6, 0.7, size=(500, 9))
    denoiser = jf.MinNormOrthogonal(jnp.asarray(points), alpha=1.5)
    got = jf.flows.exact_probability_flow(denoiser, jnp.asarray(y0), sigma_max=0.3, sigma_min=1e-3)
    want = exact_probability_flow(y0, points, alpha=1.5, sigma_max=0.3, sigma_min=1e-3)
    np.testing.assert_allclose(np.asarray(got), want, rtol=0, atol=1e-13)


def test_library_score_flow_limit_is_the_nearest_vertex():
    rng = np.random.default_rng(22)
    points = orthogonal_points(rng, 9, np.linspace(1.0, 2.0, 6))
    y0 = rng.normal(0.6, 0.7, size=(500, 9))
    denoiser = jf.MinNormOrthogonal(jnp.asarray(points))
    _, vertex = nearest_vertex(y0, points)
    got = jf.flows.score_flow_limit(denoiser, jnp.asarray(y0))
    np.testing.assert_allclose(np.asarray(got), vertex, rtol=0, atol=1e-13)


def test_exact_solutions_refuse_other_denoisers():
    with (
        without_runtime_typechecks(),
        pytest.raises(TypeError, match="for `MinNormOrthogonal` only"),
    ):
        jf.flows.score_flow_limit(jf.EmpiricalOptimal(jnp.eye(2)), jnp.zeros((3, 2)))


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_endpoints_are_bitwise_identical_across_many_chunks(dtype):
    # Larger than two blocks, so several chunks are solved, the last one padded and the
    # pieces placed into one output.
    block = jf.flows.block_size()
    points = jnp.asarray(orthogonal_points(np.random.default_rng(5), 6, [1.0, 1.5, 2.0]), dtype)
    denoiser = jf.MinNormOrthogonal(points, alpha=1.0)
    starts = jf.GaussianStarts(
        jnp.full(6, 0.5, dtype), 0.6, num_starts=2 * block + 123, key=jr.key(8)
    )
    flow = lambda chunk: (
        jf.probability_flow(
            denoiser, starts, sigma_max=0.4, sigma_min=1e-3, steps=4, chunk_size=chunk
        ).ys
    )
    whole = flow(None)
    for chunk in (block, block + 1000):
        assert tree_equal(flow(chunk), whole)
