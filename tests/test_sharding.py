"""Every workload split across eight host devices (one process, `XLA_FLAGS=
--xla_force_host_platform_device_count=8`) gives the numbers of one device: the probability
flows of a closed form and of a network, the training of a per-level grid (four levels,
padded to eight), the stability iterations and the flow of the trained per-level denoiser,
and the repetitions of the linear model's presets. Two processes on localhost
(`jax.distributed`) give them too (slow).
"""

import dataclasses
import os
import pathlib
import socket
import subprocess
import sys
import textwrap

import jax.numpy as jnp
import jax.random as jr
import jax.tree_util as jtu
import numpy as np
import pytest
from helpers import orthogonal_points
from jaxflow.denoisers import MinNormOrthogonal, ShallowReLU
from jaxflow.estimators import virtual_point_stability
from jaxflow.experiments.halder import LinearDistanceVsN, LinearSteps
from jaxflow.flows import Geometric, probability_flow
from jaxflow.training import MinNormTraining, train_min_norm


def flows_workload() -> list[np.ndarray]:
    """Endpoints of the closed form's and a random network's flows from an odd batch,
    unchunked and in odd chunks (both padded to the device count)."""
    rng = np.random.default_rng(9)
    points = jnp.asarray(orthogonal_points(rng, 6, [1.0, 1.5, 2.0]))
    y0 = jnp.asarray(rng.normal(0.5, 0.7, size=(21, 6)))
    denoisers = (MinNormOrthogonal(points, alpha=1.0), ShallowReLU.random(6, 16, key=jr.key(3)))
    options = dict(sigma_max=0.4, sigma_min=1e-3, steps=16)
    return [
        np.asarray(probability_flow(den, y0, chunk_size=chunk, **options).ys)
        for den in denoisers
        for chunk in (None, 5)
    ]


# The grid of tests/test_training_minnorm.py::test_per_level_denoiser_on_grid_and_flow, so
# that a session compiles the one-device programs once: four levels, padded to eight.
POINTS = np.concatenate([np.zeros((1, 4)), np.eye(4)])
CONFIG = MinNormTraining(width=8, copies=2, steps=100, inner_steps=100, level_map="map")


def grid_sigmas():
    return Geometric().grid(jnp.asarray(0.2), jnp.asarray(0.02), 3)


def training_workload(progress: bool) -> list[np.ndarray]:
    """The leaves of a trained grid, its stability drifts and its flows (chunked and not)."""
    sigmas = grid_sigmas()
    fit = train_min_norm(POINTS, sigmas, CONFIG, key=jr.key(0), progress=progress)
    den = fit.denoiser
    stability = virtual_point_stability(
        den, POINTS, sigmas[-1], sizes=(1, 2, 3), iterations=5, simplex=True
    )
    y0 = jnp.asarray(np.random.default_rng(1).standard_normal((6, 4)))
    flows = [
        probability_flow(den, y0, solver="heun", chunk_size=chunk, **den.flow_options()).ys
        for chunk in (None, 5)
    ]
    return [np.asarray(x) for x in jtu.tree_leaves((fit, stability.drift, flows))]


def linear_workload() -> list[np.ndarray]:
    """The distances of a cell of `linear-distance-vs-n` (a masked training-set size, two
    (T, lambda) pairs) and of `linear-steps` (three numbers of steps), by least squares
    and by the Wiener fit: 11 repetitions, two per device and five of them padding."""
    out = []
    for fit in ("lstsq", "wiener"):
        for preset, cell in (
            (LinearDistanceVsN(d=4, n_over_d=(2.0,), T=(1.0, 2.0), lam=(1.0,), fit=fit), 5),
            (LinearSteps(d=4, n_over_d=(10.0,), steps=(1, 4, 16), reference="none", fit=fit), 40),
        ):
            preset = dataclasses.replace(preset, repetitions=11)
            outputs = preset.compute(cell, preset.prepare(progress=False))
            out.append(np.asarray(outputs["distances"]))
    return out


_SCRIPT = textwrap.dedent(
    """
    import sys
    import jax
    jax.config.update("jax_enable_x64", True)
    import numpy as np
    import jaxflow as jf

    jf.configure_cpu_workarounds()
    assert jax.device_count() == 8, jax.devices()
    from test_sharding import flows_workload, linear_workload, training_workload

    np.savez(sys.argv[1], *flows_workload())
    np.savez(sys.argv[2], *training_workload(progress=True))
    np.savez(sys.argv[3], *linear_workload())
    """
)


class _EightDevices:
    """One process with eight host devices running both workloads, started at once so
    that it runs beside the single-device computations of the tests."""

    def __init__(self, folder: pathlib.Path):
        self.folder = folder
        (folder / "run.py").write_text(_SCRIPT)
        env = dict(
            os.environ,
            XLA_FLAGS="--xla_force_host_platform_device_count=8",
            JAX_PLATFORMS="cpu",
            PYTHONPATH=str(pathlib.Path(__file__).parent),
        )
        outputs = [str(folder / f"{name}.npz") for name in ("flows", "training", "linear")]
        self.proc = subprocess.Popen(
            [sys.executable, str(folder / "run.py"), *outputs],
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.err = None

    def result(self, name: str) -> list[np.ndarray]:
        if self.err is None:
            _, self.err = self.proc.communicate(timeout=240)
        assert self.proc.returncode == 0, self.err[-3000:]
        with np.load(self.folder / f"{name}.npz") as out:
            return [out[f"arr_{i}"] for i in range(len(out.files))]


@pytest.fixture(scope="module")
def eight_devices(tmp_path_factory):
    run = _EightDevices(tmp_path_factory.mktemp("eight-devices"))
    yield run
    if run.proc.poll() is None:
        run.proc.kill()
        run.proc.wait()


def test_eight_devices_give_single_device_flow_endpoints(eight_devices):
    single = flows_workload()
    sharded = eight_devices.result("flows")
    # Each device takes whole blocks of one fixed shape, so the network's flow is bitwise
    # the same on eight devices. The closed form's Heun step compiles with different
    # floating-point contraction inside the per-device program (Euler does not): measured
    # at most 2 ulps (relative 4e-15).
    labels = ["closed form", "closed form, chunk 5", "network", "network, chunk 5"]
    for label, a, b in zip(labels[:2], sharded[:2], single[:2]):
        np.testing.assert_allclose(a, b, rtol=1e-14, atol=1e-15, err_msg=label)
    for label, a, b in zip(labels[2:], sharded[2:], single[2:]):
        np.testing.assert_array_equal(a, b, err_msg=label)


def test_eight_devices_give_single_device_networks_drifts_and_flows(eight_devices):
    """Bitwise: each device maps its own levels, starts and rows through programs of the
    same shapes as one device, with no collective; the progress bar (shown there only)
    changes nothing and counts only the four real levels."""
    single = training_workload(progress=False)
    sharded = eight_devices.result("training")
    assert len(sharded) == len(single)
    for i, (a, b) in enumerate(zip(sharded, single)):
        np.testing.assert_array_equal(a, b, err_msg=f"leaf {i}")
    # Four levels of 100 steps; the four copies padding them to eight devices are silent.
    assert "400/400" in eight_devices.err


def test_eight_devices_give_single_device_linear_model_distances(eight_devices):
    """Bitwise, although a near-singular fit turns an ulp of the training set's mean into
    1e-9 of KL(p || q): the means divide by their counts as a product (XLA:CPU rewrote a
    division by a broadcast scalar in the program split across devices only)."""
    labels = [f"{p}, {fit}" for fit in ("lstsq", "wiener") for p in ("distance", "steps")]
    for label, a, b in zip(labels, eight_devices.result("linear"), linear_workload()):
        np.testing.assert_array_equal(a, b, err_msg=label)


_TWO_PROCESSES = textwrap.dedent(
    """
    import sys
    import jaxflow

    jaxflow.initialize_distributed(f"127.0.0.1:{sys.argv[1]}", 2, int(sys.argv[2]))
    import jax
    jax.config.update("jax_enable_x64", True)
    import numpy as np

    jaxflow.configure_cpu_workarounds()
    from test_sharding import training_workload

    out = training_workload(progress=True)
    if jax.process_index() == 0:
        np.savez(sys.argv[3], *out)

    # Process 0's cache folder holds the stack, process 1's does not: both train.
    import jax.random as jr
    import jax.tree_util as jtu
    from test_sharding import CONFIG, POINTS, grid_sigmas
    from jaxflow.training import train_min_norm

    cache = f"{sys.argv[4]}{jax.process_index()}"
    fit = train_min_norm(POINTS, grid_sigmas(), CONFIG, key=jr.key(0), cache=cache)
    np.savez(f"{sys.argv[4]}{jax.process_index()}.npz", *jtu.tree_leaves(fit))
    """
)


@pytest.mark.slow
def test_two_processes_give_single_process_networks_drifts_and_flows(tmp_path):
    """Each process trains its own two levels and shows them in its own progress bar;
    both gather every level. A stack cached for one process only is trained again by
    both (none waits for the other) and written to each one's cache."""
    cache = tmp_path / "cache"
    cached = train_min_norm(POINTS, grid_sigmas(), CONFIG, key=jr.key(0), cache=f"{cache}0")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(pathlib.Path(__file__).parent))
    out = tmp_path / "out.npz"
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", _TWO_PROCESSES, port, str(i), str(out), str(cache)],
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    try:
        errs = [p.communicate(timeout=600)[1] for p in processes]
    finally:
        for p in processes:  # one left waiting for the other
            if p.poll() is None:
                p.kill()
                p.wait()
    assert [p.returncode for p in processes] == [0, 0], "\n".join(e[-3000:] for e in errs)
    single = training_workload(progress=False)
    with np.load(out) as saved:
        for i, a in enumerate(single):
            np.testing.assert_array_equal(saved[f"arr_{i}"], a, err_msg=f"leaf {i}")
    assert all("200/200" in err for err in errs)
    for i in range(2):
        assert len(list(pathlib.Path(f"{cache}{i}").glob("*.eqx"))) == 1
        with np.load(f"{cache}{i}.npz") as saved:
            for j, a in enumerate(jtu.tree_leaves(cached)):
                np.testing.assert_array_equal(saved[f"arr_{j}"], a, err_msg=f"leaf {j}")
