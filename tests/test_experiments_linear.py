"""Smoke runs of the linear-denoiser presets (SCIENCE.md H2, H4) at a reduced size, and
the claims their output carries."""

import dataclasses

import numpy as np
import pytest
from jaxflow.cli import main
from jaxflow.estimators import kl_infinite_data
from jaxflow.experiments import get_preset, write_results


def test_linear_distance_vs_n(tmp_path):
    preset = get_preset("linear-distance-vs-n")().quick()
    preset = dataclasses.replace(preset, n_over_d=(0.5, 1.0, 2.0, 10.0), T=(2.0,), lam=(0.5, 1.0))
    results = preset.run(tmp_path, progress=False)
    d = preset.d
    ns = [5, 10, 11, 20, 100]
    assert sorted({r["n"] for r in results.rows}) == ns
    assert len(results.rows) == len(ns) * 2 * 2  # sizes x lambdas x conventions
    assert {r["convention"] for r in results.rows} == {"consistent", "reference"}
    for r in results.rows:
        assert r["kl_inf"] == pytest.approx(float(kl_infinite_data(d, T=r["T"], lam=r["lam"])))
        if r["n"] <= d:  # q degenerate: every repetition infinite, Hellinger 1
            assert np.isinf(r["kl_qp_median"]) and r["hellinger2_median"] == 1.0
            assert r["finite_fraction"] == 0.0
        else:
            assert np.isfinite(r["kl_qp_median"]) and r["kl_qp_median"] > r["kl_inf"]
        # SCIENCE.md H2: the monotonic fall of KL(q||p) starts once n exceeds d.
        assert r["kl_fall_starts_at_n"] == d + 1
    written = write_results(preset, results, tmp_path)
    assert (tmp_path / "distance_vs_n.png").stat().st_size > 10_000
    assert tmp_path / "results.parquet" in written


def test_linear_steps(tmp_path):
    preset = get_preset("linear-steps")().quick()
    preset = dataclasses.replace(preset, n_over_d=(2.0,), steps=(2, 8), reference_size=50, reps=6)
    results = preset.run(tmp_path, progress=False)
    assert [r["steps"] for r in results.rows] == [2, 8]
    for r in results.rows:
        assert np.isfinite(r["kl_qp_median"]) and 0 <= r["p_positive"] <= 1
        assert r["p_lower"] <= r["p_positive"] <= r["p_upper"]
        assert r["convention"] == "consistent" and r["solver"] == "heun"
    # A finer discretisation of the flow brings q closer to p here.
    assert results.rows[1]["kl_qp_median"] < results.rows[0]["kl_qp_median"]
    assert "steps" in results.figures


@pytest.mark.slow
@pytest.mark.parametrize("name", ["linear-distance-vs-n", "linear-steps"])
def test_cli_quick(tmp_path, name, capsys):
    assert main(["run", name, "--quick", "--no-progress", "--out", str(tmp_path)]) == 0
    assert "finished" in capsys.readouterr().out
    assert (tmp_path / "results.csv").exists() and (tmp_path / "config.json").exists()
