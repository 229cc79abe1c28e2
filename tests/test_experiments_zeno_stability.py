"""orthogonal-stability and obtuse-simplex-stability ([Z], Section 6): the claims their
rows carry, the exact fixed-point thresholds of the closed form against the denoiser
itself, and the cells a changed tolerance, confidence or sweep reuses."""

import dataclasses
import math

import jax.numpy as jnp
import numpy as np
import pytest
from helpers import tables_equal
from jaxflow.experiments import run
from jaxflow.experiments._runner import compute_cells
from jaxflow.experiments.zeno import ObtuseSimplexStability, OrthogonalStability
from jaxflow.experiments.zeno._stability import fixed_point_thresholds


def test_orthogonal_stability_separates_the_denoisers(tmp_path):
    preset = OrthogonalStability().quick()
    result = run(preset, tmp_path, progress=False)
    rows = {(r["denoiser"], r["size"]): r for r in result.table.to_pylist()}
    assert len(rows) == 2 * len(preset.sizes)
    for k in preset.sizes:
        # The closed form makes every subset sum stable: each is an exact fixed point
        # from sigma* = 0 on...
        closed = rows["min-norm", k]
        assert closed["fraction"] == 1.0 == closed["fixed_fraction"]
        assert closed["max_drift"] == 0.0
        assert closed["threshold_min"] == 0.0 == closed["threshold_max"]
        # ...while the empirical optimal denoiser pulls a sum of k points to their centroid
        # (drift 1 - 1/k); the centroid is an unstable fixed point of that denoiser, so a
        # rounding error can carry the iteration on to one training point (drift 1).
        empirical = rows["empirical", k]
        assert empirical["fraction"] == 0.0
        assert 1 - 1 / k - 1e-6 <= empirical["median_drift"] <= 1 + 1e-6
        assert empirical["fixed_fraction"] is None and empirical["threshold_min"] is None
    assert (tmp_path / "stability.png").stat().st_size > 10_000


def _edge_cosine(beta: float, n: int) -> float:
    # v_k = q_k - (beta / n) sum_j q_j: |v|^2 = 1 + (beta^2 - 2 beta) / n and
    # v_i . v_j = (beta^2 - 2 beta) / n.
    off = (beta**2 - 2 * beta) / n
    return off / (1 + off)


def test_obtuse_simplex_stability_falls_with_subset_size(tmp_path):
    preset = ObtuseSimplexStability().quick()
    result = run(preset, tmp_path, progress=False)
    rows = {(r["sigma"], r["size"]): r for r in result.table.to_pylist()}
    alpha = math.sqrt(preset.d)
    cosine = _edge_cosine(preset.beta, preset.n)
    for sigma in preset.sigma:
        fractions = [rows[sigma, k]["fraction"] for k in preset.sizes]
        # Only some subset sums stay stable; larger ones go first.
        assert fractions == sorted(fractions, reverse=True)
        for k in preset.sizes:
            r = rows[sigma, k]
            # Over 100 iterations a subset sum stays within tol exactly when it is a fixed
            # point of the closed form: the others escape along an unstable ramp.
            assert r["fraction"] == r["fixed_fraction"]
            # Equal edges: every k-sum becomes fixed at sigma*_k = (k - 1) L |c| / alpha.
            threshold = (k - 1) * abs(cosine) / alpha
            assert r["threshold_min"] == pytest.approx(threshold, rel=1e-12)
            assert r["threshold_max"] == pytest.approx(threshold, rel=1e-12)
            assert r["fraction"] == (1.0 if sigma >= threshold else 0.0)
    assert rows[min(preset.sigma), max(preset.sizes)]["fraction"] == 0.0
    assert all(rows[max(preset.sigma), k]["fraction"] == 1.0 for k in preset.sizes)
    for k in preset.sizes:
        assert result.arrays[f"threshold_{k}"].shape == (preset.max_subsets,)


def test_thresholds_are_where_a_subset_sum_becomes_a_fixed_point():
    # Unequal edges: sigma*(S) differs from subset to subset. Just above it the closed
    # form fixes the subset sum, just below it moves it.
    n = 6
    lengths = np.linspace(0.8, 1.3, n)
    preset = ObtuseSimplexStability(
        d=n, n=n, lengths=tuple(lengths), beta=0.3, sizes=(1, 2, 3), sigma=(0.01,)
    )
    data, denoiser = preset.prepare(progress=False)
    points = np.asarray(data.points)
    edges = points[1:] - points[0]
    subsets = [[0], [0, 1], [2, 5], [1, 3, 4]]
    thresholds = np.array(
        [fixed_point_thresholds(edges, np.array([s]), math.sqrt(n))[0] for s in subsets]
    )
    assert thresholds[0] == 0.0  # one edge alone is always fixed
    assert np.all(thresholds[1:] > 0)
    assert np.all(thresholds < float(denoiser.max_sigma))
    for subset, threshold in zip(subsets[1:], thresholds[1:]):
        v = jnp.asarray(points[0] + edges[subset].sum(axis=0))
        above = denoiser(v, jnp.asarray(threshold * (1 + 1e-6)))
        below = denoiser(v, jnp.asarray(threshold * (1 - 1e-6)))
        assert float(jnp.max(jnp.abs(above - v))) < 1e-12
        assert float(jnp.max(jnp.abs(below - v))) > 1e-9


def test_unequal_edges_are_stable_exactly_above_their_thresholds(tmp_path):
    n = 10
    preset = ObtuseSimplexStability(
        d=n,
        n=n,
        lengths=tuple(np.linspace(0.8, 1.2, n)),
        beta=0.8,
        sizes=(1, 2, 3),
        sigma=(0.02, 0.03, 0.045, 0.06),
        max_subsets=60,
    )
    result = run(preset, tmp_path, progress=False)
    for r in result.table.to_pylist():
        thresholds = result.arrays[f"threshold_{r['size']}"]
        assert r["fraction"] == r["fixed_fraction"] == np.mean(thresholds <= r["sigma"])
        assert r["threshold_min"] == thresholds.min() and r["threshold_max"] == thresholds.max()


def test_tolerance_confidence_and_denoisers_reuse_the_cells(tmp_path, monkeypatch):
    small = OrthogonalStability(d=12, n=12, max_subsets=40)
    compute_cells(small, tmp_path / "a", progress=False)
    changed = dataclasses.replace(small, denoisers=("empirical",), tol=0.6, confidence=0.8)
    fresh = run(changed, tmp_path / "fresh", progress=False)

    def no_compute(self, cell, context):
        raise AssertionError(f"cell {cell} computed again")

    monkeypatch.setattr(OrthogonalStability, "compute", no_compute)
    reused = run(changed, tmp_path / "a", progress=False)
    assert reused.resumed == ("empirical",)
    assert tables_equal(reused.table, fresh.table)
    # The tolerance enters the table: the centroid of a pair is 0.5 away, within 0.6.
    rows = {r["size"]: r for r in reused.table.to_pylist()}
    assert rows[2]["fraction"] == 1.0 and rows[3]["fraction"] == 0.0
    assert rows[2]["tol"] == 0.6 and rows[2]["confidence"] == 0.8


def test_a_longer_sigma_sweep_reuses_the_finished_noise_levels(tmp_path):
    small = ObtuseSimplexStability(d=12, n=12, sigma=(0.005, 0.02), max_subsets=40)
    compute_cells(small, tmp_path / "a", progress=False)
    longer = dataclasses.replace(small, sigma=(0.005, 0.01, 0.02), confidence=0.9)
    reused = run(longer, tmp_path / "a", progress=False)
    assert reused.resumed == ("sigma-0.005", "sigma-0.02")
    fresh = run(longer, tmp_path / "fresh", progress=False)
    assert tables_equal(reused.table, fresh.table)
    assert fresh.resumed == ()
