"""Figures render to real, non-blank PNGs of the expected size."""

from __future__ import annotations

import matplotlib.image
import numpy as np
import pytest

from hashlab import Architecture, HashSpec, build_map
from hashlab.stats import map_report
from hashlab.stats.plots import degeneracy_figure, dirichlet_heatmap, entropy_vs_alpha, locality_figure, report_figures


def read_png(path):
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    img = matplotlib.image.imread(path)
    assert img.ndim == 3 and img.shape[0] > 300 and img.shape[1] > 500
    assert img[..., :3].std() > 0.05  # not blank
    return img


@pytest.fixture(scope="module")
def report():
    imap = build_map(HashSpec(kind="dirichlet", alpha=0.2, table_size=100, sparsity=0.1), Architecture((60, 40, 30, 5)))
    return map_report(imap)


def test_report_figures_write_four_pngs(report, tmp_path):
    paths = report_figures(report, tmp_path / "figs")
    assert sorted(p.name for p in paths) == ["degeneracy.png", "entropy.png", "load_histogram.png", "locality.png"]
    for p in paths:
        read_png(p)


def test_report_without_locality_skips_the_locality_figure(tmp_path):
    rep = map_report(
        build_map(HashSpec(kind="modulus", table_size=30), Architecture((20, 10))), locality=False, degeneracy=False
    )
    assert [p.name for p in report_figures(rep, tmp_path)] == ["load_histogram.png", "entropy.png"]
    with pytest.raises(ValueError, match="locality=True"):
        locality_figure(rep)
    with pytest.raises(ValueError, match="degeneracy=True"):
        degeneracy_figure(rep)


def test_dirichlet_heatmap_and_entropy_curve(tmp_path):
    a = read_png(dirichlet_heatmap(tmp_path / "heat.png", n=200, alphas=(0.01, 1.0, 100.0), seed=3))
    b = read_png(entropy_vs_alpha(tmp_path / "curve.png", n=200, alphas=np.logspace(-2, 2, 9), draws=(400,)))
    assert a.shape[1] > b.shape[1] * 0.9  # the heatmap is the wide one
    with pytest.raises(ValueError, match="alpha"):
        dirichlet_heatmap(tmp_path / "none.png", alphas=())
