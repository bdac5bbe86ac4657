# The two commands: `make demo` and `make test`. Both set up .venv on first use.
PY      := .venv/bin/python
PIP     := .venv/bin/pip
STAMP   := .venv/.installed
CONFIG  ?= configs/demo.yaml
LOCK    := requirements.lock

.PHONY: setup lock demo test slow_test gpu_check gpu_wheels bench science sweep upper quality format clean

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
	.venv/bin/psrlm demo --config $(CONFIG)

bench: $(STAMP)
	.venv/bin/psrlm bench --config $(CONFIG) --set search.verdict=generate

# The science check: the demo recipe over 3 seeds, then M1 -> M4 changes with 95 % CIs (about 3 x 18 min on this 2-core CPU).
science: $(STAMP)
	for s in 0 1 2; do .venv/bin/psrlm iterate --config $(CONFIG) --set iterate.seed=$$s --set paths.run_dir=runs/science/seed$$s || exit 1; done
	.venv/bin/psrlm report runs/science/seed0 runs/science/seed1 runs/science/seed2 --out runs/science/report.md

# The judge-quality sweep (science only: oracle judges of known accuracy, one iteration, 3 seeds; see psrlm sweep --help).
sweep: $(STAMP)
	.venv/bin/psrlm sweep --config $(CONFIG) --out runs/sweep

# The oracle upper bound on 600 questions per seed: the self judge, a coin-flip oracle (which pairs, not which
# verdicts) and a perfect one (about 26 min per seed, 80 min in all, on this 2-core CPU; the README has the result).
upper: $(STAMP)
	.venv/bin/psrlm sweep --config $(CONFIG) --accuracies 0.5,1.0 --questions 600 --set search.oracle_ties=accept --out runs/upper

test: $(STAMP)
	$(PY) -m pytest -q

slow_test: $(STAMP)
	$(PY) -m pytest -q -m slow

# The checks that need CUDA (tests/test_gpu.py; skipped without a GPU). On a lent GPU machine: bash scripts/gpu_check.sh
gpu_check: $(STAMP)
	PY=$(PY) bash scripts/gpu_check.sh

# Pure-Python wheels the GPU machine lacks, for scripts/gpu_check.sh to install there (Python 3.12, no network).
gpu_wheels: $(STAMP)
	$(PIP) download -q --no-deps --only-binary=:all: --python-version 3.12 -d .gpu-wheels math-verify latex2sympy2_extended antlr4-python3-runtime==4.13.2

quality: $(STAMP)
	.venv/bin/ruff check src tests
	.venv/bin/ruff format --check src tests

format: $(STAMP)
	.venv/bin/ruff check --fix src tests
	.venv/bin/ruff format src tests

clean:
	rm -rf runs/demo .pytest_cache
