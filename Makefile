# sparke-lab: `make demo` runs the main job, `make test` runs every test and notebook.
# Both create the virtual environment on first use. Override the torch build with e.g.
#   make demo TORCH_SPEC="torch==2.13.0 --index-url URL"   (any pip arguments)
# Course assignments (otter-grader, no Docker): `make assignments` builds student versions and
# autograders into build/assignments/; `make grade ASSIGNMENT=a1_rke_and_vendi SUBMISSIONS=dir/`
# grades submitted notebooks into build/grades/<name>/grades.{csv,json}.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
PY := $(VENV)/bin/python
STAMP := $(VENV)/.sparke-lab-installed
NB_TIMEOUT ?= 600
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export MPLBACKEND := Agg
export OMP_WAIT_POLICY := PASSIVE

.PHONY: setup demo test test-unit test-notebooks lab bench assignments grade clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check $(TORCH_SPEC)
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[test]"
	@touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/sparke-lab demo

test: $(STAMP)
	$(PY) -m pytest tests --nbmake notebooks --nbmake-timeout=$(NB_TIMEOUT) -q

test-unit: $(STAMP)
	$(PY) -m pytest tests -q

test-notebooks: $(STAMP)
	$(PY) -m pytest --nbmake notebooks --nbmake-timeout=$(NB_TIMEOUT) -q

lab: $(STAMP)
	$(PY) -m ipykernel install --user --name sparke-lab --display-name "Python (sparke-lab)" \
	  --env OMP_WAIT_POLICY PASSIVE
	MPLBACKEND= $(VENV)/bin/jupyter lab notebooks/

bench: $(STAMP)
	$(PY) benchmarks/bench_scores.py

# CHECK=1 also grades each solution notebook and requires full points
assignments: $(STAMP)
	$(PY) -m sparke_lab.course build $(if $(CHECK),--check)

# GRADES=dir writes the tables elsewhere
grade: $(STAMP)
	@test -n "$(ASSIGNMENT)" && test -n "$(SUBMISSIONS)" || { \
	  echo "usage: make grade ASSIGNMENT=<name> SUBMISSIONS=<folder or notebook>"; \
	  echo "       names: a1_rke_and_vendi a2_conditional_rke_gradient a3_toy_guidance_study"; exit 2; }
	$(PY) -m sparke_lab.course grade "$(ASSIGNMENT)" "$(SUBMISSIONS)" $(if $(GRADES),--out "$(GRADES)")

clean:
	rm -rf $(VENV) outputs .pytest_cache .hypothesis build/assignments
