r"""What the presets of trained min-norm networks share ([Z], Sections 2 and 6): the
training points, the sums of training points where the networks meet the references, the
cheaper interpolant of orthogonal points without the origin, a trained level evaluated on
the host, and one training call timed against the training cache."""

import dataclasses
import itertools
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import jax
import numpy as np
from jaxtyping import ArrayLike
from matplotlib.lines import Line2D

from ...data import orthogonal
from ...denoisers import ShallowReLU
from ...training import default_cache_dir, MinNormFit
from ._common import float_dtype


# Sums of up to this many training points: where virtual-point stability is decided
# ([Z], Section 6), and where the networks are compared with the references.
MOST = 4
DataSet = Literal["with-origin", "without-origin"]
# Fixed positions, so that a data set's key does not depend on which others run.
DATA_SETS: tuple[DataSet, ...] = ("with-origin", "without-origin")
# Colour-blind safe (Okabe-Ito), the same in every figure of trained networks.
DATA_SET_COLOURS = {"with-origin": "#0072B2", "without-origin": "#D55E00"}
DATA_SET_LABELS = {
    "with-origin": "with the origin (closed form: the minimum)",
    "without-origin": "without the origin (closed form: an upper bound)",
}
# One style per kind of curve, shared by the curves and their legend entries: the
# trained networks (and the closed form's distance at the subset sums), fresh copies, and
# the two references.
TRAINED = dict(marker="o", ls="-", ms=4)
FRESH = dict(marker="s", ls="--", ms=3, mfc="none")
CLOSED = dict(marker="D", ls="--", ms=4, mfc="white")
CHEAPER = dict(marker="v", ls="-.", ms=4, mfc="white")


def legend_entry(label: str, style: dict, **extra) -> Line2D:
    """A grey legend entry for the curves drawn in `style` (any data set's colour)."""
    return Line2D([], [], color="grey", label=label, **style, **extra)


def training_points(data_set: DataSet, n: int, d: int, length: float, dtype: str) -> np.ndarray:
    """$x_n = L e_n$, $n = 1, \\dots, N$, after the origin for `with-origin`."""
    x = np.asarray(orthogonal(n, d, lengths=length, dtype=float_dtype(dtype)).points)
    if data_set == "with-origin":
        x = np.concatenate([np.zeros((1, d), x.dtype), x])
    return x


def subset_sums(points: np.ndarray, most: int) -> np.ndarray:
    """Every sum of one to `most` of the rows of `points`, one per row."""
    n = len(points)
    rows = [
        points[list(c)].sum(0)
        for k in range(1, min(most, n) + 1)
        for c in itertools.combinations(range(n), k)
    ]
    return np.stack(rows)


@dataclasses.dataclass(frozen=True)
class CheaperInterpolant:
    r"""The cheaper interpolant of $N \ge 2$ orthogonal points of equal length $L$ without
    the origin (docs/conventions.md#orthogonal-data-and-the-origin): ramps along
    $t_n \propto u_n - \frac{1}{N-1}\sum_{k \ne n} u_k$, whose gap between the copies of
    $x_n$ and of the others is $G = L\sqrt{N/(N-1)}$ instead of $L$, fitted to the copies'
    own extent $\rho' = \max |t_n \cdot (y_{jm} - x_j)|$ per level:

    $$g(y) = \sum_n x_n\, \mathrm{clip}\!\left(\frac{t_n \cdot y - q_0 - \rho'}{G - 2\rho'},
    0, 1\right),\qquad q_0 = t_n \cdot x_k\ (k \ne n),$$

    at cost $2NL / (G - 2\rho')$, valid while $2\rho' < G$. Host-side, float64.
    """

    points: np.ndarray  # (n, d)
    t: np.ndarray  # (n, d), the ramp directions
    low: float  # q_0
    gap: float  # G
    length: float  # L
    rho: np.ndarray  # (levels,), rho'

    @classmethod
    def fit(cls, points: ArrayLike, copies: ArrayLike) -> "CheaperInterpolant":
        """Fitted to `copies`, shape `(levels, n, M, d)`, of `points`, shape `(n, d)`."""
        points = np.asarray(points, np.float64)
        n = len(points)
        lengths = np.linalg.norm(points, axis=1)
        units = points / lengths[:, None]
        t = (units - (units.sum(0) - units) / (n - 1)) / math.sqrt(n / (n - 1))
        length = float(lengths[0])
        gap = length * math.sqrt(n / (n - 1))
        low = -length / math.sqrt(n * (n - 1))
        noise = np.asarray(copies, np.float64) - points[None, :, None, :]
        rho = np.max(np.abs(noise @ t.T), axis=(1, 2, 3))
        return cls(points, t, low, gap, length, rho)

    def valid(self, level: int) -> bool:
        return bool(2 * self.rho[level] < self.gap)

    def cost(self, level: int) -> float:
        return 2 * len(self.points) * self.length / (self.gap - 2 * self.rho[level])

    def __call__(self, level: int, y: np.ndarray) -> np.ndarray:
        """$g(y)$ at `level` for each row of `y`."""
        slope = self.gap - 2 * self.rho[level]
        return np.clip((y @ self.t.T - self.low - self.rho[level]) / slope, 0, 1) @ self.points


def evaluate(net: ShallowReLU, y: np.ndarray) -> np.ndarray:
    """`net` at each row of `y`, in float64 on the host."""
    a, w, b, v, c = (np.asarray(x, np.float64) for x in (net.a, net.w, net.b, net.v, net.c))
    return np.maximum(y @ w.T + b, 0) @ a + y @ v.T + c


def largest_distance(f: np.ndarray, g: np.ndarray) -> float:
    """$\\max_i |f_i - g_i|$ over the rows."""
    return float(np.max(np.linalg.norm(f - g, axis=1)))


def _stamps(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in folder.glob("*.eqx")} if folder.exists() else {}


def timed_train(train: Callable[[], MinNormFit], cache: bool) -> tuple[MinNormFit, float, bool]:
    """`train()` with its wall time and whether it loaded the stack from the training cache
    (no stack file written or rewritten there)."""
    folder = default_cache_dir()
    before = _stamps(folder) if cache else {}
    start = time.perf_counter()
    fit = jax.block_until_ready(train())
    seconds = time.perf_counter() - start
    from_cache = cache and _stamps(folder) == before and bool(before)
    return fit, seconds, from_cache


def training_footprint(preset, *, copies: int, levels: int) -> tuple[int, int]:
    """Bytes of one training call of `preset`'s networks (its `n`, `d`, `width`, `steps`,
    `inner_steps` and `dtype`) with `copies` copies per point at `levels` levels, on
    $n + 1$ points at most (the origin included): (memory while training, the stored
    stack)."""
    n, d, k = preset.n, preset.d, preset.width
    item = 4 if preset.dtype == "float32" else 8
    points, steps, inner = n + 1, preset.steps, preset.inner_steps
    sums = sum(math.comb(n, j) for j in range(1, min(MOST, n) + 1))
    rows = points * copies
    params = k * (2 * d + 1) + d * d + d
    outer = -(-steps // inner)
    # Per level: the network, Adam's two moments, gradients and updates; activations
    # of the copies forward and back; the multipliers. All levels at once when vmapped.
    level = item * (6 * params + 6 * rows * (k + d) + 2 * rows * d + 3 * outer)
    per_call = levels * level + item * (rows * d * levels + 4 * sums * (d + k))
    stored = levels * (item * params + 8 * (3 * outer + 12))
    return per_call, stored
