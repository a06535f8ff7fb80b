"""Unit tests of the drawing helpers in sparke_lab.plotting (headless, Agg backend)."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import sparke_lab as sl  # noqa: E402
from sparke_lab import plotting  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    plotting.use_style()
    yield
    plt.close("all")


@pytest.fixture
def mixture():
    return sl.gaussian_mixture(40, [0.5, 0.3, 0.2], dim=2, separation=6.0, spread=0.3, seed=0)


def _labels(ax):
    return ax.get_xlabel(), ax.get_ylabel()


def test_categorical_colors_count_and_distinct():
    for k in (1, 3, 8, 10, 14):
        cols = plotting.categorical_colors(k)
        assert len(cols) == k
        assert len({str(c) for c in cols}) == k


def test_kernel_profile_marks_sigma_points():
    fig = plotting.plot_kernel_profile((0.5, 2.0))
    ax = fig.axes[0]
    xlabel, ylabel = _labels(ax)
    assert "distance" in xlabel and "k" in ylabel
    # each sigma: one curve and one marker at (sigma, exp(-1/2))
    markers = [l for l in ax.lines if len(l.get_xdata()) == 1]
    assert sorted(float(l.get_xdata()[0]) for l in markers) == [0.5, 2.0]
    assert all(abs(float(l.get_ydata()[0]) - np.exp(-0.5)) < 1e-12 for l in markers)


def test_plot_points_accepts_tensors_and_labels(mixture):
    fig = plotting.plot_points(torch.as_tensor(mixture.X), mixture.labels, title="t", legend_title="mode")
    ax = fig.axes[0]
    assert len(ax.collections) == 3                   # one scatter per label
    assert ax.get_legend() is not None
    assert sum(len(c.get_offsets()) for c in ax.collections) == len(mixture.X)


def test_plot_points_label_names():
    X = np.random.default_rng(0).normal(size=(6, 2))
    fig = plotting.plot_points(X, np.array([0, 0, 1, 1, 2, 2]), label_names={0: "zero", 1: "one", 2: "two"})
    texts = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert texts == ["zero", "one", "two"]


def test_kernel_matrix_heatmap_and_groups(mixture):
    order = np.argsort(mixture.labels, kind="stable")
    K = sl.gaussian_kernel(mixture.X[order], sigma=1.0)
    fig = plotting.plot_kernel_matrix(K, groups=mixture.labels[order])
    ax = fig.axes[0]
    assert ax.images[0].get_array().shape == (40, 40)
    assert len(ax.lines) == 4                          # 2 cuts x (horizontal + vertical)
    assert len(fig.axes) == 2                          # colour bar


def test_eigenvalue_bars_legend_reports_mass(mixture):
    lam = sl.kernel_eigenvalues(mixture.X, sigma=2.0)
    fig = plotting.plot_eigenvalue_bars(lam, top=5)
    ax = fig.axes[0]
    assert len(ax.patches) == 5
    assert "1.000" in ax.get_legend().get_texts()[0].get_text()


def test_kernel_panel_and_spectrum_panel(mixture):
    fig = plotting.plot_kernel_panel(mixture.X, sigma=2.0, labels=mixture.labels)
    assert len(fig.axes) == 4                          # 3 panels + colour bar
    fig2 = plotting.plot_spectrum_and_score(mixture.X, sigma=2.0, alpha=2.0, labels=mixture.labels, true_modes=3)
    text = " ".join(t.get_text() for t in fig2.axes[1].texts)
    assert f"{sl.rke_score(mixture.X, sigma=2.0):.2f}" in text


def test_plot_curves_reference_lines_and_logs():
    x = np.array([1.0, 10.0, 100.0])
    fig = plotting.plot_curves(x, {"a": [3, 2, 1], "b": [1, 2, 3]}, logx=True, logy=True,
                               xlabel="x", ylabel="y", hlines={"h": 2.0}, vlines={"v": 10.0})
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    assert len(ax.lines) == 4
    assert _labels(ax) == ("x", "y")


def test_mode_gallery_rows_and_labels():
    toy = sl.gaussian_mixture(60, [0.5, 0.3, 0.2], dim=4, separation=10.0, spread=0.1, seed=0)
    modes = sl.find_modes(toy.X, n_modes=3, sigma=3.0)
    images = np.random.default_rng(0).uniform(size=(60, 8, 8))
    fig = plotting.plot_mode_gallery(images, modes, per_mode=4, labels=toy.labels)
    assert len(fig.axes) == 12
    first_row_label = fig.axes[0].get_ylabel()
    assert "mode 1" in first_row_label and "(4/4)" in first_row_label


def test_plot_timings_reports_slope():
    ns = [100, 200, 400, 800]
    fig = plotting.plot_timings(ns, {"cubic": [n**3 * 1e-9 for n in ns], "broken": [1e-3, np.nan, 2e-3, 4e-3]})
    texts = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert "slope 3.00" in texts[0]
    assert fig.axes[0].get_xscale() == "log"


def test_conditional_panel_scores_in_titles():
    rng = np.random.default_rng(0)
    X, T = rng.normal(size=(12, 2)), rng.normal(size=(12, 3))
    fig = plotting.plot_conditional_panel(X, T, sigma_x=1.0, sigma_t=1.0)
    title = fig.axes[2].get_title()
    assert f"{sl.conditional_rke_score(X, T, 1.0, 1.0):.2f}" in title


def test_image_grids_share_one_drawer():
    import inspect
    assert "ax" not in inspect.signature(plotting.plot_image_grid).parameters  # it draws its own figure
    fig = plotting.plot_image_grid(np.full((5, 1, 4, 4), 2.0), nrow=2, titles=list("abcde"), title="t")
    assert len(fig.axes) == 6                                   # 3 rows of 2, one blank cell
    assert [a.get_title() for a in fig.axes[:5]] == list("abcde") and not fig.axes[5].images
    assert fig.axes[0].images[0].get_array().max() == 1.0       # clipped to [0, 1]
    fig = plotting.plot_image_rows([[np.zeros((3, 3))] * 2, [np.ones((3, 3, 1))]], (3, 2),
                                   row_labels=["first", "second"], ncols=3,
                                   cell_titles=[[("x", "red"), None], ["y"]])
    axes = np.array(fig.axes).reshape(2, 3)
    assert [len(a.images) for a in axes.ravel()] == [1, 1, 0, 1, 0, 0]
    assert axes[0, 0].get_ylabel() == "first" and axes[1, 0].get_ylabel() == "second"
    assert axes[0, 0].title.get_color() == "red" and axes[1, 0].get_title() == "y"
    u8 = np.zeros((6, 4, 4, 1), np.uint8)
    fig = plotting.plot_prompt_grid(u8, np.array([0, 1, 2, 0, 1, 2]), ["p0", "p1", "p2"], per_row=3, max_prompts=2)
    axes = np.array(fig.axes).reshape(2, 3)
    assert [len(a.images) for a in axes.ravel()] == [1, 1, 0, 1, 1, 0]
    assert axes[1, 0].get_ylabel() == "p1"
