"""Interactive explorers for the notebooks: ipywidgets controls around pure plotting functions.

Every explorer draws its figure once at the default values as an ordinary cell output,
so a headless run (``pytest --nbmake``, nbconvert, a static HTML export) still shows the
picture. In JupyterLab, moving a control redraws the figure in place (the output is
replaced through its IPython display id; no widget state is needed to see the figure).

The drawing itself lives in :mod:`sparke_lab.plotting`; these wrappers only add controls.

Taught in: 01_kernels_and_similarity (:func:`kernel_explorer`), 02_renyi_kernel_entropy
(:func:`spectrum_explorer`) and 03_conditional_entropy (:func:`conditional_explorer`).
"""
from __future__ import annotations

from typing import Callable, Dict, Optional

import numpy as np

from . import plotting
from ._extras import require_extra


class LiveFigure:
    """A figure that redraws when its controls change.

    ``draw(**values)`` must return a matplotlib Figure; ``controls`` maps the keyword
    names of ``draw`` to ipywidgets value widgets; ``fixed`` are passed unchanged.
    The first figure is drawn at construction (at the controls' default values).
    Displaying the object shows the controls above the figure.
    """

    def __init__(self, draw: Callable, controls: Dict[str, "object"], **fixed):
        self.draw = draw
        self.controls = dict(controls)
        self.fixed = fixed
        self._handle = None
        self.n_draws = 0
        self.figure = self._render(self.values)
        for w in self.controls.values():
            w.observe(self._on_change, names="value")

    @property
    def values(self) -> Dict[str, object]:
        """Current value of every control."""
        return {k: w.value for k, w in self.controls.items()}

    def _render(self, values):
        import matplotlib.pyplot as plt
        fig = self.draw(**values, **self.fixed)
        plt.close(fig)  # shown through display(), never by the inline backend's auto-show
        self.n_draws += 1
        return fig

    def update(self, **values) -> None:
        """Set controls (optional) and redraw; the shown figure is replaced in place."""
        for k, v in values.items():
            self.controls[k].value = v  # triggers _on_change when the value differs
        if not values:
            self._on_change(None)

    def _on_change(self, _change) -> None:
        self.figure = self._render(self.values)
        if self._handle is not None:
            self._handle.update(self.figure)

    def _ipython_display_(self) -> None:
        from IPython.display import display
        W = require_extra("ipywidgets", "lab", "the notebook widgets")
        display(W.HBox(list(self.controls.values()),
                       layout=W.Layout(flex_flow="row wrap")))
        self._handle = display(self.figure, display_id=True)


def sigma_slider(value: float, lo: float, hi: float, description: str = "σ") -> "object":
    """A log-scale slider for a kernel bandwidth between ``lo`` and ``hi``."""
    W = require_extra("ipywidgets", "lab", "the notebook widgets")
    return W.FloatLogSlider(value=value, base=10, min=float(np.log10(lo)), max=float(np.log10(hi)),
                            step=0.05, description=description, continuous_update=False,
                            readout_format=".3g")


def kernel_explorer(X, labels=None, sigma: float = 1.0, sigma_range=(0.05, 50.0)) -> LiveFigure:
    """A bandwidth slider over :func:`sparke_lab.plotting.plot_kernel_panel`
    (data, sorted kernel matrix, eigenvalues of K/n). Taught in: 01_kernels_and_similarity.
    """
    return LiveFigure(plotting.plot_kernel_panel, {"sigma": sigma_slider(sigma, *sigma_range)},
                      X=X, labels=labels)


def spectrum_explorer(X, labels=None, sigma: float = 1.0, alpha: float = 2.0,
                      sigma_range=(0.01, 100.0), true_modes: Optional[float] = None) -> LiveFigure:
    """Sliders for the bandwidth sigma and the order alpha over
    :func:`sparke_lab.plotting.plot_spectrum_and_score` (live spectrum and score).
    Taught in: 02_renyi_kernel_entropy.
    """
    W = require_extra("ipywidgets", "lab", "the notebook widgets")
    alpha_w = W.FloatSlider(value=alpha, min=0.25, max=8.0, step=0.25, description="α",
                            continuous_update=False)
    return LiveFigure(plotting.plot_spectrum_and_score,
                      {"sigma": sigma_slider(sigma, *sigma_range), "alpha": alpha_w},
                      X=X, labels=labels, true_modes=true_modes)


def conditional_explorer(X, T, sigma_x: float = 1.0, sigma_t: float = 1.0, groups=None,
                         sigma_range=(0.02, 50.0)) -> LiveFigure:
    """Sliders for the image and prompt bandwidths over
    :func:`sparke_lab.plotting.plot_conditional_panel` (K_X, K_T, K_X o K_T and the scores).
    Shrinking sigma_t makes prompts look unrelated; growing it makes them look identical.
    Taught in: 03_conditional_entropy.
    """
    return LiveFigure(plotting.plot_conditional_panel,
                      {"sigma_x": sigma_slider(sigma_x, *sigma_range, description="σ_x"),
                       "sigma_t": sigma_slider(sigma_t, *sigma_range, description="σ_t")},
                      X=X, T=T, groups=groups)
