"""Preset for the exact distances between [H]'s generated Gaussian and the sampling
distribution, against the training-set size (SCIENCE.md H2)."""

import dataclasses
import itertools
from pathlib import Path
from typing import ClassVar, Literal

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from matplotlib.figure import Figure
from tqdm.auto import tqdm

from ..data import forward_jump, Gaussian
from ..denoisers import fit_affine, one_step_gaussian, wiener_affine
from ..denoisers._linear import CONVENTIONS
from ..estimators import hellinger_squared, kl_divergence, kl_infinite_data
from . import _plotting as plot
from ._base import AbstractPreset, param, Results
from ._pieces import Pieces
from ._registry import register


def rep_stats(prefix: str, values) -> dict[str, float]:
    """Median, quartiles and mean of a quantity over repetitions (inf where any is)."""
    values = np.asarray(values, dtype=np.float64)
    q25, median, q75 = np.quantile(values, [0.25, 0.5, 0.75], method="lower")
    return {
        f"{prefix}_median": float(median),
        f"{prefix}_q25": float(q25),
        f"{prefix}_q75": float(q75),
        f"{prefix}_mean": float(np.mean(values)),
    }


def training_sizes(d: int, n_over_d: tuple[float, ...]) -> list[int]:
    """The sizes round(f d) for each fraction f, at least 2, and d + 1 (the first size at
    which the generated Gaussian is regular), sorted and without repeats."""
    return sorted({max(2, round(f * d)) for f in n_over_d} | {d + 1})


def fall_start(ns, values) -> int | None:
    """The smallest n from which `values` are finite and strictly decreasing in n."""
    ns, values = np.asarray(ns), np.asarray(values, dtype=np.float64)
    start = None
    for i in range(len(ns) - 1, -1, -1):
        if not np.isfinite(values[i]) or (i + 1 < len(ns) and values[i] <= values[i + 1]):
            break
        start = int(ns[i])
    return start


def _distance_fn(n_max: int, d: int, draws: int, fit: str, p: Gaussian):
    """Every distance for R repetitions and G (T, lambda) pairs at a training-set size n,
    as one jit-compiled function of shape (G, R, conventions, 3).

    Training sets are drawn at size `n_max` and the first n points kept by a mask, so
    that every n shares one compilation and the sets are nested across n (common random
    numbers). The same keys serve every (T, lambda): the same training sets again.
    """

    def one(key, T, lam, n):
        k_data, k_noise = jr.split(key)
        x0 = p.sample(k_data, n_max)
        mask = jnp.arange(n_max) < n
        if fit == "lstsq":
            xt = forward_jump(k_noise, x0, T=T, lam=lam, draws=draws)
            den = fit_affine(x0, xt, mask=mask)
        else:
            den = wiener_affine(x0, T=T, lam=lam, mask=mask)
        qs = [
            one_step_gaussian(den, x0, T=T, lam=lam, convention=c, mask=mask) for c in CONVENTIONS
        ]
        # The conventions share a mean; loop over their covariances with one trace.
        return jax.lax.map(
            lambda cov: _distances(Gaussian(qs[0].mean, cov), p), jnp.stack([q.cov for q in qs])
        )

    # Loops, not vmap: a LAPACK call batched by vmap can deadlock XLA:CPU's thread pool
    # (see `jaxflow._workarounds`); unbatched calls cannot, and cost the same here.
    def cell(keys, Ts, lams, n):
        return jax.lax.map(lambda tl: jax.lax.map(lambda key: one(key, *tl, n), keys), (Ts, lams))

    return jax.jit(cell)


def _distances(q: Gaussian, p: Gaussian):
    return jnp.stack([kl_divergence(q, p), kl_divergence(p, q), hellinger_squared(q, p)])


@register
@dataclasses.dataclass(frozen=True)
class LinearDistanceVsN(AbstractPreset):
    """KL(q||p), KL(p||q) and the squared Hellinger distance between the linear one-step
    denoiser's generated Gaussian q and the sampling distribution p, against the
    training-set size n, with the infinite-data limit KL_inf (SCIENCE.md H1, H2)."""

    name: ClassVar[str] = "linear-distance-vs-n"
    summary: ClassVar[str] = (
        "[H] exact KL and Hellinger distances of the linear one-step denoiser against n, "
        "with KL_inf; the fall starts at n = d"
    )

    d: int = param(100, "dimension")
    m: float = param(10.0, "mean of every coordinate of p = N(m 1, s^2 I)")
    s: float = param(1.0, "standard deviation s of p")
    n_over_d: tuple[float, ...] = param(
        (0.1, 0.25, 0.5, 0.75, 0.9, 1.0, 1.05, 1.1, 1.25, 1.5, 2.0, 3.0, 5.0, 7.5, 10.0),
        "training-set sizes as fractions of d (n = round(f d); d + 1 is always added)",
    )
    T: tuple[float, ...] = param((1.0, 2.0, 3.0), "diffusion times T")
    lam: tuple[float, ...] = param((0.5, 1.0, 2.0), "noise scales lambda (l = lambda e^-2T)")
    draws: int = param(1, "noise draws k per training point")
    fit: Literal["lstsq", "wiener"] = param(
        "lstsq", "least squares on noisy copies (as [H]) or the noise-averaged Wiener fit"
    )
    reps: int = param(20, "independent repetitions (training set and noise) per cell")

    def quick(self):
        return dataclasses.replace(
            self, d=10, n_over_d=(0.5, 1.0, 1.5, 2.0, 5.0, 10.0), T=(1.0, 2.0), lam=(1.0,), reps=8
        )

    def run(self, out: Path, *, progress: bool = True) -> Results:
        if self.d < 1 or self.reps < 1 or self.draws < 1:
            raise ValueError("`d`, `reps` and `draws` must be positive.")
        p = Gaussian.isotropic(self.d, mean=self.m, std=self.s)
        pairs = list(itertools.product(self.T, self.lam))
        Ts = jnp.asarray([t for t, _ in pairs], p.mean.dtype)
        lams = jnp.asarray([lam for _, lam in pairs], p.mean.dtype)
        keys = jr.split(jr.key(self.seed), self.reps)
        ns = training_sizes(self.d, self.n_over_d)
        distances = _distance_fn(max(ns), self.d, self.draws, self.fit, p)
        pieces, values = Pieces(out, self), {}
        for n in tqdm(ns, desc="linear-distance-vs-n: n", disable=not progress):
            piece = pieces(f"n{n}", lambda: {"distances": distances(keys, Ts, lams, n)})
            values[n] = piece["distances"]
        rows = []
        for g, (T, lam) in enumerate(pairs):
            kl_inf = float(kl_infinite_data(self.d, T=T, lam=lam, s=self.s))
            kl_inf_rev = float(kl_infinite_data(self.d, T=T, lam=lam, s=self.s, reverse=True))
            for c, convention in enumerate(CONVENTIONS):
                group = []
                for n in ns:
                    v = values[n][g, :, c]
                    row = {
                        "n": n,
                        "n_over_d": n / self.d,
                        "d": self.d,
                        "T": T,
                        "lam": lam,
                        "convention": convention,
                        "fit": self.fit,
                        "reps": self.reps,
                        **rep_stats("kl_qp", v[:, 0]),
                        **rep_stats("kl_pq", v[:, 1]),
                        **rep_stats("hellinger2", v[:, 2]),
                        "finite_fraction": float(np.mean(np.isfinite(v[:, 0]))),
                        "kl_inf": kl_inf,
                        "kl_inf_pq": kl_inf_rev,
                    }
                    group.append(row)
                start = fall_start(ns, [r["kl_qp_median"] for r in group])
                for row in group:
                    row["kl_fall_starts_at_n"] = -1 if start is None else start
                rows += group
        arrays = {f"distances_n{n}": values[n] for n in ns}
        arrays.update(T=np.asarray(Ts), lam=np.asarray(lams), ns=np.asarray(ns))
        return Results(
            rows=rows,
            figures={"distance_vs_n": self._figure(rows, ns)},
            summary=(
                "n",
                "T",
                "lam",
                "convention",
                "kl_qp_median",
                "kl_pq_median",
                "hellinger2_median",
                "kl_inf",
                "kl_fall_starts_at_n",
            ),
            arrays=arrays,
        )

    def _figure(self, rows, ns) -> Figure:
        fig = Figure(figsize=(15, 4.4), layout="constrained")
        axes = fig.subplots(1, 3)
        colours = [f"C{i}" for i in range(10)]
        pairs = list(dict.fromkeys((r["T"], r["lam"]) for r in rows))
        panels = [
            ("kl_qp", r"$\mathrm{KL}(q\,\|\,p)$", "kl_inf"),
            ("kl_pq", r"$\mathrm{KL}(p\,\|\,q)$", "kl_inf_pq"),
            ("hellinger2", r"$H^2(q, p)$", None),
        ]
        for ax, (key, label, limit) in zip(axes, panels):
            for (T, lam), colour in zip(pairs, itertools.cycle(colours)):
                for convention, style in (("consistent", "-"), ("reference", ":")):
                    sub = [
                        r
                        for r in rows
                        if (r["T"], r["lam"], r["convention"]) == (T, lam, convention)
                    ]
                    if key == "kl_qp" and convention == "reference":
                        continue  # identical to the consistent one: same spectrum and mean
                    x = np.array([r["n"] for r in sub], float)
                    y = np.array([r[f"{key}_median"] for r in sub])
                    lo = np.array([r[f"{key}_q25"] for r in sub])
                    hi = np.array([r[f"{key}_q75"] for r in sub])
                    ok = np.isfinite(y)
                    lab = rf"$T={T:g}$, $\lambda={lam:g}$" if convention == "consistent" else None
                    ax.plot(
                        x[ok],
                        y[ok],
                        style,
                        color=colour,
                        marker="o" if style == "-" else None,
                        ms=3,
                        label=lab,
                    )
                    if convention == "consistent":
                        band = ok & np.isfinite(hi)
                        ax.fill_between(x[band], lo[band], hi[band], color=colour, alpha=0.15, lw=0)
                        if limit is not None:
                            ax.axhline(sub[0][limit], color=colour, ls="--", lw=1)
            if key != "hellinger2":
                # Infinite medians (q degenerate, n <= d) as markers on the top edge.
                inf_ns = sorted({r["n"] for r in rows if np.isposinf(r[f"{key}_median"])})
                plot.top_edge_markers(ax, inf_ns, color="black", label=r"$\infty$ (all settings)")
            ax.axvline(self.d, color="black", ls=":", lw=1)
            ax.set_xscale("log")
            ax.set_xlim(0.8 * min(ns), 1.25 * max(ns))
            if key != "hellinger2":
                ax.set_yscale("log")
            ax.set_xlabel("training-set size $n$")
            ax.set_ylabel(label)
            ax.grid(alpha=0.3, which="both")
        axes[0].plot([], [], "k--", lw=1, label=r"$\mathrm{KL}_\infty$")
        axes[0].plot([], [], "k:", lw=1, label="$n = d$")
        axes[1].plot([], [], "k:", lw=1.5, label=r"reference convention $v W^\top W$")
        axes[0].legend(fontsize=7, frameon=False)
        axes[1].legend(fontsize=7, frameon=False)
        fig.suptitle(
            f"Linear one-step denoiser, $d = {self.d}$, median and quartiles over {self.reps} "
            f"repetitions ({self.fit} fit); KL $= \\infty$ and $H^2 = 1$ for $n \\leq d$"
        )
        return fig
