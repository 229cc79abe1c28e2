"""The `jaxflow` command: listing and help, one-line errors with exit status 2 for every
kind of user mistake, quick runs that write a complete results folder, `plot`, and
`sweep` with resumption and shards."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from helpers import tables_equal
from jaxflow.cli import format_table, main
from jaxflow.experiments import get_preset, PRESETS, read_config


SCRIPT = os.path.join(os.path.dirname(sys.executable), "jaxflow")
# A cheap preset for the runs: a few seconds at its quick size.
CHEAP = ["orthogonal-stability", "--quick", "--no-progress", "--set", "denoisers=min-norm"]


def _one_line_error(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err and lines[0].startswith("jaxflow: error: ")
    return lines[0]


def test_list_names_every_preset(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name, cls in PRESETS.items():
        assert name in out and cls.summary in out


def test_list_one_preset_shows_its_parameters_types_defaults_and_rules(capsys):
    assert main(["list", "orthogonal-probability-flow"]) == 0
    out = capsys.readouterr().out
    for key in (
        "sigma_max (float,..., default",
        "solver (euler|heun|tsit5",
        "alpha (float or none",
    ):
        assert key in out
    assert "must be > 0" in out
    assert main(["list", "no-such-preset"]) == 2
    assert "orthogonal-score-flow" in _one_line_error(capsys.readouterr().err)


def test_help_of_every_command_exits_zero(capsys):
    for command in ("run", "plot", "sweep", "list"):
        with pytest.raises(SystemExit, match="^0$") as exit:
            main([command, "--help"])
        assert exit.value.code == 0
    out = capsys.readouterr().out
    for name in PRESETS:
        assert name in out


def test_run_help_documents_the_distributed_options_and_sweep_help_the_shards(capsys):
    with pytest.raises(SystemExit, match="^0$"):
        main(["run", "--help"])
    run_help = capsys.readouterr().out
    for option in ("--distributed", "--coordinator HOST:PORT", "--num-processes N"):
        assert option in run_help
    assert "--process-id I" in run_help and "process 0 alone" in run_help
    with pytest.raises(SystemExit, match="^0$"):
        main(["sweep", "--help"])
    sweep_help = " ".join(capsys.readouterr().out.split())
    assert "--distributed" not in sweep_help.replace("jaxflow run --distributed", "")
    assert "--shard i/k" in sweep_help


def test_an_unknown_key_is_one_line_naming_the_valid_keys(capsys):
    assert main(["run", "orthogonal-score-flow", "--set", "sigmaa=0.1"]) == 2
    line = _one_line_error(capsys.readouterr().err)
    assert "'sigmaa'" in line and "valid keys:" in line
    for key in ("sigma", "t1", "num_starts", "start_centre", "chunk_size"):
        assert key in line


@pytest.mark.parametrize(
    "assignment, words",
    [
        ("sigma=abc", ["sigma=abc", "expected a number"]),
        ("solver=rk4", ["rk4", "euler, heun, tsit5"]),
        ("sigma=0.5", ["sigma", "0.09129"]),  # outside the closed form's range
        ("num_starts=2.5", ["num_starts=2.5", "not a fraction"]),
        ("num_starts=1e400", ["num_starts=1e400", "finite"]),
        ("tol=nan", ["tol=nan", "finite"]),
        ("projection=0,0", ["projection"]),
        ("sigma", ["expected key=value"]),
        ("num_starts=1e13", ["num_starts", "GiB"]),  # does not fit in memory
    ],
)
def test_a_bad_value_is_one_line_naming_it(capsys, tmp_path, assignment, words):
    args = ["run", "orthogonal-score-flow", "--set", assignment, "--out", str(tmp_path / "o")]
    assert main(args) == 2
    line = _one_line_error(capsys.readouterr().err)
    for word in words:
        assert word in line
    assert not (tmp_path / "o").exists()


def test_an_unknown_preset_lists_the_names(capsys):
    assert main(["run", "orthogonal-flow"]) == 2
    assert "orthogonal-score-flow" in _one_line_error(capsys.readouterr().err)


@pytest.mark.parametrize(
    "content, words",
    [
        ("[1, 2]", ["not a jaxflow config"]),
        ("{not json", ["is not JSON"]),
        ('{"preset": "orthogonal-stability", "params": [1]}', ["expected an object"]),
        ('{"preset": "orthogonal-stability", "params": {"sigmaa": 1}}', ["'sigmaa'", "valid"]),
        ('{"preset": "orthogonal-stability", "params": {"n": "many"}}', ["n=many", "integer"]),
        ('{"preset": "orthogonal-stability", "params": {"n": 2.5}}', ["n=2.5", "fraction"]),
        ('{"preset": "orthogonal-stability", "params": {"dtype": "float16"}}', ["float16"]),
        ('{"preset": "orthogonal-stability", "params": {"sigma": -1}}', ["sigma=-1", "> 0"]),
        ('{"preset": "no-such", "params": {}}', ["unknown preset"]),
        ('{"preset": "orthogonal-score-flow", "params": {}}', ["holds preset"]),
    ],
)
def test_a_bad_config_file_is_one_line(capsys, tmp_path, content, words):
    path = tmp_path / "config.json"
    path.write_text(content)
    assert main(["run", "orthogonal-stability", "--config", str(path)]) == 2
    line = _one_line_error(capsys.readouterr().err)
    for word in words:
        assert word in line


def test_a_missing_config_file_is_one_line(capsys, tmp_path):
    assert main(["run", "orthogonal-stability", "--config", str(tmp_path / "none.json")]) == 2
    assert "cannot read" in _one_line_error(capsys.readouterr().err)


@pytest.mark.parametrize("kind", ["file", "foreign", "below-file"])
def test_an_unusable_out_is_one_line_before_work(capsys, tmp_path, kind):
    (tmp_path / "file").write_text("x")
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "notes.txt").write_text("keep me")
    out = {"file": "file", "foreign": "foreign", "below-file": "file/out"}[kind]
    assert main(["run", *CHEAP, "--out", str(tmp_path / out)]) == 2
    assert "--out" in _one_line_error(capsys.readouterr().err)
    assert (tmp_path / "foreign" / "notes.txt").read_text() == "keep me"


def test_a_quick_run_writes_a_folder_that_reruns_from_its_config_and_redraws(tmp_path, capsys):
    first, second = tmp_path / "first", tmp_path / "second"
    assert main(["run", *CHEAP, "--set", "seed=3", "--set", "tol=0.25", "--out", str(first)]) == 0
    out = capsys.readouterr().out
    assert "orthogonal-stability finished" in out and "fraction" in out
    record = json.loads((first / "config.json").read_text())
    assert record["preset"] == "orthogonal-stability" and record["machine"]["x64"] == "True"
    table = pq.read_table(first / "results.parquet")
    assert table.schema == get_preset("orthogonal-stability").schema
    assert table.num_rows == len((first / "results.csv").read_text().strip().splitlines()) - 1
    rerun = ["run", "orthogonal-stability", "--config", str(first), "--no-progress"]
    assert main(rerun + ["--set", "tol=0.3", "--out", str(second)]) == 0
    after = read_config(second)
    assert (after.seed, after.tol, after.denoisers) == (3, 0.3, ("min-norm",))
    png = (first / "stability.png").read_bytes()
    (first / "stability.png").unlink()
    assert main(["plot", str(first)]) == 0
    assert (first / "stability.png").read_bytes() == png
    assert main(["plot", str(tmp_path)]) == 2
    assert "no results.parquet" in _one_line_error(capsys.readouterr().err)


def test_format_table_shows_missing_values_as_a_dash():
    import pyarrow as pa

    table = pa.Table.from_pylist([{"a": None, "b": 0.123456}, {"a": 2, "b": 1.0}])
    assert format_table(table, ("a", "b")).splitlines()[2].split() == ["-", "0.1235"]


def test_the_console_script_keeps_compiled_programs_where_asked(tmp_path):
    cache = tmp_path / "compiled"
    args = [SCRIPT, "run", *CHEAP, "--out", str(tmp_path / "o"), "--compilation-cache", str(cache)]
    done = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert any(cache.iterdir())


def test_cpu_devices_split_the_repetitions_and_leave_the_table_unchanged(tmp_path):
    # A fresh process for each: the CPU's device count is fixed when JAX starts.
    run = ["run", "linear-transition", "--quick", "--no-progress"]
    tables = []
    for extra, devices in (([], "cpu"), (["--cpu-devices", "2"], "cpu, cpu")):
        out = tmp_path / str(len(tables))
        done = subprocess.run(
            [SCRIPT, *run, "--out", str(out), *extra], capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, done.stderr
        assert json.loads((out / "config.json").read_text())["machine"]["devices"] == devices
        tables.append(pq.read_table(out / "results.parquet"))
    assert tables_equal(*tables)


@pytest.mark.parametrize("count", ["0", "-1", "two", "1.5"])
def test_a_bad_cpu_device_count_is_one_line_before_work(capsys, tmp_path, count):
    args = ["run", *CHEAP, "--out", str(tmp_path / "o"), "--cpu-devices", count]
    assert main(args) == 2
    assert f"--cpu-devices {count}" in _one_line_error(capsys.readouterr().err)
    assert not (tmp_path / "o").exists()


def test_the_console_script_refuses_a_mistake_in_one_line():
    bad = subprocess.run(
        [SCRIPT, "run", "orthogonal-score-flow", "--set", "nope=1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and bad.stdout == ""
    _one_line_error(bad.stderr)


# --------------------------------------------------------------------------------------
# Sweeps.

SWEEP = ["sweep", *CHEAP, "--set", "sizes=2", "--grid", "seed=0,1,2", "--grid", "tol=0.1,0.3"]


def _dataset(folder: Path):
    table = pq.read_table(folder / "table")
    return table.sort_by([("config_hash", "ascending"), ("size", "ascending")])


def test_a_sweep_writes_one_file_per_point_with_its_config(tmp_path, capsys):
    assert main([*SWEEP, "--out", str(tmp_path)]) == 0
    assert len(list((tmp_path / "table").glob("*.parquet"))) == 6
    table = _dataset(tmp_path)
    assert set(table["param_seed"].to_pylist()) == {0, 1, 2}
    assert set(table["param_tol"].to_pylist()) == {0.1, 0.3}
    assert len(set(table["config_hash"].to_pylist())) == 6
    capsys.readouterr()
    assert main([*SWEEP, "--out", str(tmp_path), "--status"]) == 0
    assert "6 done, 0 left" in capsys.readouterr().out


def test_sweep_shards_together_give_exactly_the_unsharded_table(tmp_path):
    assert main([*SWEEP, "--out", str(tmp_path / "whole")]) == 0
    assert main([*SWEEP, "--out", str(tmp_path / "sharded"), "--shard", "1/2"]) == 0
    assert main([*SWEEP, "--out", str(tmp_path / "sharded"), "--shard", "2/2"]) == 0
    assert tables_equal(_dataset(tmp_path / "sharded"), _dataset(tmp_path / "whole"))


def test_a_killed_sweep_rerun_gives_the_same_table_with_no_point_lost_or_doubled(tmp_path):
    assert main([*SWEEP, "--out", str(tmp_path / "whole")]) == 0
    out = tmp_path / "killed"
    process = subprocess.Popen([SCRIPT, *SWEEP, "--out", str(out)], stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while len(list((out / "table").glob("*.parquet"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait(60)
    assert 2 <= len(list((out / "table").glob("*.parquet"))) < 6
    assert main([*SWEEP, "--out", str(out)]) == 0
    assert tables_equal(_dataset(out), _dataset(tmp_path / "whole"))


@pytest.mark.parametrize(
    "extra, words",
    [
        (["--grid", "sed=0,1"], ["'sed'", "valid keys"]),
        (["--grid", "seed=0,x"], ["seed=x"]),
        (["--grid", "tol=-1,0.2"], ["tol=-1", "> 0"]),
        (["--grid", "seed"], ["expected key=v1,v2"]),
        (["--shard", "3/2"], ["--shard 3/2"]),
        (["--spec", "/nonexistent.toml"], ["cannot read"]),
    ],
)
def test_a_bad_sweep_is_one_line_before_work(capsys, tmp_path, extra, words):
    args = ["sweep", *CHEAP, "--grid", "iterations=50,60", *extra, "--out", str(tmp_path / "s")]
    assert main(args) == 2
    line = _one_line_error(capsys.readouterr().err)
    for word in words:
        assert word in line
    assert not (tmp_path / "s").exists()


def test_a_sweep_folder_never_mixes_two_sweeps(capsys, tmp_path):
    spec = tmp_path / "spec.toml"
    spec.write_text("[set]\nsizes = [2]\n[grid]\nseed = [0, 1]\n")
    assert main(["sweep", *CHEAP, "--spec", str(spec), "--out", str(tmp_path / "s")]) == 0
    capsys.readouterr()
    assert main(["sweep", *CHEAP, "--grid", "seed=0,1,2", "--out", str(tmp_path / "s")]) == 2
    assert "holds another sweep" in _one_line_error(capsys.readouterr().err)
