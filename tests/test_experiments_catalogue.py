"""One contract, every registered preset: each bad parameter value is refused in one line
before any work, a run stopped part-way resumes to the same table with a corrupt piece
recomputed, and `jaxflow plot` redraws the same figure files from disk."""

import dataclasses
import inspect
import typing
from pathlib import Path

import pytest
from helpers import Stop, tables_equal
from jaxflow import cli
from jaxflow.experiments import get_preset, PRESETS, run
from jaxflow.experiments._params import bad_values
from jaxflow.experiments._pieces import Pieces


NAMES = sorted(PRESETS)


def _refuse_work(*args, **kwargs):
    raise AssertionError("work started before the parameters were checked")


def _bad_cases():
    for name in NAMES:
        cls = get_preset(name)
        hints = typing.get_type_hints(cls)
        for field in dataclasses.fields(cls):
            for value in bad_values(field, hints[field.name]):
                yield pytest.param(name, field.name, value, id=f"{name}-{field.name}={value}")


@pytest.fixture
def no_work(monkeypatch):
    monkeypatch.setattr("jaxflow.experiments._runner.compute_cells", _refuse_work)


@pytest.mark.parametrize("name, key, value", list(_bad_cases()))
def test_every_bad_parameter_value_is_refused_in_one_line_before_work(
    name, key, value, no_work, tmp_path, capsys
):
    code = cli.main(["run", name, "--quick", "--set", f"{key}={value}", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("jaxflow: error: --set ")
    assert key in err
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("name", NAMES)
def test_every_preset_declares_a_rule_or_type_for_each_parameter_and_a_quick_run(name):
    cls = get_preset(name)
    quick = cls().quick()
    assert type(quick) is cls and quick != cls()
    assert len({quick.cell_name(c) for c in quick.cells()}) == len(quick.cells()) >= 1
    for field in dataclasses.fields(cls):
        assert field.metadata["jaxflow"].help, f"{name}.{field.name} has no help text"
    assert set(cls.summary_columns) <= set(cls.schema.names)
    assert cls.cell_independent <= {f.name for f in dataclasses.fields(cls)}


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.png"))}


@pytest.mark.parametrize("name", NAMES)
def test_a_stopped_run_resumes_to_the_same_table_and_plot_redraws_its_figures(
    name, tmp_path, monkeypatch
):
    preset = get_preset(name)().quick()
    whole = run(preset, tmp_path / "whole", progress=False)

    # Stop while the k-th cell computes, k >= 1: the cells before it are on disk.
    names = [preset.cell_name(c) for c in preset.cells()]
    stop_at = min(2, len(names) - 1)
    compute, calls = type(preset).compute, []

    def stopping(self, cell, context):
        if len(calls) == stop_at:
            raise Stop
        calls.append(cell)
        return compute(self, cell, context)

    monkeypatch.setattr(type(preset), "compute", stopping)
    out = tmp_path / "stopped"
    if stop_at > 0:
        with pytest.raises(Stop, match="part-way"):
            run(preset, out, progress=False)
    monkeypatch.setattr(type(preset), "compute", compute)
    kept = names[:stop_at]
    if len(kept) == 2:  # the first piece left unreadable: computed again
        (Pieces(out, preset).folder / f"{kept[0]}.npz").write_bytes(b"")
        kept = kept[1:]
    resumed = run(preset, out, progress=False)
    assert resumed.resumed == tuple(kept)
    assert tables_equal(resumed.table, whole.table)

    figures = _files(out)
    assert figures and figures == _files(tmp_path / "whole")
    for path in out.glob("*.png"):
        path.unlink()
    assert cli.main(["plot", str(out)]) == 0
    assert _files(out) == figures


@pytest.mark.parametrize("name", NAMES)
def test_every_preset_is_final_and_overrides_no_concrete_method(name):
    from jaxflow.experiments import AbstractPreset

    cls = get_preset(name)
    assert not inspect.isabstract(cls)
    bases = [b for b in cls.__mro__[1:] if issubclass(b, AbstractPreset)]
    for base in bases:
        assert base is AbstractPreset or inspect.isabstract(base), base
        for attr, value in vars(base).items():
            if attr.startswith("__") or not callable(value):
                continue
            if getattr(value, "__isabstractmethod__", False):
                continue
            below = cls.__mro__[: cls.__mro__.index(base)]
            assert not any(attr in vars(sub) for sub in below), f"{attr} of {base.__name__}"
