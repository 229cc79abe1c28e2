"""zeno-training ([Z], Sections 2 and 6): the claims its quick table carries, the training
cache it shares, the cells a changed tolerance or data-set list reuses, and the progress
bar, which leaves the networks bitwise unchanged."""

import dataclasses

import jax.random as jr
import jax.tree_util as jtu
import numpy as np
import pytest
from jaxflow.experiments import run
from jaxflow.experiments._runner import compute_cells
from jaxflow.experiments.zeno import ZenoTraining
from jaxflow.training import MinNormTraining, train_min_norm


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    # A private training cache for this module: the first run trains, later ones load.
    folder = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("JAXFLOW_CACHE", str(folder))
        yield folder


@pytest.fixture(scope="module")
def quick(cache, tmp_path_factory):
    preset = ZenoTraining().quick()
    return preset, run(preset, tmp_path_factory.mktemp("quick"), progress=False)


def test_quick_table_interpolates_and_names_its_references(quick):
    preset, result = quick
    rows = result.table.to_pylist()
    assert len(rows) == 2 * preset.levels
    by = {name: [r for r in rows if r["data_set"] == name] for name in preset.data_sets}
    assert {r["reference"] for r in by["with-origin"]} == {"minimum"}
    assert {r["reference"] for r in by["without-origin"]} == {"upper bound"}
    for name, sub in by.items():
        valid = [r for r in sub if r["closed_form_valid"]]
        # The grid reaches above the closed form's range and into it.
        assert valid and not sub[0]["closed_form_valid"]
        for r in valid:
            assert r["residual_train"] < 1e-3 * preset.length and r["interpolates"]
            assert r["cost_ratio"] == pytest.approx(r["cost"] / r["closed_form_cost"])
            assert np.isfinite(r["distance_sums"])
        for r in sub:
            assert r["interpolates"] == (r["residual_train"] < preset.residual_tol)
            assert (r["closed_form_cost"] is None) == (not r["closed_form_valid"])
    for r in by["with-origin"]:
        # The closed form is the minimum over balls; finitely many copies constrain less.
        assert r["cheaper_cost"] is None
        if r["closed_form_valid"]:
            assert r["cost"] <= 1.1 * r["closed_form_cost"]
    for r in by["without-origin"]:
        if r["cheaper_cost"] is not None:
            # A known interpolant cheaper than the closed form; training goes no higher.
            assert r["cheaper_cost"] < r["closed_form_cost"]
            assert r["cost"] <= 1.1 * r["cheaper_cost"]
    arrays = result.arrays
    curves = arrays["with_origin_residual"]
    assert curves.shape == (preset.levels, -(-preset.steps // preset.inner_steps))
    assert not arrays["with_origin_from_cache"] and arrays["with_origin_train_seconds"] > 0
    for stem in ("residual_cost", "distance", "training_curves"):
        assert (result.out / f"{stem}.png").stat().st_size > 10_000


def test_cells_load_from_the_training_cache_and_are_reused(quick, tmp_path, monkeypatch):
    preset, whole = quick
    # The stacks are in the training cache: the cells load them.
    outputs, _, _ = compute_cells(preset, tmp_path / "a", progress=False)
    assert all(bool(cell["from_cache"]) for cell in outputs.values())
    changed = dataclasses.replace(preset, data_sets=("without-origin",), residual_tol=2e-4)

    def no_compute(self, cell, context):
        raise AssertionError(f"cell {cell} computed again")

    monkeypatch.setattr(ZenoTraining, "compute", no_compute)
    reused = run(changed, tmp_path / "a", progress=False)
    assert reused.resumed == ("without-origin",)
    rows = reused.table.to_pylist()
    same = [r for r in whole.table.to_pylist() if r["data_set"] == "without-origin"]
    assert len(rows) == len(same)
    for r, s in zip(rows, same):
        assert r["interpolates"] == (r["residual_train"] < 2e-4)
        assert {k: v for k, v in r.items() if k != "interpolates"} == {
            k: v for k, v in s.items() if k != "interpolates"
        }


@pytest.mark.parametrize("level_map", ["map", "vmap"])
def test_progress_leaves_the_networks_bitwise_unchanged(level_map, capsys):
    points = np.concatenate([np.zeros((1, 3)), np.eye(3)])
    sigmas = np.array([0.1, 0.05])
    cfg = MinNormTraining(width=8, copies=3, steps=600, inner_steps=100, level_map=level_map)
    quiet = train_min_norm(points, sigmas, cfg, key=jr.key(0))
    shown = train_min_norm(points, sigmas, cfg, key=jr.key(0), progress=True)
    for a, b in zip(jtu.tree_leaves(quiet), jtu.tree_leaves(shown), strict=True):
        assert np.array_equal(np.asarray(a), np.asarray(b), equal_nan=True)
    err = capsys.readouterr().err
    assert "training" in err and "residual=" in err and "cost=" in err
