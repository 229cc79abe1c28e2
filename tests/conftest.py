import jax
import pytest


# Tests compare against exact answers, so they run in double precision; float32
# behaviour is tested by passing float32 arrays explicitly.
jax.config.update("jax_enable_x64", True)


@pytest.fixture
def getkey():
    """A fresh PRNG key on every call, deterministic per test."""
    counter = iter(range(10**6))
    return lambda: jax.random.key(next(counter))
