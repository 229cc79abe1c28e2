"""Two processes on this machine run as one (jax.distributed on CPU, gloo collectives):
together they write exactly the table one process writes, and compute exactly its
relative distances; process 0 alone writes and reports; a refusal in process 0 stops
both with the same line; and the distributed options are refused in one line before any
work."""

import json
import os
import re
import socket
import subprocess
import sys
import textwrap
import time

import jax
import jax.random as jr
import numpy as np
import pyarrow.parquet as pq
import pytest
from helpers import tables_equal
from jaxflow import initialize_distributed
from jaxflow.cli import main
from jaxflow.studies import relative_distance_sweep


# A small probability-flow run: one block of starts and a padded one, and no sample
# trajectories (they would compile a second flow program).
FLOW = [
    "orthogonal-probability-flow",
    *("--set", "d=4", "--set", "n=3", "--set", "num_starts=300", "--set", "chunk_size=160"),
    *("--set", "solver=euler", "--set", "steps=4", "--set", "sigma_max=0.05"),
    *("--set", "trajectories=0"),
    "--no-progress",
]
# A small relative-distance sweep: an odd number of repetitions, so that a split across
# the two processes' devices has to pad.
SWEEP = dict(ns=(3,), d=3, repetitions=5, reference_size=None, conventions=("consistent",))

_SCRIPT = textwrap.dedent(
    """
    import sys
    import jax
    import jax.random as jr
    import numpy as np
    import jaxflow
    from jaxflow.cli import main

    folder, port, process = sys.argv[1], sys.argv[2], sys.argv[3]
    flow, sweep = {flow!r}, {sweep!r}
    jaxflow.configure_cpu_workarounds()
    # No CPU collectives chosen (older JAX's default): joining must select gloo's.
    jax.config.update("jax_cpu_collectives_implementation", None)
    # Each process names a folder of its own: only process 0's may be written.
    distributed = ["--coordinator", f"127.0.0.1:{{port}}", "--num-processes", "2"]
    out = ["--out", f"{{folder}}/flow{{process}}"]
    assert main(["run", *flow, *out, *distributed, "--process-id", process]) == 0
    # Process 0's folder holds a foreign file; process 1's would be fine.
    assert main(["run", *flow, "--out", f"{{folder}}/foreign{{process}}"]) == 2
    result = jaxflow.studies.relative_distance_sweep(**sweep, key=jr.key(0))
    leaves = [np.asarray(x) for x in jax.tree.leaves(result)]
    np.savez(f"{{folder}}/sweep{{process}}.npz", *leaves)
    """
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """Both processes' exit codes, outputs and folder, after they ran `_SCRIPT`."""
    folder = tmp_path_factory.mktemp("distributed")
    (folder / "foreign0").mkdir()
    (folder / "foreign0" / "notes.txt").write_text("not jaxflow's")
    script = _SCRIPT.format(flow=FLOW, sweep=SWEEP)
    port = str(_free_port())
    # The session's compilation cache (conftest.py): the programs that run on one device in
    # both runs (the exact flow, the classification) compile once.
    env = dict(
        os.environ,
        JAX_PLATFORMS="cpu",
        JAX_COMPILATION_CACHE_DIR=jax.config.jax_compilation_cache_dir,
        JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
        JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0",
    )
    logs = [(folder / f"out{i}.txt", folder / f"err{i}.txt") for i in range(2)]
    processes = []
    for i, (out, err) in enumerate(logs):
        with open(out, "w") as stdout, open(err, "w") as stderr:
            command = [sys.executable, "-c", script, str(folder), port, str(i)]
            processes.append(subprocess.Popen(command, stdout=stdout, stderr=stderr, env=env))
    try:
        deadline = time.monotonic() + 600
        # A process that fails leaves the other waiting for it: stop both at once.
        while any(p.poll() is None for p in processes) and time.monotonic() < deadline:
            if any(p.poll() for p in processes):
                break
            time.sleep(0.1)
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
            p.wait()
    outputs = [(out.read_text(), err.read_text()) for out, err in logs]
    codes = [p.returncode for p in processes]
    assert codes == [0, 0], "\n".join(err[-3000:] for _, err in outputs)
    return folder, outputs


def test_two_processes_write_exactly_the_one_process_table_and_arrays(pair, tmp_path):
    folder, _ = pair
    assert main(["run", *FLOW, "--out", str(tmp_path)]) == 0
    assert tables_equal(
        pq.read_table(folder / "flow0" / "results.parquet"),
        pq.read_table(tmp_path / "results.parquet"),
    )
    with np.load(folder / "flow0" / "arrays.npz") as two, np.load(tmp_path / "arrays.npz") as one:
        assert two.files == one.files
        for name in one.files:
            assert np.array_equal(two[name], one[name]), name
    config = lambda path: json.loads((path / "config.json").read_text())["params"]
    assert config(folder / "flow0") == config(tmp_path)
    assert sorted(p.name for p in (folder / "flow0").iterdir()) == sorted(
        p.name for p in tmp_path.iterdir()
    )


def test_only_process_0_writes_and_reports(pair):
    folder, ((out0, _), (out1, _)) = pair
    assert not [p.name for p in folder.iterdir() if "flow1" in p.name]
    assert "orthogonal-probability-flow finished in" in out0 and "fraction" in out0
    assert "finished in" not in out1 and "fraction" not in out1


def test_a_refusal_in_process_0_stops_both_with_its_one_line(pair):
    folder, ((_, err0), (_, err1)) = pair
    line = (
        f"jaxflow: error: --out {folder}/foreign0: the folder holds files that are not "
        "jaxflow results"
    )
    for err in (err0, err1):
        errors = [e for e in err.splitlines() if e.startswith("jaxflow: error:")]
        assert len(errors) == 1 and errors[0].startswith(line), err[-2000:]
    assert not (folder / "foreign1").exists()
    assert (folder / "foreign0" / "notes.txt").read_text() == "not jaxflow's"


def test_two_processes_compute_exactly_the_one_process_relative_distances(pair):
    folder, _ = pair
    one = [np.asarray(x) for x in jax.tree.leaves(relative_distance_sweep(**SWEEP, key=jr.key(0)))]
    for process in range(2):
        with np.load(folder / f"sweep{process}.npz") as stored:
            two = [stored[f"arr_{i}"] for i in range(len(stored.files))]
        assert len(two) == len(one)
        for a, b in zip(two, one):
            assert a.dtype == b.dtype and np.array_equal(a, b, equal_nan=True)


# --------------------------------------------------------------------------------------
# Refusals before any work.


@pytest.mark.parametrize(
    "options, words",
    [
        (
            ["--coordinator", "127.0.0.1:1234", "--num-processes", "2", "--process-id", "2"],
            "--process-id 2: expected an integer from 0 to 1 (--num-processes 2).",
        ),
        (
            ["--coordinator", "127.0.0.1:1234", "--num-processes", "2", "--process-id", "-1"],
            "--process-id -1: expected an integer from 0 to 1",
        ),
        (
            ["--coordinator", "127.0.0.1:1234", "--num-processes", "0", "--process-id", "0"],
            "--num-processes 0: expected a positive integer.",
        ),
        (
            ["--coordinator", "127.0.0.1", "--num-processes", "2", "--process-id", "0"],
            "`--coordinator` must be HOST:PORT with a port in 1..65535, got '127.0.0.1'",
        ),
        (
            ["--coordinator", "host:99999", "--num-processes", "2", "--process-id", "0"],
            "`--coordinator` must be HOST:PORT",
        ),
        (
            ["--coordinator", ":1234", "--num-processes", "2", "--process-id", "0"],
            "`--coordinator` must be HOST:PORT",
        ),
        (
            ["--num-processes", "2", "--process-id", "0"],
            "--coordinator, --num-processes, --process-id: give all three",
        ),
        (["--distributed", "--process-id", "0"], "--distributed: takes the coordinator"),
    ],
)
def test_a_bad_distributed_option_is_one_line_before_work(capsys, tmp_path, options, words):
    assert main(["run", *FLOW, "--out", str(tmp_path / "out"), *options]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1
    assert captured.err.startswith(f"jaxflow: error: {words}")
    assert not any(tmp_path.iterdir())


def test_a_sweep_refuses_the_distributed_options_naming_shards(capsys, tmp_path):
    sweep = ["sweep", *FLOW, "--grid", "seed=0,1", "--out", str(tmp_path / "out")]
    assert main([*sweep, "--distributed"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("jaxflow: error: --distributed: jaxflow sweep runs in one process")
    assert "--shard i/k" in err and err.count("\n") == 1
    assert not any(tmp_path.iterdir())


def test_distributed_outside_a_cluster_is_one_line_before_work(capsys, tmp_path, monkeypatch):
    for name in list(os.environ):
        if name.startswith(("SLURM_", "OMPI_", "KUBERNETES_", "JAX_COORDINATOR")):
            monkeypatch.delenv(name)
    # As in a fresh process (the tests have started JAX's backend): JAX looks for a cluster,
    # finds none, and refuses before it starts anything.
    monkeypatch.setattr("jax._src.xla_bridge.backends_are_initialized", lambda: False)
    assert main(["run", *FLOW, "--out", str(tmp_path / "out"), "--distributed"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1
    assert captured.err.startswith("jaxflow: error: --distributed: JAX finds no cluster")
    assert not jax.distributed.is_initialized() and not any(tmp_path.iterdir())


@pytest.mark.parametrize(
    "arguments, error, words",
    [
        (dict(coordinator_address="nohost"), ValueError, "`coordinator_address` must be HOST:PORT"),
        (dict(num_processes=0), ValueError, "`num_processes` must be a positive int, got 0"),
        (dict(num_processes=2, process_id=2), ValueError, "`process_id` must be below"),
        (dict(process_id=-1), ValueError, "`process_id` must be an int >= 0, got -1"),
        # Here the tests have already started JAX's backend.
        (dict(), RuntimeError, "jaxflow.initialize_distributed: JAX has already started"),
    ],
)
def test_initialize_distributed_refuses_bad_arguments_and_a_late_call(arguments, error, words):
    jax.devices()
    with pytest.raises(error, match="^" + re.escape(words)):
        initialize_distributed(**arguments)
    assert not jax.distributed.is_initialized()
