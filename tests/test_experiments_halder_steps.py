"""linear-steps at a reduced size: exact distances of the multi-step flow with affine
denoisers, P(Delta > 0) with its interval, and a confidence level that reuses the cells."""

import dataclasses

import numpy as np
import pytest
from helpers import Stop, tables_equal
from jaxflow.experiments import ConfigError, run
from jaxflow.experiments._runner import compute_cells, enable_x64
from jaxflow.experiments.halder import LinearSteps


def _preset(**changes):
    preset = LinearSteps().quick()
    return dataclasses.replace(
        preset, d=4, n_over_d=(2.0,), steps=(2, 8), reference_size=50, repetitions=6, **changes
    )


def test_more_steps_bring_q_closer_and_a_new_confidence_reuses_the_cells(tmp_path, monkeypatch):
    fresh = run(_preset(confidence=0.8), tmp_path / "fresh", progress=False)
    rows = fresh.table.to_pylist()
    assert [r["steps"] for r in rows] == [2, 8]
    for r in rows:
        assert np.isfinite(r["kl_qp_median"]) and 0 <= r["p_positive"] <= 1
        assert r["p_lower"] <= r["p_positive"] <= r["p_upper"]
        assert r["convention"] == "consistent" and r["solver"] == "heun"
        assert r["confidence"] == 0.8
    # A finer discretisation of the flow brings q closer to p here.
    assert rows[1]["kl_qp_median"] < rows[0]["kl_qp_median"]
    assert all(r["best_steps_kl"] == 8 for r in rows)
    assert (tmp_path / "fresh" / "steps.png").stat().st_size > 10_000

    # The cells of a run at another confidence level (stopped before its table) serve
    # this one: nothing is computed again, and the table is the fresh run's.
    enable_x64()
    compute_cells(_preset(confidence=0.95), tmp_path / "out", progress=False)
    monkeypatch.setattr(LinearSteps, "compute", lambda *a: (_ for _ in ()).throw(Stop))
    reused = run(_preset(confidence=0.8), tmp_path / "out", progress=False)
    assert reused.resumed == ("n8",)
    assert tables_equal(reused.table, fresh.table)


def test_sigma_max_must_exceed_sigma_min():
    with pytest.raises(ConfigError, match=r"sigma_max=0.001 must exceed sigma_min=0.002"):
        LinearSteps(sigma_max=0.001)


def test_a_run_too_large_is_refused_before_any_work(tmp_path):
    with pytest.raises(ConfigError, match="repetitions"):
        run(LinearSteps(repetitions=10**13), tmp_path, progress=False)
