"""The comparison's metric rows: class-distribution metrics of broad clusters and paired gains."""
import numpy as np
import pytest

from sparke_lab import evaluation as EV
from sparke_lab import evaluation_tools as ET
from sparke_lab.experiments import PromptSpec

ODD = (1, 3, 5, 7, 9)
Q = (0.45, 0.15, 0.05, 0.25, 0.10)


def _prompts():
    return [PromptSpec("an odd digit", 10, ODD, Q), PromptSpec("an odd number", 10, ODD, Q),
            PromptSpec("a handwritten three", 3, (3,), (1.0,))]


def test_class_rows_by_hand():
    prompts = _prompts()
    prompt_idx = np.array([0, 1, 2, 0, 1, 2, 0, 1])
    pred = np.array([1, 1, 3, 7, -1, 3, 2, 1])   # odd cluster: 1, 1, 7, -1, 2, 1
    row, clusters = EV.class_rows(pred, prompts, prompt_idx)
    p = np.array([3, 0, 0, 1, 0]) / 4             # valid odd images: 1, 1, 7, 1
    assert row["broad_validity"] == pytest.approx(4 / 6)
    assert row["broad_spread"] == pytest.approx(1 / np.sum(p ** 2))
    assert row["broad_tv"] == pytest.approx(0.5 * np.abs(p - np.array(Q)).sum())
    assert list(clusters) == [10] and clusters[10]["n"] == 6 and clusters[10]["label"] == "an odd digit"
    assert EV.fidelity_row(pred, prompts, prompt_idx) == {
        "prompt_fidelity": pytest.approx(6 / 8), "rejected": pytest.approx(1 / 8)}
    # no broad prompt: no class row
    assert EV.class_rows(pred[[2, 5]], prompts, np.array([2, 2])) == ({}, {})


def test_paired_gains_match_the_paired_subsample_interval():
    """The runner's cached gains equal evaluation_tools' interval on the same halves."""
    rng = np.random.default_rng(0)
    n = 40
    a, b = rng.normal(size=n), rng.normal(size=n) + 0.5
    gains = EV.PairedGains(n, n_boot=30)
    first = gains.row("m", a.mean(), [a[h].mean() for h in gains.halves])
    assert first == {"m_delta": 0.0, "m_delta_lo": 0.0, "m_delta_hi": 0.0}
    got = gains.row("m", b.mean(), [b[h].mean() for h in gains.halves])
    ref = ET.paired_subsample_interval(np.mean, a, b, subsets=gains.halves)
    assert got["m_delta"] == pytest.approx(ref.delta)
    assert got["m_delta_lo"] == pytest.approx(ref.lo) and got["m_delta_hi"] == pytest.approx(ref.hi)
    # no sqrt(2): the half-width is 1.96 sd of the half-sample differences
    d = np.array([b[h].mean() - a[h].mean() for h in gains.halves])
    assert (got["m_delta_hi"] - got["m_delta_lo"]) / 2 == pytest.approx(1.959964 * np.std(d, ddof=1), rel=1e-6)
    nan = gains.row("m", 1.0, [np.nan] * 30)
    assert np.isnan(nan["m_delta_lo"]) and np.isnan(nan["m_delta_hi"])


def test_method_groups_and_sweep_parsing():
    from sparke_lab.experiments import SWEEP, default_strength, parse_methods
    assert EV.method_groups(["none", "cfg@1.5", "sparke@0.1", "sparke@0.2", "pg@0.03"]) == {
        "sparke": ["none", "sparke@0.1", "sparke@0.2"], "pg": ["none", "pg@0.03"]}
    names = parse_methods("none,cfg@1.5,sparke,cads@0.3,interval", sweep=True)
    assert names[:2] == ["none", "cfg@1.5"] and "cads@0.3" in names
    # relative strengths around the family's default (digits SPARKE: scale 2 -> 0.5 ... 4)
    d = default_strength("sparke", "digits")
    assert [m for m in names if m.startswith("sparke@")] == [f"sparke@{d * k:g}" for k in SWEEP["sparke"]]
    assert len({m for m in names if m.startswith("sparke@")}) == len(SWEEP["sparke"]) > 1
    assert [m for m in names if m.startswith("interval@")] == [f"interval@{k:g}" for k in SWEEP["interval"]]
    assert parse_methods("none,sparke") == ["none", "sparke"]  # no sweep: one strength each
    with pytest.raises(ValueError, match="cfg@1.5"):
        parse_methods("none,cfg")


def test_matched_fidelity_interpolates_each_frontier_and_its_halves():
    """By hand: none (0.95, 1.6); a method at (0.94, 2.0), (0.90, 2.6); target 0.92 lies
    half-way between its two settings on the front: 2.3. Halves shift every value by the
    same constants, so the half gains equal the full gain and the interval has zero width."""
    results = {"none": {"v": 0.95, "s": 1.6}, "cfg@1.5": {"v": 0.7, "s": 3.6},
               "m@1": {"v": 0.94, "s": 2.0}, "m@2": {"v": 0.90, "s": 2.6}}
    halves = {k: {"v": np.full(10, r["v"]), "s": np.full(10, r["s"])} for k, r in results.items()}
    EV.FRONTIER_AXES, old = (("v", "s"),), EV.FRONTIER_AXES
    try:
        axes, rows = EV.matched_fidelity(results, halves, drop=0.03, n=40)
    finally:
        EV.FRONTIER_AXES = old
    assert axes == ("v", "s") and len(rows) == 1
    r = rows[0]
    assert r["method"] == "m" and r["settings"] == 2 and r["target"] == pytest.approx(0.92)
    assert r["matched"] == pytest.approx(2.3) and r["gain"] == pytest.approx(0.7)
    assert r["gain_lo"] == pytest.approx(0.7) and r["gain_hi"] == pytest.approx(0.7)
    assert r["reference"] == "cfg@1.5" and r["recovered"] == pytest.approx(0.7 / 2.0)
    # settings far below the target: the front interpolates between none and the nearest
    results["m@1"]["v"], results["m@2"]["v"] = 0.5, 0.4
    for k in ("m@1", "m@2"):
        halves[k]["v"][:] = results[k]["v"]
    EV.FRONTIER_AXES = (("v", "s"),)
    try:
        _, rows = EV.matched_fidelity(results, halves, drop=0.03, n=40)
    finally:
        EV.FRONTIER_AXES = old
    assert rows[0]["matched"] == pytest.approx(1.6 + 0.4 * 0.03 / 0.45)
