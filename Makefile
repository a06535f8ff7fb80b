# sparke-lab: `make demo` runs the main job, `make test` runs every test and notebook.
# Both create the virtual environment on first use: `make demo` installs the core package,
# `make test` (and lab, assignments, grade) the core with the extras [course,lab,test].
# Override the torch build with e.g.
#   make demo TORCH_SPEC="torch==2.13.0 --index-url URL"   (any pip arguments)
# Course assignments (otter-grader, no Docker): `make assignments` builds student versions and
# autograders into build/assignments/; `make grade ASSIGNMENT=a1_rke_and_vendi SUBMISSIONS=dir/`
# grades submitted notebooks into build/grades/<name>/grades.{csv,json}.
# `make lab PORT=8899 TOKEN=secret NO_BROWSER=1` serves JupyterLab (`sparke-lab lab`) on a fixed port.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
PY := $(VENV)/bin/python
CORE_STAMP := $(VENV)/.sparke-lab-core
ALL_STAMP := $(VENV)/.sparke-lab-all
PIP := $(PY) -m pip install --quiet --disable-pip-version-check
NB_TIMEOUT ?= 600
# pytest workers for `make test` (pytest-xdist; a test file stays on one worker); TEST_WORKERS=0 runs in one process
TEST_WORKERS ?= 2
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export MPLBACKEND := Agg
export OMP_WAIT_POLICY := PASSIVE

.PHONY: setup demo test test-unit test-notebooks test-browser lab bench gpu-check assignments grade clean

$(CORE_STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) $(TORCH_SPEC)
	$(PIP) -e .
	@touch $(CORE_STAMP)

$(ALL_STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) $(TORCH_SPEC)
	$(PIP) -e ".[course,lab,test]"
	@touch $(CORE_STAMP) $(ALL_STAMP)

setup: $(ALL_STAMP)

demo: $(CORE_STAMP)
	$(VENV)/bin/sparke-lab demo

test: $(ALL_STAMP)
	$(PY) -m pytest notebooks tests --nbmake --nbmake-timeout=$(NB_TIMEOUT) -q --durations=25 -n $(TEST_WORKERS) --dist loadfile

test-unit: $(ALL_STAMP)
	$(PY) -m pytest tests -q

test-notebooks: $(ALL_STAMP)
	$(PY) -m pytest --nbmake notebooks --nbmake-timeout=$(NB_TIMEOUT) -q --durations=20 -n $(TEST_WORKERS) --dist loadfile

# real Chromium + JupyterLab (skips unless chromium and chromium-driver are installed)
test-browser: $(ALL_STAMP)
	$(PY) -m pytest tests/test_browser.py -q

lab: $(ALL_STAMP)
	$(PY) -m ipykernel install --user --name sparke-lab --display-name "Python (sparke-lab)" \
	  --env OMP_WAIT_POLICY PASSIVE
	$(VENV)/bin/sparke-lab lab notebooks $(if $(PORT),--port $(PORT)) $(if $(TOKEN),--token $(TOKEN)) $(if $(NO_BROWSER),--no-browser)

bench: $(CORE_STAMP)
	$(PY) benchmarks/bench_scores.py

# one CUDA GPU, at most 5 minutes; writes outputs/gpu_check.json (exits at once without a GPU)
gpu-check: $(CORE_STAMP)
	$(PY) benchmarks/gpu_check.py --out outputs/gpu_check.json

# CHECK=1 also grades each solution notebook and requires full points
assignments: $(ALL_STAMP)
	$(PY) -m sparke_lab.course build $(if $(CHECK),--check)

# GRADES=dir writes the tables elsewhere
grade: $(ALL_STAMP)
	@test -n "$(ASSIGNMENT)" && test -n "$(SUBMISSIONS)" || { \
	  echo "usage: make grade ASSIGNMENT=<name> SUBMISSIONS=<folder or notebook>"; \
	  echo "       names: a1_rke_and_vendi a2_conditional_rke_gradient a3_toy_guidance_study a4_digits_capstone"; exit 2; }
	$(PY) -m sparke_lab.course grade "$(ASSIGNMENT)" "$(SUBMISSIONS)" $(if $(GRADES),--out "$(GRADES)")

clean:
	rm -rf $(VENV) outputs .pytest_cache .hypothesis build/assignments
