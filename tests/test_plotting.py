"""plotting.save_figure: both files written atomically, and the PNG is exactly what matplotlib's own
``savefig(bbox_inches="tight", dpi=150)`` writes (the tight box is computed once and reused for PNG and PDF)."""

import numpy as np

from sharpsim.plotting import new_figure, save_figure


def _figure():
    fig, (ax, ax2) = new_figure(2)
    x = np.geomspace(1, 1e4, 30)
    ax.plot(x, np.sqrt(x), "o-", label="a long legend label that widens the box")
    ax.set(xscale="log", yscale="log", xlabel=r"$C_{\rm cov}$", ylabel=r"$\hat m$")
    ax.legend(loc="upper left", bbox_to_anchor=(0.0, 1.3))  # sticks out: the tight box must grow to hold it
    ax2.hist(np.random.default_rng(0).normal(size=200), bins=20)
    fig.tight_layout()
    return fig


def test_png_equals_matplotlibs_tight_savefig(tmp_path):
    ref = tmp_path / "ref.png"
    fig = _figure()
    fig.savefig(ref, dpi=150, bbox_inches="tight", format="png")
    paths = save_figure(_figure(), tmp_path / "fig")
    assert [p.name for p in paths] == ["fig.png", "fig.pdf"]
    assert (tmp_path / "fig.png").read_bytes() == ref.read_bytes()
    assert (tmp_path / "fig.pdf").read_bytes().startswith(b"%PDF")
    assert not list(tmp_path.glob(".*.tmp"))  # no temporary file left behind
