"""Optuna sweeps: podium's own Hydra sweeper, with pruning and many workers on one study.

`make sweep EXP=focal TRIALS=20 [JOBS=n]` is a Hydra multirun (`-m`) whose sweeper is
`OptunaSweeper` (conf/hydra/sweeper/optuna.yaml). It is a Hydra sweeper rather than a loop
over Hydra's compose API so that `-m`, the launchers (joblib, submitit/SLURM) and the run
folders work as in any multirun. Hydra instantiates sweepers only from the `hydra_plugins`
package: `src/hydra_plugins/podium_sweeper.py` gives this class a name there.

- Search space: `hydra.sweeper.params` (conf/hparams_search/*.yaml) plus any sweep override on
  the command line, in Hydra's syntax: `interval(a, b)`, `tag(log, interval(a, b))`,
  `int(interval(a, b))`, `range(a, b, step)`, `choice(x, y, ...)`. A key that is not in the
  config stops the sweep before any trial with one `error:` line and exit code 2.
- The study `sweep.study_name` lives in `sweep.storage`: a journal file (the default,
  `logs/sweep/<sweep_name>/optuna.journal`, safe for many processes and for shared file
  systems) or an RDB URL (`sqlite:///...`, `postgresql://...`).
- `hydra.sweeper.n_trials` is the study's total. A process claims a trial only while fewer
  than n_trials trials with a lower number count (ended, or running): trial numbers are
  handed out by the storage, so any number of processes on any number of machines stop at
  exactly n_trials. A trial created past the budget in a race is failed at once with the
  user attribute `surplus` and does not count.
- A study records its competition when it is created (user attributes: `data.root`
  resolved, `data.task`, the metric, `sweep.objective`, the search space); a sweep with
  another of them stops with one `error:` line instead of resuming it (`check_study`).
- `sweep.objective=cv` (`data.n_folds=k`): each trial is a k-fold cross-validation whose
  folder is a cv folder and whose value is the OOF competition score
  (podium.sweep.objective); default `holdout`, one run per trial.
- Resume = re-run the same command: a trial left RUNNING by a process that died (same host,
  pid gone) is failed with the user attribute `interrupted`, does not count, and is redone.
- Each job gets `sweep.trial=<number>`, so `podium.sweep.prune.PruneTrial` (a Lightning callback
  that the hparams_search config adds) reports `metric.monitor` to that trial after every
  validation and stops a hopeless run cleanly. A job returns the monitored metric: COMPLETE;
  a trial its callback pruned: PRUNED; NaN (`failed.txt`, see podium.errors) or a crashed
  job: FAIL. The sweep goes on after either.
- `hydra.sweeper.workers=n` (`make sweep JOBS=n`): this process starts n copies of its own
  command, which share the study (each pinned to one GPU when there are several), and prints
  the best trial when they are done. `hydra.sweeper.n_jobs=k` instead launches k trials at a
  time through the launcher (joblib, or a SLURM array with hydra/launcher=slurm).
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra.plugins.sweeper import Sweeper
from omegaconf import DictConfig, OmegaConf

from podium.errors import PodiumError
from podium.sweep.search_space import check_search_space, override_value, search_space
from podium.sweep.study import (
    ENDED,
    claim_trial,
    ended,
    make_pruner,
    open_storage,
    release_interrupted,
    trial_state,
)

if TYPE_CHECKING:
    from hydra.types import HydraContext, TaskFunction
    from optuna import Study
    from optuna.storages import BaseStorage
    from optuna.trial import FrozenTrial, Trial

# overrides of the sweep itself, left out of the "make train" command of the best trial
SWEEP_ONLY = ("experiment=", "hparams_search=", "sweep_name=", "task_name=", "hydra.",
              "hydra/", "sweep.", "+sweep.")


def visible_gpus() -> list[str]:
    """GPU ids to pin workers to, one each; empty unless there are several GPUs."""
    import torch

    count = torch.cuda.device_count()
    if count < 2:
        return []
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    return [d.strip() for d in listed.split(",")][:count] if listed else \
        [str(i) for i in range(count)]


class OptunaSweeper(Sweeper):
    """Hydra sweeper over an Optuna study (see the module docstring).

    Args (conf/hydra/sweeper/optuna.yaml): `params` the search space; `n_trials` the
    study's total; `n_jobs` trials launched together through the launcher; `workers` sweep
    processes on this machine (`make sweep JOBS=n`); `worker` set by the sweep for each of
    them; `direction` minimize | maximize | null (from `metric.mode`); `sampler` an Optuna
    sampler factory (`_partial_: true`; TPE seeded with `seed`).
    """

    def __init__(self, params: Mapping[str, str] | None = None, n_trials: int = 20,
                 n_jobs: int = 1, workers: int = 1, worker: int | None = None,
                 direction: str | None = None, sampler: Any = None) -> None:
        self.params = dict(params or {})
        self.n_trials, self.n_jobs = int(n_trials), max(1, int(n_jobs))
        self.workers, self.worker = max(1, int(workers)), worker
        self.direction, self.sampler = direction, sampler
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self.launcher = None
        self.storage: BaseStorage | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction,
              config: DictConfig) -> None:
        from hydra.core.hydra_config import HydraConfig
        from hydra.core.plugins import Plugins

        HydraConfig.instance().set_config(config)  # `sweep.*` may use ${hydra:...}, as in jobs
        self.config, self.hydra_context = config, hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> None:
        try:
            space, fixed, study = self.prepare(arguments)
        except PodiumError as err:
            print(f"error: {err}", file=sys.stderr, flush=True)
            sys.exit(2)
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        if self.worker is not None:
            self.run_trials(study, space, fixed)
            return
        done = sum(ended(t) for t in study.get_trials(deepcopy=False))
        if done:
            print(f"sweep: resuming study {study.study_name} in {self.config.sweep.storage}: "
                  f"{done} of {self.n_trials} trials done, "
                  f"{max(self.n_trials - done, 0)} to go", flush=True)
        failed_workers = []
        if self.workers > 1:
            failed_workers = self.run_workers(study, sweep_dir)
        else:
            self.run_trials(study, space, fixed)
        self.report(study)
        if failed_workers:
            print(f"error: sweep worker(s) {', '.join(failed_workers)} stopped with an error "
                  f"(see {sweep_dir}/worker-<k>.log)", file=sys.stderr, flush=True)
            sys.exit(1)

    def prepare(self, arguments: list[str]) -> tuple[dict, list[str], Study]:
        """Check the search space, then create or load the study (before any trial)."""
        import optuna

        config = self.config
        if config.get("sweep") is None:
            raise PodiumError("hydra/sweeper=optuna needs a search space: hparams_search=<name> "
                              "(conf/hparams_search/)")
        check_search_space(config)
        space, fixed = search_space(self.params, arguments, self.hydra_context.config_loader)
        settings = config.sweep
        check_objective(config)
        pruner = make_pruner(settings.pruner, settings.startup_trials, settings.warmup_epochs)
        direction = self.direction or f"{objective_mode(config)}imize"
        storage = open_storage(settings.storage)
        verbosity = optuna.logging.get_verbosity()
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # "Using an existing study"
        try:  # (the sweep says it resumes, with its counts)
            study = optuna.create_study(
                study_name=settings.study_name, storage=storage, sampler=self.make_sampler(),
                pruner=pruner, direction=direction, load_if_exists=True)
        finally:
            optuna.logging.set_verbosity(verbosity)
        check_study(study, study_record(config, space), settings.storage)
        self.storage = storage
        release_interrupted(study, storage)
        return space, fixed, study

    def make_sampler(self) -> Any:
        """The configured sampler; worker k of `JOBS=n` draws with seed + k, since workers
        with one seed would suggest the same values (a factory: `_partial_: true`)."""
        if not callable(self.sampler) or not hasattr(self.sampler, "keywords"):
            return self.sampler  # an instance, or None (Optuna's default)
        seed = self.sampler.keywords.get("seed")
        if seed is None or self.worker is None:
            return self.sampler()
        return self.sampler(seed=int(seed) + int(self.worker))

    def run_trials(self, study: Study, space: dict, fixed: list[str]) -> None:
        """Claim up to `n_jobs` trials, launch them together, record how each ended; repeat
        until the study holds `n_trials`."""
        from optuna.trial import TrialState

        while True:
            release_interrupted(study, self.storage)
            trials = []
            while len(trials) < self.n_jobs:
                trial = claim_trial(study, self.n_trials, space)
                if trial is None:
                    break
                trials.append(trial)
            if not trials:
                return
            batch = [self.job_overrides(trial, space, fixed) for trial in trials]
            try:
                self.validate_batch_is_legal(batch)
            except Exception:  # a config that does not compose: no trial can run
                for trial in trials:
                    study.tell(trial, state=TrialState.FAIL)
                raise
            returns = self.launcher.launch(batch, initial_job_idx=trials[0].number)
            for trial, job in zip(trials, returns, strict=True):
                state, value = trial_state(study, trial.number, job)
                if job.hydra_cfg is not None:
                    trial.set_user_attr("run_dir", job.hydra_cfg.hydra.runtime.output_dir)
                study.tell(trial, value, state=TrialState[state])

    def job_overrides(self, trial: Trial, space: dict, fixed: list[str]) -> list[str]:
        """The trial's command line: fixed overrides, sampled values, its number."""
        sampled = [f"{key}={override_value(trial.params[key])}" for key in space]
        trial.set_user_attr("overrides", [*fixed, *sampled])
        return [*fixed, *sampled, f"sweep.trial={trial.number}"]

    def run_workers(self, study: Study, sweep_dir: Path) -> list[str]:
        """`workers` copies of this command on the study, with output in worker-<k>.log;
        returns the workers that exited with an error."""
        gpus = visible_gpus()
        command = [a for a in sys.orig_argv if not a.startswith("hydra.sweep.dir=")]
        print(f"sweep: {self.workers} workers on study {study.study_name}"
              + (f", GPUs {', '.join(gpus)}" if gpus else "")
              + f"; their output: {sweep_dir}/worker-<k>.log", flush=True)
        procs = []
        try:
            for k in range(self.workers):
                env = {**os.environ, **({"CUDA_VISIBLE_DEVICES": gpus[k % len(gpus)]}
                                        if gpus else {})}
                with open(sweep_dir / f"worker-{k}.log", "w") as log:
                    procs.append(subprocess.Popen(
                        [*command, f"hydra.sweeper.worker={k}", f"hydra.sweep.dir='{sweep_dir}'"],
                        env=env, stdout=log, stderr=subprocess.STDOUT))
            shown: set[int] = set()
            while any(p.poll() is None for p in procs):
                self.show_ended(study, shown)
                time.sleep(2)
            self.show_ended(study, shown)
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.terminate()
                    proc.wait()
        return [str(k) for k, p in enumerate(procs) if p.returncode != 0]

    @staticmethod
    def show_ended(study: Study, shown: set[int]) -> None:
        """One line per trial that ended since the last call (progress of the workers)."""
        for trial in study.get_trials(deepcopy=False):
            if ended(trial) and trial.number not in shown:
                shown.add(trial.number)
                value = "" if trial.value is None else f" {trial.value:.4f}"
                print(f"sweep: trial {trial.number} {trial.state.name}{value}", flush=True)

    def report(self, study: Study) -> None:
        """The study's totals, the best trial and the command that trains it again."""
        trials = [t for t in study.get_trials(deepcopy=False) if ended(t)]
        by_state = {s: sum(t.state.name == s for t in trials) for s in ENDED}
        print(f"sweep: study {study.study_name}: {by_state['COMPLETE']} trials complete, "
              f"{by_state['PRUNED']} pruned, {by_state['FAIL']} failed "
              f"(storage {self.config.sweep.storage})")
        if by_state["COMPLETE"]:
            best = study.best_trial
            params = " ".join(f"{k}={override_value(v)}" for k, v in best.params.items())
            run_dir = best.user_attrs.get("run_dir", "?")
            print(f"best {objective_name(self.config)}: {best.value:.4f} "
                  f"(trial {best.number}, {run_dir})")
            print(f"best params: {params}")
            print(f"train it: {train_command(self.config, best, study.user_attrs)}")
            if objective(self.config) == "cv":
                print(f"submit it: make submit RUN={run_dir}")
        print(f"all runs: make runs DIR={Path(self.config.hydra.sweep.dir).parent}")


def train_command(config: DictConfig, trial: FrozenTrial,
                  record: Mapping[str, Any] | None = None) -> str:
    """The command that runs the trial again: `make train EXP=... ARGS='...'` (hold-out) or
    `make cv EXP=... FOLDS=k ARGS='...'` (`sweep.objective=cv`), with every override the
    trial ran with but those about the sweep itself, and the study's data root (resolved)."""
    overrides = trial.user_attrs.get("overrides") or [
        f"{k}={override_value(v)}" for k, v in trial.params.items()]
    experiment = config.hydra.runtime.choices.get("experiment") or "baseline"
    for override in overrides:
        if override.startswith("experiment="):
            experiment = override.split("=", 1)[1]
    root = (record or {}).get("data.root")
    cv = objective(config) == "cv"
    args = [o for o in overrides if not o.startswith(SWEEP_ONLY)
            and not (root and o.startswith(("data.root=", "++data.root=")))
            and not (cv and o.startswith(("data.n_folds=", "data.fold=")))]
    if root:
        args.append(f"data.root={override_value(root)}")
    args = shlex.quote(" ".join(args))
    if cv:
        return f"make cv EXP={experiment} FOLDS={config.data.n_folds} ARGS={args}"
    return f"make train EXP={experiment} ARGS={args}"


def objective(cfg: DictConfig) -> str:
    """`sweep.objective`: holdout (the default) or cv."""
    return str((cfg.get("sweep") or {}).get("objective") or "holdout")


def check_objective(cfg: DictConfig) -> None:
    """`sweep.objective` is holdout or cv; cv needs `data.n_folds` >= 2 and no `data.fold`."""
    value = objective(cfg)
    if value not in ("holdout", "cv"):
        raise PodiumError(f"sweep.objective={value} is not an objective: use holdout (one "
                          "validation split per trial) or cv (k folds per trial)")
    if value == "cv":
        folds = cfg.data.get("n_folds")
        if not isinstance(folds, int) or folds < 2:
            raise PodiumError(f"sweep.objective=cv needs data.n_folds=k with k >= 2 (it is "
                              f"{folds}): each trial trains k folds")
        if cfg.data.get("fold") is not None:
            raise PodiumError("sweep.objective=cv trains every fold of each trial itself: "
                              f"leave data.fold unset (it is {cfg.data.fold})")


def objective_mode(cfg: DictConfig) -> str:
    """min | max: hold-out, `metric.mode` (the monitored value); cv, the direction of
    `metric.competition` (the OOF score)."""
    metric = resolved_metric(cfg)
    if objective(cfg) == "cv":
        return competition_mode(metric)
    return metric.mode


def competition_mode(metric: DictConfig) -> str:
    """The direction of `metric.competition`: `metric.mode` when it is the monitored key."""
    from podium.model.metrics import infer_mode

    key = f"val/{metric.competition}"
    return metric.mode if metric.monitor == key else infer_mode(key)


def objective_name(cfg: DictConfig) -> str:
    """What a trial's value is: the monitored metric, or the OOF competition score."""
    metric = resolved_metric(cfg)
    if objective(cfg) == "cv":
        return f"OOF {metric.competition} ({cfg.data.n_folds} folds)"
    return metric.monitor


def study_record(cfg: DictConfig, space: Mapping[str, Any]) -> dict[str, str]:
    """What a study's scores mean, recorded on it when it is created: the competition
    (data root, resolved; task), its metric, the objective and the search space."""
    from optuna.distributions import distribution_to_json

    metric = resolved_metric(cfg)
    root = OmegaConf.select(cfg, "data.root", default=None)
    value = objective(cfg)
    return {
        "data.root": os.path.realpath(str(root)) if root else "",
        "data.task": str(cfg.data.get("task", "multiclass")),
        "metric.competition": str(metric.competition),
        "metric.monitor": f"{metric.monitor} ({metric.mode})",
        "sweep.objective": f"cv ({cfg.data.n_folds} folds)" if value == "cv" else value,
        "search space": " ".join(f"{key}={distribution_to_json(dist)}"
                                 for key, dist in sorted(space.items())),
    }


def check_study(study: Study, record: Mapping[str, str], storage: str) -> None:
    """A new study records `record`; a study that holds another competition, metric,
    objective or search space is not resumed (one line naming both values)."""
    held = study.user_attrs
    for key, value in record.items():
        if key not in held:  # a new study (or one from before the record): record it
            study.set_user_attr(key, value)
        elif held[key] != value:
            raise PodiumError(
                f"study {study.study_name} in {storage} was created with {key}={held[key]}, "
                f"this sweep has {key}={value}: use another sweep_name= (ARGS=\"sweep_name=...\") "
                f"for a new study, or delete {storage} to start this one again")


def resolved_metric(cfg: DictConfig) -> DictConfig:
    """`metric` with monitor/mode filled in as training will (null: the task's default)."""
    import copy

    from podium.config import resolve_data
    from podium.model.metrics import resolve_metric

    cfg = copy.deepcopy(cfg)
    resolve_data(cfg)  # data.task=auto: the folder's task picks the default metric
    return resolve_metric(cfg).metric
