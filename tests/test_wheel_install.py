"""`pip install` gives a working sparke-lab outside the checkout (issue 15).

The work is done once per session by benchmarks/install_check.py (fixture ``installed_wheel``):
build the wheel, install it into a fresh venv that sees only the core dependencies, then run
``load_digits_pipeline()``, ``sparke-lab compare`` and ``sparke-lab scores`` from a temporary
folder. Its docstring says how the venv is made offline. Timings are printed, not asserted.
"""
import json


def test_wheel_installs_and_runs_outside_the_checkout(installed_wheel, capsys):
    out = installed_wheel
    failed = [name for name, ok in out["checks"].items() if not ok]
    detail = {k: out.get(k) for k in ("missing_data", "missing_core_distributions", "leaked",
                                      "pip_check", "probe", "compare_tail", "scores")}
    assert out["checks"] and not failed, f"failed: {failed}\n{json.dumps(detail, indent=1)}"
    assert len(out["checks"]) == 10
    with capsys.disabled():
        print(f"\n[wheel] {out['wheel']}: {out['wheel_mb']} MB, {out['wheel_files']} files; "
              f"build {out['build_seconds']} s, fresh venv {out['venv_seconds']} s, "
              f"pip install {out['install_seconds']} s; load+1 image {out['probe_seconds']} s, "
              f"compare {out['compare_seconds']} s, scores {out['scores_seconds']} s; "
              f"{len(out['core_distributions'])} core distributions")


def test_wheel_ships_the_models_and_declares_the_extras(installed_wheel):
    assert installed_wheel["missing_data"] == []
    assert {"lab", "course", "test"} <= set(installed_wheel["extras"])
    names = {d.split("==")[0].lower() for d in installed_wheel["core_distributions"]}
    assert {"torch", "diffusers", "numpy"} <= names
    assert not names & {"jupyterlab", "ipywidgets", "otter-grader", "selenium", "notebook"}
