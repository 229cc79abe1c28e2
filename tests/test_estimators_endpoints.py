"""Hyperbox coordinates and endpoint classes ([Z], Section 5; docs/models.md#endpoint-classes).

The classifier rounds hyperbox coordinates instead of searching the vertices. Its oracle
here does the opposite: it enumerates all 2^m vertices and all 2m facets of the hyperbox
in NumPy, takes the Euclidean-nearest vertex and the Euclidean-nearest boundary point
(per facet: clipping for orthogonal edges, bounded least squares otherwise), and labels
by the L-infinity distances to them. Points are built to lie in each class, with
perturbations below and above the tolerance, on and off the span of the data.
"""

import itertools

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import jaxflow as jf
import numpy as np
import pytest
import scipy.optimize
from helpers import count_compilations
from hypothesis import given, settings, strategies as st
from jaxflow.estimators import (
    classify_endpoints,
    EndpointClass,
    hyperbox_coordinates,
)


TRAINING, VIRTUAL, ORIGIN, MANIFOLD, OTHER = (int(c) for c in EndpointClass)
UNKNOWN = -1  # the construction does not decide the class; only the oracle does


# ---------------------------------------------------------------------------------------
# Brute-force oracle.
# ---------------------------------------------------------------------------------------


def _apex_edges(points, simplex):
    points = np.asarray(points, np.float64)
    if simplex:
        return points[0], points[1:] - points[0]
    return np.zeros(points.shape[1]), points


def _nearest_on_facet(y, apex, edges, n, c, orthogonal):
    """The Euclidean-nearest point to `y` of the facet {alpha_n = c} of the hyperbox."""
    rest = np.delete(edges, n, axis=0)
    target = y - apex - c * edges[n]
    if rest.shape[0] == 0:
        beta = np.zeros(0)
    elif orthogonal:
        # The squared distance separates into one term per orthogonal edge.
        beta = np.clip(rest @ target / np.sum(rest**2, axis=1), 0.0, 1.0)
    else:
        beta = scipy.optimize.lsq_linear(rest.T, target, bounds=(0.0, 1.0), tol=1e-12).x
    return apex + c * edges[n] + beta @ rest


def oracle(y, points, tol, *, simplex=False, skip_boundary_at_vertices=False):
    """Labels and the L-infinity distances to the Euclidean-nearest vertex and boundary
    point, by enumerating every vertex and every facet (the latter left NaN at points
    within `tol` of a vertex if `skip_boundary_at_vertices`)."""
    apex, edges = _apex_edges(points, simplex)
    m = edges.shape[0]
    gram = edges @ edges.T
    orthogonal = np.allclose(gram, np.diag(np.diag(gram)), atol=1e-10)
    subsets = np.array(list(itertools.product((0, 1), repeat=m)), dtype=np.float64)
    vertices = apex + subsets @ edges
    labels, to_vertex, to_boundary = [], [], []
    for point in np.asarray(y, np.float64):
        j = np.argmin(np.sum((point - vertices) ** 2, axis=1))
        vertex_distance = np.max(np.abs(point - vertices[j]))
        boundary_distance = np.nan
        if vertex_distance > tol or not skip_boundary_at_vertices:
            facets = [
                _nearest_on_facet(point, apex, edges, n, c, orthogonal)
                for n in range(m)
                for c in (0.0, 1.0)
            ]
            nearest = min(facets, key=lambda f: np.sum((point - f) ** 2))
            boundary_distance = np.max(np.abs(point - nearest))
        size = subsets[j].sum()
        if vertex_distance <= tol:
            label = VIRTUAL if size >= 2 else TRAINING if size == 1 or simplex else ORIGIN
        elif boundary_distance <= tol:
            label = MANIFOLD
        else:
            label = OTHER
        labels.append(label)
        to_vertex.append(vertex_distance)
        to_boundary.append(boundary_distance)
    return np.array(labels), np.array(to_vertex), np.array(to_boundary)


# ---------------------------------------------------------------------------------------
# Points built in each class.
# ---------------------------------------------------------------------------------------


def _perturbation(rng, d, linf, l2):
    """A random vector with L-infinity norm `linf`, shrunk to Euclidean norm <= `l2`."""
    p = rng.uniform(-1.0, 1.0, d)
    p *= linf / np.max(np.abs(p))
    return p * min(1.0, l2 / np.linalg.norm(p))


def build_points(rng, points, tol, *, simplex, aligned, copies=3):
    """Points of every class and the class each is built to have.

    Vertex classes get perturbations with |p|_inf < tol and |p|_2 < s_min(E) / 2, which
    keep both the rounded and the Euclidean-nearest vertex, for any edges. Far off-span
    points are OTHER for any edges (|q|_2 > sqrt(d) tol bounds every L-inf residual).
    The rest are decided by the construction only when the edges are the coordinate
    axes (`aligned`), where every distance is a coordinate difference; otherwise their
    class is UNKNOWN and only the oracle decides.
    """
    apex, edges = _apex_edges(points, simplex)
    m, d = edges.shape
    lengths = np.linalg.norm(edges, axis=1)
    singular = np.linalg.svd(edges, compute_uv=False)
    off_span = np.linalg.svd(edges, full_matrices=True)[2][m:]
    small_l2 = 0.45 * singular.min()
    known = lambda label: label if aligned else UNKNOWN

    def at(beta):
        return apex + np.asarray(beta, np.float64) @ edges

    def small(scale=0.9):
        return _perturbation(rng, d, rng.uniform(0.0, scale) * tol, small_l2)

    def one_hot(n):
        return np.eye(m)[n]

    def face():
        beta = rng.uniform(0.0, 1.0, m)
        n, j = rng.choice(m, size=2, replace=False)
        beta[j] = rng.uniform(0.35, 0.65)
        beta[n] = rng.integers(2)
        return beta

    kinds = {
        "training": lambda: (at(one_hot(rng.integers(m))) + small(), TRAINING),
        "interior": lambda: (at(rng.uniform(0.35, 0.65, m)) + small(0.5), known(OTHER)),
        "random": lambda: (at(rng.uniform(-0.3, 1.3, m)) + rng.normal(0, tol, d), UNKNOWN),
    }
    if simplex:
        kinds["apex"] = lambda: (apex + small(), TRAINING)
    else:
        kinds["origin"] = lambda: (apex + small(), ORIGIN)
    if m >= 2:
        subset = lambda: rng.permutation(m) < rng.integers(2, m + 1)
        kinds["virtual"] = lambda: (at(subset()) + small(), VIRTUAL)
        kinds["face"] = lambda: (at(face()) + small(0.5), known(MANIFOLD))
    if d > m:

        def off(scale):
            q = rng.normal(size=d - m) @ off_span
            return q * scale / np.linalg.norm(q)

        def vertex_off_span():
            beta = rng.integers(2, size=m)
            q = rng.normal(size=d - m) @ off_span
            q *= rng.uniform(0.0, 0.9) * tol / np.max(np.abs(q))
            size = beta.sum()
            label = VIRTUAL if size >= 2 else TRAINING if size == 1 or simplex else ORIGIN
            return at(beta) + q, label

        far = lambda: off(rng.uniform(1.2, 2.0) * np.sqrt(d) * tol)
        kinds["vertex off span"] = vertex_off_span
        kinds["vertex far off span"] = lambda: (at(rng.integers(2, size=m)) + far(), OTHER)
        if m >= 2:
            kinds["face far off span"] = lambda: (at(face()) + far(), OTHER)

    def outside():
        beta = rng.uniform(0.0, 1.0, m)
        n = rng.integers(m)
        t = rng.uniform(0.6, 1.5)
        beta[n] = 1 + t if rng.integers(2) else -t
        return at(beta) + small(0.5), known(OTHER)

    def along_edge(inward):
        # A vertex moved by 1.1-1.5 tol along one edge, into the hyperbox or out of it.
        beta = rng.integers(2, size=m).astype(np.float64)
        n = rng.integers(m)
        step = rng.uniform(1.1, 1.5) * tol / lengths[n]
        beta[n] += step if (beta[n] == 0) == inward else -step
        label = (MANIFOLD if m >= 2 else OTHER) if inward else OTHER
        return at(beta), known(label)

    kinds["outside"] = outside
    kinds["edge inward"] = lambda: along_edge(True)
    kinds["edge outward"] = lambda: along_edge(False)

    built = [kinds[name]() for name in sorted(kinds) for _ in range(copies)]
    y, expected = zip(*built)
    return np.stack(y), np.array(expected)


def _lengths(n):
    return st.lists(st.floats(0.5, 2.0), min_size=n, max_size=n).map(np.array)


# ---------------------------------------------------------------------------------------
# The classifier against the oracle.
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("rotate", [False, True])
@pytest.mark.parametrize("n, d", [(1, 3), (4, 6), (8, 8)])
@settings(max_examples=10, deadline=None)
@given(data=st.data())
def test_orthogonal_classes_match_brute_force_oracle(n, d, rotate, data):
    seed = data.draw(st.integers(0, 2**31 - 1), label="seed")
    lengths = data.draw(_lengths(n), label="lengths")
    points = jf.data.orthogonal(n, d, key=jr.key(seed), lengths=lengths, rotate=rotate).points
    tol = 0.2 * lengths.min()
    y, expected = build_points(
        np.random.default_rng(seed), points, tol, simplex=False, aligned=not rotate
    )

    classes = classify_endpoints(jnp.asarray(y), points)
    labels, to_vertex, to_boundary = oracle(y, points, tol)

    np.testing.assert_array_equal(np.asarray(classes.label), labels)
    known = expected != UNKNOWN
    np.testing.assert_array_equal(labels[known], expected[known])
    # For orthogonal edges the rounded vertex and the clipped or pushed boundary point
    # are exactly the Euclidean-nearest ones.
    np.testing.assert_allclose(np.asarray(classes.vertex_distance), to_vertex, atol=1e-12)
    np.testing.assert_allclose(np.asarray(classes.boundary_distance), to_boundary, atol=1e-12)
    np.testing.assert_allclose(float(classes.tol), tol, rtol=1e-12)


@pytest.mark.parametrize("n, d, rotate", [(3, 5, False), (4, 6, True)])
@settings(max_examples=6, deadline=None)
@given(data=st.data())
def test_obtuse_simplex_classes_match_brute_force_oracle(n, d, rotate, data):
    # beta <= 0.6 keeps the simplex well away from beta = 1, where its edges sum to zero.
    seed = data.draw(st.integers(0, 2**31 - 1), label="seed")
    lengths = data.draw(_lengths(n), label="lengths")
    beta = data.draw(st.floats(0.0, 0.6), label="beta")
    dataset = jf.data.obtuse_simplex(
        n, d, key=jr.key(seed), lengths=lengths, beta=beta, rotate=rotate
    )
    tol = 0.2 * lengths.min()
    rng = np.random.default_rng(seed)
    y, expected = build_points(rng, dataset.points, tol, simplex=True, aligned=False, copies=2)
    apex, edges = _apex_edges(dataset.points, simplex=True)
    alpha = np.linalg.lstsq(edges.T, (y - apex).T, rcond=None)[0].T
    inside = np.all((alpha > 1e-9) & (alpha < 1 - 1e-9), axis=1)
    known = expected != UNKNOWN

    classes = classify_endpoints(jnp.asarray(y), dataset)
    label = np.asarray(classes.label)
    # The oracle's bounded least squares per facet is slow: ask only where it is used.
    labels, _, _ = oracle(
        y[known], dataset.points, tol, simplex=True, skip_boundary_at_vertices=True
    )
    _, _, to_boundary = oracle(y[inside], dataset.points, tol, simplex=True)

    np.testing.assert_array_equal(labels, expected[known])
    np.testing.assert_array_equal(label[known], expected[known])
    assert not np.any(label == ORIGIN)
    # Inside the hyperbox the boundary point is exact for any edges: the foot of the
    # perpendicular on the nearest facet.
    assert inside.sum() >= 2
    boundary_distance = np.asarray(classes.boundary_distance)
    np.testing.assert_allclose(boundary_distance[inside], to_boundary, atol=1e-10)
    # Elsewhere the rounded vertex is a vertex: never nearer than the nearest one in L-inf.
    subsets = np.array(list(itertools.product((0, 1), repeat=n)), dtype=np.float64)
    vertices = apex + subsets @ edges
    nearest = np.min(np.max(np.abs(y[:, None] - vertices[None]), axis=-1), axis=1)
    assert np.all(np.asarray(classes.vertex_distance) >= nearest - 1e-12)


def test_class_values_follow_the_spec():
    assert [(c.name, int(c)) for c in EndpointClass] == [
        ("TRAINING", 0),
        ("VIRTUAL", 1),
        ("ORIGIN", 2),
        ("MANIFOLD", 3),
        ("OTHER", 4),
    ]


# ---------------------------------------------------------------------------------------
# Hyperbox coordinates.
# ---------------------------------------------------------------------------------------


def test_orthogonal_coordinates_are_projections_on_each_point(getkey):
    lengths = np.array([0.5, 1.0, 2.0, 3.0])
    points = jf.data.orthogonal(4, 7, key=getkey(), lengths=lengths, rotate=True).points
    y = np.random.default_rng(0).normal(size=(11, 7))
    expected = y @ np.asarray(points).T / lengths**2

    alpha = hyperbox_coordinates(jnp.asarray(y), points)
    one = hyperbox_coordinates(jnp.asarray(y[3]), points)

    assert alpha.shape == (11, 4) and one.shape == (4,)
    np.testing.assert_allclose(np.asarray(alpha), expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(np.asarray(one), expected[3], rtol=1e-12, atol=1e-12)


def test_simplex_coordinates_recover_the_edge_weights_and_drop_the_off_span_part(getkey):
    dataset = jf.data.obtuse_simplex(
        4, 6, key=getkey(), beta=0.5, apex=jnp.arange(6.0), rotate=True
    )
    apex, edges = _apex_edges(dataset.points, simplex=True)
    rng = np.random.default_rng(1)
    beta = rng.uniform(-1.0, 2.0, size=(9, 4))
    complement = np.linalg.svd(edges, full_matrices=True)[2][4:]
    y = apex + beta @ edges + rng.normal(size=(9, 2)) @ complement

    from_dataset = hyperbox_coordinates(jnp.asarray(y), dataset)
    from_points = hyperbox_coordinates(jnp.asarray(y), dataset.points, simplex=True)

    np.testing.assert_allclose(np.asarray(from_dataset), beta, atol=1e-12)
    np.testing.assert_array_equal(np.asarray(from_points), np.asarray(from_dataset))


# ---------------------------------------------------------------------------------------
# The result, compilation, errors.
# ---------------------------------------------------------------------------------------


def _aligned_problem(dtype=np.float64):
    """Axis-aligned points with unequal lengths, min length 1 (default tol 0.2), with
    points of every class and their oracle labels."""
    lengths = np.array([1.0, 1.5, 2.0, 1.2])
    points = np.asarray(jf.data.orthogonal(4, 6, lengths=lengths).points)
    rng = np.random.default_rng(7)
    y, _ = build_points(rng, points, 0.2, simplex=False, aligned=True, copies=5)
    labels, _, _ = oracle(y, points, 0.2)
    return jnp.asarray(points, dtype), jnp.asarray(y, dtype), labels


def test_rates_put_memorization_first_and_divide_counts_by_the_batch():
    points, y, expected = _aligned_problem()
    classes = classify_endpoints(y, points)

    np.testing.assert_array_equal(np.asarray(classes.label), expected)
    np.testing.assert_array_equal(np.asarray(classes.counts), np.bincount(expected, minlength=5))
    assert list(classes.rates) == ["training", "virtual", "origin", "manifold", "other"]
    for c in EndpointClass:
        assert float(classes.rates[c.name.lower()]) == pytest.approx(np.mean(expected == c))
    assert float(classes.memorization_rate) == pytest.approx(np.mean(expected == TRAINING))
    # The vertex is the rounded coordinates; for these axis-aligned points, the
    # coordinates are the first four entries divided by the lengths.
    alpha = np.asarray(y)[:, :4] / np.array([1.0, 1.5, 2.0, 1.2])
    np.testing.assert_array_equal(np.asarray(classes.vertex), alpha >= 0.5)


def test_float32_endpoints_get_the_float64_classes():
    points, y, expected = _aligned_problem(np.float32)
    classes = classify_endpoints(y, points)
    assert classes.vertex_distance.dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(classes.label), expected)


def test_a_tol_sweep_under_vmap_matches_one_call_per_tol():
    points, y, _ = _aligned_problem()
    tols = jnp.array([0.05, 0.2, 0.4, 0.8])
    counts = jax.vmap(lambda t: classify_endpoints(y, points, t).counts)(tols)
    for row, tol in zip(np.asarray(counts), tols):
        np.testing.assert_array_equal(row, np.asarray(classify_endpoints(y, points, tol).counts))
    # A wider tolerance only moves endpoints towards the vertex classes.
    vertex_classes = counts[:, TRAINING] + counts[:, VIRTUAL] + counts[:, ORIGIN]
    assert (
        np.all(np.diff(np.asarray(vertex_classes)) >= 0) and vertex_classes[0] < vertex_classes[-1]
    )


def test_classify_compiles_once_for_a_new_tol_and_new_endpoints():
    points, y, _ = _aligned_problem()
    classify_endpoints(y, points, 0.2).label.block_until_ready()
    classify_endpoints(y, points).label.block_until_ready()
    shifted, scaled = y + 0.01, points * 1.1
    with count_compilations() as again:
        classify_endpoints(shifted, points, 0.3).label.block_until_ready()
        classify_endpoints(y, scaled).label.block_until_ready()
    with count_compilations() as new_shape:
        classify_endpoints(y[:-1], points, 0.3).label.block_until_ready()
    assert again[0] == 0
    assert new_shape[0] >= 1  # the counter sees a compilation when there is one


@pytest.mark.parametrize(
    "endpoints_shape, points_shape, argument",
    [((5, 3), (2, 4), "endpoints"), ((4,), (2, 4), "endpoints"), ((5, 4), (4,), "points")],
)
def test_shape_mismatch_raises_value_error_naming_the_argument(
    endpoints_shape, points_shape, argument
):
    endpoints, points = jnp.zeros(endpoints_shape), jnp.ones(points_shape)
    if len(points_shape) == 2:
        points = jnp.eye(*points_shape)
    with pytest.raises(ValueError, match=f"`{argument}`"):
        classify_endpoints(endpoints, points)
    if argument == "endpoints" and len(endpoints_shape) == 2:
        with pytest.raises(ValueError, match="`y`"):
            hyperbox_coordinates(endpoints, points)


def test_integer_endpoints_raise_type_error():
    with pytest.raises(TypeError, match="`endpoints`"):
        classify_endpoints(jnp.zeros((3, 4), int), jnp.eye(2, 4))


@pytest.mark.parametrize("tol", [0.0, -0.1])
def test_non_positive_tol_is_refused_on_the_host_and_under_jit(tol):
    y, points = jnp.zeros((3, 4)), jnp.eye(2, 4)
    with pytest.raises(ValueError, match="`tol`"):
        classify_endpoints(y, points, tol)
    with pytest.raises(eqx.EquinoxRuntimeError, match="tol > 0"):
        eqx.filter_jit(classify_endpoints)(y, points, jnp.asarray(tol))


def test_linearly_dependent_edges_are_refused():
    # Three edges in a plane (they sum to zero): a flat hyperbox. `obtuse_simplex` refuses
    # to build it, so the points are written out.
    flat = jnp.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [-0.5, 0.8, 0.0], [-0.5, -0.8, 0.0]])
    with pytest.raises(ValueError, match="linearly dependent"):
        classify_endpoints(jnp.zeros((2, 3)), flat, simplex=True)
    with pytest.raises(ValueError, match="linearly dependent"):
        hyperbox_coordinates(jnp.zeros(4), jnp.array([[1.0, 0.0], [2.0, 0.0]]))


def test_simplex_flag_contradicting_the_dataset_is_refused():
    with pytest.raises(ValueError, match="simplex"):
        classify_endpoints(jnp.zeros((2, 3)), jf.data.orthogonal(2, 3), simplex=True)
