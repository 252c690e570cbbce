"""A sweep's study: its storage and pruner, and which process runs which trial.

Trial numbers come from the storage, so processes on any number of machines claim trials
until the study holds exactly `n_trials`; a trial left RUNNING by a dead process on this
host is failed (`interrupted`) and redone.
"""

from __future__ import annotations

import math
import os
import socket
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra.core.utils import JobReturn, JobStatus
from omegaconf import OmegaConf

from podium.errors import PodiumError

if TYPE_CHECKING:
    from optuna import Study
    from optuna.distributions import BaseDistribution
    from optuna.pruners import BasePruner
    from optuna.storages import BaseStorage
    from optuna.trial import FrozenTrial, Trial

ENDED = ("COMPLETE", "PRUNED", "FAIL")

PRUNED_ATTR = "pruned_after_epoch"  # set on the trial by PruneTrial: the sweeper tells PRUNED

CLAIM_GRACE = timedelta(seconds=60)  # a RUNNING trial with no owner yet is being claimed

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
