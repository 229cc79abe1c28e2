"""zeno-training-copies and zeno-training-ablation ([Z], Sections 2 and 6): the claims
their quick tables carry (weight decay against the augmented Lagrangian, monotonically in
lambda; offline networks no dearer than the cheaper interpolant without the origin), the
references they compare with, checked here against the copies, the nested copies, and
the cells a changed list of variants reuses."""

import dataclasses
import math

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from jaxflow.denoisers import MinNormOrthogonal
from jaxflow.experiments import run
from jaxflow.experiments._runner import compute_cells
from jaxflow.experiments.zeno import ZenoTrainingAblation, ZenoTrainingCopies
from jaxflow.experiments.zeno._trained import CheaperInterpolant
from jaxflow.experiments.zeno._variants import nested_copies, variant_inputs
from jaxflow.training import train_min_norm


@pytest.fixture(scope="module")
def copies_run(tmp_path_factory):
    preset = ZenoTrainingCopies().quick()
    return preset, run(preset, tmp_path_factory.mktemp("copies"), progress=False)


@pytest.fixture(scope="module")
def ablation_run(tmp_path_factory):
    preset = ZenoTrainingAblation().quick()
    return preset, run(preset, tmp_path_factory.mktemp("ablation"), progress=False)


def _no_compute(self, cell, context):
    raise AssertionError(f"cell {cell} computed again")


def test_weight_decay_lowers_the_cost_and_raises_the_residual_monotonically(ablation_run):
    preset, result = ablation_run
    rows = result.table.to_pylist()
    assert len(rows) == len(preset.cells()) * len(preset.sigmas)
    for sigma in preset.sigmas:
        at = [r for r in rows if r["sigma"] == sigma]
        (al,) = [r for r in at if r["method"] == "augmented_lagrangian" and r["dropout"] == 0]
        decay = sorted(
            (r for r in at if r["method"] == "weight_decay"), key=lambda r: r["weight_decay"]
        )
        assert [r["weight_decay"] for r in decay] == sorted(preset.weight_decays)
        # The augmented Lagrangian interpolates; weight decay trades residual for cost.
        assert al["residual_train"] < 1e-2 * preset.length
        # The two terms weight decay trades, monotone at its optima: cost down, mean
        # squared residual up, the augmented Lagrangian at the interpolating end.
        costs = [al["cost"]] + [r["cost"] for r in decay]
        mse = [al["mse_train"]] + [r["mse_train"] for r in decay]
        assert all(b < a for a, b in zip(costs, costs[1:])), costs
        assert all(b > a for a, b in zip(mse, mse[1:])), mse
        assert all(r["residual_train"] > al["residual_train"] for r in decay)
        (dropped,) = [r for r in at if r["dropout"] > 0]
        assert dropped["method"] == "augmented_lagrangian" and dropped["weight_decay"] == 0
    for stem in ("weight_decay", "dropout"):
        assert (result.out / f"{stem}.png").stat().st_size > 10_000


def test_offline_networks_cost_at_most_a_tenth_above_the_cheaper_interpolant(copies_run):
    preset, result = copies_run
    rows = result.table.to_pylist()
    offline = [r for r in rows if not r["online"]]
    assert {r["copies"] for r in offline} == set(preset.copies)
    for r in offline:
        assert r["reference"] == "upper bound" and r["closed_form_valid"]
        assert r["cheaper_cost"] < r["closed_form_cost"]
        assert r["cost"] <= 1.1 * r["cheaper_cost"]
        assert r["cheaper_ratio"] == pytest.approx(r["cost"] / r["cheaper_cost"])
        assert all(math.isfinite(r[k]) for k in ("distance_sums", "cheaper_distance_fresh"))
    (online,) = {r["variant"] for r in rows if r["online"]}
    assert online == "without-origin-online"
    for stem in ("cost", "distance", "residual"):
        assert (result.out / f"{stem}.png").stat().st_size > 10_000


def test_the_references_interpolate_every_copy_and_the_copies_are_nested():
    points, sigmas, copies, _, fresh = variant_inputs(
        0,
        "without-origin",
        n=4,
        d=5,
        length=2.0,
        sigmas=(0.1, 0.05),
        copies=6,
        fresh=3,
        dtype="float64",
    )
    assert copies.shape == (2, 4, 6, 5) and fresh.shape == (2, 4, 3, 5)
    fewer = nested_copies(points, sigmas, jr.split(jr.fold_in(jr.key(0), 1), 3)[0], 2)
    np.testing.assert_array_equal(np.asarray(fewer), np.asarray(copies)[:, :, :2])
    cheaper = CheaperInterpolant.fit(points, copies)
    for level in range(2):
        assert cheaper.valid(level)
        # Fitted to the copies' own extent, it maps every copy of x_n to x_n exactly.
        y = np.asarray(copies[level]).reshape(-1, 5)
        np.testing.assert_allclose(cheaper(level, y), np.repeat(points, 6, axis=0), atol=1e-12)
        # 2N unit-norm ramp units with outputs x_n / (G - 2 rho'): the balanced cost.
        np.testing.assert_allclose(np.linalg.norm(cheaper.t, axis=1), 1.0)
        assert cheaper.cost(level) == pytest.approx(
            2 * 4 * 2.0 / (2.0 * math.sqrt(4 / 3) - 2 * cheaper.rho[level])
        )


def test_a_changed_list_of_variants_reuses_the_finished_cells(
    copies_run, ablation_run, tmp_path, monkeypatch
):
    for (preset, whole), changes in (
        (copies_run, dict(online=False)),
        (ablation_run, dict(weight_decays=ablation_run[0].weight_decays[-1:], dropouts=())),
    ):
        out = tmp_path / preset.name
        # Pieces of a run not yet published (a finished run removes them): loaded from the
        # training cache here.
        compute_cells(preset, out, progress=False)
        changed = dataclasses.replace(preset, **changes)
        monkeypatch.setattr(type(preset), "compute", _no_compute)
        reused = run(changed, out, progress=False)
        assert set(reused.resumed) == {changed.cell_name(c) for c in changed.cells()}
        kept = set(reused.resumed)
        same = [r for r in whole.table.to_pylist() if r["variant"] in kept]
        assert reused.table.to_pylist() == same


def test_the_table_measures_the_trained_networks(ablation_run):
    # One cell measured again here through the library's per-level denoiser and closed
    # form (jax, not the preset's host-side evaluation), the stack loaded from the cache.
    preset, result = ablation_run
    cell = ("without-origin", "weight-decay", preset.weight_decays[0])
    points, sigmas, copies, key, fresh = variant_inputs(
        preset.seed,
        "without-origin",
        n=preset.n,
        d=preset.d,
        length=preset.length,
        sigmas=preset.sigmas,
        copies=preset.copies,
        fresh=preset.fresh,
        dtype=preset.dtype,
    )
    fit = train_min_norm(points, sigmas, preset.training(cell), key=key, copies=copies, cache=True)
    rows = [r for r in result.table.to_pylist() if r["variant"] == preset.cell_name(cell)]
    for level, (sigma, row) in enumerate(zip(sigmas, rows, strict=True)):
        denoise = jax.vmap(lambda y: fit.denoiser(y, sigma))
        own = np.asarray(copies[level])
        r = np.asarray(denoise(jnp.asarray(own.reshape(-1, preset.d)))) - np.repeat(
            points, preset.copies, axis=0
        )
        assert row["mse_train"] == pytest.approx(np.mean(np.sum(r**2, axis=1)), rel=1e-9)
        y = jnp.asarray(fresh[level].reshape(-1, preset.d))
        h = np.asarray(denoise(y))
        target = np.repeat(points, preset.fresh, axis=0)
        assert row["residual_fresh"] == pytest.approx(np.max(np.linalg.norm(h - target, axis=1)))
        closed = MinNormOrthogonal(jnp.asarray(points), alpha=row["rho_hat"] / sigma)
        ramps = np.asarray(jax.vmap(lambda y: closed(y, sigma))(y))
        assert row["distance_fresh"] == pytest.approx(np.max(np.linalg.norm(h - ramps, axis=1)))
