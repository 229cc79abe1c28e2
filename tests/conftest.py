import jax
import pytest
from jaxflow import configure_cpu_workarounds


# Before any JAX computation: XLA reads its flags when the backend starts.
configure_cpu_workarounds()

# Tests compare against exact answers, so they run in double precision; float32
# behaviour is tested by passing float32 arrays explicitly.
jax.config.update("jax_enable_x64", True)


@pytest.fixture
def getkey():
    """A fresh PRNG key on every call, deterministic per test."""
    counter = iter(range(10**6))
    return lambda: jax.random.key(next(counter))
