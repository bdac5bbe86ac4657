# The two commands: `make demo` and `make test`. Both set up .venv on first use.
PY      := .venv/bin/python
PIP     := .venv/bin/pip
PSRLM   := .venv/bin/psrlm
STAMP   := .venv/.installed
LOCK    := requirements.lock
# What a target runs on, and where it writes. Users keep the defaults; the smoke tests (tests/test_commands.py,
# tests/slow/test_make_targets.py) run every target to its end at the smallest size through these:
CONFIG  ?= configs/demo.yaml
FULL    ?= configs/demo-full.yaml
RUNS    ?= runs
SET     ?=
ARGS    ?=
SEEDS   ?= 0 1 2
PYTEST_ARGS ?=
WHEELS  ?= .gpu-wheels

.PHONY: setup lock demo demo-full test slow_test gpu_check gpu_wheels bench science sweep upper frontier frontier-controls frontier-pilot frontier-dpo-grid quality format clean

setup: $(STAMP)

# torch first and pinned: the CPU build is on disk here, and an unpinned torch pulls a multi-GB CUDA build.
# Everything else at the exact versions the suite last passed with (requirements.lock, refreshed by `make lock`).
# The scale extra is DeepSpeed (an sdist, pure Python with DS_BUILD_OPS=0: about 15 s and 25 MB), so that the suite
# runs ZeRO-3 training for real (tests/test_zero3.py: two processes on the CPU).
$(STAMP): pyproject.toml $(LOCK)
	test -x $(PY) || python3 -m venv .venv
	$(PIP) install -q -c $(LOCK) pip setuptools
	$(PIP) install -q -c $(LOCK) torch==2.13.0
	DS_BUILD_OPS=0 $(PIP) install -q -c $(LOCK) -e ".[dev,scale]"
	touch $(STAMP)

# Resolve every dependency afresh, run the fast suite on it, and write requirements.lock only if it passes; prints
# what changed (LOCK_TEST=0 skips the suite). See scripts/lock.sh.
lock:
	bash scripts/lock.sh

demo: $(STAMP)
	$(PSRLM) demo --config $(CONFIG) $(SET) $(ARGS)

# The demo before it was sized down (configs/demo-full.yaml: 18 min on a 2-core AVX512 EPYC, 80-90 min on an old AVX2
# CPU); the recipe of the science targets below and of the results in docs/results.md.
demo-full: $(STAMP)
	$(PSRLM) demo --config $(FULL) $(SET) $(ARGS)

bench: $(STAMP)
	$(PSRLM) bench --config $(CONFIG) --set search.verdict=generate $(SET) $(ARGS)

# The science check: the full demo recipe over 3 seeds, then M1 -> M4 changes with 95 % CIs (about 3 x 18 min on this 2-core CPU).
science: $(STAMP)
	for s in $(SEEDS); do $(PSRLM) iterate --config $(FULL) --set iterate.seed=$$s --set paths.run_dir=$(RUNS)/science/seed$$s $(SET) || exit 1; done
	$(PSRLM) report $(foreach s,$(SEEDS),$(RUNS)/science/seed$(s)) --out $(RUNS)/science/report.md

# The judge-quality sweep (science only: oracle judges of known accuracy, one iteration, 3 seeds; see psrlm sweep --help).
sweep: $(STAMP)
	$(PSRLM) sweep --config $(FULL) --out $(RUNS)/sweep $(SET) $(ARGS)

# The oracle upper bound on 600 questions per seed: the self judge, a coin-flip oracle (which pairs, not which
# verdicts) and a perfect one (about 26 min per seed, 80 min in all, on this 2-core CPU; docs/results.md has the result).
upper: $(STAMP)
	$(PSRLM) sweep --config $(FULL) --accuracies 0.5,1.0 --questions 600 --set search.oracle_ties=accept --out $(RUNS)/upper $(SET) $(ARGS)

# Self-improvement at the model's frontier (issue 20; science): every arm (self, oracle, rft, outcome, srlm), three
# frontier iterations, seeds 0-2 (several hours on this 2-core CPU). See psrlm frontier --help and docs/results.md.
FRONTIER ?= configs/frontier.yaml
frontier: $(STAMP)
	$(PSRLM) frontier --config $(FRONTIER) --seeds 0,1,2 --out $(RUNS)/frontier $(SET) $(ARGS)

# The part of it docs/results.md reports: the method (self judge) and the oracle upper bound over the three
# iterations, and on the first one's questions two controls (SFT on right solutions, outcome-level DPO) and the SRLM
# baseline from its own M1, seeds 0-2 (about 2.5 h with each seed a 1-thread process beside the others, on a 2-core
# AMD EPYC with AVX512; docs/results.md). Same folder as make frontier, which extends it with the other iterations.
frontier-controls: $(STAMP)
	$(PSRLM) frontier --config $(FRONTIER) --arms self,oracle,rft,outcome,srlm --iterations rft=1,outcome=1,srlm=1 --seeds 0,1,2 --out $(RUNS)/frontier $(SET) $(ARGS)

# Its pilot, reported in docs/results.md: one frontier iteration of 200 questions, the method (self judge), the
# oracle judge and SFT on right solutions, seeds 0-2 (roughly 30 min per seed on a 2-core AMD EPYC with AVX512). It
# trained with the demo's step-wise DPO (1 epoch at 2e-5, no NLL term), the setting that the validation grid replaced.
PILOT_DPO = --set dpo.epochs=1 --set dpo.lr=0.00002 --set dpo.nll_weight=0
frontier-pilot: $(STAMP)
	$(PSRLM) frontier --config $(FRONTIER) --arms self,oracle,rft --seeds 0,1,2 --set "iterate.questions=[200]" $(PILOT_DPO) --out $(RUNS)/frontier-pilot $(SET) $(ARGS)

# The step-wise DPO grids that chose configs/frontier.yaml's dpo.* on the validation splits, on a frontier run's
# oracle arm (GRID_RUN, by default make frontier's). GRID_ITERATION=2: three settings trained on each seed's
# first-iteration pairs from its M1 (18 min for 3 seeds on a 2-core AMD EPYC with AVX512), $(GRID_RUN)/dpo-grid.md;
# GRID_ITERATION=3: the later iterations' rate, oracle-M2 trained on its own pairs three ways, dpo-grid-it3.md.
GRID_RUN ?= $(RUNS)/frontier
GRID_ITERATION ?= 2
frontier-dpo-grid: $(STAMP)
	GRID_ITERATION=$(GRID_ITERATION) PSRLM=$(PSRLM) PY=$(PY) bash scripts/frontier_dpo_grid.sh $(GRID_RUN) $(FRONTIER) $(SET)

test: $(STAMP)
	$(PY) -m pytest -q $(PYTEST_ARGS)

slow_test: $(STAMP)
	$(PY) -m pytest -q -m slow $(PYTEST_ARGS)

# The checks that need CUDA (tests/test_gpu.py; skipped without a GPU). On a lent GPU machine: bash scripts/gpu_check.sh
gpu_check: $(STAMP)
	PY=$(PY) bash scripts/gpu_check.sh $(PYTEST_ARGS)

# Pure-Python wheels the GPU machine lacks, for scripts/gpu_check.sh to install there (Python 3.12, no network).
gpu_wheels: $(STAMP)
	$(PIP) download -q --no-deps --only-binary=:all: --python-version 3.12 -d $(WHEELS) math-verify latex2sympy2_extended antlr4-python3-runtime==4.13.2

quality: $(STAMP)
	.venv/bin/ruff check src tests
	.venv/bin/ruff format --check src tests

format: $(STAMP)
	.venv/bin/ruff check --fix src tests
	.venv/bin/ruff format src tests

clean:
	rm -rf $(RUNS)/demo .pytest_cache
