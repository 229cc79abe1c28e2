"""Training sets and samplers: the geometry each promises, checked in NumPy, and the
index-keyed initial noises."""

import hypothesis.strategies as st
import jax.numpy as jnp
import jax.random as jr
import jaxflow as jf
import numpy as np
import pytest
from helpers import without_runtime_typechecks
from hypothesis import given, settings


_PROPERTY = settings(max_examples=20, deadline=None, derandomize=True)


# ---------------------------------------------------------------------------------------
# Orthogonal points and obtuse simplices.
# ---------------------------------------------------------------------------------------


@_PROPERTY
@given(
    shape=st.sampled_from([(1, 1), (3, 3), (2, 5), (5, 8)]),
    seed=st.integers(0, 2**16),
    rotate=st.booleans(),
    scalar_length=st.booleans(),
)
def test_orthogonal_points_are_orthogonal_with_given_lengths(shape, seed, rotate, scalar_length):
    n, d = shape
    rng = np.random.default_rng(seed)
    lengths = 2.0 if scalar_length else rng.uniform(0.1, 3.0, size=n)
    data = jf.data.orthogonal(n, d, key=jr.key(seed), lengths=lengths, rotate=rotate)
    x = np.asarray(data.points)
    assert x.shape == (n, d) and x.dtype == np.float64 and not data.simplex
    gram = x @ x.T
    np.testing.assert_allclose(gram, np.diag(np.broadcast_to(lengths, (n,)) ** 2), atol=1e-12)
    if not rotate:
        np.testing.assert_array_equal(x, np.eye(n, d) * np.broadcast_to(lengths, (n,))[:, None])
    # The hyperbox of orthogonal data: apex at the origin, edges the points themselves.
    np.testing.assert_array_equal(np.asarray(data.apex), np.zeros(d))
    np.testing.assert_array_equal(np.asarray(data.edges), x)
    assert (data.n, data.d) == (n, d)


def test_orthogonal_rotation_depends_on_key_only():
    a = jf.data.orthogonal(4, 6, key=jr.key(0), rotate=True).points
    b = jf.data.orthogonal(4, 6, key=jr.key(0), rotate=True).points
    c = jf.data.orthogonal(4, 6, key=jr.key(1), rotate=True).points
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_orthogonal_respects_dtype():
    data = jf.data.orthogonal(30, 30, key=jr.key(0), rotate=True, dtype=jnp.float32)
    assert data.points.dtype == jnp.float32
    x = np.asarray(data.points, np.float64)
    np.testing.assert_allclose(x @ x.T, np.eye(30), atol=1e-5)


def test_orthogonal_refuses_invalid_arguments():
    with pytest.raises(
        ValueError, match=r"At most d mutually orthogonal directions exist: got `n` = 4 > `d` = 3"
    ):
        jf.data.orthogonal(4, 3)
    with pytest.raises(ValueError, match=r"`lengths` must be positive"):
        jf.data.orthogonal(2, 3, lengths=np.array([1.0, 0.0]))
    with pytest.raises(ValueError, match=r"`lengths` must be positive"):
        jf.data.orthogonal(2, 3, lengths=-1.0)
    with pytest.raises(ValueError, match=r"`rotate=True` needs a PRNG `key`"):
        jf.data.orthogonal(2, 3, rotate=True)
    with pytest.raises(ValueError, match=r"`n` must be a positive int, got 0"):
        jf.data.orthogonal(0, 3)


@_PROPERTY
@given(
    shape=st.sampled_from([(1, 2), (3, 3), (4, 7)]),
    # beta = 1 makes the edges sum to zero (a flat simplex): refused, tested below.
    beta=st.floats(0.0, 1.99).filter(lambda b: abs(b - 1.0) >= 1e-2),
    seed=st.integers(0, 2**16),
    rotate=st.booleans(),
)
def test_obtuse_simplex_has_obtuse_edges_with_given_lengths(shape, beta, seed, rotate):
    n, d = shape
    rng = np.random.default_rng(seed)
    lengths = rng.uniform(0.5, 2.0, size=n)
    apex = rng.normal(size=d)
    data = jf.data.obtuse_simplex(
        n, d, key=jr.key(seed), lengths=lengths, beta=beta, apex=apex, rotate=rotate
    )
    x = np.asarray(data.points)
    assert x.shape == (n + 1, d) and data.simplex
    np.testing.assert_allclose(x[0], apex, rtol=1e-15)
    edges = x[1:] - x[0]
    np.testing.assert_allclose(np.linalg.norm(edges, axis=1), lengths, rtol=1e-12)
    # Unit edges v_k / |v_k| with v_k = q_k - (beta / n) sum_j q_j for orthonormal q:
    # v_i . v_j = (beta^2 - 2 beta) / n and |v_k|^2 = 1 + (beta^2 - 2 beta) / n.
    units = edges / lengths[:, None]
    off = (beta**2 - 2 * beta) / n
    expected = np.full((n, n), off / (1 + off))
    np.fill_diagonal(expected, 1.0)
    np.testing.assert_allclose(units @ units.T, expected, atol=1e-12)
    assert np.all((units @ units.T)[~np.eye(n, dtype=bool)] <= 1e-12)  # obtuse or right
    np.testing.assert_array_equal(np.asarray(data.apex), x[0])
    np.testing.assert_allclose(np.asarray(data.edges), edges, rtol=1e-15)
    assert (data.n, data.d) == (n + 1, d)


def test_obtuse_simplex_refuses_invalid_arguments():
    with pytest.raises(ValueError, match=r"`beta` must lie in \[0, 2\)"):
        jf.data.obtuse_simplex(2, 3, beta=2.0)
    with pytest.raises(ValueError, match=r"`beta` must lie in \[0, 2\)"):
        jf.data.obtuse_simplex(2, 3, beta=-0.1)
    with pytest.raises(ValueError, match=r"makes the edges \(nearly\) sum to zero"):
        jf.data.obtuse_simplex(2, 3, beta=1.0)
    with pytest.raises(ValueError, match=r"`apex` must have shape \(3,\)"):
        jf.data.obtuse_simplex(2, 3, apex=np.zeros(2))
    with pytest.raises(ValueError, match=r"got `n` = 4 > `d` = 3"):
        jf.data.obtuse_simplex(4, 3)


# ---------------------------------------------------------------------------------------
# Gaussian samples.
# ---------------------------------------------------------------------------------------


def test_isotropic_gaussian_has_requested_moments():
    n, d, mean, std = 20_000, 3, np.array([1.0, -2.0, 0.5]), 1.5
    x = np.asarray(jf.data.isotropic_gaussian(n, d, key=jr.key(0), mean=mean, std=std).points)
    assert x.shape == (n, d)
    # Five standard errors: a false alarm has probability ~1e-6 per coordinate.
    np.testing.assert_allclose(x.mean(0), mean, atol=5 * std / np.sqrt(n))
    np.testing.assert_allclose(x.std(0), std, atol=5 * std / np.sqrt(2 * n))
    corr = np.corrcoef(x.T)[~np.eye(d, dtype=bool)]
    assert np.all(np.abs(corr) < 5 / np.sqrt(n))
    assert (
        jf.data.isotropic_gaussian(4, 2, key=jr.key(0), dtype=jnp.float32).points.dtype
        == jnp.float32
    )


def test_isotropic_gaussian_refuses_invalid_arguments():
    with pytest.raises(ValueError, match=r"`std` must be positive"):
        jf.data.isotropic_gaussian(4, 2, key=jr.key(0), std=0.0)
    with pytest.raises(ValueError, match=r"`n` must be a positive int, got 0"):
        jf.data.isotropic_gaussian(0, 2, key=jr.key(0))


def test_gaussian_samples_have_requested_moments_even_when_degenerate():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(3, 3))
    cov = a @ a.T
    mean = rng.normal(size=3)
    n = 40_000
    x = np.asarray(jf.data.Gaussian(jnp.asarray(mean), jnp.asarray(cov)).sample(n, key=jr.key(1)))
    assert np.all(np.abs(x.mean(0) - mean) < 5 * np.sqrt(np.diag(cov) / n))
    np.testing.assert_allclose(np.cov(x.T), cov, atol=0.05 * np.abs(cov).max())
    # A rank-one covariance u u^T: every sample lies on the line mean + t u.
    u = np.array([1.0, 2.0, -1.0])
    y = np.asarray(
        jf.data.Gaussian(jnp.asarray(mean), jnp.asarray(np.outer(u, u))).sample(100, key=jr.key(2))
    )
    residual = (y - mean) - np.outer((y - mean) @ u / (u @ u), u)
    assert np.max(np.abs(residual)) < 1e-7
    np.testing.assert_allclose(np.var((y - mean) @ u / (u @ u)), 1.0, atol=0.5)
    iso = jf.data.Gaussian.isotropic(3, mean=2.0, std=0.5)
    np.testing.assert_array_equal(np.asarray(iso.mean), np.full(3, 2.0))
    np.testing.assert_array_equal(np.asarray(iso.cov), 0.25 * np.eye(3))


def test_gaussian_refuses_mismatched_covariance():
    with without_runtime_typechecks():
        with pytest.raises(ValueError, match=r"`cov` must have shape \(3, 3\) to match `mean`"):
            jf.data.Gaussian(jnp.zeros(3), jnp.eye(2))


# ---------------------------------------------------------------------------------------
# Index-keyed initial noises.
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_gaussian_starts_noise_depends_only_on_key_and_index(dtype):
    centre = jnp.asarray([1.0, -1.0, 0.5], dtype)
    starts = jf.GaussianStarts(centre, 2.0, num_starts=40, key=jr.key(3))
    full = np.asarray(starts.materialize())
    assert full.shape == (40, 3) and full.dtype == dtype
    # Any chunking, and any batch size, gives each start the same bits (the last chunk
    # is clamped to `num_starts`). Few distinct sizes: each compiles the sampler once.
    for begin, size in [(0, 7), (5, 7), (33, 7), (38, 10)]:
        np.testing.assert_array_equal(
            np.asarray(starts.chunk(begin, size)), full[begin : begin + size]
        )
    index = [17, 3, 17, 0, 39, 22, 5]
    np.testing.assert_array_equal(np.asarray(starts.rows(jnp.asarray(index))), full[index])
    smaller = jf.GaussianStarts(centre, 2.0, num_starts=7, key=jr.key(3))
    np.testing.assert_array_equal(np.asarray(smaller.materialize()), full[:7])
    # The noise of start i is the standard normal drawn from fold_in(key, i).
    eps = np.asarray(jr.normal(jr.fold_in(jr.key(3), 17), (3,), dtype))
    np.testing.assert_array_equal(full[17], np.asarray(centre + jnp.asarray(2.0, dtype) * eps))
    # Different keys, different noises.
    other = np.asarray(jf.GaussianStarts(centre, 2.0, num_starts=40, key=jr.key(4)).materialize())
    assert not np.any(np.all(other == full, axis=1))


def test_gaussian_starts_have_requested_centre_and_scale():
    starts = jf.GaussianStarts(jnp.asarray([3.0, -1.0]), 0.5, num_starts=20_000, key=jr.key(0))
    x = np.asarray(starts.materialize())
    np.testing.assert_allclose(x.mean(0), [3.0, -1.0], atol=5 * 0.5 / np.sqrt(20_000))
    np.testing.assert_allclose(x.std(0), 0.5, atol=5 * 0.5 / np.sqrt(40_000))
    assert (starts.num_starts, starts.d, starts.dtype) == (20_000, 2, jnp.float64)


def test_gaussian_starts_refuse_invalid_arguments():
    with pytest.raises(ValueError, match=r"`centre` must have shape \(d,\)"):
        jf.GaussianStarts(jnp.zeros((2, 2)), num_starts=4, key=jr.key(0))
    with pytest.raises(ValueError, match=r"`num_starts` must be a positive int"):
        jf.GaussianStarts(jnp.zeros(2), num_starts=0, key=jr.key(0))
