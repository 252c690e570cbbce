"""Checkpoints that survive a resume: the latest epoch always saved, the best one carried
into the new run folder, and the epoch a checkpoint holds read back cheaply."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint


def checkpoint_epoch(path: str | Path | None) -> int | None:
    """The epoch a Lightning checkpoint was saved in, as numbered in csv/metrics.csv (None
    without a checkpoint: fast_dev_run). Memory-mapped: the weights are not read."""
    if not path or not Path(path).is_file():
        return None
    return int(torch.load(path, map_location="cpu", weights_only=True, mmap=True)["epoch"])


class RunCheckpoint(ModelCheckpoint):
    """ModelCheckpoint that resumes from the latest epoch and keeps the best model across a
    resume into a new run folder.

    Lightning writes `last.ckpt` only in an epoch whose checkpoint entered the top k, so a
    crash after a few epochs without improvement would resume from the last improvement:
    here `last.ckpt` is written after every validation (or training epoch, without one).
    Lightning also forgets the best score when the checkpoint folder changes, so a resumed
    run would take its first epoch as "best" even when an earlier epoch was better: the
    earlier best checkpoint(s) are copied into the new folder and their scores restored;
    the new run folder is complete, and the old one is never touched.
    """

    # _should_save_on_train_epoch_end, _should_skip_saving_checkpoint, _save_last_checkpoint,
    # _monitor_candidates: private ModelCheckpoint methods, checked against lightning 2.6.6
    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        if not self._should_save_on_train_epoch_end(trainer):
            self.save_last_if_stale(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if self._should_save_on_train_epoch_end(trainer):
            self.save_last_if_stale(trainer)

    def save_last_if_stale(self, trainer: L.Trainer) -> None:
        if self.save_last and not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        old_dir = state_dict.get("dirpath")
        if self.dirpath and old_dir and Path(old_dir) != Path(self.dirpath):
            copied = {}
            for path, score in state_dict.get("best_k_models", {}).items():
                if Path(path).is_file():
                    target = Path(self.dirpath) / Path(path).name
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(path, target)
                    copied[path] = (str(target), score)
            if copied:
                state_dict = {
                    **state_dict, "dirpath": self.dirpath, "last_model_path": "",
                    "best_k_models": dict(copied.values()),
                    "best_model_path": copied.get(state_dict["best_model_path"], ("",))[0],
                    "kth_best_model_path": copied.get(state_dict["kth_best_model_path"],
                                                      ("",))[0],
                }
        super().load_state_dict(state_dict)
