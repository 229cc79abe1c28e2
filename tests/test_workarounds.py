import dataclasses
import json
import os
import subprocess
import sys
import textwrap
import warnings

import jax
import jax.numpy as jnp
import jax.random as jr
import pytest
from helpers import tree_allclose
from jaxflow import _workarounds, configure_cpu_workarounds
from jaxflow._workarounds import _release, map_lapack


[_XLA_FLAG] = _workarounds.XLA_FLAGS


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


# ---------------------------------------------------------------------------------------
# configure_cpu_workarounds: nothing on import, the flags on request, a warning when late.
# ---------------------------------------------------------------------------------------

_SCRIPT = textwrap.dedent(
    """
    import json, os, sys, warnings

    before = dict(os.environ)
    import jaxflow, jaxflow.experiments
    from jaxflow._workarounds import backend_started

    out = {"import_changed": {k for k in before.keys() | os.environ.keys()
                              if before.get(k) != os.environ.get(k)}}
    out["import_changed"] = sorted(out["import_changed"])
    out["started_after_import"] = backend_started()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out["changed"] = jaxflow.configure_cpu_workarounds()
    out["early_warnings"] = [str(w.message) for w in caught]

    import jax.numpy as jnp
    float(jnp.ones(2).sum())  # starts the backend
    out["started_after_computation"] = backend_started()
    del os.environ["XLA_FLAGS"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out["late_changed"] = jaxflow.configure_cpu_workarounds()
    out["late_warnings"] = [(w.category.__name__, str(w.message)) for w in caught]
    json.dump(out, sys.stdout)
    """
)


def test_import_has_no_side_effects_and_the_call_sets_the_flags(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "OPENBLAS_NUM_THREADS")}
    env["JAX_PLATFORMS"] = "cpu"
    script = tmp_path / "run.py"
    script.write_text(_SCRIPT)
    proc = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    # Importing the library (every stage, the presets) changes no environment variable and
    # does not start JAX's backend.
    assert out["import_changed"] == []
    assert out["started_after_import"] is False
    # The call sets both, and before any computation does not warn.
    assert out["changed"]["OPENBLAS_NUM_THREADS"] == "1"
    if _XLA_FLAG.needed(_release("jaxlib")):
        assert out["changed"]["XLA_FLAGS"] == f"--{_XLA_FLAG.name}="
    assert out["early_warnings"] == []
    # After a computation the backend has read XLA_FLAGS: a new flag warns.
    assert out["started_after_computation"] is True
    if _XLA_FLAG.needed(_release("jaxlib")):
        assert out["late_changed"] == {"XLA_FLAGS": f"--{_XLA_FLAG.name}="}
        [(category, message)] = out["late_warnings"]
        assert category == "UserWarning" and "after JAX started its backend" in message
    else:
        assert out["late_warnings"] == []


@pytest.fixture
def clean_environment(monkeypatch):
    monkeypatch.delenv("XLA_FLAGS", raising=False)
    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    return monkeypatch


@pytest.mark.parametrize(
    "jaxlib, needed",
    [((0, 10, 1), False), ((0, 10, 2), True), ((0, 11, 0), True), ((), False)],
)
def test_xla_flag_is_bounded_to_the_affected_jaxlibs(clean_environment, jaxlib, needed):
    clean_environment.setattr(_workarounds, "_release", lambda package: jaxlib)
    clean_environment.setattr(_workarounds, "backend_started", lambda: False)
    changed = configure_cpu_workarounds()
    assert changed["OPENBLAS_NUM_THREADS"] == os.environ["OPENBLAS_NUM_THREADS"] == "1"
    assert ("XLA_FLAGS" in changed) == needed == ("XLA_FLAGS" in os.environ)
    # Once a fixed release is named, it and later ones are left alone.
    fixed = dataclasses.replace(_XLA_FLAG, fixed=(0, 12, 0))
    assert not fixed.needed((0, 12, 0)) and not fixed.needed((1, 0))
    assert fixed.needed((0, 11, 9)) == (_XLA_FLAG.first <= (0, 11, 9))


def test_user_settings_win_and_warning_only_when_a_flag_is_added(clean_environment):
    clean_environment.setattr(_workarounds, "_release", lambda package: (0, 10, 2))
    clean_environment.setattr(_workarounds, "backend_started", lambda: True)
    clean_environment.setenv("OPENBLAS_NUM_THREADS", "4")
    clean_environment.setenv(
        "XLA_FLAGS", f"--xla_force_host_platform_device_count=2 --{_XLA_FLAG.name}=default"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing added, so no warning though "started"
        assert configure_cpu_workarounds() == {}
    assert os.environ["OPENBLAS_NUM_THREADS"] == "4"
    clean_environment.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=2")
    with pytest.warns(UserWarning, match="has no effect in this process"):
        changed = configure_cpu_workarounds()
    assert changed["XLA_FLAGS"] == f"--xla_force_host_platform_device_count=2 --{_XLA_FLAG.name}="


def test_backend_started_after_a_computation():
    # Whether it starts nothing is checked in a fresh process above.
    float(jnp.ones(2).sum())
    assert _workarounds.backend_started() is True
