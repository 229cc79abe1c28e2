"""The exact distances between the Gaussian that [H]'s linear one-step denoiser generates
and the sampling distribution, against the training-set size."""

import dataclasses
import itertools
from typing import ClassVar, Literal

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pyarrow as pa
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from ...data import forward_jump, Gaussian
from ...estimators import hellinger_squared, kl_divergence, kl_infinite_data
from ...flows import COVARIANCE_CONVENTIONS, one_step_gaussian
from ...training import fit_affine, wiener_affine
from .. import _plotting as plot
from .._params import at_least, param, positive
from .._preset import Footprint, Tabulated
from ._common import (
    _AbstractLinearModel,
    map_repetitions,
    rep_stats,
    rep_stats_fields,
    training_sizes,
)


_DISTANCES = ("kl_qp", "kl_pq", "hellinger2")


def fall_start(ns, values) -> int | None:
    """The smallest n from which `values` are finite and strictly decreasing in n."""
    ns, values = np.asarray(ns), np.asarray(values, dtype=np.float64)
    start = None
    for i in range(len(ns) - 1, -1, -1):
        if not np.isfinite(values[i]) or (i + 1 < len(ns) and values[i] <= values[i + 1]):
            break
        start = int(ns[i])
    return start


def _stats(values) -> dict[str, float]:
    # values: (repetitions, 3), the distances in the order of _DISTANCES.
    columns = {}
    for i, key in enumerate(_DISTANCES):
        columns.update(rep_stats(key, values[:, i]))
    return columns


def limit_rho(T: float, lam: float, s: float) -> float:
    """$\\rho = \\mathrm{SNR} / (1 + \\mathrm{SNR})$ with $\\mathrm{SNR} = e^{-2T} s^2 /
    (\\ell (1 - e^{-2T}))$, $\\ell = \\lambda e^{-2T}$: the limit covariance of the
    generated Gaussian is $\\rho s^2 I$ as $n \\to \\infty$."""
    a2 = np.exp(-2 * T)
    c2 = lam * a2 * -np.expm1(-2 * T)
    return float(a2 * s**2 / (a2 * s**2 + c2))


def hellinger2_infinite_data(d: int, T: float, lam: float, s: float) -> float:
    """The squared Hellinger distance between $\\mathcal{N}(m\\mathbf{1}, \\rho s^2 I_d)$
    and $p = \\mathcal{N}(m\\mathbf{1}, s^2 I_d)$, the infinite-data limit of $H^2(q, p)$:

    $$H^2_\\infty = 1 - \\Big(\\frac{2\\sqrt\\rho}{1 + \\rho}\\Big)^{d/2}
    = -\\operatorname{expm1}\\Big(\\tfrac d2 \\operatorname{log1p}\\Big(-\\frac{(1 -
    \\sqrt\\rho)^2}{1 + \\rho}\\Big)\\Big),$$

    the second form accurate when $\\rho$ is near 1."""
    rho = limit_rho(T, lam, s)
    return float(-np.expm1(0.5 * d * np.log1p(-((1 - np.sqrt(rho)) ** 2) / (1 + rho))))


@dataclasses.dataclass(frozen=True)
class _Context:
    keys: jax.Array
    Ts: jax.Array
    lams: jax.Array
    distances: object  # (keys, Ts, lams, n) -> (G, R, conventions, 3), compiled once


@dataclasses.dataclass(frozen=True)
class LinearDistanceVsN(_AbstractLinearModel):
    """The exact distances between [H]'s generated Gaussian and the sampling distribution,
    against the training-set size $n$.

    For each $n$, diffusion time $T$ and noise scale $\\lambda$, and each of `repetitions`
    independent draws of the training set $x_{0,1..n} \\sim p = \\mathcal{N}(m\\mathbf 1,
    s^2 I_d)$ and of its noise, the affine denoiser $\\hat x_0 = W x_T + b$ is fitted
    (least squares on `draws` noisy copies per point, minimum-norm when $n - 1 < d$, or
    the noise-averaged Wiener fit) and the one-step model generates
    $q = \\mathcal{N}(\\mu_g, \\Sigma_g)$, $\\Sigma_g = v_T W W^\\top$ (`consistent`) or
    $v_T W^\\top W$ (`reference`, as [H]'s implementation). Reported in closed form:
    $\\mathrm{KL}(q\\,\\|\\,p)$, $\\mathrm{KL}(p\\,\\|\\,q)$ and $H^2(q, p) = 1 - \\mathrm{BC}$,
    with their infinite-data limits from $\\Sigma_g \\to \\rho s^2 I$:
    $\\mathrm{KL}_\\infty = \\frac d2(\\rho - 1 - \\ln\\rho)$ and
    $H^2_\\infty = 1 - (2\\sqrt\\rho / (1 + \\rho))^{d/2}$.

    Reproduces [H]'s distance-against-$n$ study (Halder, arXiv 2411.17807): $\\Sigma_g$ has
    rank at most $n - 1$, so $q$ is singular, the KLs infinite and $H^2 = 1$, until
    $n = d + 1$; from there the KL falls monotonically towards its floor
    $\\mathrm{KL}_\\infty > 0$ (the one-step denoiser under-disperses, $\\rho < 1$).

    **Cells:** one training-set size $n$ (every $(T, \\lambda)$ and repetition). Training
    sets are drawn at the largest size and the first $n$ points kept, so the sets are
    nested across $n$ and every $(T, \\lambda)$ sees the same sets (common random numbers).

    **Rows:** one per $(n, T, \\lambda, \\text{convention})$: the median, quartiles and
    mean over repetitions of each distance, the fraction of finite KLs, the limits
    `kl_inf`, `kl_inf_pq`, `hellinger2_inf`, and `kl_fall_starts_at_n`, the smallest $n$
    from which the median $\\mathrm{KL}(q\\,\\|\\,p)$ falls strictly (-1 if none).

    **Figure** `distance_vs_n`: the three distances against $n$ (median and quartile
    band), colour for $\\lambda$, line style for $T$, the infinite-data limits as thin
    horizontal lines, $n = d$ marked; infinite medians as markers on the top edge.

    It does not show the relative distance or memorization (see `linear-transition`),
    nor more than one denoising step (see `linear-steps`).
    """

    name: ClassVar[str] = "linear-distance-vs-n"
    summary: ClassVar[str] = (
        "[H] exact KL and Hellinger distances of the linear one-step denoiser against n, "
        "with their infinite-data limits; the fall starts at n = d"
    )
    schema: ClassVar[pa.Schema] = pa.schema(
        [
            ("n", pa.int64()),
            ("n_over_d", pa.float64()),
            ("d", pa.int64()),
            ("T", pa.float64()),
            ("lam", pa.float64()),
            ("convention", pa.string()),
            ("fit", pa.string()),
            ("draws", pa.int64()),
            ("repetitions", pa.int64()),
            *(f for key in _DISTANCES for f in rep_stats_fields(key)),
            ("finite_fraction", pa.float64()),
            ("kl_inf", pa.float64()),
            ("kl_inf_pq", pa.float64()),
            ("hellinger2_inf", pa.float64()),
            ("kl_fall_starts_at_n", pa.int64()),
        ]
    )
    summary_columns: ClassVar[tuple[str, ...]] = (
        "n",
        "T",
        "lam",
        "convention",
        "kl_qp_median",
        "kl_pq_median",
        "hellinger2_median",
        "kl_inf",
        "hellinger2_inf",
        "kl_fall_starts_at_n",
    )

    n_over_d: tuple[float, ...] = param(
        (0.1, 0.25, 0.5, 0.75, 0.9, 1.0, 1.05, 1.1, 1.25, 1.5, 2.0, 3.0, 5.0, 7.5, 10.0),
        "training-set sizes as fractions of d (n = round(f d), at least 2; d + 1 is always added)",
        rule=positive,
        distinct=True,
    )
    T: tuple[float, ...] = param((1.0, 2.0, 3.0), "diffusion times T", rule=positive, distinct=True)
    lam: tuple[float, ...] = param(
        (0.5, 1.0, 2.0), "noise scales lambda (l = lambda e^-2T)", rule=positive, distinct=True
    )
    draws: int = param(1, "noise draws k per training point", rule=at_least(1))
    fit: Literal["lstsq", "wiener"] = param(
        "lstsq", "least squares on noisy copies (as [H]) or the noise-averaged Wiener fit"
    )
    repetitions: int = param(
        20, "independent repetitions (training set and noise) per cell", rule=at_least(1)
    )

    def check(self):
        """No rule ties the fields together."""

    def quick(self):
        return dataclasses.replace(
            self,
            d=10,
            n_over_d=(0.5, 1.0, 1.5, 2.0, 5.0, 10.0),
            T=(1.0, 2.0),
            lam=(1.0,),
            repetitions=8,
        )

    def sizes(self) -> tuple[int, ...]:
        """The training-set sizes: those of `n_over_d` and $d + 1$, the first size at
        which the generated Gaussian is regular."""
        return tuple(sorted({*training_sizes(self.d, self.n_over_d), self.d + 1}))

    def footprint(self):
        sizes = self.sizes()
        n_max, d, pairs = max(sizes), self.d, len(self.T) * len(self.lam)
        # One cell's distances (pairs x repetitions x conventions x 3), kept for every
        # cell until the table is written, on disk once as pieces and once as results.
        outputs = 8.0 * len(sizes) * pairs * self.repetitions * len(COVARIANCE_CONVENTIONS) * 3
        # One repetition at a time: the training set, its noisy copies and the SVD of the
        # least-squares fit, and a handful of d x d matrices for q and the distances.
        working = 8.0 * (4 * n_max * self.draws * d + n_max * d + 40 * d * d)
        return Footprint(
            memory=outputs + working,
            disk=2 * outputs,
            set_by=("d", "n_over_d", "draws", "repetitions", "T", "lam"),
        )

    def cells(self):
        return self.sizes()

    def cell_name(self, cell):
        return f"n{cell}"

    def prepare(self, *, progress: bool):
        del progress
        p = self.sampling_distribution()
        pairs = list(itertools.product(self.T, self.lam))
        return _Context(
            keys=jr.split(jr.key(self.seed), self.repetitions),
            Ts=jnp.asarray([T for T, _ in pairs], p.mean.dtype),
            lams=jnp.asarray([lam for _, lam in pairs], p.mean.dtype),
            distances=_distance_fn(max(self.sizes()), self.draws, self.fit, p),
        )

    def compute(self, cell, context):
        return {"distances": context.distances(context.keys, context.Ts, context.lams, cell)}

    def tabulate(self, outputs):
        sizes = self.sizes()
        rows = []
        for g, (T, lam) in enumerate(itertools.product(self.T, self.lam)):
            limits = {
                "kl_inf": float(kl_infinite_data(self.d, T=T, lam=lam, s=self.s)),
                "kl_inf_pq": float(kl_infinite_data(self.d, T=T, lam=lam, s=self.s, reverse=True)),
                "hellinger2_inf": hellinger2_infinite_data(self.d, T, lam, self.s),
            }
            for c, convention in enumerate(COVARIANCE_CONVENTIONS):
                group = []
                for n in sizes:
                    v = outputs[n]["distances"][g, :, c]
                    group.append(
                        {
                            "n": n,
                            "n_over_d": n / self.d,
                            "d": self.d,
                            "T": T,
                            "lam": lam,
                            "convention": convention,
                            "fit": self.fit,
                            "draws": self.draws,
                            "repetitions": self.repetitions,
                            **_stats(v),
                            "finite_fraction": float(np.mean(np.isfinite(v[:, 0]))),
                            **limits,
                        }
                    )
                start = fall_start(sizes, [r["kl_qp_median"] for r in group])
                for row in group:
                    row["kl_fall_starts_at_n"] = -1 if start is None else start
                rows += group
        arrays = {f"distances_n{n}": outputs[n]["distances"] for n in sizes}
        pairs = list(itertools.product(self.T, self.lam))
        arrays.update(
            T=np.asarray([T for T, _ in pairs]),
            lam=np.asarray([lam for _, lam in pairs]),
            ns=np.asarray(sizes),
        )
        return Tabulated(rows, arrays)

    def figures(self, table, arrays):
        del arrays
        return {"distance_vs_n": distance_figure(table.to_pylist())}


def _distance_fn(n_max: int, draws: int, fit: str, p: Gaussian):
    """Every distance for R repetitions and G (T, lambda) pairs at a training-set size n,
    as a function compiled once returning shape (G, R, conventions, 3), the repetitions
    split across every device.

    Training sets are drawn at size `n_max` and the first n points kept by a mask, so
    that every n shares one compilation and the sets are nested across n (common random
    numbers). The same keys serve every (T, lambda): the same training sets again.
    """

    def one(key, T, lam, n):
        k_data, k_noise = jr.split(key)
        x0 = p.sample(n_max, key=k_data)
        mask = jnp.arange(n_max) < n
        if fit == "lstsq":
            xt = forward_jump(x0, key=k_noise, T=T, lam=lam, draws=draws)
            den = fit_affine(x0, xt, mask=mask)
        else:
            den = wiener_affine(x0, T=T, lam=lam, mask=mask)
        qs = [
            one_step_gaussian(den, x0, T=T, lam=lam, convention=c, mask=mask)
            for c in COVARIANCE_CONVENTIONS
        ]
        # The conventions share a mean; loop over their covariances with one trace.
        return jax.lax.map(
            lambda cov: _distances(Gaussian(qs[0].mean, cov), p), jnp.stack([q.cov for q in qs])
        )

    # A loop, not vmap: a LAPACK call batched by vmap can deadlock XLA:CPU's thread pool
    # (see `jaxflow._workarounds`); unbatched calls cannot, and cost the same here.
    def repetition(r, keys, Ts, lams, n):
        return jax.lax.map(lambda tl: one(keys[r], *tl, n), (Ts, lams))

    def cell(keys, Ts, lams, n):
        out = map_repetitions(repetition, keys.shape[0], keys, Ts, lams, n)
        return jnp.swapaxes(out, 0, 1)

    return cell


def _distances(q: Gaussian, p: Gaussian):
    return jnp.stack([kl_divergence(q, p), kl_divergence(p, q), hellinger_squared(q, p)])


_PANELS = (
    ("kl_qp", r"$\mathrm{KL}(q\,\|\,p)$", "kl_inf"),
    ("kl_pq", r"$\mathrm{KL}(p\,\|\,q)$", "kl_inf_pq"),
    ("hellinger2", r"$H^2(q, p)$", "hellinger2_inf"),
)


def distance_figure(rows: list[dict]) -> Figure:
    """The three distances against n from the table's rows: colour for lambda, line
    style for T, the infinite-data limits as thin horizontal lines."""
    d, repetitions, fit = rows[0]["d"], rows[0]["repetitions"], rows[0]["fit"]
    ns = sorted({r["n"] for r in rows})
    Ts = sorted({r["T"] for r in rows})
    lams = sorted({r["lam"] for r in rows})
    colour = {lam: plot.series_colour(i) for i, lam in enumerate(lams)}
    style = {T: plot.line_style(i) for i, T in enumerate(Ts)}
    fig, axes = plot.figure(3, width=5.2, height=4.4)
    axes = axes[0]
    for ax, (key, label, limit) in zip(axes, _PANELS):
        for T, lam in itertools.product(Ts, lams):
            for convention in COVARIANCE_CONVENTIONS:
                if key == "kl_qp" and convention == "reference":
                    continue  # identical to the consistent one: same spectrum and mean
                setting = (T, lam, convention)
                sub = [r for r in rows if (r["T"], r["lam"], r["convention"]) == setting]
                sub.sort(key=lambda r: r["n"])
                x = np.array([r["n"] for r in sub], float)
                y = np.array([r[f"{key}_median"] for r in sub])
                ok = np.isfinite(y)
                if convention == "reference":
                    # Markers only: beside the consistent curve, the difference shows.
                    ax.plot(x[ok], y[ok], "x", color=colour[lam], ms=4, alpha=0.8)
                    continue
                lo = np.array([r[f"{key}_q25"] for r in sub])
                hi = np.array([r[f"{key}_q75"] for r in sub])
                ax.plot(x[ok], y[ok], style[T], color=colour[lam], marker="o", ms=3, lw=1.5)
                band = ok & np.isfinite(hi)
                ax.fill_between(x[band], lo[band], hi[band], color=colour[lam], alpha=0.1, lw=0)
                ax.axhline(sub[0][limit], color=colour[lam], ls=style[T], lw=0.8, alpha=0.7)
        if key != "hellinger2":
            # Infinite medians (q degenerate, n <= d) as markers on the top edge.
            inf_ns = sorted({r["n"] for r in rows if np.isposinf(r[f"{key}_median"])})
            plot.top_edge_markers(ax, inf_ns, color="black")
            ax.set_yscale("log")
        else:
            ax.set_ylim(top=1.03)
        ax.axvline(d, color="black", ls=":", lw=1)
        ax.set_xscale("log")
        ax.set_xlim(0.8 * min(ns), 1.25 * max(ns))
        ax.set_xlabel("training-set size $n$")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3, which="both")
    handles = [Line2D([], [], color=colour[x], lw=2, label=rf"$\lambda = {x:g}$") for x in lams]
    handles += [Line2D([], [], color="gray", ls=style[x], lw=1.5, label=f"$T = {x:g}$") for x in Ts]
    handles += [
        Line2D([], [], color="gray", lw=0.8, label=r"$n \to \infty$ limit (thin line)"),
        Line2D([], [], color="gray", ls="", marker="x", ms=4, label=r"reference $v_T W^\top W$"),
        Line2D([], [], color="black", ls=":", lw=1, label="$n = d$"),
        Line2D([], [], color="black", ls="", marker="^", ms=5, label=r"$\infty$ (all settings)"),
    ]
    fig.legend(handles=handles, loc="outside right center", fontsize=8, frameon=False)
    fig.suptitle(
        f"Linear one-step denoiser, $d = {d}$: median and quartiles over {repetitions} "
        f"repetitions ({fit} fit); KL $= \\infty$ and $H^2 = 1$ for $n \\leq d$"
    )
    return fig
