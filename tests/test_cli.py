"""The `jaxflow` command: listing, help, one-line errors with exit code 2, and quick runs
that write a complete results folder."""

import dataclasses
import json
import os
import subprocess
import sys

import pyarrow.parquet as pq
import pytest
from jaxflow.cli import main
from jaxflow.experiments import describe, format_table, get_preset, PRESETS, read_config


ORTHOGONAL = (
    "orthogonal-score-flow",
    "orthogonal-probability-flow",
    "orthogonal-stability",
    "obtuse-simplex-stability",
)


def _one_line_error(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err and lines[0].startswith("jaxflow: error: ")
    return lines[0]


def test_list_names_every_preset(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ORTHOGONAL:
        assert name in PRESETS
        assert name in out and PRESETS[name].summary in out


def test_list_one_preset_shows_its_parameters(capsys):
    assert main(["list", "orthogonal-probability-flow"]) == 0
    out = capsys.readouterr().out
    for key in (
        "sigma_max (float,..., default 0.02,0.04",
        "solver (euler|heun|tsit5",
        "alpha (float or none",
    ):
        assert key in out
    assert main(["list", "no-such-preset"]) == 2
    assert "orthogonal-score-flow" in _one_line_error(capsys.readouterr().err)


def test_run_help_shows_presets_and_parameters(capsys):
    with pytest.raises(SystemExit) as exit:
        main(["run", "--help"])
    assert exit.value.code == 0
    out = capsys.readouterr().out
    for name in ORTHOGONAL:
        assert name in out
    for key in ("start_scale", "sigma_max", "chunk_size", "projection", "denoisers", "beta"):
        assert f"  {key} (" in out


def test_every_parameter_has_help():
    for name in ORTHOGONAL:
        cls = get_preset(name)
        text = describe(cls)
        for field in dataclasses.fields(cls):
            assert field.metadata["help"].strip(), (name, field.name)
            assert f"  {field.name} (" in text


def test_bad_key_is_one_line_naming_the_valid_keys(capsys):
    assert main(["run", "orthogonal-score-flow", "--set", "sigmaa=0.1"]) == 2
    line = _one_line_error(capsys.readouterr().err)
    assert "'sigmaa'" in line and "valid keys:" in line
    for key in ("sigma", "t1", "num_starts", "start_centre", "chunk_size"):
        assert key in line


@pytest.mark.parametrize(
    "assignment, words",
    [
        ("sigma=abc", ["sigma=abc", "expected float"]),
        ("solver=rk4", ["rk4", "euler, heun, tsit5"]),
        ("start_centre=middle", ["box-centre, origin"]),
        ("sigma=0.5", ["0.09129"]),  # outside the closed form's range
        ("num_starts=lots", ["expected int"]),
        ("projection=0,0", ["projection"]),
        ("sigma", ["expected key=value"]),
    ],
)
def test_bad_value_is_one_line(capsys, assignment, words):
    assert main(["run", "orthogonal-score-flow", "--set", assignment]) == 2
    line = _one_line_error(capsys.readouterr().err)
    for word in words:
        assert word in line


def test_unknown_preset_lists_the_names(capsys):
    assert main(["run", "orthogonal-flow"]) == 2
    assert "orthogonal-score-flow" in _one_line_error(capsys.readouterr().err)


# Rows per run at the quick sizes: classes x sigma_max, or sizes x (denoisers or sigmas).
_ROWS = {
    "orthogonal-score-flow": 5,
    "orthogonal-probability-flow": 5 * 6,
    "orthogonal-stability": 3 * 2,
    "obtuse-simplex-stability": 3 * 10,
}
_FIGURES = {
    "orthogonal-score-flow": ("class_fractions", "trajectories", "vertex_sizes"),
    "orthogonal-probability-flow": ("class_fractions", "trajectories", "coordinates"),
    "orthogonal-stability": ("stability",),
    "obtuse-simplex-stability": ("stability",),
}


@pytest.mark.parametrize("name", ORTHOGONAL)
def test_quick_run_writes_a_results_folder(tmp_path, capsys, name):
    assert main(["run", name, "--quick", "--no-progress", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"{name} finished" in out and "fraction" in out

    record = json.loads((tmp_path / "config.json").read_text())
    assert record["preset"] == name and record["machine"]["x64"] == "True"
    assert record["params"] == json.loads(json.dumps(record["params"]))  # plain JSON
    assert read_config(tmp_path) == get_preset(name)().quick()

    table = pq.read_table(tmp_path / "results.parquet").to_pylist()
    csv = (tmp_path / "results.csv").read_text().strip().splitlines()
    assert len(table) == len(csv) - 1 == _ROWS[name]
    assert {"fraction", "lower", "upper"} <= set(table[0])
    if "flow" in name:  # one row per endpoint class and config
        assert [r["class"] for r in table[:5]] == [
            "training",
            "virtual",
            "origin",
            "manifold",
            "other",
        ]
    for stem in _FIGURES[name]:
        assert (tmp_path / f"{stem}.png").stat().st_size > 20_000
    assert (tmp_path / "arrays.npz").exists()


def test_config_file_reruns_with_overrides(tmp_path, capsys):
    first, second = tmp_path / "first", tmp_path / "second"
    args = ["run", "orthogonal-stability", "--quick", "--no-progress"]
    assert main(args + ["--set", "seed=3", "--set", "tol=0.25", "--out", str(first)]) == 0
    rerun = ["run", "orthogonal-stability", "--config", str(first / "config.json")]
    assert main(rerun + ["--no-progress", "--set", "tol=0.3", "--out", str(second)]) == 0
    capsys.readouterr()
    before, after = read_config(first), read_config(second)
    assert (after.seed, after.max_subsets, after.tol) == (3, 300, 0.3)
    assert after == dataclasses.replace(before, tol=0.3)
    # A config of another preset is refused in one line, as is a missing file.
    assert main(["run", "orthogonal-score-flow", "--config", str(first)]) == 2
    assert "holds preset orthogonal-stability" in _one_line_error(capsys.readouterr().err)
    assert main(["run", "orthogonal-score-flow", "--config", str(tmp_path / "missing.json")]) == 2
    _one_line_error(capsys.readouterr().err)


def test_format_table_shows_missing_values_as_a_dash():
    text = format_table([{"a": None, "b": 0.123456}, {"a": 2, "b": 1.0}], ("a", "b"))
    assert text.splitlines()[2].split() == ["-", "0.1235"]


def test_console_script(tmp_path):
    """The installed `jaxflow` script: a bad key exits 2 with one line, a run exits 0."""
    script = os.path.join(os.path.dirname(sys.executable), "jaxflow")
    bad = subprocess.run(
        [script, "run", "orthogonal-score-flow", "--set", "nope=1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and bad.stdout == ""
    _one_line_error(bad.stderr)
    good = subprocess.run(
        [
            script,
            "run",
            "orthogonal-stability",
            "--quick",
            "--no-progress",
            "--set",
            "sizes=2",
            "--set",
            "denoisers=min-norm",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert good.returncode == 0, good.stderr
    assert "orthogonal-stability finished" in good.stdout
    assert (tmp_path / "stability.png").exists() and (tmp_path / "results.csv").exists()
