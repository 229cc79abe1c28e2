"""linear-transition and linear-transition-vs-d at a tiny size: their rows are the
relative-distance sweep's numbers, the distances beyond d are finite, the dip of
P(Delta > 0) at n = d is the samples' own kernel sums deciding, and finished sweeps are
reused when only the intervals (or, across d, the list of dimensions) change.

Every run shares one sweep configuration (d = 8, sizes 4, 8, 16, N_O = 64, chunks of 4),
so its programs compile once for the whole file."""

import dataclasses

import jax.random as jr
import numpy as np
import pytest
from helpers import Stop
from jaxflow.experiments import ConfigError, preset_from_params, run
from jaxflow.experiments._pieces import Pieces
from jaxflow.experiments.halder import LinearTransition, LinearTransitionVsD
from jaxflow.experiments.halder._transition import pair_terms_decide
from jaxflow.studies import relative_distance_sweep


SHARED = dict(reference_size=64, repetitions=30, resamples=50, chunk_size=4)
# The same, as the relative-distance sweep takes it.
SHARED_SWEEP = dict(repetitions=30, reference_size=64, chunk_size=4)


def _stop(*args):
    raise Stop


def _tiny(**changes) -> LinearTransition:
    settings = dict(d=8, ns=(4, 8, 16), distance_n_over_d=(2.5, 5.0), distance_repetitions=5)
    return dataclasses.replace(LinearTransition(), **(SHARED | settings | changes))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    preset = _tiny()
    return preset, run(preset, tmp_path_factory.mktemp("tiny"), progress=False)


def test_linear_transition_rows_are_the_sweeps(tiny):
    preset, result = tiny
    rows = result.table.to_pylist()
    grid = [r for r in rows if r["transition_grid"]]
    beyond = [r for r in rows if not r["transition_grid"]]
    assert len(grid) == 2 * 2 * 3  # arithmetic x convention x n
    assert {(r["arithmetic"], r["n"]) for r in beyond} == {("exact", 20), ("exact", 40)}
    assert (result.out / "transition.png").stat().st_size > 10_000
    for r in grid:
        assert 0 <= r["p_lower"] <= r["p_positive"] <= r["p_upper"] <= 1
        assert r["repetitions"] == 30 and r["reference_size"] == 64
        assert (r["pair_terms_decide"] is None) == (r["arithmetic"] == "reference")
        # Both arithmetics saw the same draws: where the signs differ, float32 could not
        # vouch for its own.
        disagree = round((1 - r["sign_agrees_with_exact"]) * r["repetitions"])
        assert disagree <= r["uncertain"]
    # The rows are the estimator's numbers.
    sweep = relative_distance_sweep(
        (4, 8, 16), key=jr.split(jr.key(preset.seed))[0], d=8, **SHARED_SWEEP
    )
    for c, convention in enumerate(("consistent", "reference")):
        exact = sorted(
            (r for r in grid if (r["arithmetic"], r["convention"]) == ("exact", convention)),
            key=lambda r: r["n"],
        )
        np.testing.assert_allclose(
            [r["p_positive"] for r in exact], np.asarray(sweep.probability().fraction)[:, c]
        )
    np.testing.assert_array_equal(result.arrays["exact_sign"], np.asarray(sweep.relative.sign))
    # KL is infinite while q is degenerate (n <= d), finite beyond: where the distance
    # panel draws it.
    for r in rows:
        assert np.isfinite(r["kl_median"]) == (r["n"] > 8)
        if not r["transition_grid"]:
            assert r["repetitions"] == 5 and r["p_positive"] is None and r["n_star"] is None
            assert r["kl_median"] > r["kl_inf"] and 0 < r["hellinger2_median"] <= 1


def test_the_pair_terms_decide_the_dip_at_n_equal_d(tiny):
    preset, result = tiny
    rows = {
        (r["convention"], r["n"]): r
        for r in result.table.to_pylist()
        if r["arithmetic"] == "exact" and r["transition_grid"]
    }
    # At n = d the fit interpolates, q overlaps neither sample, and the samples' own
    # kernel sums decide Delta (negative in expectation): the reference convention's
    # P(Delta > 0) dips there.
    decide = [rows["reference", n]["pair_terms_decide"] for n in (4, 8, 16)]
    assert decide[1] >= 0.8 and decide[1] > max(decide[0], decide[2]) + 0.3
    assert rows["reference", 8]["p_positive"] < rows["reference", 16]["p_positive"] - 0.1
    # The figure says so under its P panel.
    figure = preset.figures(result.table, result.arrays)["transition"]
    texts = [t.get_text() for ax in figure.axes for t in ax.texts]
    assert any("interpolation threshold" in t and "kernel sums" in t for t in texts)


def test_pair_terms_decide_compares_the_two_differences():
    # Terms: diagonals of S and O, pairs of S and O, the overlaps of q with S and O.
    log_terms = np.log(
        np.array(
            [
                [1.0, 1.0, 1.0, 3.0, 1.0, 1.5],  # pairs differ by 2, overlaps by 0.5
                [1.0, 1.0, 1.0, 1.5, 1.0, 3.0],  # pairs by 0.5, overlaps by 2
            ]
        )
    )
    np.testing.assert_array_equal(pair_terms_decide(log_terms), [True, False])


def test_the_default_distance_sizes_lie_beyond_d():
    preset = LinearTransition()
    assert preset.grid() == (25, 50, 75, 100)
    assert preset.distance_sizes() == (110, 150, 200, 300, 500, 750, 1000)
    assert [preset.cell_name(c) for c in preset.cells()] == ["d100_sweep", "d100_distances"]


def test_the_distance_cell_draws_its_largest_size_as_the_sweep(tiny):
    # Without the exact arithmetic the distance cell covers the grid too; its largest
    # size is drawn exactly as the sweep draws it, and the smaller ones nest inside it.
    _, result = tiny
    preset = _tiny(arithmetic=("reference",), distance_n_over_d=())
    assert preset.distance_sizes() == (4, 8, 16)
    cell = preset.compute((8, "distances"), preset.prepare(progress=False))
    for key in ("kl", "hellinger2"):
        np.testing.assert_allclose(cell[key][:, 2], result.arrays[f"exact_{key}"][:5, 2], rtol=1e-9)
    assert np.all(np.isinf(cell["kl"][:, :2])) and np.all(np.isfinite(cell["kl"][:, 2]))


def test_changing_the_intervals_reuses_the_sweeps(tmp_path, monkeypatch):
    preset = _tiny(arithmetic=("exact",))
    with monkeypatch.context() as patch:
        patch.setattr(LinearTransition, "tabulate", _stop)
        with pytest.raises(Stop, match="part-way"):
            run(preset, tmp_path / "out", progress=False)  # its cells stay on disk
    changed = dataclasses.replace(preset, confidence=0.9, resamples=30)
    with monkeypatch.context() as patch:
        patch.setattr(LinearTransition, "compute", _stop)
        reused = run(changed, tmp_path / "out", progress=False)  # computes nothing
    assert reused.resumed == ("d8_sweep", "d8_distances")
    fresh = run(changed, tmp_path / "fresh", progress=False)
    np.testing.assert_equal(reused.table.to_pydict(), fresh.table.to_pydict())  # NaN too
    assert {r["confidence"] for r in fresh.table.to_pylist()} == {0.9}


def _vs_d(**changes) -> LinearTransitionVsD:
    settings = dict(ds=(8,), n_over_d=(0.5, 1.0, 2.0))
    return dataclasses.replace(LinearTransitionVsD(), **(SHARED | settings | changes))


def test_linear_transition_vs_d_crossings(tmp_path):
    result = run(_vs_d(), tmp_path, progress=False)
    rows = result.table.to_pylist()
    assert len(rows) == 2 * 2  # convention x crossing
    assert (tmp_path / "transition_vs_d.png").stat().st_size > 10_000
    for r in rows:
        assert r["ns"] == "4,8,16" and r["reference_size"] == 64
        if np.isfinite(r["n_star"]):
            assert 4 <= r["n_star"] <= 16
            np.testing.assert_allclose(r["n_star_over_d"], r["n_star"] / r["d"])
    np.testing.assert_array_equal(result.arrays["d8_ns"], [4, 8, 16])


def test_reference_per_d_and_a_dimension_reused_across_ds(tmp_path, monkeypatch):
    preset = _vs_d(ds=(4, 8), reference_per_d=8)
    assert (preset.reference_size_at(4), preset.reference_size_at(8)) == (32, 64)
    # A dimension's cell does not depend on the other dimensions: the cell d = 8 that a
    # run over (4, 8) left is reused by a run over (8,) alone.
    cell = 8
    piece = {
        k: np.asarray(v) for k, v in preset.compute(cell, preset.prepare(progress=False)).items()
    }
    Pieces(tmp_path / "out", preset).save(preset.cell_name(cell), piece)
    with monkeypatch.context() as patch:
        patch.setattr(LinearTransitionVsD, "compute", _stop)
        result = run(dataclasses.replace(preset, ds=(8,)), tmp_path / "out", progress=False)
    assert result.resumed == ("d8",)
    assert {(r["d"], r["reference_size"]) for r in result.table.to_pylist()} == {(8, 64)}
    # The signs are the estimator's at N_O = 8 d, with the preset's key for that d.
    sweep = relative_distance_sweep(
        (4, 8, 16), key=jr.split(jr.fold_in(jr.key(preset.seed), 8))[0], d=8, **SHARED_SWEEP
    )
    np.testing.assert_array_equal(result.arrays["d8_exact_sign"], np.asarray(sweep.relative.sign))


@pytest.mark.parametrize(
    "changes, match",
    [
        (dict(reference_per_d=1, ds=(1, 4)), r"^reference_per_d=1 gives fewer than 2"),
        (dict(reference_per_d=8, reference_size=None), r"^reference_per_d sizes a reference"),
        (dict(n_over_d=(1.0, 1.1), ds=(3,)), r"^n_over_d=1,1\.1: gives fewer than two sizes"),
    ],
)
def test_linear_transition_vs_d_refuses(changes, match):
    with pytest.raises(ConfigError, match=match):
        dataclasses.replace(LinearTransitionVsD(), **changes)


def test_parameters(tmp_path):
    preset = dataclasses.replace(
        LinearTransition(), arithmetic=("exact",), reference_size=None, fine=True
    )
    assert {10, 75, 1000} <= set(preset.grid())
    with pytest.raises(ConfigError, match=r"^ns=3: the transition needs at least two sizes"):
        dataclasses.replace(preset, ns=(3,), fine=False)
    for bad, match in (({"gram_dtype": "float16"}, "gram_dtype"), ({"arithmetic": "x"}, "arith")):
        with pytest.raises(ConfigError, match=match):
            preset_from_params(LinearTransition, bad, "test")
    for cls in (LinearTransition, LinearTransitionVsD):
        for key in ("repetitions", "resamples"):
            with pytest.raises(ConfigError, match=key):
                run(cls(**{key: 10**13}), tmp_path, progress=False)
