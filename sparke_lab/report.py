"""The comparison report: one self-contained ``report.html`` (figures embedded) plus PNG files.

Sections: the metrics table (with intervals for the gain over the first method), image grids side by side, a UMAP map
of image features coloured by method and by prompt, eigenspectra per method, mode galleries
(the samples carrying the top eigenvectors) and the fidelity-diversity curve over the
guidance scale. Opens in a browser with no server. Used by ``sparke-lab compare``.
"""
from __future__ import annotations

import base64
import html
import io
import json
import math
from pathlib import Path
from typing import Dict, List

import numpy as np

from .spectra import find_modes, kernel_spectrum

#: Columns of the report table: key, header, what a reader should know.
COLUMNS = [
    ("method", "method", ""),
    ("samples", "n", "samples"),
    ("cond_vendi", "Cond-Vendi ↑", "prompt-aware diversity (order 1)"),
    ("cond_rke", "Cond-RKE ↑", "prompt-aware diversity (order 2)"),
    ("vendi", "Vendi ↑", "diversity of all samples"),
    ("rke", "RKE ↑", ""),
    ("in_batch_sim", "in-batch sim ↓", "mean cosine within a prompt cluster"),
    ("broad_spread", "spread ↑", "effective number of valid digits, broad prompts"),
    ("prompt_fidelity", "prompt fidelity ↑", "judge's digit is valid for the prompt"),
    ("precision", "precision ↑", "k=3"),
    ("recall", "recall ↑", "k=3"),
    ("density", "density ↑", ""),
    ("coverage", "coverage ↑", ""),
    ("kid", "KID ↓", "kernel distance to real digits"),
    ("sec_per_sample", "s / sample", ""),
    ("peak_rss_mb", "peak RSS MB", "process peak, cumulative"),
]


def fmt(v) -> str:
    """The one number format of the report (tests compare it with metrics.json)."""
    if isinstance(v, str):
        return v
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    return f"{v:.4g}"


def _png(fig, path: Path) -> str:
    import matplotlib.pyplot as plt
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    data = buf.getvalue()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return base64.b64encode(data).decode()


def _script_json(obj) -> str:
    """JSON for a ``<script type="application/json">`` block: script text is not HTML-decoded,
    so only ``</`` is escaped (as the JSON escape ``<\\/``)."""
    return json.dumps(obj, default=float).replace("</", "<\\/")


def _img_tag(b64: str, alt: str, rel: str) -> str:
    return (f'<figure><img alt="{html.escape(alt)}" data-file="{html.escape(rel)}" '
            f'src="data:image/png;base64,{b64}"><figcaption>{html.escape(alt)}</figcaption></figure>')


def _grid_figure(images, prompt_idx, prompts, method, per_row=8, max_prompts=8):
    import matplotlib.pyplot as plt
    shown = sorted(set(prompt_idx.tolist()))[:max_prompts]
    fig, axes = plt.subplots(len(shown), per_row, figsize=(per_row * 0.75 + 2.2, len(shown) * 0.78 + 0.4),
                             squeeze=False)
    for r, pi in enumerate(shown):
        idx = np.flatnonzero(prompt_idx == pi)[:per_row]
        for c in range(per_row):
            ax = axes[r, c]
            ax.set_xticks([]), ax.set_yticks([])
            for s in ax.spines.values():
                s.set_visible(False)
            if c < len(idx):
                im = images[idx[c]]
                ax.imshow(im[..., 0] if im.shape[-1] == 1 else im, cmap="gray", vmin=0, vmax=255)
        axes[r, 0].set_ylabel(prompts[pi]["prompt"], rotation=0, ha="right", va="center", fontsize=8)
    fig.suptitle(method, fontsize=11)
    return fig


def write_report(out: Path, cfg, results: Dict[str, dict], per_method: Dict[str, dict],
                 prompt_idx: np.ndarray, sigma: float, real) -> Path:
    """Write figures under ``out/figures`` and the self-contained ``out/report.html``."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from .plotting import plot_mode_gallery, plot_spectrum, use_style
    use_style()
    out = Path(out)
    figs = out / "figures"
    methods = list(results)
    prompts = cfg.prompts
    parts: List[str] = []

    # metrics table
    cols = [c for c in COLUMNS if any(c[0] in r for r in results.values())]
    head = "".join(f'<th title="{html.escape(t)}">{html.escape(h)}</th>' for _, h, t in cols)
    body = []
    for m in methods:
        r = results[m]
        cells = []
        for key, _, _ in cols:
            cell = f'<td data-key="{key}" data-value="{html.escape(fmt(r.get(key)))}">{html.escape(fmt(r.get(key)))}'
            if key == "cond_vendi" and "cond_vendi_delta_lo" in r and m != methods[0]:
                cell += (f'<br><small>Δ {r["cond_vendi_delta"]:+.3g} [{r["cond_vendi_delta_lo"]:+.3g}, '
                         f'{r["cond_vendi_delta_hi"]:+.3g}]</small>')
            cells.append(cell + "</td>")
        body.append(f'<tr data-method="{html.escape(m)}">' + "".join(cells) + "</tr>")
    parts.append("<h2>Metrics</h2><p>Diversity and fidelity per method on the same prompts and seeds. "
                 f"Arrows show the better direction. Under Cond-Vendi: the difference Δ to {html.escape(methods[0])} "
                 "with a 95 % interval (paired half-sample subsampling over images, same seeds for every "
                 "method): an interval that contains 0 does not show a real gain. Image-feature bandwidth "
                 f"σ = {sigma:.3g} (median heuristic).</p>"
                 f'<table id="metrics"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>')

    # image grids
    tags = []
    for m in methods:
        b64 = _png(_grid_figure(per_method[m]["images"], prompt_idx, prompts, m), figs / f"grid_{_safe(m)}.png")
        tags.append(_img_tag(b64, f"samples: {m}", f"figures/grid_{_safe(m)}.png"))
    parts.append('<h2>Samples</h2><p>Same prompts (rows) and seeds (columns) for every method.</p>'
                 f'<div class="row">{"".join(tags)}</div>')

    # UMAP
    try:
        from .embeddings import umap_embed
        F = np.concatenate([per_method[m]["features"] for m in methods])
        lab_m = np.concatenate([[i] * len(per_method[m]["features"]) for i, m in enumerate(methods)])
        lab_p = np.concatenate([prompt_idx for _ in methods])
        Z = umap_embed(F, random_state=0)
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.6))
        for i, m in enumerate(methods):
            sel = lab_m == i
            axes[0].scatter(Z[sel, 0], Z[sel, 1], s=6, alpha=0.6, label=m)
        axes[0].legend(markerscale=3, fontsize=8)
        axes[0].set_title("coloured by method")
        cmap = plt.get_cmap("tab20")
        for j, pi in enumerate(sorted(set(lab_p.tolist()))):
            sel = lab_p == pi
            axes[1].scatter(Z[sel, 0], Z[sel, 1], s=6, alpha=0.6, color=cmap(j % 20),
                            label=prompts[pi]["prompt"][:28] if j < 20 else None)
        axes[1].legend(markerscale=3, fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
        axes[1].set_title("coloured by prompt")
        for ax in axes:
            ax.set_xlabel("UMAP 1"), ax.set_ylabel("UMAP 2")
        b64 = _png(fig, figs / "umap.png")
        parts.append("<h2>UMAP of image features</h2><p>Distances in a UMAP picture are not the kernel "
                     "distances the scores use; read it as a map, and the table as the measurement.</p>"
                     + _img_tag(b64, "UMAP of image features", "figures/umap.png"))
    except Exception as exc:  # a report without the map is still useful
        parts.append(f"<h2>UMAP of image features</h2><p>not drawn: {html.escape(str(exc))}</p>")

    # eigenspectra and mode galleries
    spectra, gallery_tags = {}, []
    for m in methods:
        F = per_method[m]["features"]
        spec = kernel_spectrum(F, sigma=sigma, top_k=4)
        spectra[m] = spec.values
        modes = find_modes(F, 4, sigma=sigma, spectrum=spec)
        imgs = per_method[m]["images"][..., 0] / 255.0 if per_method[m]["images"].shape[-1] == 1 \
            else per_method[m]["images"].mean(-1) / 255.0
        fig = plot_mode_gallery(imgs, modes, per_mode=8, labels=per_method[m]["pred"],
                                title=f"mode gallery: {m}")
        gallery_tags.append(_img_tag(_png(fig, figs / f"modes_{_safe(m)}.png"), f"modes: {m}",
                                     f"figures/modes_{_safe(m)}.png"))
    fig = plot_spectrum(spectra, top=20, title="Eigenvalues of K/n (image features)")
    parts.append("<h2>Eigenspectra</h2><p>A flatter, longer spectrum means more modes of similar weight.</p>"
                 + _img_tag(_png(fig, figs / "spectra.png"), "eigenspectra per method", "figures/spectra.png"))
    parts.append("<h2>Mode galleries</h2><p>Samples with the largest entries of the top eigenvectors of "
                 f"each method's kernel matrix.</p><div class=\"row\">{''.join(gallery_tags)}</div>")

    # fidelity-diversity over the guidance scale
    curve = _scale_curve(results)
    if len(curve) >= 2:
        fig, ax = plt.subplots(figsize=(6, 4))
        xs = [s for s, _ in curve]
        ax.plot(xs, [r.get("cond_vendi") for _, r in curve], marker="o", label="Cond-Vendi")
        ax.set_xlabel("SPARKE guidance scale η")
        ax.set_ylabel("Cond-Vendi (diversity)")
        if all("prompt_fidelity" in r for _, r in curve):
            ax2 = ax.twinx()
            ax2.plot(xs, [100 * r["prompt_fidelity"] for _, r in curve], marker="s", color="C1", label="prompt fidelity")
            ax2.set_ylabel("prompt fidelity (%)", color="C1")
            ax2.set_ylim(0, 102)
            ax2.grid(False)
        ax.set_title("fidelity–diversity trade-off")
        ax.legend(loc="upper left")
        parts.append("<h2>Fidelity–diversity over the scale</h2>"
                     + _img_tag(_png(fig, figs / "scale_curve.png"), "trade-off over the guidance scale",
                                "figures/scale_curve.png"))
    else:
        parts.append("<h2>Fidelity–diversity over the scale</h2><p>Add scales to the methods "
                     "(e.g. <code>sparke@0.05,sparke@0.2</code>) to draw this curve.</p>")

    conf = html.escape(json.dumps(cfg.key(), indent=1))
    doc = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>sparke-lab comparison: {html.escape(cfg.model)}</title>
<style>
body {{ font-family: system-ui, -apple-system, Segoe UI, sans-serif; margin: 2em auto; max-width: 1300px; color: #222; padding: 0 1em; }}
table {{ border-collapse: collapse; font-size: 13px; }}
th, td {{ border-bottom: 1px solid #ddd; padding: 4px 8px; text-align: right; }}
th:first-child, td:first-child {{ text-align: left; }}
th {{ background: #f4f4f4; cursor: help; }}
tr:hover td {{ background: #fafafa; }}
figure {{ display: inline-block; margin: 0 1em 1em 0; vertical-align: top; }}
figure img {{ max-width: 100%; }}
figcaption {{ font-size: 12px; color: #666; }}
.row {{ display: flex; flex-wrap: wrap; }}
.row figure {{ max-width: 32%; }}
small {{ color: #777; }}
pre {{ background: #f7f7f7; padding: .6em; font-size: 11px; }}
</style></head><body>
<h1>Diversity comparison: {html.escape(cfg.model)}</h1>
<p>{len(prompts)} prompts × {cfg.per_prompt} images per prompt, {cfg.steps} steps, CFG {cfg.cfg}, seed {cfg.seed}.
Methods: {html.escape(", ".join(methods))}.</p>
{"".join(parts)}
<h2>Configuration</h2><pre>{conf}</pre>
<script type="application/json" id="metrics-json">{_script_json(results)}</script>
</body></html>"""
    path = out / "report.html"
    path.write_text(doc, encoding="utf-8")
    return path


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name)


def _scale_curve(results: Dict[str, dict]):
    """(scale, row) points of SPARKE runs: 'none' is scale 0, 'sparke@s' is s."""
    pts = []
    for m, r in results.items():
        if m == "none":
            pts.append((0.0, r))
        elif m.partition("@")[0] == "sparke" and r.get("eta") is not None:
            pts.append((float(r["eta"]), r))
    return sorted(pts, key=lambda p: p[0])
