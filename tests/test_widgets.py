"""The notebook explorers: each draws once at its defaults and redraws when a control changes."""
import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

pytest.importorskip("ipywidgets")

import sparke_lab as sl  # noqa: E402
from sparke_lab import widgets  # noqa: E402


@pytest.fixture
def mixture():
    return sl.gaussian_mixture(30, 3, dim=2, separation=6.0, spread=0.3, seed=0)


def test_live_figure_draws_once_at_defaults():
    import matplotlib.pyplot as plt
    import ipywidgets as W
    calls = []

    def draw(a, b=0):
        calls.append((a, b))
        fig, ax = plt.subplots()
        ax.set_title(f"{a} {b}")
        return fig

    live = widgets.LiveFigure(draw, {"a": W.IntSlider(value=3, min=0, max=10)}, b=7)
    assert calls == [(3, 7)] and live.n_draws == 1
    assert live.figure.axes[0].get_title() == "3 7"
    live.update(a=5)                                     # changing a control redraws
    assert calls[-1] == (5, 7) and live.figure.axes[0].get_title() == "5 7"
    live.update()                                         # explicit redraw at current values
    assert live.n_draws == 3
    assert live.values == {"a": 5}


def test_live_figure_display_updates_in_place(monkeypatch):
    import IPython.display
    import matplotlib.pyplot as plt
    import ipywidgets as W
    shown, updated = [], []

    class Handle:
        def update(self, obj):
            updated.append(obj)

    def fake_display(obj, display_id=None):
        shown.append((obj, display_id))
        return Handle() if display_id else None

    monkeypatch.setattr(IPython.display, "display", fake_display)
    live = widgets.LiveFigure(lambda a: plt.subplots()[0], {"a": W.IntSlider(value=1)})
    live._ipython_display_()
    assert isinstance(shown[0][0], W.HBox)               # controls first
    assert shown[1] == (live.figure, True)               # then the figure, with a display id
    live.update(a=2)                                      # a change replaces the shown figure
    assert updated == [live.figure] and live.n_draws == 2


def test_kernel_explorer(mixture):
    live = widgets.kernel_explorer(mixture.X, mixture.labels, sigma=2.0)
    assert live.values == {"sigma": pytest.approx(2.0)}
    assert len(live.figure.axes) == 4
    live.update(sigma=0.5)
    assert "0.5" in live.figure.axes[1].get_title()


def test_spectrum_explorer_shows_score(mixture):
    live = widgets.spectrum_explorer(mixture.X, mixture.labels, sigma=2.0, alpha=2.0, true_modes=3)
    text = " ".join(t.get_text() for t in live.figure.axes[1].texts)
    assert f"{sl.rke_score(mixture.X, sigma=2.0):.2f}" in text
    live.update(alpha=1.0)
    text = " ".join(t.get_text() for t in live.figure.axes[1].texts)
    assert f"{sl.vendi_score(mixture.X, sigma=2.0):.2f}" in text


def test_conditional_explorer():
    rng = np.random.default_rng(0)
    X, T = rng.normal(size=(10, 2)), rng.normal(size=(10, 2))
    live = widgets.conditional_explorer(X, T, sigma_x=1.0, sigma_t=1.0, groups=np.repeat([0, 1], 5))
    assert set(live.values) == {"sigma_x", "sigma_t"}
    before = live.figure.axes[2].get_title()
    live.update(sigma_t=10.0)
    assert live.figure.axes[2].get_title() != before
