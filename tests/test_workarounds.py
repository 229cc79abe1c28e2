import jax
import jax.numpy as jnp
import jax.random as jr
from helpers import tree_allclose
from jaxflow._workarounds import map_lapack


def _spectrum(a):
    # A pytree in and out, with a LAPACK call (eigh) and a Cholesky solve inside.
    spd = a["x"] @ a["x"].T + jnp.eye(a["x"].shape[0])
    factor = jnp.linalg.cholesky(spd)
    return jnp.linalg.eigvalsh(spd), jax.scipy.linalg.solve_triangular(factor, a["b"], lower=True)


def test_map_lapack_matches_vmap_on_cpu():
    assert jax.default_backend() == "cpu"
    key_x, key_b = jr.split(jr.key(0))
    xs = {"x": jr.normal(key_x, (5, 4, 4)), "b": jr.normal(key_b, (5, 4))}
    expected = jax.vmap(_spectrum)(xs)
    assert tree_allclose(map_lapack(_spectrum, xs), expected, rtol=1e-12, atol=1e-12)
    jitted = jax.jit(lambda xs: map_lapack(_spectrum, xs))(xs)
    assert tree_allclose(jitted, expected, rtol=1e-12, atol=1e-12)


def test_map_lapack_is_lax_map_on_cpu():
    # Unbatched LAPACK calls: the traced program loops instead of batching.
    xs = jnp.eye(3)[None].repeat(2, axis=0)
    text = str(jax.make_jaxpr(lambda xs: map_lapack(jnp.linalg.eigvalsh, xs))(xs))
    assert "scan" in text or "while" in text
