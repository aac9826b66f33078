"""Figures for scaling experiments: empirical curve with a confidence band, the paper's bounds drawn from
their sympy expressions (LaTeX labels from ``bounds/``), log-log axes with fitted vs predicted slope, and
a normalised panel (empirical / bound) that should be flat when the bound has the right shape.
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Optional, Sequence

import numpy as np

__all__ = ["BoundCurve", "scaling_figure", "save_figure", "new_figure", "finish_figure", "curve_with_band", "hist_by_outcome"]


@dataclasses.dataclass
class BoundCurve:
    """A bound evaluated along the sweep: ``bound`` (a :class:`bounds.Bound`), ``values`` (symbol → array
    aligned with the sweep's x), and an optional constant (``fit=True`` calibrates it on the measurements
    with ``bound.fit_constant``; explicit bounds keep constant 1)."""

    bound: object
    values: dict
    constant: Optional[float] = None
    fit: bool = True
    label: Optional[str] = None

    def evaluate(self, measured: Optional[np.ndarray] = None) -> tuple[np.ndarray, float]:
        b = self.bound
        c = self.constant
        if c is None:
            if getattr(b, "explicit_constant", True) or not self.fit or measured is None:
                c = 1.0
            else:
                ok = np.isfinite(measured) & (measured > 0)
                vals = {k: np.asarray(v)[ok] if np.ndim(v) else v for k, v in self.values.items()}
                c = float(b.fit_constant(np.asarray(measured)[ok], **vals).constant) if ok.sum() >= 1 else 1.0
        kwargs = {k: v for k, v in self.values.items()}
        if getattr(b, "explicit_constant", True):
            y = np.asarray(b.numeric(**kwargs), dtype=float)
        else:
            y = np.asarray(b.numeric(constant=c, **kwargs), dtype=float)
        return y, c

    def text(self, c: float) -> str:
        if self.label:
            return self.label
        b = self.bound
        tag = getattr(b, "reference", getattr(b, "name", "bound"))
        explicit = getattr(b, "explicit_constant", True)
        latex = b.latex if explicit or not hasattr(b, "latex_with") else b.latex_with(c)
        return f"{tag}: ${latex}$"


def new_figure(ncols: int = 2, width: float = 5.2, height: float = 4.0):
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, ncols, figsize=(width * ncols, height), squeeze=False)
    return fig, axes[0]


def hist_by_outcome(ax, values, ok, *, labels=("correct", "incorrect"), colors=("C2", "C3"), bins: int = 30,
                    upper: float = 0.0) -> None:
    """Density histograms of ``values`` split by the boolean ``ok`` (e.g. log-probs of sampled responses by
    correctness), on common bins from ⌊min⌋ to ``upper``, each labelled with its count; nothing when empty."""
    values, ok = np.asarray(values, float), np.asarray(ok, bool)
    for mask, color, label in ((ok, colors[0], labels[0]), (~ok, colors[1], labels[1])) if values.size else ():
        ax.hist(values[mask], bins=np.linspace(np.floor(values.min()), upper, bins), density=True, alpha=0.55,
                color=color, label=f"{label} ({mask.sum()})")

def curve_with_band(ax, x, y, lower=None, upper=None, *, fmt: str = "-", color=None, label=None,
                    alpha: float = 0.15) -> None:
    """A curve with its band [lower, upper] shaded (when given); a ``fmt`` without a line ("o") draws open
    markers."""
    marker_only = not any(c in fmt for c in "-:")
    ax.plot(x, y, fmt, color=color, label=label, **(dict(ms=3, mfc="none") if marker_only else {}))
    if lower is not None:
        ax.fill_between(x, lower, upper, color=color, alpha=alpha)


def finish_figure(fig, axes, path_stem, *, legend_fontsize: float = 7, legend_loc: str = "best",
                  grid: Optional[str] = "major", legend_axes=None) -> list[pathlib.Path]:
    """The common end of an experiment's figure: a light grid on every axis (``grid="major"``; ``"both"`` adds
    the minor grid of log axes; ``None``: no grid), a legend on each of ``legend_axes`` (default: every axis;
    ``()``: none), tight layout, then :func:`save_figure` (PNG and PDF)."""
    for ax in axes if grid else ():
        ax.grid(True, which=grid, alpha=0.3)
    for ax in axes if legend_axes is None else legend_axes:
        ax.legend(fontsize=legend_fontsize, loc=legend_loc)
    fig.tight_layout()
    return save_figure(fig, path_stem)

def save_figure(fig, path_stem) -> list[pathlib.Path]:
    """Save as PNG and PDF next to each other; returns both paths.

    Each file is written to a temporary name in the same folder and renamed into place, so a run killed
    while saving never leaves a truncated figure (permissions as a plain ``open()``: 0666 minus the umask).
    """
    import os

    import matplotlib.pyplot as plt

    stem = pathlib.Path(path_stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    out = []
    try:
        # the tight box once, as savefig(bbox_inches="tight") computes it for the PNG (an Agg layout at 150 dpi),
        # and reused for both files: two layouts fewer (≈ 40% of a figure's saving time; same PNG bytes)
        fig.set_dpi(150)
        fig.draw_without_rendering()
        box = fig.get_tightbbox(fig.canvas.get_renderer()).padded(plt.rcParams["savefig.pad_inches"])
        for ext in ("png", "pdf"):
            p = stem.with_suffix(f".{ext}")
            tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
            try:
                fig.savefig(tmp, dpi=150, bbox_inches=box, format=ext)
                os.replace(tmp, p)
            finally:
                if tmp.exists():
                    tmp.unlink()
            out.append(p)
    finally:
        plt.close(fig)
    return out


def scaling_figure(
    path_stem,
    *,
    x: Sequence[float],
    y: Sequence[float],
    y_lower: Optional[Sequence[float]] = None,
    y_upper: Optional[Sequence[float]] = None,
    xlabel: str,
    ylabel: str,
    title: str,
    label: str = "empirical",
    bounds: Sequence[BoundCurve] = (),
    fit=None,
    predicted_slope: Optional[float] = None,
    normalise_by: Optional[int] = 0,
    extra_series: Sequence[dict] = (),
) -> list[pathlib.Path]:
    """Two panels: (left) log-log y vs x with band, bounds and slopes; (right) y / bound, should be flat.

    ``fit`` is a :class:`sharpsim.complexity.SlopeFit` of y against x (drawn dotted, slope and CI in the
    legend); ``predicted_slope`` is printed beside it. ``extra_series`` are more empirical curves
    (dicts with x, y, optional lower/upper, label). ``normalise_by`` picks the bound of the right panel.
    """
    x = np.asarray(x, float)
    y = np.asarray(y, float)
    fig, (ax, axn) = new_figure(2)
    finite = np.isfinite(y) & (y > 0)
    ax.plot(x[finite], y[finite], "o-", color="C0", label=label, zorder=3)
    if y_lower is not None and y_upper is not None:
        lo, hi = np.asarray(y_lower, float), np.asarray(y_upper, float)
        band = finite & np.isfinite(lo) & np.isfinite(hi) & (lo > 0)
        ax.fill_between(x[band], lo[band], hi[band], color="C0", alpha=0.25, label="95% CI")
    for i, s in enumerate(extra_series):
        sx, sy = np.asarray(s["x"], float), np.asarray(s["y"], float)
        ok = np.isfinite(sy) & (sy > 0)
        ax.plot(sx[ok], sy[ok], s.get("fmt", "s-"), color=s.get("color", f"C{i + 4}"),
                label=s.get("label", f"series {i}"), zorder=3)
        if s.get("lower") is not None:
            lo, hi = np.asarray(s["lower"], float), np.asarray(s["upper"], float)
            b = ok & np.isfinite(lo) & np.isfinite(hi) & (lo > 0)
            ax.fill_between(sx[b], lo[b], hi[b], color=f"C{i + 4}", alpha=0.2)
    if fit is not None:
        xs = np.geomspace(x[finite].min(), x[finite].max(), 50) if finite.any() else x
        pred = "" if predicted_slope is None else f", predicted {predicted_slope:g}"
        ax.plot(xs, fit.predict(xs), ":", color="k",
                label=f"fit: slope {fit.slope:.2f} [{fit.lower:.2f}, {fit.upper:.2f}]{pred}")
    curves = []
    for j, bc in enumerate(bounds):
        yb, c = bc.evaluate(y)
        yb = np.broadcast_to(yb, x.shape)
        curves.append(yb)
        style = "--" if getattr(bc.bound, "kind", "upper") == "upper" else "-."
        ax.plot(x, yb, style, color=f"C{j + 1}", label=bc.text(c))
    ax.set_xscale("log")
    if finite.any() or any(np.any(np.isfinite(c) & (c > 0)) for c in curves):
        ax.set_yscale("log")
    else:  # nothing positive to draw (e.g. no budget reached the target on the grid): say so, keep a linear axis
        ax.text(0.5, 0.5, "no finite measurement on the grid", transform=ax.transAxes, ha="center")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="best")

    ratio = y / curves[normalise_by] if curves and normalise_by is not None else np.full_like(y, np.nan)
    ok = np.isfinite(ratio) & (ratio > 0)
    if ok.any():
        axn.plot(x[ok], ratio[ok], "o-", color="C0")
        if y_lower is not None and y_upper is not None:
            lo = np.asarray(y_lower, float) / curves[normalise_by]
            hi = np.asarray(y_upper, float) / curves[normalise_by]
            b = ok & np.isfinite(lo) & np.isfinite(hi) & (lo > 0)
            axn.fill_between(x[b], lo[b], hi[b], color="C0", alpha=0.25)
        axn.set_xscale("log")
        axn.set_yscale("log")
        axn.set_title(f"normalised: empirical / {getattr(bounds[normalise_by].bound, 'name', 'bound')} (flat = right shape)",
                      fontsize=9)
        axn.set_xlabel(xlabel)
        axn.set_ylabel("ratio")
        axn.grid(True, which="both", alpha=0.3)
    else:
        axn.set_visible(False)
    fig.tight_layout()
    return save_figure(fig, path_stem)
