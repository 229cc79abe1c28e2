"""The runner's promises, on a toy preset: parameters refused by name, finished cells
resumed, unreadable pieces recomputed, figures redrawn from disk, and a results folder
that is always wholly one run's, even when runs collide or are killed."""

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from helpers import Stop, tables_equal
from jaxflow.experiments import ConfigError, redraw, run
from jaxflow.experiments._params import convert
from jaxflow.experiments._pieces import Pieces
from jaxflow.experiments._store import locked
from toy_preset import Toy


TESTS = Path(__file__).parent


def _files(folder: Path) -> dict[str, object]:
    """A folder's files by name: bytes, but the arrays of an `.npz` (a zip records the
    time it was written) and the parameters of `config.json`."""
    files = {}
    for path in sorted(Path(folder).iterdir()):
        if path.suffix == ".npz":
            with np.load(path) as stored:
                files[path.name] = {k: stored[k].tobytes() for k in stored.files}
        elif path.name == "config.json":
            files[path.name] = json.loads(path.read_text())["params"]
        else:
            files[path.name] = path.read_bytes()
    return files


# --------------------------------------------------------------------------------------
# Parameters.


@pytest.mark.parametrize(
    "changes, match",
    [
        ({"blocks": 0}, r"^blocks=0: must be > 0\.$"),
        ({"quantile": 1.0}, r"^quantile=1: must be in \(0, 1\)\.$"),
        ({"delay": -1.0}, r"^delay=-1: must be >= 0\.$"),
        ({"blocks": 10**7, "size": 10**6}, r"^blocks \* size must be at most 1e12"),
    ],
)
def test_a_bad_parameter_is_refused_in_one_line_naming_it(changes, match):
    with pytest.raises(ConfigError, match=match) as info:
        Toy(**changes)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "text, kind, match",
    [
        ("2.5", int, r"^blocks=2\.5: expected an integer, not a fraction\.$"),
        ("1e400", int, r"^blocks=1e400: expected a finite number\.$"),
        ("nan", float, r"^blocks=nan: expected a finite number\.$"),
        ("-inf", float, r"^blocks=-inf: expected a finite number\.$"),
        ("ten", int, r"^blocks=ten: expected an integer\.$"),
        (True, int, r"^blocks=True: expected a number\.$"),
    ],
)
def test_a_number_that_does_not_parse_exactly_is_refused(text, kind, match):
    with pytest.raises(ConfigError, match=match):
        convert(text, kind, "blocks")


@pytest.mark.parametrize("text, value", [("3", 3), ("1e5", 100000), (3.0, 3), ("-0", 0)])
def test_an_exact_integer_is_accepted_in_any_spelling(text, value):
    converted = convert(text, int, "blocks")
    assert converted == value and type(converted) is int


# --------------------------------------------------------------------------------------
# Running, resuming, redrawing.


def test_a_run_writes_its_table_config_arrays_and_figures(tmp_path):
    result = run(Toy(), tmp_path / "out", progress=False)
    assert set(_files(tmp_path / "out")) == {
        "config.json",
        "results.parquet",
        "results.csv",
        "arrays.npz",
        "histogram.png",
    }
    table = pq.read_table(tmp_path / "out" / "results.parquet")
    assert tables_equal(table, result.table)
    assert table.schema == Toy.schema
    record = json.loads((tmp_path / "out" / "config.json").read_text())
    assert record["preset"] == "toy" and record["params"]["blocks"] == 3
    # No pieces, staging folders or swapped-out results are left behind.
    assert sorted(p.name for p in tmp_path.iterdir()) == [".out.lock", "out"]


def test_plot_redraws_the_same_figure_files_from_disk(tmp_path):
    run(Toy(), tmp_path, progress=False)
    before = _files(tmp_path)
    (tmp_path / "histogram.png").unlink()
    assert redraw(tmp_path, Toy) == (tmp_path / "histogram.png",)
    assert _files(tmp_path) == before


def test_a_run_stopped_part_way_resumes_to_an_identical_table(tmp_path, monkeypatch):
    whole = run(Toy(), tmp_path / "whole", progress=False)
    compute = Toy.compute
    calls = []

    def stopping(self, cell, context):
        calls.append(cell)
        if len(calls) == 2:
            raise Stop
        return compute(self, cell, context)

    monkeypatch.setattr(Toy, "compute", stopping)
    with pytest.raises(Stop, match="part-way"):
        run(Toy(), tmp_path / "stopped", progress=False)
    assert not (tmp_path / "stopped").exists()
    monkeypatch.setattr(Toy, "compute", compute)
    resumed = run(Toy(), tmp_path / "stopped", progress=False)
    assert resumed.resumed == ("block0",)
    assert tables_equal(resumed.table, whole.table)
    assert _files(tmp_path / "stopped") == _files(tmp_path / "whole")


@pytest.mark.parametrize("content", [b"", b"not a zip file", b"PK\x03\x04truncated"])
def test_an_empty_or_corrupt_piece_is_recomputed(tmp_path, content):
    pieces = Pieces(tmp_path / "out", Toy())
    pieces.folder.mkdir(parents=True)
    (pieces.folder / "block1.npz").write_bytes(content)
    result = run(Toy(), tmp_path / "out", progress=False)
    assert result.resumed == ()
    assert tables_equal(result.table, run(Toy(), tmp_path / "fresh", progress=False).table)


def test_a_cell_independent_parameter_reuses_the_cells(tmp_path, monkeypatch):
    compute = Toy.compute
    monkeypatch.setattr(Toy, "compute", lambda *a: (_ for _ in ()).throw(Stop))
    pieces = Pieces(tmp_path / "out", Toy())
    for cell in Toy().cells():
        pieces.save(
            Toy().cell_name(cell),
            {
                k: np.asarray(v)
                for k, v in compute(Toy(), cell, Toy().prepare(progress=False)).items()
            },
        )
    changed = Toy(quantile=0.9, bins=7)
    reused = run(changed, tmp_path / "out", progress=False)  # computes nothing: Stop otherwise
    assert reused.resumed == ("block0", "block1", "block2")
    monkeypatch.setattr(Toy, "compute", compute)
    assert tables_equal(reused.table, run(changed, tmp_path / "fresh", progress=False).table)


def test_a_cell_dependent_parameter_never_reuses_a_cell(tmp_path):
    run(Toy(delay=0.0), tmp_path / "a", progress=False)
    Pieces(tmp_path / "out", Toy()).save("block0", {"draws": np.zeros(1000)})
    assert run(Toy(seed=1), tmp_path / "out", progress=False).resumed == ()


# --------------------------------------------------------------------------------------
# The results folder.


def test_an_unusable_out_is_refused_before_any_work(tmp_path, monkeypatch):
    monkeypatch.setattr(Toy, "compute", lambda *a: (_ for _ in ()).throw(Stop))
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match=r"^--out .*file: exists and is not a folder"):
        run(Toy(), tmp_path / "file", progress=False)
    with pytest.raises(ConfigError, match=r"is not a folder; choose another path"):
        run(Toy(), tmp_path / "file" / "below", progress=False)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("precious")
    with pytest.raises(ConfigError, match=r"holds files that are not jaxflow results"):
        run(Toy(), tmp_path / "mine", progress=False)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "precious"
    if os.geteuid() != 0:  # root writes anywhere
        (tmp_path / "locked").mkdir(mode=0o500)
        with pytest.raises(ConfigError, match=r"is not writable"):
            run(Toy(), tmp_path / "locked" / "out", progress=False)


def test_a_run_too_large_for_the_machine_is_refused_naming_its_size(tmp_path):
    with pytest.raises(ConfigError, match=r"^size: the run needs about .* GiB of memory"):
        run(Toy(blocks=10**6, size=10**6), tmp_path, progress=False)


def test_a_second_run_into_a_folder_being_written_is_refused(tmp_path):
    with locked(tmp_path / "out"):
        with pytest.raises(ConfigError, match=r"another jaxflow run is writing this folder"):
            run(Toy(), tmp_path / "out", progress=False)


_RUN = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {tests!r})
    import jaxflow
    jaxflow.configure_cpu_workarounds()
    from jaxflow.experiments import ConfigError, run
    from toy_preset import Toy
    try:
        run(Toy(seed={seed}, delay={delay}), {out!r}, progress=False)
    except ConfigError as e:
        print(e, file=sys.stderr)
        sys.exit(2)
    """
)


def _start(out: Path, seed: int, delay: float) -> subprocess.Popen:
    script = _RUN.format(tests=str(TESTS), seed=seed, delay=delay, out=str(out))
    return subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE, text=True)


def _expected(tmp_path: Path, seed: int, delay: float) -> dict:
    run(Toy(seed=seed, delay=delay), tmp_path / f"expected{seed}", progress=False)
    return _files(tmp_path / f"expected{seed}")


def _same_run(files: dict, expected: dict) -> bool:
    return files == expected


def test_two_runs_started_at_once_leave_one_runs_folder(tmp_path):
    out = tmp_path / "out"
    first, second = _start(out, 1, 0.3), _start(out, 2, 0.3)
    codes = sorted(p.wait(120) for p in (first, second))
    errors = first.stderr.read() + second.stderr.read()
    assert codes[0] == 0 and codes[1] in (0, 2)
    if codes[1] == 2:
        assert "another jaxflow run is writing this folder" in errors
    files = _files(out)
    assert _same_run(files, _expected(tmp_path, 1, 0.3)) or _same_run(
        files, _expected(tmp_path, 2, 0.3)
    )


def test_a_run_killed_at_any_moment_leaves_one_runs_folder(tmp_path):
    out = tmp_path / "out"
    run(Toy(seed=1, delay=0.05), out, progress=False)
    old, new = _files(out), _expected(tmp_path, 2, 0.05)
    rng = random.Random(0)
    for _ in range(6):
        process = _start(out, 2, 0.05)
        time.sleep(rng.uniform(0.5, 4.0))
        process.send_signal(signal.SIGKILL)
        process.wait(60)
        files = _files(out)
        assert _same_run(files, old) or _same_run(files, new)
        if _same_run(files, new):
            run(Toy(seed=1, delay=0.05), out, progress=False)  # back to the old one
    # Whatever the kills left beside it, the next run finishes and cleans up.
    run(Toy(seed=2, delay=0.05), out, progress=False)
    assert _same_run(_files(out), new)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".out")) in (
        [".out.lock"],
        [".out.lock", ".out.pieces"],
    )
