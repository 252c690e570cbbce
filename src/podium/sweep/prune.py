"""`PruneTrial`: the Lightning callback that lets a sweep stop a hopeless trial early.

The hparams_search configs add it as `callbacks.prune_trial`; the sweeper gives each job
`sweep.trial=<number>`, so the callback finds its trial in the shared storage from any
process or machine (joblib, SLURM, `make sweep JOBS=n`). Outside a sweep (`sweep.trial`
null) it does nothing.

Pruning ends the run the way early stopping does (`trainer.should_stop`), not with an
exception: the run still validates and predicts with its best checkpoint and writes
metrics.json, so the folder, its checkpoints and its submission stay usable. `pruned.txt`
in the run folder (read by `make runs`) and the trial's user attribute
`pruned_after_epoch` (read by the sweeper, which then records the trial as PRUNED) say
that it was cut short. optuna-integration's PyTorchLightningPruningCallback raises
TrialPruned out of `fit` instead, which would skip all of that.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L

from podium.sweep.study import PRUNED_ATTR, make_pruner, open_storage


class PruneTrial(L.Callback):
    """Report `monitor` to the sweep's trial after each validation (step = epochs trained);
    stop training when the study's pruner says so."""

    def __init__(self, storage: str, study_name: str, trial: int | None, monitor: str,
                 pruner: Any = "median", startup_trials: int = 5, warmup_epochs: int = 1,
                 output_dir: str | None = None) -> None:
        self.storage, self.study_name, self.number = storage, study_name, trial
        self.monitor = monitor
        self.pruner = (pruner, startup_trials, warmup_epochs)
        self.output_dir = Path(output_dir) if output_dir else None
        self.trial = None
        self.pruned = False

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.number is None or not trainer.is_global_zero:
            return
        import optuna

        storage = open_storage(self.storage)
        study = optuna.load_study(study_name=self.study_name, storage=storage,
                                  sampler=optuna.samplers.RandomSampler(),
                                  pruner=make_pruner(*self.pruner))
        study_id = storage.get_study_id_from_name(self.study_name)
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, int(self.number))
        self.trial = optuna.trial.Trial(study, trial_id)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.number is None or self.pruned or trainer.sanity_checking \
                or trainer.state.fn != "fit":
            return
        prune, value, epochs = False, None, trainer.current_epoch + 1
        if self.trial is not None and self.monitor in trainer.callback_metrics:
            value = float(trainer.callback_metrics[self.monitor])
            self.trial.report(value, epochs)
            prune = self.trial.should_prune()
        if trainer.strategy.broadcast(prune):  # every DDP rank stops together
            self.pruned = trainer.should_stop = True
            if self.trial is not None:
                self.trial.set_user_attr(PRUNED_ATTR, epochs)
                self.write_note(epochs, value)

    def write_note(self, epochs: int, value: float | None) -> None:
        """`pruned.txt`: why this run folder holds a short run (read by `make runs`)."""
        if self.output_dir is None:
            return
        self.output_dir.mkdir(parents=True, exist_ok=True)
        pruner = self.pruner[0] if isinstance(self.pruner[0], str) else "custom"
        (self.output_dir / "pruned.txt").write_text(
            f"pruned after epoch {epochs}: {self.monitor}={value:.6g} "
            f"({pruner} pruner, study {self.study_name}, trial {self.number})\n")
