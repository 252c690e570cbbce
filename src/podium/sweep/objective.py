"""`sweep.objective=cv`: a trial is a k-fold cross-validation, its value the OOF score.

The trial's job trains its folds one after another in this process (`podium.train.train`
with `data.fold=i` into the sub-folder `<trial>/<i>/`) and gathers them
(`podium.cv.gather_folds`), so the trial folder is a cross-validation folder in the layout
`make cv` writes: fold folders, oof.csv, test_probs.csv, submission.csv, metrics.json
(`make submit RUN=<trial folder>` takes it as is). The value is the OOF score of
`metric.competition`. Each fold chooses its checkpoint on an inner split of its training
rows (podium.data.splits.nested_split), so its held-out rows score it honestly: after each
fold the running mean of the folds' OOF `<competition>` scores (each fold's held-out rows,
as the trial's value) is reported to the trial at step = fold number (0, 1, ...), and the
pruner may stop the trial there; the folds done are gathered all the same.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from omegaconf import DictConfig, OmegaConf, open_dict

from podium import run
from podium.errors import PodiumError

if TYPE_CHECKING:
    from optuna.trial import Trial


def cv_objective(cfg: DictConfig, train: Callable) -> float | None:
    """Train the trial's `data.n_folds` folds with `train` (podium.train.train, passed in by
    the entry point), gather them; the OOF competition score."""
    from podium.config import resolve_data
    from podium.cv import gather_folds
    from podium.model.metrics import never_logged, resolve_metric
    from podium.sweep.sweeper import check_objective

    check_objective(cfg)
    resolve_data(cfg)  # data.task=auto: the folder's task picks the default metric
    resolve_metric(cfg)
    cv_dir = Path(cfg.paths.output_dir)
    trial = open_trial(cfg)
    key = f"val/{cfg.metric.competition}"
    scores: list[float] = []
    for fold in range(cfg.data.n_folds):
        fold_cfg = fold_config(cfg, fold, cv_dir / str(fold))
        outcome = train(fold_cfg)
        if outcome.oof_score is None and key not in outcome.metrics:
            raise PodiumError(never_logged(key, outcome.metrics, "metric.competition"))
        # the held-out rows' score (the inner split chose the checkpoint); the validation
        # score only when no oof.csv was written (part of the data predicted)
        held_out = outcome.oof_score is not None
        scores.append(outcome.oof_score if held_out else outcome.metrics[key])
        name = f"OOF {cfg.metric.competition}" if held_out else key
        print(f"fold {fold}: {name}={scores[-1]:.4f}", flush=True)
        if trial is not None and fold < cfg.data.n_folds - 1 and prune(trial, scores, fold):
            note = (f"pruned after fold {fold}: mean {key}={sum(scores) / len(scores):.6g} "
                    f"over {len(scores)} fold(s) (study {cfg.sweep.study_name}, "
                    f"trial {cfg.sweep.trial})\n")
            (cv_dir / "pruned.txt").write_text(note)
            break
    return gather_folds(cv_dir, cfg).oof_score


def fold_config(cfg: DictConfig, fold: int, output_dir: Path) -> DictConfig:
    """Fold `fold` of the trial, as `make cv` runs it: `data.fold=fold`, its own folder with
    a `.hydra/` record (members, `make refit`, `make runs` read it), no pruning callback (the
    trial is pruned between folds, not epochs)."""
    from hydra.core.hydra_config import HydraConfig

    fold_cfg = copy.deepcopy(cfg)
    with open_dict(fold_cfg):
        fold_cfg.data.fold = fold
        fold_cfg.paths.output_dir = str(output_dir)
        if fold_cfg.get("callbacks") and "prune_trial" in fold_cfg.callbacks:
            fold_cfg.callbacks.pop("prune_trial")
    record = output_dir / run.HYDRA_DIR
    record.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(fold_cfg, record / "config.yaml")
    if HydraConfig.initialized():
        hydra = copy.deepcopy(HydraConfig.get())
        OmegaConf.set_readonly(hydra, False)
        overrides = [*[o for o in hydra.overrides.task if not o.startswith("data.fold=")],
                     f"data.fold={fold}"]
        with open_dict(hydra):
            hydra.runtime.output_dir = str(output_dir)
            hydra.overrides.task = overrides
        OmegaConf.save(OmegaConf.create({"hydra": hydra}), record / "hydra.yaml")
        OmegaConf.save(OmegaConf.create(overrides), record / "overrides.yaml")
    return fold_cfg


def open_trial(cfg: DictConfig) -> Trial | None:
    """The sweep's trial `sweep.trial` in its storage (None outside a sweep)."""
    number = cfg.sweep.get("trial")
    if number is None:
        return None
    import optuna

    from podium.sweep.study import make_pruner, open_storage

    settings = cfg.sweep
    storage = open_storage(settings.storage)
    study = optuna.load_study(study_name=settings.study_name, storage=storage,
                              sampler=optuna.samplers.RandomSampler(),
                              pruner=make_pruner(settings.pruner, settings.startup_trials,
                                                 settings.warmup_epochs))
    study_id = storage.get_study_id_from_name(settings.study_name)
    trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, int(number))
    return optuna.trial.Trial(study, trial_id)


def prune(trial: Trial, scores: list[float], fold: int) -> bool:
    """Report the running mean of the fold scores at step `fold`; should the trial stop?"""
    from podium.sweep.study import PRUNED_ATTR

    trial.report(sum(scores) / len(scores), fold)
    if not trial.should_prune():
        return False
    trial.set_user_attr(PRUNED_ATTR, fold)
    return True
