"""Optuna sweeps that check their search space first, survive failed trials and resume.

`make sweep EXP=focal TRIALS=20` is a Hydra multirun with hydra-optuna-sweeper over
`conf/hparams_search/<name>.yaml`; that file adds this Hydra callback, which
- before any trial: checks that every searched key exists in the composed config
  (a typo is one `error:` line and exit code 2, not 20 failed trials) and creates the
  folder of the SQLite storage `logs/sweep/<sweep_name>/optuna.db`;
- resumes: the storage path has no timestamp, so re-running the same command loads the
  same study, and `hydra.sweeper.n_trials` becomes the *total* budget: only the trials
  still missing are run (a trial interrupted by a kill is marked failed and re-done);
- records a failed trial (an exception, or a NaN metric) as FAIL in the study so the
  sweep goes on (the sweeper itself would stop on the first NaN);
- prints the best trial at the end.
"""

from __future__ import annotations

import difflib
import math
import sys
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from podium.errors import PodiumError

_ABSENT = object()
FINISHED = ("COMPLETE", "PRUNED", "FAIL")


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


def sqlite_path(storage: str | None) -> Path | None:
    if storage and storage.startswith("sqlite:///"):
        return Path(storage[len("sqlite:///"):])
    return None


def finished_trials(storage: str, study_name: str) -> int:
    """Trials of an existing study that ended; trials left running by a kill become FAIL."""
    import optuna

    names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
    if study_name not in names:
        return 0
    study = optuna.load_study(study_name=study_name, storage=storage)
    done = 0
    for trial in study.get_trials(deepcopy=False):
        if trial.state.name == "RUNNING":  # the process running it was killed
            study._storage.set_trial_user_attr(trial._trial_id, "interrupted", True)
            study._storage.set_trial_state(trial._trial_id, optuna.trial.TrialState.FAIL)
        elif trial.state.name in FINISHED and not trial.user_attrs.get("interrupted"):
            done += 1
    return done


def resolved_metric(cfg: DictConfig) -> DictConfig:
    """`metric` with monitor/mode filled in as training will (null: the task's default)."""
    import copy

    from podium.metrics import resolve_metric

    return resolve_metric(copy.deepcopy(cfg)).metric


class OptunaStudy(Callback):
    """Hydra callback of every `hparams_search` config (see the module docstring)."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            check_search_space(config)
        except PodiumError as err:
            print(f"error: {err}", file=sys.stderr, flush=True)
            sys.exit(2)
        sweeper = config.hydra.sweeper
        metric = resolved_metric(config)
        storage, total = sweeper.storage, int(sweeper.n_trials)
        path = sqlite_path(storage)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        done = finished_trials(storage, sweeper.study_name) if storage else 0
        if done:
            print(f"sweep: resuming study {sweeper.study_name} in {storage}: "
                  f"{done} of {total} trials done, {max(total - done, 0)} to go", flush=True)
        with read_write(config.hydra), open_dict(config.hydra):
            config.hydra.sweeper.n_trials = max(total - done, 0)
            if not sweeper.get("direction"):  # null: from metric.mode (maybe inferred)
                config.hydra.sweeper.direction = f"{metric.mode}imize"

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        """A NaN objective (podium's way of saying "this job failed") fails the trial."""
        if job_return.status != JobStatus.COMPLETED:
            return
        value = job_return.return_value
        if value is None or (isinstance(value, float) and math.isnan(value)):
            job_return.status = JobStatus.FAILED
            job_return._return_value = PodiumError(
                f"trial returned {value} (see failed.txt / train.log in its run folder)")

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        import optuna

        sweeper = config.hydra.sweeper
        study = optuna.load_study(study_name=sweeper.study_name, storage=sweeper.storage)
        trials = study.get_trials(deepcopy=False)
        complete = [t for t in trials if t.state.name == "COMPLETE"]
        failed = sum(t.state.name == "FAIL" and not t.user_attrs.get("interrupted")
                     for t in trials)
        print(f"sweep: study {study.study_name}: {len(complete)} trials complete, "
              f"{failed} failed (storage {sweeper.storage})")
        if complete:
            best = study.best_trial
            overrides = " ".join(f"{k}={v}" for k, v in best.params.items())
            print(f"best {resolved_metric(config).monitor}: {best.value:.4f} (trial {best.number})")
            print(f"best params: {overrides}")
        print(f"all runs: make runs DIR={Path(config.hydra.sweep.dir).parent}")
