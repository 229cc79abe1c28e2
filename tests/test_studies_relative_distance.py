"""The relative-distance sweep of [H] (Section 4; docs/conventions.md): the sweep
against single-cell computations, reproducibility from saved inputs, the covariance
conventions, compilation once, and recomputation of uncertain float32 signs."""

import os
import subprocess
import sys
import textwrap

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from helpers import count_compilations, tree_equal, without_runtime_typechecks
from jaxflow.data import Gaussian
from jaxflow.estimators import (
    hellinger_squared,
    KernelMixture,
    kl_divergence,
    one_step_distances,
    pair_sums,
    PairSums,
    relative_distance,
)
from jaxflow.flows import COVARIANCE_CONVENTIONS, one_step_gaussian
from jaxflow.studies import (
    relative_distance_arrays,
    relative_distance_sweep,
    RelativeDistanceSweep,
    sweep_inputs,
)
from jaxflow.training import fit_affine


D, NS, N_O, R = 8, (4, 10), 60, 6
OPTIONS = dict(d=D, repetitions=R, reference_size=N_O, chunk_size=4, m=3.0, s=1.5, T=1.5, lam=0.7)


@pytest.fixture(scope="module")
def sweep():
    # 6 repetitions in chunks of 4: the last chunk is padded and trimmed.
    return relative_distance_sweep(NS, **OPTIONS, key=jr.key(0))


def _inputs(r, n):
    return sweep_inputs(r, n, key=jr.key(0), d=D, m=3.0, s=1.5, T=1.5, lam=0.7, reference_size=N_O)


def test_sweep_matches_single_cells(sweep):
    p = Gaussian.isotropic(D, 3.0, 1.5)
    g, n = 1, NS[1]
    for r in (0, 3, 5):
        x0, xt, ref = _inputs(r, n)
        denoiser = fit_affine(x0, xt)
        for c, convention in enumerate(sweep.conventions):
            q = one_step_gaussian(denoiser, x0, T=1.5, lam=0.7, convention=convention)
            one = relative_distance(q, KernelMixture(x0, 1.5), KernelMixture(ref, 1.5))
            cell = jax.tree.map(lambda x: x[r, g, c], sweep.relative)
            assert cell.sign == one.sign and bool(cell.certain)
            # The sweep's float32 Gram matrix is within its own error bound.
            bound = np.exp(float(cell.log_error - cell.log_abs))
            assert abs(np.expm1(float(cell.log_abs - one.log_abs))) <= bound
            np.testing.assert_allclose(sweep.kl[r, g, c], kl_divergence(q, p), rtol=1e-10)
            np.testing.assert_allclose(
                sweep.hellinger[r, g, c], hellinger_squared(q, p), rtol=1e-10
            )


def test_arrays_reproduce_sweep(sweep):
    g, n = 1, NS[1]
    x0, xt, ref = (jnp.stack(a) for a in zip(*[_inputs(r, n) for r in range(R)]))
    again = relative_distance_arrays(x0, xt, ref, m=3.0, s=1.5, T=1.5, lam=0.7)
    assert isinstance(again, RelativeDistanceSweep) and again.ns == (n,)
    np.testing.assert_array_equal(again.relative.sign[:, 0], sweep.relative.sign[:, g])
    np.testing.assert_allclose(
        again.relative.log_abs[:, 0], sweep.relative.log_abs[:, g], rtol=1e-6
    )
    np.testing.assert_allclose(again.kl[:, 0], sweep.kl[:, g], rtol=1e-12)


def test_conventions_give_different_delta_same_kl(sweep):
    p = Gaussian.isotropic(D, 3.0, 1.5)
    # The two covariances v W W^T and v W^T W share their spectrum and q's mean, so
    # KL(q || p) to an isotropic p agrees (checked on the q's themselves) ...
    for n in NS:
        x0, xt, _ = _inputs(2, n)
        denoiser = fit_affine(x0, xt)
        q1, q2 = (
            one_step_gaussian(denoiser, x0, T=1.5, lam=0.7, convention=c) for c in sweep.conventions
        )
        kl1, kl2 = kl_divergence(q1, p), kl_divergence(q2, p)
        assert (np.isinf(kl1) and np.isinf(kl2)) or np.isclose(kl1, kl2, rtol=1e-9)
        np.testing.assert_allclose(
            np.linalg.eigvalsh(q1.cov), np.linalg.eigvalsh(q2.cov), atol=1e-10
        )
        assert not np.allclose(q1.cov, q2.cov)
    # ... but not their eigenvectors: Delta differs in every cell, and so does the
    # Hellinger distance once q is regular (the mean difference sees the eigenvectors).
    log_abs = np.asarray(sweep.relative.log_abs)
    assert np.all(np.abs(log_abs[..., 0] - log_abs[..., 1]) > 1e-6)
    hellinger = np.asarray(sweep.hellinger)[:, -1]  # n = 10 > d
    assert np.all(np.abs(hellinger[:, 0] - hellinger[:, 1]) > 1e-8)


def test_probability_and_no_recompilation(sweep):
    prob = sweep.probability()
    assert prob.fraction.shape == (len(NS), 2)
    np.testing.assert_array_equal(
        prob.positives, np.sum(np.asarray(sweep.relative.sign) > 0, axis=0)
    )
    assert np.all((prob.lower <= prob.fraction) & (prob.fraction <= prob.upper))
    with count_compilations() as n:
        other = relative_distance_sweep(NS, **OPTIONS, key=jr.key(1))
        jax.block_until_ready(other.relative.sign)
    assert n[0] == 0
    assert not np.array_equal(other.relative.log_abs, sweep.relative.log_abs)


@pytest.mark.slow
def test_sweep_against_p():
    res = relative_distance_sweep(
        (4, 8), key=jr.key(2), d=4, repetitions=3, reference_size=None, chunk_size=3
    )
    x0, xt, ref = sweep_inputs(1, 8, key=jr.key(2), d=4, reference_size=None)
    assert ref is None
    q = one_step_gaussian(fit_affine(x0, xt), x0, T=2.0, lam=1.0)
    one = relative_distance(q, KernelMixture(x0), Gaussian.isotropic(4, 10.0, 1.0))
    np.testing.assert_allclose(res.relative.log_abs[1, 1, 0], one.log_abs, rtol=1e-12)


def test_validation():
    with pytest.raises(ValueError, match="increasing"):
        relative_distance_sweep((8, 4), key=jr.key(0), d=4, repetitions=2)
    with pytest.raises(ValueError, match="conventions"):
        relative_distance_sweep((4, 8), key=jr.key(0), d=4, repetitions=2, conventions=("other",))
    with pytest.raises(ValueError, match="arithmetic"):
        relative_distance_sweep((4, 8), key=jr.key(0), d=4, repetitions=2, arithmetic="float16")
    with pytest.raises(ValueError, match="`repetitions` must be a positive int"):
        relative_distance_sweep((4, 8), key=jr.key(0), d=4, repetitions=0)


def test_uncertain_float32_signs_are_recomputed(monkeypatch):
    import jaxflow.estimators._kernel as kernel_module

    pair_sums = kernel_module._pair_sums

    def pessimistic(points, var, *, gram_dtype=None, **options):
        sums = pair_sums(points, var, gram_dtype=gram_dtype, **options)
        if gram_dtype is None or jnp.dtype(gram_dtype) == points.dtype:
            return sums
        # A float32 Gram matrix claimed to be off by a factor e^100: no sign is certain.
        return eqx.tree_at(lambda s: s.log_error, sums, jnp.zeros_like(sums.log_error) + 100.0)

    monkeypatch.setattr(kernel_module, "_pair_sums", pessimistic)
    # block_size=77 (no effect at these sizes) gives a fresh trace with the patch.
    options = dict(d=4, repetitions=3, reference_size=20, chunk_size=2, block_size=77)
    fast = relative_distance_sweep((5,), **options, key=jr.key(3))
    slow = relative_distance_sweep((5,), **options, key=jr.key(3), gram_dtype=None)
    assert fast.recomputed == 3 and slow.recomputed == 0
    assert np.all(np.asarray(fast.relative.certain))
    np.testing.assert_array_equal(fast.relative.log_abs, slow.relative.log_abs)


_EIGHT_DEVICES = textwrap.dedent(
    """
    import sys
    import jax
    jax.config.update("jax_enable_x64", True)
    import jax.random as jr, numpy as np
    import jaxflow as jf

    jf.configure_cpu_workarounds()
    assert jax.device_count() == 8, jax.devices()
    sweep = jf.studies.relative_distance_sweep(NS, key=jr.key(0), **OPTIONS)
    out = {name: np.asarray(getattr(sweep.relative, name)) for name in FIELDS[:4]}
    np.savez(sys.argv[1], kl=sweep.kl, hellinger=sweep.hellinger, **out)
    """
)
_FIELDS = ("sign", "log_abs", "log_error", "certain", "kl", "hellinger")


def _on_eight_devices(tmp_path, options, ns=NS) -> dict[str, np.ndarray]:
    """The sweep of `ns` and `options` (key 0) on 8 host devices, in a subprocess."""
    script = tmp_path / "run.py"
    header = f"NS, OPTIONS, FIELDS = {(ns, options, _FIELDS)!r}\n"
    script.write_text(header + _EIGHT_DEVICES)
    env = dict(
        os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu"
    )
    proc = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "out.npz")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return dict(np.load(tmp_path / "out.npz"))


def _assert_same(sharded, single: RelativeDistanceSweep):
    for name in _FIELDS:
        value = getattr(single, name) if name in ("kl", "hellinger") else None
        value = getattr(single.relative, name) if value is None else value
        np.testing.assert_array_equal(sharded[name], np.asarray(value), err_msg=name)


def test_sweep_on_eight_devices_matches_one_device_bitwise(sweep, tmp_path):
    # 6 repetitions in chunks of 4: a chunk of 8, one repetition per device, two of them
    # padding. Each device runs the same loop body on its own repetitions.
    sharded = _on_eight_devices(tmp_path, OPTIONS)
    _assert_same(sharded, sweep)


def test_several_repetitions_per_device_match_one_device_bitwise(tmp_path):
    # 16 repetitions in one chunk, two per device, at d = 10 and n = 20: there XLA:CPU
    # once summed a training set's squared deviations in another order in the program
    # split across devices (now a product with the weights, as the mean).
    ns, options = (20,), dict(d=10, repetitions=16, reference_size=60, chunk_size=16)
    single = relative_distance_sweep(ns, key=jr.key(0), **options)
    _assert_same(_on_eight_devices(tmp_path, options, ns), single)


@pytest.mark.slow
def test_reference_arithmetic_on_eight_devices_matches_one_device_bitwise(tmp_path):
    options = OPTIONS | dict(arithmetic="reference")
    single = relative_distance_sweep(NS, key=jr.key(0), **options)
    _assert_same(_on_eight_devices(tmp_path, options), single)


def test_padding_groups_pad_the_reference_grid_once_and_wide_grids_at_most_twofold():
    from jaxflow.studies._relative_distance import _padding_groups

    assert _padding_groups((25, 50, 75, 100), 10_000) == ((100, (25, 50, 75, 100)),)
    sizes = (100, 200, 240, 300, 360, 400, 440, 600, 800, 1200, 2000, 3000, 4000)
    groups = _padding_groups(sizes, 10_000)
    assert tuple(n for _, group in groups for n in group) == sizes
    assert all(rows == max(group) and 2 * min(group) > rows for rows, group in groups)


# ---------------------------------------------------------------------------------------
# Both arithmetics in one pass: the reference sample's pair sums formed once, and the
# sweep of both arithmetics against the sweeps of each.
# ---------------------------------------------------------------------------------------


def _generated(inputs, dtype, conventions=COVARIANCE_CONVENTIONS):
    """The generated q's of each cell's training set (rows) under each of `conventions`
    (columns), fitted in `dtype`, as the sweep forms them."""
    T, lam = jnp.asarray(1.5, dtype), jnp.asarray(0.7, dtype)
    qs = []
    for x0, xt, _ in inputs:
        x0, xt = x0.astype(dtype), xt.astype(dtype)
        fit = fit_affine(x0, xt)
        qs += [one_step_gaussian(fit, x0, T=T, lam=lam, convention=c) for c in conventions]
    shape = (len(inputs), len(conventions))
    return jax.tree.map(lambda *xs: jnp.stack(xs).reshape(shape + xs[0].shape), *qs)


_pair_sums = eqx.filter_jit(pair_sums)
_distances = eqx.filter_jit(one_step_distances)


@pytest.mark.parametrize("arithmetic", ["exact", pytest.param("reference", marks=pytest.mark.slow)])
def test_one_step_distances_with_precomputed_pair_sums_are_bitwise_the_same(arithmetic):
    # One training set and one convention (each is traced on its own): n = 4 < d, W^T W.
    inputs = [_inputs(0, NS[0])]
    reference = inputs[0][2]
    p = Gaussian.isotropic(D, 3.0, 1.5)
    # One set of pair sums for both arithmetics, as the sweep forms it: a float32 Gram
    # matrix, the reference's squares, and blocks of 25 rows (a scan over three blocks).
    pairs = _pair_sums(
        KernelMixture(reference, 1.5), gram_dtype=jnp.float32, block_size=25, reference_blocks=True
    )
    dtype = jnp.float64 if arithmetic == "exact" else jnp.float32
    qs = _generated(inputs, dtype, ("reference",))
    x0s = [x0.astype(dtype) for x0, _, _ in inputs]
    options = dict(s=1.5, arithmetic=arithmetic, gram_dtype=jnp.float32, block_size=25)
    alone = _distances(qs, x0s, reference, p, **options)
    shared = _distances(qs, x0s, reference, p, **options, reference_pairs=pairs)
    assert tree_equal(alone, shared)
    # ... and the pair sums given are the ones used: spoiling them changes Delta.
    if arithmetic == "exact":
        spoiled = eqx.tree_at(lambda s: s.log_sum, pairs, pairs.log_sum + 1.0)
    else:
        spoiled = eqx.tree_at(lambda s: s.squares, pairs, 2 * pairs.squares)
    other = _distances(qs, x0s, reference, p, **options, reference_pairs=spoiled)
    assert not np.array_equal(other[0].log_abs, alone[0].log_abs)


def test_padded_training_sets_give_the_distances_of_the_unpadded_ones():
    # d = 24, sets padded to 24 rows: the reference sample's rotation takes rank 23 or 12
    # by the set's size (5 and 13 points take 12), which must leave every distance that
    # of the set alone (its own rank n - 1).
    d, sizes, rows = 24, (5, 13, 14, 24), 24
    key = jr.key(2)
    draws = [
        sweep_inputs(0, n, key=key, d=d, m=3.0, s=1.5, T=1.5, lam=0.7, reference_size=200)
        for n in sizes
    ]
    reference = draws[0][2]
    p = Gaussian.isotropic(d, 3.0, 1.5)
    qs = _generated(draws, jnp.float64)
    x0s = [x0 for x0, _, _ in draws]
    padded = jnp.stack([jnp.pad(x0, ((0, rows - x0.shape[0]), (0, 0))) for x0 in x0s])
    masks = jnp.arange(rows)[None, :] < jnp.asarray(sizes)[:, None]
    alone = _distances(qs, x0s, reference, p, s=1.5)
    together = _distances(qs, [padded], reference, p, s=1.5, masks=[masks])
    np.testing.assert_array_equal(together[0].sign, alone[0].sign)
    np.testing.assert_allclose(together[0].log_abs, alone[0].log_abs, rtol=1e-12)
    np.testing.assert_allclose(together[0].log_error, alone[0].log_error, rtol=1e-9)
    np.testing.assert_allclose(together[1:], alone[1:], rtol=1e-12)


def test_one_step_distances_refuse_pair_sums_they_cannot_use():
    x0, _, reference = _inputs(0, NS[0])
    p = Gaussian.isotropic(D, 3.0, 1.5)
    qs = jax.tree.map(lambda x: x[None, None], p)
    # Refused before any use, so any values do.
    exact_only = PairSums(jnp.zeros(()), jnp.zeros(()), None)
    with pytest.raises(ValueError, match="`reference_pairs` lacks the reference arithmetic"):
        one_step_distances(
            qs, [x0], reference, p, s=1.5, arithmetic="reference", reference_pairs=exact_only
        )
    with pytest.raises(ValueError, match="`reference_pairs` must be the `PairSums`"):
        one_step_distances(qs, [x0], None, p, s=1.5, reference_pairs=exact_only)
    with without_runtime_typechecks():
        with pytest.raises(ValueError, match="`reference_pairs` must be the `PairSums`"):
            one_step_distances(qs, [x0], reference, p, s=1.5, reference_pairs=exact_only.log_sum)
    squashed = Gaussian(p.mean, p.cov.at[0, 0].set(0.5))
    with pytest.raises(ValueError, match="`p` must be isotropic"):
        one_step_distances(qs, [x0], reference, squashed, s=1.5)


@pytest.fixture(scope="module")
def both():
    return relative_distance_sweep(NS, **OPTIONS, arithmetic=("exact", "reference"), key=jr.key(0))


def _fields(sweep: RelativeDistanceSweep) -> dict[str, np.ndarray]:
    return {
        name: np.asarray(
            getattr(sweep, name) if name in ("kl", "hellinger") else getattr(sweep.relative, name)
        )
        for name in _FIELDS
    }


def test_sweep_of_both_arithmetics_equals_each_arithmetic_alone_bitwise(sweep, both):
    assert isinstance(both, dict) and list(both) == ["exact", "reference"]
    alone = relative_distance_sweep(NS, **OPTIONS, arithmetic="reference", key=jr.key(0))
    for name, single in [("exact", sweep), ("reference", alone)]:
        assert both[name].arithmetic == name and both[name].ns == single.ns
        assert both[name].recomputed == single.recomputed
        _assert_same(_fields(both[name]), single)
    assert both["reference"].relative.log_abs.dtype == jnp.float32
    assert both["exact"].relative.log_abs.dtype == jnp.float64


@pytest.mark.slow
def test_sweep_of_both_arithmetics_in_either_order_is_the_same(both):
    again = relative_distance_sweep(NS, **OPTIONS, arithmetic=("reference", "exact"), key=jr.key(0))
    assert list(again) == ["reference", "exact"]
    for name in both:
        _assert_same(_fields(again[name]), both[name])


@pytest.mark.parametrize("arithmetic", [(), ("exact", "exact"), ("x",), {"exact"}, 3])
def test_sweep_refuses_a_bad_tuple_of_arithmetics(arithmetic):
    # Refused by the sweep itself, not only by the annotations' checks under test.
    with without_runtime_typechecks():
        with pytest.raises(ValueError, match="`arithmetic` must be one of"):
            relative_distance_sweep(NS, **OPTIONS, arithmetic=arithmetic, key=jr.key(0))


def test_sweep_inputs_are_bitwise_the_draws_the_sweep_compiles():
    # The sweep draws each training set padded to the largest n, inside its compiled
    # program (the model's values traced), one size at a time; sweep_inputs must give
    # those rows bitwise.
    import jaxflow.studies._relative_distance as module

    model = tuple(jnp.asarray(v) for v in (3.0, 1.5, 1.5, 0.7))

    @jax.jit
    def drawn(key_rep, m, s, T, lam):
        def one(n):
            return module._cell_inputs(key_rep, n, max(NS), D, m, s, T, lam, 1, jnp.float64)

        reference = module._draw(jr.fold_in(key_rep, 0), N_O, D, m, s, jnp.float64)
        return jax.lax.map(one, jnp.asarray(NS)), reference

    for r in (0, 5):
        (x0s, xts), reference = drawn(jr.fold_in(jr.key(0), r), *model)
        for g, n in enumerate(NS):
            x0, xt, ref = _inputs(r, n)
            np.testing.assert_array_equal(x0, x0s[g, :n])
            np.testing.assert_array_equal(xt, xts[g, :n])
            np.testing.assert_array_equal(ref, reference)
