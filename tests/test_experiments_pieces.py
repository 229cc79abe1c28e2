"""Finished pieces of a long run: written as they finish, reused by a run of the same
configuration only, and a run that stops part-way resumes to the same results."""

import dataclasses

import numpy as np
import pytest
from jaxflow.experiments import get_preset, Pieces, write_results
from jaxflow.experiments._pieces import pieces_folder


def _preset(**changes):
    preset = get_preset("linear-distance-vs-n")().quick()
    return dataclasses.replace(preset, n_over_d=(0.5, 2.0, 10.0), T=(2.0,), lam=(1.0,), **changes)


class Counter:
    def __init__(self, arrays):
        self.arrays, self.calls = arrays, 0

    def __call__(self):
        self.calls += 1
        return self.arrays


def test_a_finished_piece_is_read_back_not_computed_again(tmp_path):
    compute = Counter({"x": np.arange(5.0), "flag": np.asarray(True)})
    first = Pieces(tmp_path, _preset())("cell", compute)
    again = Pieces(tmp_path, _preset())("cell", compute)
    assert compute.calls == 1
    assert again.keys() == first.keys()
    np.testing.assert_array_equal(again["x"], np.arange(5.0))
    assert again["flag"].dtype == bool and again["flag"]


def test_another_configuration_never_reuses_a_piece(tmp_path):
    compute = Counter({"x": np.zeros(2)})
    Pieces(tmp_path, _preset())("cell", compute)
    Pieces(tmp_path, _preset(reps=9))("cell", compute)
    Pieces(tmp_path, _preset(seed=1))("cell", compute)
    assert compute.calls == 3
    assert pieces_folder(tmp_path, _preset()) != pieces_folder(tmp_path, _preset(seed=1))


def test_an_unreadable_piece_is_computed_again(tmp_path):
    pieces = Pieces(tmp_path, _preset())
    pieces.folder.mkdir(parents=True)
    (pieces.folder / "cell.npz").write_bytes(b"not a zip file")
    compute = Counter({"x": np.ones(3)})
    np.testing.assert_array_equal(pieces("cell", compute)["x"], np.ones(3))
    assert compute.calls == 1 and pieces.resumed == []


class Stop(Exception):
    pass


def test_a_run_that_stops_resumes_to_the_same_results(tmp_path, monkeypatch):
    preset = _preset()
    uninterrupted = preset.run(tmp_path / "whole", progress=False)

    # Stop the run while it computes its second piece (one per training-set size).
    computed = []
    call = Pieces.__call__

    def stopping(self, name, compute):
        def counted():
            computed.append(name)
            if len(computed) == 2:
                raise Stop
            return compute()

        return call(self, name, counted)

    monkeypatch.setattr(Pieces, "__call__", stopping)
    out = tmp_path / "stopped"
    with pytest.raises(Stop):
        preset.run(out, progress=False)
    assert len(list(pieces_folder(out, preset).glob("*.npz"))) == 1

    # Run again: only the pieces that did not finish are computed.
    redone = []

    def counting(self, name, compute):
        return call(self, name, lambda: redone.append(name) or compute())

    monkeypatch.setattr(Pieces, "__call__", counting)
    resumed = preset.run(out, progress=False)
    assert len(redone) == len(uninterrupted.arrays["ns"]) - 1  # the finished piece is not redone
    assert resumed.rows == uninterrupted.rows

    write_results(preset, resumed, out)
    assert not (out / "pieces").exists()  # the results hold them now


def _small(name, **changes):
    return dataclasses.replace(get_preset(name)().quick(), **changes)


RESUMABLE = {
    "linear-transition": lambda: _small(
        "linear-transition", d=5, ns=(3, 8), reference_size=30, reps=4, resamples=20
    ),
    "linear-transition-vs-d": lambda: _small(
        "linear-transition-vs-d", ds=(3, 4), n_over_d=(1.0, 3.0), reps=4, resamples=20
    ),
    "linear-steps": lambda: _small("linear-steps", d=4, n_over_d=(1.0, 3.0), steps=(1, 2), reps=3),
    "orthogonal-probability-flow": lambda: _small(
        "orthogonal-probability-flow", num_starts=300, chunk_size=128, sigma_max=(0.05, 0.08)
    ),
}


@pytest.mark.parametrize("name", RESUMABLE)
def test_a_second_run_reads_every_piece_and_gives_the_same_results(name, tmp_path, monkeypatch):
    preset = RESUMABLE[name]()
    first = preset.run(tmp_path, progress=False)  # keeps its pieces: no write_results
    assert any(pieces_folder(tmp_path, preset).glob("*.npz"))

    def no_compute(self, name, compute):
        raise AssertionError(f"piece {name} computed again")

    call = Pieces.__call__
    monkeypatch.setattr(
        Pieces,
        "__call__",
        lambda self, name, compute: call(self, name, lambda: no_compute(self, name, compute)),
    )
    again = preset.run(tmp_path, progress=False)
    assert _same_rows(again.rows, first.rows)
    assert again.arrays.keys() == first.arrays.keys()
    for key in first.arrays:
        np.testing.assert_array_equal(np.asarray(again.arrays[key]), np.asarray(first.arrays[key]))


def _same_rows(a, b):
    """Equal rows, NaN equal to NaN."""
    return len(a) == len(b) and all(
        x.keys() == y.keys()
        and all(np.array_equal(x[k], y[k], equal_nan=isinstance(x[k], float)) for k in x)
        for x, y in zip(a, b)
    )


def test_parameters_of_the_final_steps_keep_the_pieces(tmp_path):
    preset = RESUMABLE["linear-transition-vs-d"]()
    folder = lambda p: pieces_folder(tmp_path, p)
    for kept in (dict(confidence=0.9), dict(resamples=7), dict(ds=(4,))):
        assert folder(dataclasses.replace(preset, **kept)) == folder(preset)
    assert folder(dataclasses.replace(preset, reps=5)) != folder(preset)
