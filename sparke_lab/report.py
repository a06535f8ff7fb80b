"""The comparison report: one self-contained ``report.html`` (figures embedded) plus PNG files.

The figures are drawn by :mod:`sparke_lab.plotting`; this module lays them out with the table.

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
    ("broad_spread", "spread ↑", "effective number of valid digits, broad prompt clusters (order 2)"),
    ("broad_tv", "TV to captions ↓", "total variation of a broad cluster's digits to its caption distribution"),
    ("broad_validity", "broad valid ↑", "share of broad-prompt images that show a valid digit"),
    ("prompt_fidelity", "prompt fidelity ↑", "judge's digit is valid for the prompt"),
    ("rejected", "rejected ↓", "share the judge rejects as not a digit"),
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


def write_report(out: Path, cfg, results: Dict[str, dict], per_method: Dict[str, dict],
                 prompt_idx: np.ndarray, sigma: float, real, frontier=None) -> Path:
    """Write figures under ``out/figures`` and the self-contained ``out/report.html``."""
    import matplotlib
    matplotlib.use("Agg")
    from .plotting import (plot_map_by_method_and_prompt, plot_mode_gallery, plot_prompt_grid,
                           plot_scale_curve, plot_spectrum, use_style)
    use_style()
    out = Path(out)
    figs = out / "figures"
    methods = list(results)
    prompts = cfg.prompts
    texts = [p.prompt for p in prompts]
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
            if f"{key}_delta_lo" in r and m != methods[0]:
                cell += (f'<br><small>Δ {r[f"{key}_delta"]:+.3g} [{r[f"{key}_delta_lo"]:+.3g}, '
                         f'{r[f"{key}_delta_hi"]:+.3g}]</small>')
            cells.append(cell + "</td>")
        body.append(f'<tr data-method="{html.escape(m)}">' + "".join(cells) + "</tr>")
    parts.append("<h2>Metrics</h2><p>Diversity and fidelity per method on the same prompts and seeds. "
                 f"Arrows show the better direction. Under Cond-Vendi and the broad-prompt columns: the "
                 f"difference Δ to {html.escape(methods[0])} with a 95 % interval (paired half-sample "
                 "subsampling over images, same seeds for every method): an interval that contains 0 does "
                 "not show a real change. A method that breaks images can look more diverse: read "
                 "diversity next to fidelity. Image-feature bandwidth "
                 f"σ = {sigma:.3g} (median heuristic).</p>"
                 f'<table id="metrics"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>')
    parts.append(_frontier_section(results, frontier, figs))
    parts.append(_cluster_table(methods, per_method))

    # image grids
    tags = []
    for m in methods:
        broad_first = [i for i, p in enumerate(prompts) if len(getattr(p, "valid", ())) > 1]
        b64 = _png(plot_prompt_grid(per_method[m]["images"], prompt_idx, texts, title=m, first=broad_first),
                   figs / f"grid_{_safe(m)}.png")
        tags.append(_img_tag(b64, f"samples: {m}", f"figures/grid_{_safe(m)}.png"))
    parts.append('<h2>Samples</h2><p>Same prompts (rows) and seeds (columns) for every method; broad '
                 'prompts first.</p>'
                 f'<div class="row">{"".join(tags)}</div>')
    parts.append(_rejected_gallery(methods, per_method, prompt_idx, texts, figs))

    # UMAP
    try:
        from .embeddings import umap_embed
        F = np.concatenate([per_method[m]["features"] for m in methods])
        lab_m = np.concatenate([[i] * len(per_method[m]["features"]) for i, m in enumerate(methods)])
        lab_p = np.concatenate([prompt_idx for _ in methods])
        Z = umap_embed(F, random_state=0)
        b64 = _png(plot_map_by_method_and_prompt(Z, lab_m, methods, lab_p, texts), figs / "umap.png")
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
        fidelity = [r["prompt_fidelity"] for _, r in curve] if all("prompt_fidelity" in r for _, r in curve) else None
        fig = plot_scale_curve([s for s, _ in curve], [r.get("cond_vendi") for _, r in curve], fidelity)
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


def _frontier_section(results: Dict[str, dict], frontier, figs: Path) -> str:
    """Fidelity-diversity frontiers of the method groups and the matched-fidelity table."""
    from .evaluation import method_groups
    from .plotting import plot_frontiers
    axes, rows = frontier if frontier else (None, [])
    groups = method_groups(list(results))
    if not axes or not rows or max(len(g) for g in groups.values()) < 3:
        return ("<h2>Matched fidelity</h2><p>Run methods at several strengths (<code>--sweep</code>, or "
                "e.g. <code>sparke@0.05,sparke@0.1,sparke@0.2</code>, with <code>none</code>) to compare "
                "them along their fidelity-diversity frontiers: a method that breaks more images looks "
                "more diverse at one strength.</p>")
    fk, dk = axes
    target = rows[0]["target"]
    fig = plot_frontiers({g: [(results[m][fk], results[m][dk], m) for m in ms] for g, ms in groups.items()},
                         target=target, xlabel=fk.replace("_", " "), ylabel=dk.replace("_", " "),
                         references=[(results[m][fk], results[m][dk], m) for m in results
                                     if m.partition("@")[0] == "cfg"])
    has_rec = any("recovered" in r for r in rows)
    head = ("<th>method</th><th>settings</th><th>" + html.escape(dk) + " at matched fidelity ↑</th>"
            "<th>gain over none [95 %]</th>" + ("<th>lost diversity recovered [95 %]</th>" if has_rec else ""))
    body = []
    for r in rows:
        gain = f'{fmt(r["gain"])} [{fmt(r["gain_lo"])}, {fmt(r["gain_hi"])}]'
        cells = (f'<td>{html.escape(r["method"])}</td><td>{r["settings"]}</td><td data-key="matched">'
                 f'{fmt(r["matched"])}</td><td>{gain}</td>')
        if has_rec:
            rec = r.get("recovered", float("nan"))
            cells += (f'<td>{fmt(rec)} [{fmt(r.get("recovered_lo"))}, {fmt(r.get("recovered_hi"))}]</td>')
        body.append(f'<tr data-group="{html.escape(r["method"])}">{cells}</tr>')
    ref = next((r["reference"] for r in rows if "reference" in r), None)
    text = (f"<h2>Matched fidelity</h2><p>Each method's {html.escape(dk)} where its frontier (its "
            f"settings and <code>none</code>, Pareto front, linear interpolation) reaches {html.escape(fk)} "
            f"= {target:.3f}, the unguided value minus {results['none'][fk] - target:.2g}. Intervals: "
            "paired half-samples, the frontier re-interpolated on each half. – : no setting reaches "
            "the target.")
    if ref:
        text += (f" Recovered: the share of the diversity lost between {html.escape(ref)} and the run's CFG "
                 f"that the method wins back at matched fidelity.")
    text += "</p>"
    return (text + _img_tag(_png(fig, figs / "frontiers.png"), "fidelity-diversity frontiers",
                            "figures/frontiers.png")
            + f'<table id="matched"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>')


def _cluster_table(methods: List[str], per_method: Dict[str, dict]) -> str:
    """Per broad prompt cluster and method: validity, spread over the valid digits and TV of
    the digit distribution to the caption distribution (with the distribution itself)."""
    clusters = sorted({c for m in methods for c in (per_method[m].get("clusters") or {})})
    if not clusters:
        return ""
    head = "<th>cluster</th><th>method</th><th>n</th><th>valid ↑</th><th>spread ↑</th><th>TV ↓</th><th>digit shares (valid images)</th>"
    body = []
    for c in clusters:
        for m in methods:
            r = (per_method[m].get("clusters") or {}).get(c)
            if r is None:
                continue
            dist = " ".join(f"{d}:{p:.2f}" for d, p in zip(r["valid"], r["distribution"]) if p == p)
            body.append(f'<tr data-cluster="{c}" data-method="{html.escape(m)}"><td>{c} ({html.escape(r.get("label", ""))})</td><td>{html.escape(m)}</td>'
                        f'<td>{r["n"]}</td><td>{fmt(r["validity"])}</td><td>{fmt(r["spread"])}</td>'
                        f'<td>{fmt(r["tv"])}</td><td><small>{html.escape(dist)}</small></td></tr>')
    return ("<h2>Broad prompt clusters</h2><p>Each broad cluster pools its phrasings. Spread: the "
            "effective number of valid digits, 1/Σp²; TV: total variation between the valid images' "
            "digit distribution and the class distribution of the cluster's training captions (the "
            "collapse under CFG raises it).</p>"
            f'<table id="clusters"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>')


def _rejected_gallery(methods: List[str], per_method: Dict[str, dict], prompt_idx, texts,
                      figs: Path, per_method_max: int = 16) -> str:
    """The samples the judge rejects as "not a digit" (label -1), per method."""
    from .plotting import plot_image_rows
    rows, labels, counts = [], [], []
    for m in methods:
        pred = per_method[m].get("pred")
        if pred is None:
            return ""
        rej = np.flatnonzero(np.asarray(pred) == -1)
        counts.append(f"{html.escape(m)}: {len(rej)}")
        if len(rej):
            rows.append([per_method[m]["images"][i] for i in rej[:per_method_max]])
            labels.append(f"{m} ({len(rej)})")
    text = ("<h2>Rejected samples</h2><p>Images the judge does not accept as a digit (they count as "
            "invalid in every fidelity figure). Rejected per method: " + ", ".join(counts) + ".</p>")
    if not rows:
        return text
    fig = plot_image_rows(rows, (per_method_max * 0.75 + 2.2, len(rows) * 0.78 + 0.4), row_labels=labels,
                          title="rejected by the judge", vmin=0, vmax=255, title_size=11, ncols=per_method_max)
    return text + _img_tag(_png(fig, figs / "rejected.png"), "samples rejected by the judge", "figures/rejected.png")


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
