import os
import shutil
import tempfile

import jax
import pytest
from jaxflow import configure_cpu_workarounds


# Before any JAX computation: XLA reads its flags when the backend starts.
configure_cpu_workarounds()

# Tests compare against exact answers, so they run in double precision; float32
# behaviour is tested by passing float32 arrays explicitly.
jax.config.update("jax_enable_x64", True)
# As diffrax's tests do: an implicit promotion between dtypes is an error, so that a
# float32 input is never silently computed in float64 (or the reverse).
jax.config.update("jax_numpy_dtype_promotion", "strict")

# Many tests run the same preset programs (a quick run, then a stopped and resumed one);
# a compilation cache for this session compiles each once. Hermetic: a fresh folder.
_COMPILED = tempfile.mkdtemp(prefix="jaxflow-tests-compiled-")
jax.config.update("jax_compilation_cache_dir", _COMPILED)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


# Trained networks go to a cache of this session, not the user's (`default_cache_dir`).
_CACHE = tempfile.mkdtemp(prefix="jaxflow-tests-cache-")
os.environ["JAXFLOW_CACHE"] = _CACHE


def pytest_unconfigure(config):
    del config
    shutil.rmtree(_COMPILED, ignore_errors=True)
    shutil.rmtree(_CACHE, ignore_errors=True)


@pytest.fixture
def getkey():
    """A fresh PRNG key on every call, deterministic per test."""
    counter = iter(range(10**6))
    return lambda: jax.random.key(next(counter))
