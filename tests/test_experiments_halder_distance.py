"""linear-distance-vs-n at a reduced size: the claims its table carries about [H]'s
one-step model (singular q until n = d + 1, the KL's fall from there towards its floor,
the closed-form infinite-data limits)."""

import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest
from jaxflow.data import Gaussian
from jaxflow.estimators import hellinger_squared, kl_infinite_data
from jaxflow.experiments import ConfigError, run
from jaxflow.experiments.halder import LinearDistanceVsN
from jaxflow.experiments.halder._distance import hellinger2_infinite_data, limit_rho


def test_distances_fall_from_n_equal_d_towards_their_limits(tmp_path):
    preset = dataclasses.replace(
        LinearDistanceVsN().quick(), n_over_d=(0.5, 1.0, 2.0, 10.0), T=(2.0,), lam=(0.5, 1.0)
    )
    result = run(preset, tmp_path, progress=False)
    rows = result.table.to_pylist()
    d = preset.d
    ns = [5, 10, 11, 20, 100]  # d + 1 is always added
    assert sorted({r["n"] for r in rows}) == ns
    assert len(rows) == len(ns) * 2 * 2  # sizes x lambdas x conventions
    assert {r["convention"] for r in rows} == {"consistent", "reference"}
    for r in rows:
        assert r["kl_inf"] == pytest.approx(float(kl_infinite_data(d, T=r["T"], lam=r["lam"])))
        assert 0 < r["hellinger2_inf"] < 1
        if r["n"] <= d:  # q degenerate: every repetition infinite, Hellinger 1
            assert np.isinf(r["kl_qp_median"]) and r["hellinger2_median"] == 1.0
            assert r["finite_fraction"] == 0.0
        else:
            assert np.isfinite(r["kl_qp_median"]) and r["kl_qp_median"] > r["kl_inf"]
            assert r["hellinger2_median"] > r["hellinger2_inf"]
        # [H]: the monotonic fall of KL(q||p) starts once n exceeds d.
        assert r["kl_fall_starts_at_n"] == d + 1
    assert result.resumed == ()
    assert (tmp_path / "distance_vs_n.png").stat().st_size > 10_000


@pytest.mark.parametrize(
    "d, T, lam, s", [(10, 1.0, 1.0, 1.0), (100, 2.0, 0.5, 1.3), (3, 0.1, 2.0, 0.5)]
)
def test_the_hellinger_limit_is_the_distance_of_the_limit_gaussian(d, T, lam, s):
    # As n -> infinity, q -> N(m 1, rho s^2 I): the closed form against the library's
    # distance between those two Gaussians.
    rho = limit_rho(T, lam, s)
    q = Gaussian.isotropic(d, mean=10.0, std=np.sqrt(rho) * s)
    p = Gaussian.isotropic(d, mean=10.0, std=s)
    assert hellinger2_infinite_data(d, T, lam, s) == pytest.approx(
        float(hellinger_squared(q, p)), rel=1e-12
    )
    # The same rho gives the library's KL limit.
    kl = 0.5 * d * (rho - 1 - np.log(rho))
    assert kl == pytest.approx(float(kl_infinite_data(d, T=T, lam=lam, s=s)), rel=1e-12)
    assert float(jnp.asarray(rho)) < 1  # the one-step denoiser under-disperses


def test_a_run_too_large_is_refused_before_any_work(tmp_path):
    with pytest.raises(ConfigError, match="repetitions"):
        run(LinearDistanceVsN(repetitions=10**13), tmp_path, progress=False)
