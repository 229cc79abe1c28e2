# ruff: noqa: E501
"""The catalogue of bad inputs: every one is refused by name, in one line, before any work.

Each case is a call with one bad argument, the exception it must raise and key words of
its message (a regex). The message must name the argument in backticks and fit on one
line. `docs/bad-inputs.md` holds the same catalogue as a table, generated from `CASES`
(`python tests/test_bad_inputs.py` rewrites it) and checked against it here.
"""

import dataclasses
import re
import sys
from collections.abc import Callable
from pathlib import Path

import diffrax as dfx
import equinox as eqx
import jax.numpy as jnp
import jax.random as jr
import jaxflow as jf
import numpy as np
import pytest
from helpers import without_runtime_typechecks
from jaxflow.data import Gaussian, GaussianStarts
from jaxflow.denoisers import AffineDenoiser, PiecewiseAffine, ShallowReLU
from jaxflow.estimators import KernelMixture


DOC = Path(__file__).resolve().parents[1] / "docs" / "bad-inputs.md"
BEGIN, END = "<!-- catalogue: begin -->", "<!-- catalogue: end -->"


@dataclasses.dataclass(frozen=True)
class Case:
    function: str  # as a user writes it, e.g. "jaxflow.data.orthogonal"
    argument: str  # the argument refused, named in the message
    bad: str  # the bad value, as written in the table
    call: Callable[[], object]
    error: type[Exception]
    match: str  # key words of the message (a regex)


# ---------------------------------------------------------------------------------------
# Small valid inputs; each case spoils one argument.
# ---------------------------------------------------------------------------------------

_RNG = np.random.default_rng(0)
X0 = _RNG.normal(size=(6, 3))  # n = 6, d = 3
XT = _RNG.normal(size=(6, 2, 3))  # k = 2 copies
ORTHO = np.eye(3)
SIMPLEX = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
KEY = jr.key(0)
Y0 = 0.5 * _RNG.uniform(size=(5, 3))
COV = np.eye(3)


def _with(a, index, value):
    a = np.array(a, dtype=float)
    a[index] = value
    return a


def _p():
    return Gaussian(jnp.zeros(3), jnp.asarray(COV))


def _q():
    return Gaussian(jnp.ones(3), 0.5 * jnp.asarray(COV))


def _denoiser():
    return jf.MinNormOrthogonal(ORTHO, alpha=1.0)


def _affine(d=3, dtype=np.float64):
    return AffineDenoiser(0.5 * np.eye(d, dtype=dtype), np.zeros(d, dtype))


def _flow(**kwargs):
    options = dict(sigma_max=0.2, sigma_min=0.01, steps=4)
    options.update(kwargs)
    y0 = options.pop("y0", Y0)
    denoiser = options.pop("denoiser", _denoiser())
    return jf.flows.probability_flow(denoiser, y0, **options)


def _score(**kwargs):
    options = dict(sigma=0.1, t1=1.0, steps=4)
    options.update(kwargs)
    y0 = options.pop("y0", Y0)
    denoiser = options.pop("denoiser", _denoiser())
    return jf.flows.score_flow(denoiser, y0, **options)


def _gflow(**kwargs):
    options = dict(sigma_max=1.0, sigma_min=0.1, steps=4)
    options.update(kwargs)
    start = options.pop("start", _p())
    denoiser = options.pop("denoiser", _affine())
    return jf.flows.gaussian_probability_flow(denoiser, start, **options)


def _one_step(**kwargs):
    options = dict(T=2.0, lam=1.0)
    options.update(kwargs)
    x0 = options.pop("x0", X0)
    denoiser = options.pop("denoiser", _affine())
    return jf.flows.one_step_gaussian(denoiser, x0, **options)


def _stability(**kwargs):
    options = dict(sizes=(2,), iterations=3)
    options.update(kwargs)
    sigma = options.pop("sigma", 0.1)
    return jf.estimators.virtual_point_stability(_denoiser(), ORTHO, sigma, **options)


def _relative(**kwargs):
    q = kwargs.pop("q", _q())
    train = kwargs.pop("train", KernelMixture(X0))
    reference = kwargs.pop("reference", KernelMixture(X0 + 1.0))
    return jf.estimators.relative_distance(q, train, reference, **kwargs)


def _distances(**kwargs):
    qs = jf.data.Gaussian(np.ones((1, 1, 3)), 0.5 * np.broadcast_to(COV, (1, 1, 3, 3)))
    options = dict(s=1.0)
    options.update(kwargs)
    x0s = options.pop("x0s", [X0])
    reference = options.pop("reference", None)
    p = options.pop("p", _p())
    return jf.estimators.one_step_distances(qs, x0s, reference, p, **options)


def _no_squares():
    # Refused before any use, so any values do.
    return jf.estimators.PairSums(jnp.zeros(()), jnp.zeros(()), None)


def _skewed():
    return Gaussian(jnp.zeros(3), jnp.diag(jnp.array([1.0, 1.0, 2.0])))


def _sweep(**kwargs):
    options = dict(key=KEY, d=3, repetitions=2, reference_size=20)
    options.update(kwargs)
    return jf.studies.relative_distance_sweep(options.pop("ns", (4, 8)), **options)


def _inputs(**kwargs):
    options = dict(key=KEY, d=3, reference_size=10)
    options.update(kwargs)
    return jf.studies.sweep_inputs(options.pop("repetition", 0), options.pop("n", 4), **options)


def _arrays(**kwargs):
    x0 = kwargs.pop("x0", X0[None])
    xt = kwargs.pop("xt", XT[None])
    reference = kwargs.pop("reference", None)
    return jf.studies.relative_distance_arrays(x0, xt, reference, **kwargs)


def _transition(**kwargs):
    options = dict(key=KEY, resamples=10)
    options.update(kwargs)
    ns = options.pop("ns", (4, 8))
    positive = options.pop("positive", np.array([[False, True], [True, True]]))
    return jf.estimators.transition_point(ns, positive, **options)


def _empirical_flow_mixed_dtype():
    denoiser = jf.EmpiricalOptimal(jnp.asarray(ORTHO, jnp.float32))
    return jf.flows.probability_flow(denoiser, Y0, sigma_max=0.2, sigma_min=0.01, steps=4)


def _wrong_shape_denoiser(y, sigma):
    del sigma
    return jnp.concatenate([y, y])


D = "jaxflow.data"
N = "jaxflow.denoisers"
T_ = "jaxflow.training"
F = "jaxflow.flows"
E = "jaxflow.estimators"
S = "jaxflow.studies"
NAN, INF = float("nan"), float("inf")
NONFINITE = r"must be finite, but"
POSITIVE = r"must be positive and finite, got"
NOT_INT = r"must be an int, got"
NOT_KEY = r"must be a PRNG key"

CASES = [
    # --- data -------------------------------------------------------------------------
    Case(f"{D}.orthogonal", "n", "2.5", lambda: jf.data.orthogonal(2.5, 3), ValueError, NOT_INT),
    Case(f"{D}.orthogonal", "n", "0", lambda: jf.data.orthogonal(0, 3), ValueError, r"positive int"),
    Case(f"{D}.orthogonal", "d", "3.0", lambda: jf.data.orthogonal(2, 3.0), ValueError, NOT_INT),
    Case(f"{D}.orthogonal", "n", "4 > d = 3", lambda: jf.data.orthogonal(4, 3), ValueError, r"At most d mutually orthogonal"),
    Case(f"{D}.orthogonal", "lengths", "inf", lambda: jf.data.orthogonal(2, 3, lengths=INF), ValueError, POSITIVE),
    Case(f"{D}.orthogonal", "lengths", "NaN", lambda: jf.data.orthogonal(2, 3, lengths=NAN), ValueError, POSITIVE),
    Case(f"{D}.orthogonal", "lengths", "0 in (1, 0)", lambda: jf.data.orthogonal(2, 3, lengths=np.array([1.0, 0.0])), ValueError, POSITIVE),
    Case(f"{D}.orthogonal", "lengths", "shape (3,) for n = 2", lambda: jf.data.orthogonal(2, 3, lengths=np.ones(3)), ValueError, r"must be a scalar or have shape \(2,\)"),
    Case(f"{D}.orthogonal", "key", "None with rotate=True", lambda: jf.data.orthogonal(2, 3, rotate=True), ValueError, r"needs a PRNG `key`"),
    Case(f"{D}.orthogonal", "key", "0 (an int)", lambda: jf.data.orthogonal(2, 3, rotate=True, key=0), TypeError, NOT_KEY),
    Case(f"{D}.orthogonal", "dtype", "int32", lambda: jf.data.orthogonal(2, 3, dtype=jnp.int32), TypeError, r"must be a floating dtype"),
    Case(f"{D}.obtuse_simplex", "beta", "2.5", lambda: jf.data.obtuse_simplex(2, 3, beta=2.5), ValueError, r"must lie in \[0, 2\)"),
    Case(f"{D}.obtuse_simplex", "beta", "1.0", lambda: jf.data.obtuse_simplex(2, 3, beta=1.0), ValueError, r"the simplex is flat"),
    Case(f"{D}.obtuse_simplex", "apex", "NaN entry", lambda: jf.data.obtuse_simplex(2, 3, apex=_with(np.zeros(3), 1, NAN)), ValueError, NONFINITE),
    Case(f"{D}.obtuse_simplex", "apex", "shape (2,) for d = 3", lambda: jf.data.obtuse_simplex(2, 3, apex=np.zeros(2)), ValueError, r"must have shape \(3,\)"),
    Case(f"{D}.isotropic_gaussian", "std", "inf", lambda: jf.data.isotropic_gaussian(4, 3, key=KEY, std=INF), ValueError, POSITIVE),
    Case(f"{D}.isotropic_gaussian", "mean", "NaN", lambda: jf.data.isotropic_gaussian(4, 3, key=KEY, mean=NAN), ValueError, NONFINITE),
    Case(f"{D}.isotropic_gaussian", "n", "10.7", lambda: jf.data.isotropic_gaussian(10.7, 3, key=KEY), ValueError, NOT_INT),
    Case(f"{D}.isotropic_gaussian", "key", "1.5 (a float)", lambda: jf.data.isotropic_gaussian(4, 3, key=1.5), TypeError, NOT_KEY),
    Case(f"{D}.Gaussian", "cov", "NaN entry", lambda: Gaussian(np.zeros(3), _with(COV, (0, 0), NAN)), ValueError, NONFINITE),
    Case(f"{D}.Gaussian", "mean", "inf entry", lambda: Gaussian(_with(np.zeros(3), 2, INF), COV), ValueError, NONFINITE),
    Case(f"{D}.Gaussian", "cov", "-I (not PSD)", lambda: Gaussian(np.zeros(3), -COV), ValueError, r"must be positive semi-definite"),
    Case(f"{D}.Gaussian", "cov", "not symmetric", lambda: Gaussian(np.zeros(3), _with(COV, (0, 1), 0.5)), ValueError, r"must be symmetric"),
    Case(f"{D}.Gaussian", "cov", "shape (2, 2) for d = 3", lambda: Gaussian(np.zeros(3), np.eye(2)), ValueError, r"must have shape \(3, 3\)"),
    Case(f"{D}.Gaussian", "cov", "float32 with float64 mean", lambda: Gaussian(np.zeros(3), np.eye(3, dtype=np.float32)), TypeError, r"must have the same dtype"),
    Case(f"{D}.Gaussian", "mean", "int64", lambda: Gaussian(np.zeros(3, int), np.eye(3, dtype=int)), TypeError, r"must be floating point"),
    Case(f"{D}.Gaussian.isotropic", "d", "2.5", lambda: Gaussian.isotropic(2.5), ValueError, NOT_INT),
    Case(f"{D}.Gaussian.isotropic", "std", "NaN", lambda: Gaussian.isotropic(3, std=NAN), ValueError, NONFINITE),
    Case(f"{D}.Gaussian.sample", "n", "8.5", lambda: _p().sample(8.5, key=KEY), ValueError, NOT_INT),
    Case(f"{D}.Gaussian.sample", "n", "0", lambda: _p().sample(0, key=KEY), ValueError, r"positive int"),
    Case(f"{D}.Gaussian.sample", "key", "0 (an int)", lambda: _p().sample(4, key=0), TypeError, NOT_KEY),
    Case(f"{D}.forward_jump", "x0", "NaN entry", lambda: jf.data.forward_jump(_with(X0, (1, 2), NAN), key=KEY, T=2.0, lam=1.0), ValueError, NONFINITE),
    Case(f"{D}.forward_jump", "x0", "shape (0, 3)", lambda: jf.data.forward_jump(np.zeros((0, 3)), key=KEY, T=2.0, lam=1.0), ValueError, r"is empty"),
    Case(f"{D}.forward_jump", "x0", "shape (3,)", lambda: jf.data.forward_jump(np.zeros(3), key=KEY, T=2.0, lam=1.0), ValueError, r"must have shape \(n, d\)"),
    Case(f"{D}.forward_jump", "x0", "int64", lambda: jf.data.forward_jump(np.zeros((2, 3), int), key=KEY, T=2.0, lam=1.0), TypeError, r"must be floating point"),
    Case(f"{D}.forward_jump", "T", "0", lambda: jf.data.forward_jump(X0, key=KEY, T=0.0, lam=1.0), ValueError, POSITIVE),
    Case(f"{D}.forward_jump", "T", "inf", lambda: jf.data.forward_jump(X0, key=KEY, T=INF, lam=1.0), ValueError, POSITIVE),
    Case(f"{D}.forward_jump", "lam", "NaN", lambda: jf.data.forward_jump(X0, key=KEY, T=2.0, lam=NAN), ValueError, POSITIVE),
    Case(f"{D}.forward_jump", "draws", "2.5", lambda: jf.data.forward_jump(X0, key=KEY, T=2.0, lam=1.0, draws=2.5), ValueError, NOT_INT),
    Case(f"{D}.forward_jump", "key", "0 (an int)", lambda: jf.data.forward_jump(X0, key=0, T=2.0, lam=1.0), TypeError, NOT_KEY),
    Case(f"{D}.forward_ve", "sigmas", "(0.1, 0)", lambda: jf.data.forward_ve(X0, np.array([0.1, 0.0]), key=KEY), ValueError, POSITIVE),
    Case(f"{D}.forward_ve", "sigmas", "(0.1, NaN)", lambda: jf.data.forward_ve(X0, np.array([0.1, NAN]), key=KEY), ValueError, POSITIVE),
    Case(f"{D}.forward_ve", "sigmas", "shape (0,)", lambda: jf.data.forward_ve(X0, np.zeros(0), key=KEY), ValueError, r"levels >= 1"),
    Case(f"{D}.forward_ve", "x0", "inf entry", lambda: jf.data.forward_ve(_with(X0, (0, 0), INF), np.array([0.1]), key=KEY), ValueError, NONFINITE),
    Case(f"{D}.ve_start", "sigma_max", "-1", lambda: jf.data.ve_start(X0, sigma_max=-1.0), ValueError, POSITIVE),
    Case(f"{D}.ve_start", "x0", "one point", lambda: jf.data.ve_start(X0[:1], sigma_max=1.0), ValueError, r"needs at least 2 points"),
    Case(f"{D}.ve_start", "mask", "keeps 1 row", lambda: jf.data.ve_start(X0, sigma_max=1.0, mask=np.arange(6) < 1), ValueError, r"keeps 1 rows .* at least 2"),
    Case(f"{D}.masked_moments", "mask", "0/1 floats", lambda: jf.data.masked_moments(X0, np.ones(6)), TypeError, r"must be booleans"),
    Case(f"{D}.GaussianStarts", "centre", "NaN entry", lambda: GaussianStarts(_with(np.zeros(3), 0, NAN), num_starts=4, key=KEY), ValueError, NONFINITE),
    Case(f"{D}.GaussianStarts", "scale", "inf", lambda: GaussianStarts(np.zeros(3), INF, num_starts=4, key=KEY), ValueError, NONFINITE),
    Case(f"{D}.GaussianStarts", "scale", "-0.3", lambda: GaussianStarts(np.zeros(3), -0.3, num_starts=4, key=KEY), ValueError, r"must be >= 0"),
    Case(f"{D}.GaussianStarts", "num_starts", "10.7", lambda: GaussianStarts(np.zeros(3), num_starts=10.7, key=KEY), ValueError, NOT_INT),
    Case(f"{D}.GaussianStarts", "key", "0 (an int)", lambda: GaussianStarts(np.zeros(3), num_starts=4, key=0), TypeError, NOT_KEY),
    Case(f"{D}.GaussianStarts", "centre", "int64", lambda: GaussianStarts(np.zeros(3, int), num_starts=4, key=KEY), TypeError, r"must be floating point"),
    # --- denoisers --------------------------------------------------------------------
    Case(f"{N}.MinNormOrthogonal", "points", "NaN entry", lambda: jf.MinNormOrthogonal(_with(ORTHO, (0, 0), NAN)), ValueError, NONFINITE),
    Case(f"{N}.MinNormOrthogonal", "points", "shape (0, 3)", lambda: jf.MinNormOrthogonal(np.zeros((0, 3))), ValueError, r"is empty"),
    Case(f"{N}.MinNormOrthogonal", "alpha", "inf", lambda: jf.MinNormOrthogonal(ORTHO, alpha=INF), ValueError, POSITIVE),
    Case(f"{N}.MinNormOrthogonal", "alpha", "0", lambda: jf.MinNormOrthogonal(ORTHO, alpha=0.0), ValueError, POSITIVE),
    Case(f"{N}.MinNormObtuseSimplex", "points", "inf entry", lambda: jf.MinNormObtuseSimplex(_with(SIMPLEX, (1, 0), INF)), ValueError, NONFINITE),
    Case(f"{N}.MinNormObtuseSimplex", "points", "one point", lambda: jf.MinNormObtuseSimplex(SIMPLEX[:1]), ValueError, r"pass the apex and at least one more"),
    Case(f"{N}.EmpiricalOptimal", "points", "NaN entry", lambda: jf.EmpiricalOptimal(_with(X0, (2, 1), NAN)), ValueError, NONFINITE),
    Case(f"{N}.EmpiricalOptimal", "points", "int64", lambda: jf.EmpiricalOptimal(np.zeros((2, 3), int)), TypeError, r"must be floating point"),
    Case(f"{N}.ShallowReLU", "a", "NaN entry", lambda: ShallowReLU(a=_with(np.zeros((2, 3)), (0, 0), NAN), w=np.ones((2, 3)), b=np.zeros(2), v=np.zeros((3, 3)), c=np.zeros(3)), ValueError, NONFINITE),
    Case(f"{N}.ShallowReLU", "b", "shape (3,) for K = 2", lambda: ShallowReLU(a=np.zeros((2, 3)), w=np.ones((2, 3)), b=np.zeros(3), v=np.zeros((3, 3)), c=np.zeros(3)), ValueError, r"must have shape \(2,\)"),
    Case(f"{N}.ShallowReLU.random", "width", "2.5", lambda: ShallowReLU.random(3, 2.5, key=KEY), ValueError, NOT_INT),
    Case(f"{N}.ShallowReLU.random", "key", "0 (an int)", lambda: ShallowReLU.random(3, 4, key=0), TypeError, NOT_KEY),
    Case(f"{N}.AffineDenoiser", "weight", "inf entry", lambda: AffineDenoiser(_with(np.eye(3), (0, 0), INF), np.zeros(3)), ValueError, NONFINITE),
    Case(f"{N}.PiecewiseAffine", "sigmas", "(1, -1)", lambda: PiecewiseAffine(np.array([1.0, -1.0]), np.zeros((2, 3, 3)), np.zeros((2, 3))), ValueError, POSITIVE),
    # --- training ---------------------------------------------------------------------
    Case(f"{T_}.fit_affine", "x0", "NaN entry", lambda: jf.training.fit_affine(_with(X0, (0, 1), NAN), XT), ValueError, NONFINITE),
    Case(f"{T_}.fit_affine", "xt", "inf entry", lambda: jf.training.fit_affine(X0, _with(XT, (0, 0, 0), INF)), ValueError, NONFINITE),
    Case(f"{T_}.fit_affine", "xt", "shape (6, 3)", lambda: jf.training.fit_affine(X0, XT[:, 0]), ValueError, r"must have shape \(n, k, d\)"),
    Case(f"{T_}.fit_affine", "xt", "float32 with float64 x0", lambda: jf.training.fit_affine(X0, XT.astype(np.float32)), TypeError, r"must have the same dtype"),
    Case(f"{T_}.fit_affine", "xt", "k = 0 copies", lambda: jf.training.fit_affine(X0, XT[:, :0]), ValueError, r"is empty"),
    Case(f"{T_}.fit_affine", "mask", "keeps no row", lambda: jf.training.fit_affine(X0, XT, mask=np.zeros(6, bool)), ValueError, r"keeps 0 rows"),
    Case(f"{T_}.fit_affine", "mask", "shape (5,)", lambda: jf.training.fit_affine(X0, XT, mask=np.ones(5, bool)), ValueError, r"must have shape \(6,\)"),
    Case(f"{T_}.wiener_affine", "T", "-1", lambda: jf.training.wiener_affine(X0, T=-1.0, lam=1.0), ValueError, POSITIVE),
    Case(f"{T_}.wiener_affine", "lam", "inf", lambda: jf.training.wiener_affine(X0, T=2.0, lam=INF), ValueError, POSITIVE),
    Case(f"{T_}.wiener_affine", "x0", "inf entry", lambda: jf.training.wiener_affine(_with(X0, (5, 2), INF), T=2.0, lam=1.0), ValueError, NONFINITE),
    Case(f"{T_}.fit_piecewise_affine", "xs", "levels 1 for 2 sigmas", lambda: jf.training.fit_piecewise_affine(X0, XT[None], np.array([1.0, 0.5])), ValueError, r"levels=2"),
    Case(f"{T_}.fit_piecewise_affine", "sigmas", "(1, NaN)", lambda: jf.training.fit_piecewise_affine(X0, np.stack([XT, XT]), np.array([1.0, NAN])), ValueError, POSITIVE),
    Case(f"{T_}.wiener_piecewise_affine", "sigmas", "(1, 0)", lambda: jf.training.wiener_piecewise_affine(X0, np.array([1.0, 0.0])), ValueError, POSITIVE),
    # --- flows ------------------------------------------------------------------------
    Case(f"{F}.probability_flow", "y0", "NaN entry", lambda: _flow(y0=_with(Y0, (2, 0), NAN)), ValueError, NONFINITE),
    Case(f"{F}.probability_flow", "y0", "shape (0, 3)", lambda: _flow(y0=np.zeros((0, 3))), ValueError, r"is empty"),
    Case(f"{F}.probability_flow", "y0", "shape (3,)", lambda: _flow(y0=Y0[0]), ValueError, r"must be a batch of points of shape \(batch, d\)"),
    Case(f"{F}.probability_flow", "y0", "int64", lambda: _flow(y0=np.zeros((2, 3), int)), TypeError, r"must be floating point"),
    Case(f"{F}.probability_flow", "denoiser", "d = 4 for y0 of d = 3", lambda: _flow(denoiser=jf.MinNormOrthogonal(np.eye(4), alpha=1.0)), ValueError, r"`denoiser` fails on one point of `y0`"),
    Case(f"{F}.probability_flow", "denoiser", "returns shape (6,)", lambda: _flow(denoiser=_wrong_shape_denoiser), ValueError, r"`denoiser` must return shape \(3,\)"),
    Case(f"{F}.probability_flow", "denoiser", "float32 for float64 y0", _empirical_flow_mixed_dtype, TypeError, r"`denoiser` holds float32 arrays but `y0` is float64"),
    Case(f"{F}.probability_flow", "denoiser", "not callable", lambda: _flow(denoiser=ORTHO), TypeError, r"must be callable"),
    Case(f"{F}.probability_flow", "sigma_min", "0", lambda: _flow(sigma_min=0.0), ValueError, POSITIVE),
    Case(f"{F}.probability_flow", "sigma_max", "NaN", lambda: _flow(sigma_max=NAN), ValueError, POSITIVE),
    Case(f"{F}.probability_flow", "sigma_max", "below sigma_min", lambda: _flow(sigma_max=0.005), ValueError, r"`sigma_max` must exceed `sigma_min`"),
    Case(f"{F}.probability_flow", "steps", "8.5", lambda: _flow(steps=8.5), ValueError, NOT_INT),
    Case(f"{F}.probability_flow", "steps", "0", lambda: _flow(steps=0), ValueError, r"positive int"),
    Case(f"{F}.probability_flow", "chunk_size", "2.5", lambda: _flow(chunk_size=2.5), ValueError, NOT_INT),
    Case(f"{F}.probability_flow", "chunk_size", "0", lambda: _flow(chunk_size=0), ValueError, r"positive int"),
    Case(f"{F}.probability_flow", "max_steps", "100.0", lambda: _flow(max_steps=100.0), ValueError, NOT_INT),
    Case(f"{F}.probability_flow", "save_sigmas", "(0.5,) above sigma_max", lambda: _flow(save_sigmas=np.array([0.5])), ValueError, r"must lie inside the interval"),
    Case(f"{F}.probability_flow", "save_sigmas", "increasing", lambda: _flow(save_sigmas=np.array([0.05, 0.1])), ValueError, r"must run strictly from sigma_max down"),
    Case(f"{F}.probability_flow", "solver", '"rk4"', lambda: _flow(solver="rk4"), ValueError, r"Unknown `solver` 'rk4'"),
    Case(f"{F}.probability_flow", "schedule", '"linear"', lambda: _flow(schedule="linear"), ValueError, r"Unknown `schedule` 'linear'"),
    Case(f"{F}.probability_flow", "stepsize_controller", '"pid"', lambda: _flow(stepsize_controller="pid"), TypeError, r"must be a `diffrax.AbstractStepSizeController`"),
    Case(f"{F}.score_flow", "sigma", "0", lambda: _score(sigma=0.0), ValueError, POSITIVE),
    Case(f"{F}.score_flow", "t1", "-1", lambda: _score(t1=-1.0), ValueError, POSITIVE),
    Case(f"{F}.score_flow", "t1", "inf", lambda: _score(t1=INF), ValueError, POSITIVE),
    Case(f"{F}.score_flow", "steps", "2.5", lambda: _score(steps=2.5), ValueError, NOT_INT),
    Case(f"{F}.score_flow", "save_ts", "(2.0,) after t1 = 1", lambda: _score(save_ts=np.array([2.0])), ValueError, r"must lie inside the interval"),
    Case(f"{F}.score_flow", "y0", "inf entry", lambda: _score(y0=_with(Y0, (0, 0), INF)), ValueError, NONFINITE),
    Case(f"{F}.gaussian_probability_flow", "start", "an array", lambda: _gflow(start=np.zeros(3)), ValueError, r"must be a `jaxflow.data.Gaussian`"),
    Case(f"{F}.gaussian_probability_flow", "denoiser", "d = 4 for a start of d = 3", lambda: _gflow(denoiser=_affine(4)), ValueError, r"`denoiser` has dimension 4 but `start` has dimension 3"),
    Case(f"{F}.gaussian_probability_flow", "denoiser", "float32 for a float64 start", lambda: _gflow(denoiser=_affine(3, np.float32)), TypeError, r"`start` \(float64\) and `denoiser` \(float32\)"),
    Case(f"{F}.gaussian_probability_flow", "steps", "8.5", lambda: _gflow(steps=8.5), ValueError, NOT_INT),
    Case(f"{F}.gaussian_probability_flow", "sigma_min", "-0.1", lambda: _gflow(sigma_min=-0.1), ValueError, POSITIVE),
    Case(f"{F}.gaussian_probability_flow", "solver", "diffrax.Tsit5()", lambda: _gflow(solver=dfx.Tsit5()), ValueError, r"`solver` must be 'euler' or 'heun'"),
    Case(f"{F}.exact_probability_flow", "sigma_max", "above max_sigma", lambda: jf.flows.exact_probability_flow(_denoiser(), Y0, sigma_max=0.6, sigma_min=0.01), ValueError, r"must be below the closed form's `max_sigma`"),
    Case(f"{F}.exact_probability_flow", "sigma_min", "0", lambda: jf.flows.exact_probability_flow(_denoiser(), Y0, sigma_max=0.2, sigma_min=0.0), ValueError, POSITIVE),
    Case(f"{F}.exact_probability_flow", "y0", "NaN entry", lambda: jf.flows.exact_probability_flow(_denoiser(), _with(Y0, (1, 1), NAN), sigma_max=0.2, sigma_min=0.01), ValueError, NONFINITE),
    Case(f"{F}.score_flow_limit", "y0", "float32 for a float64 denoiser", lambda: jf.flows.score_flow_limit(_denoiser(), Y0.astype(np.float32)), TypeError, r"`denoiser` \(float64\) and `y0` \(float32\)"),
    Case(f"{F}.one_step_gaussian", "T", "0", lambda: _one_step(T=0.0), ValueError, POSITIVE),
    Case(f"{F}.one_step_gaussian", "lam", "-1", lambda: _one_step(lam=-1.0), ValueError, POSITIVE),
    Case(f"{F}.one_step_gaussian", "T", "NaN", lambda: _one_step(T=NAN), ValueError, POSITIVE),
    Case(f"{F}.one_step_gaussian", "denoiser", "d = 4 for x0 of d = 3", lambda: _one_step(denoiser=_affine(4)), ValueError, r"`denoiser` has dimension 4 but `x0` has dimension 3"),
    Case(f"{F}.one_step_gaussian", "denoiser", "a MinNormOrthogonal", lambda: _one_step(denoiser=_denoiser()), TypeError, r"must be a `jaxflow.denoisers.AffineDenoiser`"),
    Case(f"{F}.one_step_gaussian", "x0", "NaN entry", lambda: _one_step(x0=_with(X0, (3, 0), NAN)), ValueError, NONFINITE),
    Case(f"{F}.one_step_gaussian", "convention", '"transpose"', lambda: _one_step(convention="transpose"), ValueError, r"must be one of 'consistent', 'reference'"),
    Case(f"{F}.map_chunks", "chunk_size", "2.5", lambda: jf.flows.map_chunks(lambda y: y, Y0, 2.5), ValueError, NOT_INT),
    # --- estimators -------------------------------------------------------------------
    Case(f"{E}.classify_endpoints", "tol", "-0.1", lambda: jf.estimators.classify_endpoints(Y0, ORTHO, -0.1), ValueError, POSITIVE),
    Case(f"{E}.classify_endpoints", "tol", "inf", lambda: jf.estimators.classify_endpoints(Y0, ORTHO, INF), ValueError, POSITIVE),
    Case(f"{E}.classify_endpoints", "points", "NaN entry", lambda: jf.estimators.classify_endpoints(Y0, _with(ORTHO, (0, 0), NAN)), ValueError, NONFINITE),
    Case(f"{E}.classify_endpoints", "endpoints", "shape (0, 3)", lambda: jf.estimators.classify_endpoints(np.zeros((0, 3)), ORTHO), ValueError, r"is empty"),
    Case(f"{E}.classify_endpoints", "endpoints", "d = 2 for points of d = 3", lambda: jf.estimators.classify_endpoints(np.zeros((4, 2)), ORTHO), ValueError, r"must have shape \(batch, d\) with d = 3"),
    Case(f"{E}.classify_endpoints", "simplex", "True for a Dataset that is not", lambda: jf.estimators.classify_endpoints(Y0, jf.data.orthogonal(3, 3), simplex=True), ValueError, r"`simplex=True` contradicts"),
    Case(f"{E}.hyperbox_coordinates", "points", "inf entry", lambda: jf.estimators.hyperbox_coordinates(Y0, _with(ORTHO, (2, 2), INF)), ValueError, NONFINITE),
    Case(f"{E}.wilson_interval", "successes", "11 of 10", lambda: jf.estimators.wilson_interval(np.array([11]), 10), ValueError, r"`successes` must lie between 0 and `trials`"),
    Case(f"{E}.wilson_interval", "successes", "-1", lambda: jf.estimators.wilson_interval(np.array([-1]), 10), ValueError, r"`successes` must lie between 0 and `trials`"),
    Case(f"{E}.wilson_interval", "successes", "0.5 (a float)", lambda: jf.estimators.wilson_interval(np.array([0.5]), 10), TypeError, r"must be integers"),
    Case(f"{E}.wilson_interval", "confidence", "1.0", lambda: jf.estimators.wilson_interval(np.array([3]), 10, 1.0), ValueError, r"strictly between 0 and 1"),
    Case(f"{E}.wilson_interval", "confidence", '"95%"', lambda: jf.estimators.wilson_interval(np.array([3]), 10, "95%"), TypeError, r"must be a number between 0 and 1"),
    Case(f"{E}.class_fractions", "classes", "label 7", lambda: jf.estimators.class_fractions(np.array([0, 7])), ValueError, r"must be values of `EndpointClass`"),
    Case(f"{E}.class_fractions", "classes", "no labels", lambda: jf.estimators.class_fractions(np.zeros(0, int)), ValueError, r"is empty"),
    Case(f"{E}.kl_divergence", "q", "an array", lambda: jf.estimators.kl_divergence(np.zeros(3), _p()), TypeError, r"`q` and `p` must be `jaxflow.data.Gaussian`s"),
    Case(f"{E}.kl_divergence", "p", "d = 4 for q of d = 3", lambda: jf.estimators.kl_divergence(_q(), Gaussian.isotropic(4)), ValueError, r"`q` and `p` must have the same dimension"),
    Case(f"{E}.kl_divergence", "rtol", "-1e-9", lambda: jf.estimators.kl_divergence(_q(), _p(), rtol=-1e-9), ValueError, r"`rtol` must be finite and >= 0"),
    Case(f"{E}.kl_divergence", "rtol", "NaN", lambda: jf.estimators.kl_divergence(_q(), _p(), rtol=NAN), ValueError, r"`rtol` must be finite and >= 0"),
    Case(f"{E}.kl_divergence", "p", "float32 for float64 q", lambda: jf.estimators.kl_divergence(_q(), Gaussian.isotropic(3, dtype=jnp.float32)), TypeError, r"`q` \(float64\) and `p` \(float32\)"),
    Case(f"{E}.kl_divergence", "q.cov", "NaN (set by eqx.tree_at)", lambda: jf.estimators.kl_divergence(_nan_tree_gaussian(), _p()), ValueError, NONFINITE),
    Case(f"{E}.hellinger_squared", "rtol", "-1", lambda: jf.estimators.hellinger_squared(_q(), _p(), rtol=-1.0), ValueError, r"`rtol` must be finite and >= 0"),
    Case(f"{E}.hellinger_squared", "q.mean", "inf (set by eqx.tree_at)", lambda: jf.estimators.hellinger_squared(_inf_mean_gaussian(), _p()), ValueError, NONFINITE),
    Case(f"{E}.kl_infinite_data", "T", "0", lambda: jf.estimators.kl_infinite_data(3, T=0.0, lam=1.0), ValueError, POSITIVE),
    Case(f"{E}.kl_infinite_data", "s", "-1", lambda: jf.estimators.kl_infinite_data(3, T=2.0, lam=1.0, s=-1.0), ValueError, POSITIVE),
    Case(f"{E}.kl_infinite_data", "d", "2.5", lambda: jf.estimators.kl_infinite_data(2.5, T=2.0, lam=1.0), ValueError, NOT_INT),
    Case(f"{E}.KernelMixture", "points", "NaN entry", lambda: KernelMixture(_with(X0, (0, 0), NAN)), ValueError, NONFINITE),
    Case(f"{E}.KernelMixture", "s", "0", lambda: KernelMixture(X0, s=0.0), ValueError, POSITIVE),
    Case(f"{E}.KernelMixture", "bandwidth", "inf", lambda: KernelMixture(X0, bandwidth=INF), ValueError, POSITIVE),
    Case(f"{E}.KernelMixture", "points", "shape (0, 3)", lambda: KernelMixture(np.zeros((0, 3))), ValueError, r"is empty"),
    Case(f"{E}.KernelMixture", "mask", "shape (5,)", lambda: KernelMixture(X0, mask=np.ones(5, bool)), ValueError, r"must have shape \(6,\)"),
    Case(f"{E}.KernelMixture", "mask", "0/1 floats", lambda: KernelMixture(X0, mask=np.ones(6)), TypeError, r"must be booleans"),
    Case(f"{E}.KernelMixture", "mask", "keeps no row", lambda: KernelMixture(X0, mask=np.zeros(6, bool)), ValueError, r"keeps 0 rows"),
    Case(f"{E}.l2_distance", "r", "an array", lambda: jf.estimators.l2_distance(_q(), X0), TypeError, r"`r` must be a `KernelMixture` or a `jaxflow.data.Gaussian`"),
    Case(f"{E}.l2_distance", "rtol", "-1", lambda: jf.estimators.l2_distance(_q(), _p(), rtol=-1.0), ValueError, r"`rtol` must be finite and >= 0"),
    Case(f"{E}.relative_distance", "train", "a Gaussian", lambda: _relative(train=_p()), TypeError, r"`train` must be a `KernelMixture`"),
    Case(f"{E}.relative_distance", "reference", "d = 4 for q of d = 3", lambda: _relative(reference=KernelMixture(np.zeros((5, 4)))), ValueError, r"`reference` has dimension 4 but `q` has dimension 3"),
    Case(f"{E}.relative_distance", "arithmetic", '"float16"', lambda: _relative(arithmetic="float16"), ValueError, r"must be one of 'exact', 'reference'"),
    Case(f"{E}.relative_distance", "block_size", "0", lambda: _relative(block_size=0), ValueError, r"positive int"),
    Case(f"{E}.relative_distance", "block_size", "64.5", lambda: _relative(block_size=64.5), ValueError, NOT_INT),
    Case(f"{E}.relative_distance", "gram_dtype", "int32", lambda: _relative(gram_dtype=jnp.int32), TypeError, r"must be a floating dtype or None"),
    Case(f"{E}.one_step_distances", "s", "0", lambda: _distances(s=0.0), ValueError, POSITIVE),
    Case(f"{E}.one_step_distances", "x0s[0]", "NaN entry", lambda: _distances(x0s=[_with(X0, (0, 0), NAN)]), ValueError, NONFINITE),
    Case(f"{E}.one_step_distances", "reference", "d = 2 for p of d = 3", lambda: _distances(reference=np.zeros((5, 2))), ValueError, r"`reference` has dimension 2"),
    Case(f"{E}.one_step_distances", "x0s", "2 sets for 1 row of qs", lambda: _distances(x0s=[X0, X0]), ValueError, r"`x0s` must hold one training set per row"),
    Case(f"{E}.one_step_distances", "masks", "2 masks for 1 group", lambda: _distances(x0s=[X0[None]], masks=[np.ones((1, 6), bool)] * 2), ValueError, r"`masks` must hold one mask array per group"),
    Case(f"{E}.one_step_distances", "masks[0]", "shape (1, 5) for (1, 6, 3)", lambda: _distances(x0s=[X0[None]], masks=[np.ones((1, 5), bool)]), ValueError, r"`masks\[0\]` must be booleans of shape \(rows, n\)"),
    Case(f"{E}.one_step_distances", "masks[0]", "keeps 1 row", lambda: _distances(x0s=[X0[None]], masks=[np.arange(6)[None] < 1]), ValueError, r"keeps 1 rows .* at least 2"),
    Case(f"{E}.one_step_distances", "reference_pairs", "PairSums with reference=None", lambda: _distances(reference_pairs=_no_squares()), ValueError, r"`reference_pairs` must be the `PairSums` of the reference sample"),
    Case(f"{E}.one_step_distances", "reference_pairs", "an array", lambda: _distances(reference=X0 + 1.0, reference_pairs=jnp.zeros(())), ValueError, r"`reference_pairs` must be the `PairSums` of the reference sample"),
    Case(f"{E}.one_step_distances", "reference_pairs", 'no squares, arithmetic="reference"', lambda: _distances(reference=X0 + 1.0, arithmetic="reference", reference_pairs=_no_squares()), ValueError, r"lacks the reference arithmetic's squares"),
    Case(f"{E}.one_step_distances", "p", "cov diag(1, 1, 2)", lambda: _distances(p=_skewed()), ValueError, r"must be isotropic"),
    Case(f"{E}.pair_sums", "mix", "an array", lambda: jf.estimators.pair_sums(X0), TypeError, r"`mix` must be a `KernelMixture`"),
    Case(f"{E}.pair_sums", "gram_dtype", "int32", lambda: jf.estimators.pair_sums(KernelMixture(X0), gram_dtype=jnp.int32), TypeError, r"must be a floating dtype or None"),
    Case(f"{E}.pair_sums", "block_size", "0", lambda: jf.estimators.pair_sums(KernelMixture(X0), block_size=0), ValueError, r"positive int"),
    Case(f"{E}.pair_sums", "block_size", "64.5", lambda: jf.estimators.pair_sums(KernelMixture(X0), block_size=64.5), ValueError, NOT_INT),
    Case(f"{E}.isotropic_divergences", "q", "an array", lambda: jf.estimators.isotropic_divergences(np.zeros(3), _p()), TypeError, r"`q` and `p` must be `jaxflow.data.Gaussian`s"),
    Case(f"{E}.isotropic_divergences", "p", "d = 4 for q of d = 3", lambda: jf.estimators.isotropic_divergences(_q(), Gaussian.isotropic(4)), ValueError, r"`q` and `p` must have the same dimension"),
    Case(f"{E}.isotropic_divergences", "p", "cov diag(1, 1, 2)", lambda: jf.estimators.isotropic_divergences(_q(), _skewed()), ValueError, r"must be isotropic"),
    Case(f"{E}.virtual_point_stability", "sizes", "(2.5,)", lambda: _stability(sizes=(2.5,)), ValueError, NOT_INT),
    Case(f"{E}.virtual_point_stability", "sizes", "(5,) for 3 edges", lambda: _stability(sizes=(5,)), ValueError, r"each in \[0, 3\]"),
    Case(f"{E}.virtual_point_stability", "sizes", "2 (not a sequence)", lambda: _stability(sizes=2), TypeError, r"must be a sequence of ints"),
    Case(f"{E}.virtual_point_stability", "iterations", "10.5", lambda: _stability(iterations=10.5), ValueError, NOT_INT),
    Case(f"{E}.virtual_point_stability", "tol", "0", lambda: _stability(tol=0.0), ValueError, POSITIVE),
    Case(f"{E}.virtual_point_stability", "chunk_size", "2.5", lambda: _stability(chunk_size=2.5), ValueError, NOT_INT),
    Case(f"{E}.virtual_point_stability", "sigma", "NaN", lambda: _stability(sigma=NAN), ValueError, NONFINITE),
    Case(f"{E}.virtual_point_stability", "key", "0 (an int)", lambda: _stability(max_subsets=1, key=0), TypeError, NOT_KEY),
    Case(f"{E}.virtual_point_stability", "max_subsets", "2 without a key", lambda: _stability(max_subsets=2), ValueError, r"pass a PRNG `key`"),
    Case(f"{E}.transition_probability", "positive", "no repetitions", lambda: jf.estimators.transition_probability(np.zeros((0, 2), bool)), ValueError, r"has no repetitions"),
    Case(f"{E}.transition_probability", "certain", "shape (3, 1) for (3, 2)", lambda: jf.estimators.transition_probability(np.zeros((3, 2), bool), certain=np.ones((3, 1), bool)), ValueError, r"must be booleans of the shape of `positive`"),
    Case(f"{E}.transition_probability", "positive", "floats", lambda: jf.estimators.transition_probability(np.zeros((3, 2))), TypeError, r"must be booleans"),
    Case(f"{E}.transition_point", "ns", "(4.5, 8)", lambda: _transition(ns=(4.5, 8)), ValueError, r"`ns` must be integer sizes"),
    Case(f"{E}.transition_point", "ns", "(8, 4)", lambda: _transition(ns=(8, 4)), ValueError, r"`ns` must be positive and increasing"),
    Case(f"{E}.transition_point", "key", "0 (an int)", lambda: _transition(key=0), TypeError, NOT_KEY),
    Case(f"{E}.transition_point", "resamples", "100.5", lambda: _transition(resamples=100.5), ValueError, NOT_INT),
    Case(f"{E}.transition_point", "level", "1.5", lambda: _transition(level=1.5), ValueError, r"strictly between 0 and 1"),
    Case(f"{E}.transition_point", "positive", "shape (2, 3) for 2 sizes", lambda: _transition(positive=np.zeros((2, 3), bool)), ValueError, r"must have shape \(repetitions, 2\)"),
    # --- studies ----------------------------------------------------------------------
    Case(f"{S}.relative_distance_sweep", "ns", "(4.5, 8)", lambda: _sweep(ns=(4.5, 8)), ValueError, NOT_INT),
    Case(f"{S}.relative_distance_sweep", "ns", "(8, 4)", lambda: _sweep(ns=(8, 4)), ValueError, r"must be increasing training-set sizes"),
    Case(f"{S}.relative_distance_sweep", "ns", "(1, 4)", lambda: _sweep(ns=(1, 4)), ValueError, r"must be an int >= 2"),
    Case(f"{S}.relative_distance_sweep", "d", "2.5", lambda: _sweep(d=2.5), ValueError, NOT_INT),
    Case(f"{S}.relative_distance_sweep", "repetitions", "0", lambda: _sweep(repetitions=0), ValueError, r"positive int"),
    Case(f"{S}.relative_distance_sweep", "reference_size", "1", lambda: _sweep(reference_size=1), ValueError, r"must be an int >= 2"),
    Case(f"{S}.relative_distance_sweep", "m", "NaN", lambda: _sweep(m=NAN), ValueError, NONFINITE),
    Case(f"{S}.relative_distance_sweep", "s", "0", lambda: _sweep(s=0.0), ValueError, POSITIVE),
    Case(f"{S}.relative_distance_sweep", "T", "-2", lambda: _sweep(T=-2.0), ValueError, POSITIVE),
    Case(f"{S}.relative_distance_sweep", "bandwidth", "inf", lambda: _sweep(bandwidth=INF), ValueError, POSITIVE),
    Case(f"{S}.relative_distance_sweep", "key", "0 (an int)", lambda: _sweep(key=0), TypeError, NOT_KEY),
    Case(f"{S}.relative_distance_sweep", "chunk_size", "2.5", lambda: _sweep(chunk_size=2.5), ValueError, NOT_INT),
    Case(f"{S}.relative_distance_sweep", "block_size", "0", lambda: _sweep(block_size=0), ValueError, r"positive int"),
    Case(f"{S}.relative_distance_sweep", "conventions", '("transpose",)', lambda: _sweep(conventions=("transpose",)), ValueError, r"`conventions` must be a non-empty tuple"),
    Case(f"{S}.relative_distance_sweep", "gram_dtype", '"int8"', lambda: _sweep(gram_dtype="int8"), TypeError, r"must be a floating dtype or None"),
    Case(f"{S}.relative_distance_sweep", "arithmetic", "()", lambda: _sweep(arithmetic=()), ValueError, r"must be one of .* or a tuple of distinct ones"),
    Case(f"{S}.relative_distance_sweep", "arithmetic", '("exact", "exact")', lambda: _sweep(arithmetic=("exact", "exact")), ValueError, r"must be one of .* or a tuple of distinct ones"),
    Case(f"{S}.relative_distance_sweep", "arithmetic", '("exact", "x")', lambda: _sweep(arithmetic=("exact", "x")), ValueError, r"must be one of .* or a tuple of distinct ones"),
    Case(f"{S}.relative_distance_sweep", "arithmetic", '{"exact"} (a set)', lambda: _sweep(arithmetic={"exact"}), ValueError, r"must be one of .* or a tuple of distinct ones"),
    Case(f"{S}.sweep_inputs", "n", "4.5", lambda: _inputs(n=4.5), ValueError, NOT_INT),
    Case(f"{S}.sweep_inputs", "repetition", "-1", lambda: _inputs(repetition=-1), ValueError, r"must be an int >= 0"),
    Case(f"{S}.sweep_inputs", "lam", "0", lambda: _inputs(lam=0.0), ValueError, POSITIVE),
    Case(f"{S}.sweep_inputs", "key", "None", lambda: _inputs(key=None), TypeError, NOT_KEY),
    Case(f"{S}.relative_distance_arrays", "x0", "NaN entry", lambda: _arrays(x0=_with(X0[None], (0, 0, 0), NAN)), ValueError, NONFINITE),
    Case(f"{S}.relative_distance_arrays", "xt", "float32 with float64 x0", lambda: _arrays(xt=XT[None].astype(np.float32)), TypeError, r"must have the same dtype"),
    Case(f"{S}.relative_distance_arrays", "reference", "inf entry", lambda: _arrays(reference=_with(X0[None], (0, 1, 1), INF)), ValueError, NONFINITE),
    Case(f"{S}.relative_distance_arrays", "xt", "shape (1, 6, 3)", lambda: _arrays(xt=XT[None, :, 0]), ValueError, r"`xt` must have shape \(1, 6, draws, 3\)"),
]  # fmt: skip


def _nan_tree_gaussian():
    # A Gaussian changed by a tree map skips its `__check_init__`: the estimators check it.
    q = _q()
    return eqx.tree_at(lambda g: g.cov, q, q.cov.at[0, 0].set(jnp.nan))


def _inf_mean_gaussian():
    q = _q()
    return eqx.tree_at(lambda g: g.mean, q, q.mean.at[0].set(jnp.inf))


def _id(case: Case) -> str:
    return f"{case.function.split('.')[-1]}-{case.argument}-{case.bad}"


@pytest.mark.parametrize("case", CASES, ids=[_id(c) for c in CASES])
def test_bad_input_is_refused_by_name_in_one_line(case):
    with without_runtime_typechecks():
        with pytest.raises(case.error, match=case.match) as refused:
            case.call()
    message = str(refused.value)
    # Named in backticks: `x0`, `x0[0]`, `q.cov` or `simplex=True`.
    assert re.search(f"`{re.escape(case.argument)}[`=]", message), message
    assert "\n" not in message.strip(), message


def test_catalogue_is_large_and_has_no_duplicates():
    assert len(CASES) >= 100
    keys = [(c.function, c.argument, c.bad) for c in CASES]
    assert len(keys) == len(set(keys))


# ---------------------------------------------------------------------------------------
# The table in docs/bad-inputs.md.
# ---------------------------------------------------------------------------------------


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def table() -> str:
    """The catalogue as a Markdown table, one row per case, in the order of `CASES`."""
    rows = [
        "| function | argument | bad value | refused with | message (key words) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for c in CASES:
        words = re.sub(r"\\(.)", r"\1", c.match)
        rows.append(
            f"| `{c.function}` | `{c.argument}` | {_cell(c.bad)} | `{c.error.__name__}` | "
            f"{_cell(words)} |"
        )
    return "\n".join(rows)


def _documented() -> str:
    text = DOC.read_text()
    return text[text.index(BEGIN) + len(BEGIN) : text.index(END)].strip()


def test_docs_table_lists_exactly_the_cases_tested():
    assert _documented() == table(), (
        "docs/bad-inputs.md is out of date: run `python tests/test_bad_inputs.py`."
    )


def test_no_pytest_raises_without_match():
    """Every `pytest.raises` in the tests says which message it expects."""
    import ast

    bare = []
    for path in sorted(Path(__file__).resolve().parent.glob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and getattr(node.func, "attr", None) == "raises"
                and getattr(node.func.value, "id", None) == "pytest"
                and not any(k.arg == "match" for k in node.keywords)
            ):
                bare.append(f"{path.name}:{node.lineno}")
    assert not bare, bare


if __name__ == "__main__":
    text = DOC.read_text()
    head, tail = text[: text.index(BEGIN) + len(BEGIN)], text[text.index(END) :]
    DOC.write_text(f"{head}\n{table()}\n{tail}")
    print(f"{len(CASES)} cases written to {DOC}", file=sys.stderr)
