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
- Resume = re-run the same command: a trial left RUNNING by a process that died (same host,
  pid gone) is failed with the user attribute `interrupted`, does not count, and is redone.
- Each job gets `sweep.trial=<number>`, so `podium.prune.PruneTrial` (a Lightning callback
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

import difflib
import math
import os
import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.plugins.sweeper import Sweeper
from omegaconf import DictConfig, OmegaConf

from podium.errors import PodiumError

if TYPE_CHECKING:
    from hydra.core.override_parser.types import Override
    from hydra.types import HydraContext, TaskFunction
    from optuna import Study
    from optuna.distributions import BaseDistribution
    from optuna.pruners import BasePruner
    from optuna.storages import BaseStorage
    from optuna.trial import FrozenTrial, Trial

_ABSENT = object()
ENDED = ("COMPLETE", "PRUNED", "FAIL")
PRUNED_ATTR = "pruned_after_epoch"  # set on the trial by PruneTrial: the sweeper tells PRUNED
CLAIM_GRACE = timedelta(seconds=60)  # a RUNNING trial with no owner yet is being claimed
# overrides of the sweep itself, left out of the "make train" command of the best trial
SWEEP_ONLY = ("experiment=", "hparams_search=", "sweep_name=", "task_name=", "hydra.",
              "hydra/", "sweep.", "+sweep.")


def leaf_keys(cfg: Any, prefix: str = "") -> list[str]:
    """Every dotted key of a config (for "did you mean" suggestions)."""
    if not OmegaConf.is_dict(cfg):
        return [prefix[:-1]] if prefix else []
    keys = [prefix[:-1]] if prefix else []
    for key in cfg.keys():
        if key != "hydra":
            keys += leaf_keys(cfg._get_node(key), f"{prefix}{key}.")
    return keys


def check_search_space(cfg: DictConfig) -> None:
    """Every key in `hydra.sweeper.params` must exist in the config (`+key` adds one)."""
    source = cfg.hydra.runtime.choices.get("hparams_search", "?")
    for key in (cfg.hydra.sweeper.get("params") or {}):
        if key.startswith(("+", "~")) or "/" in key:
            continue  # an explicit addition or deletion, or a config group
        if OmegaConf.select(cfg, key, default=_ABSENT, throw_on_resolution_failure=False) \
                is not _ABSENT:
            continue
        close = difflib.get_close_matches(key, leaf_keys(cfg), n=1)
        hint = f"did you mean {close[0]}? " if close else ""
        raise PodiumError(
            f"conf/hparams_search/{source}.yaml: hydra.sweeper.params names {key}, which is "
            f"not in the config; {hint}(write +{key} to add a new key)"
        )


def distribution(override: Override) -> BaseDistribution:
    """One sweep override in Hydra's syntax -> the Optuna distribution it describes."""
    from hydra.core.override_parser.types import Transformer
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    value = override.value()
    if override.is_interval_sweep():
        log = "log" in value.tags
        if isinstance(value.start, int) and isinstance(value.end, int):  # int(interval(..))
            return IntDistribution(value.start, value.end, log=log)
        return FloatDistribution(value.start, value.end, log=log)
    values = list(override.sweep_iterator(transformer=Transformer.encode))
    if override.is_range_sweep() and not value.shuffle and \
            all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return IntDistribution(min(values), max(values), step=abs(int(value.step)))
    return CategoricalDistribution(values)  # choice(...), float or shuffled ranges


def search_space(params: Mapping[str, str], arguments: list[str],
                 config_loader: Any) -> tuple[dict[str, BaseDistribution], list[str]]:
    """`hydra.sweeper.params` and the command line -> (searched keys, fixed overrides)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create(config_loader=config_loader)
    lines = [f"{key}={value}" for key, value in params.items()] + list(arguments)
    space: dict[str, BaseDistribution] = {}
    fixed: dict[str, str] = {}
    for override in parser.parse_overrides(lines):
        key = override.get_key_element()
        if override.is_sweep_override():
            space[key] = distribution(override)
            fixed.pop(key, None)
        else:
            fixed[key] = override.input_line or f"{key}={override.get_value_element_as_str()}"
            space.pop(key, None)  # the command line fixes a searched key
    return space, list(fixed.values())


def override_value(value: Any) -> str:
    """A sampled value as it goes on the command line (`null`, `true`, `0.001`, ...)."""
    from hydra.core.override_parser.types import Transformer

    return Transformer.str(value)


def open_storage(spec: str) -> BaseStorage:
    """A file path -> Optuna's journal storage (many processes, NFS-safe locking); a URL
    with `://` -> an RDB storage (sqlite:///..., postgresql://..., mysql://...)."""
    import optuna

    if "://" in spec:
        if spec.startswith("sqlite:///"):
            Path(spec[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.RDBStorage(spec)
    Path(spec).parent.mkdir(parents=True, exist_ok=True)
    from optuna.storages.journal import JournalFileBackend

    return optuna.storages.JournalStorage(JournalFileBackend(str(spec)))


def make_pruner(pruner: Any, startup_trials: int = 5, warmup_epochs: int = 1) -> BasePruner:
    """`sweep.pruner`: median | hyperband | none, or any Optuna pruner as `{_target_: ...}`.

    Steps are epochs trained (1, 2, ...): `warmup_epochs` is how many every trial trains
    before it can be pruned, `startup_trials` how many complete before any is (median).
    """
    import optuna

    if isinstance(pruner, optuna.pruners.BasePruner):  # a mapping Hydra already instantiated
        return pruner
    if OmegaConf.is_dict(pruner) or isinstance(pruner, dict):
        from hydra.utils import instantiate

        return instantiate(pruner)
    if pruner in (None, "none"):
        return optuna.pruners.NopPruner()
    if pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=startup_trials,
                                           n_warmup_steps=warmup_epochs)
    if pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=max(1, warmup_epochs))
    raise PodiumError(f"sweep.pruner={pruner} is not a pruner: use median, hyperband or none "
                      "(or {_target_: optuna.pruners.<Class>, ...})")


def this_worker() -> str:
    """`host:pid` of this process, stored on the trials it claims (see release_interrupted)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def counts(trial: FrozenTrial) -> bool:
    """Does the trial use up the budget? Ended or running, unless interrupted or surplus."""
    if trial.user_attrs.get("interrupted") or trial.user_attrs.get("surplus"):
        return False
    return trial.state.name in (*ENDED, "RUNNING")


def ended(trial: FrozenTrial) -> bool:
    return trial.state.name in ENDED and counts(trial)


def is_dead(owner: str | None, started: datetime | None) -> bool:
    """Was the process that claimed a RUNNING trial killed? Known only on its own host."""
    if owner is None:  # claimed a moment ago (owner not written yet), or by a process
        return started is not None and datetime.now() - started > CLAIM_GRACE  # killed then
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname():
        return False  # another machine's trial: assume it is alive
    if int(pid) == os.getpid():
        return True  # a pid reused by this process, which holds no trial while it checks
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def release_interrupted(study: Study, storage: BaseStorage) -> None:
    """Fail (attribute `interrupted`) the RUNNING trials of processes that died, so that they
    stop counting and are redone; other processes' live trials are left alone."""
    from optuna.trial import TrialState

    study_id = storage.get_study_id_from_name(study.study_name)
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if is_dead(trial.user_attrs.get("worker"), trial.datetime_start):
            trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
            storage.set_trial_user_attr(trial_id, "interrupted", True)
            study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)


def claim_trial(study: Study, n_trials: int,
                space: dict[str, BaseDistribution] | None = None) -> Trial | None:
    """A new trial (its values drawn from `space`) if the study holds fewer than `n_trials`
    counting trials, else None.

    The check after `ask` counts only trials with a lower number, so concurrent processes
    agree on which trials are inside the budget; one created past it is failed as surplus.
    """
    from optuna.trial import TrialState

    if sum(counts(t) for t in study.get_trials(deepcopy=False)) >= n_trials:
        return None
    trial = study.ask(fixed_distributions=space or {})
    trial.set_user_attr("worker", this_worker())
    earlier = sum(counts(t) for t in study.get_trials(deepcopy=False) if t.number < trial.number)
    if earlier >= n_trials:
        trial.set_user_attr("surplus", True)
        study.tell(trial, state=TrialState.FAIL)
        return None
    return trial


def trial_state(study: Study, number: int, job: JobReturn) -> tuple[str, float | None]:
    """How a job ended -> (Optuna state name, value): NaN or an exception is FAIL; a trial
    whose PruneTrial stopped it is PRUNED (even though its run ended cleanly)."""
    value = job.return_value if job.status == JobStatus.COMPLETED else None
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        return "FAIL", None
    frozen = next(t for t in study.get_trials(deepcopy=False) if t.number == number)
    if PRUNED_ATTR in frozen.user_attrs:
        return "PRUNED", None
    return "COMPLETE", float(value)


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
        pruner = make_pruner(settings.pruner, settings.startup_trials, settings.warmup_epochs)
        direction = self.direction or f"{resolved_metric(config).mode}imize"
        storage = open_storage(settings.storage)
        study = optuna.create_study(
            study_name=settings.study_name, storage=storage, sampler=self.make_sampler(),
            pruner=pruner, direction=direction, load_if_exists=True)
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
            print(f"best {resolved_metric(self.config).monitor}: {best.value:.4f} "
                  f"(trial {best.number}, {best.user_attrs.get('run_dir', '?')})")
            print(f"best params: {params}")
            print(f"train it: {train_command(self.config, best)}")
        print(f"all runs: make runs DIR={Path(self.config.hydra.sweep.dir).parent}")


def train_command(config: DictConfig, trial: FrozenTrial) -> str:
    """`make train EXP=... ARGS='...'` with the trial's own overrides (the ones that were
    not about the sweep itself)."""
    overrides = trial.user_attrs.get("overrides") or [
        f"{k}={override_value(v)}" for k, v in trial.params.items()]
    args = " ".join(o for o in overrides if not o.startswith(SWEEP_ONLY))
    experiment = config.hydra.runtime.choices.get("experiment") or "baseline"
    return f"make train EXP={experiment} ARGS={shlex.quote(args)}"


def resolved_metric(cfg: DictConfig) -> DictConfig:
    """`metric` with monitor/mode filled in as training will (null: the task's default)."""
    import copy

    from podium.metrics import resolve_metric

    return resolve_metric(copy.deepcopy(cfg)).metric
