"""Checkpoints that survive a resume: the best one carried into the new run folder (the
latest epoch's `last.ckpt` is a second, unmonitored checkpoint callback), and the epoch a
checkpoint holds read back cheaply."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.callbacks import ModelCheckpoint


def checkpoint_epoch(path: str | Path | None) -> int | None:
    """The epoch a Lightning checkpoint was saved in, as numbered in csv/metrics.csv (None
    without a checkpoint: fast_dev_run). Memory-mapped: the weights are not read."""
    if not path or not Path(path).is_file():
        return None
    return int(torch.load(path, map_location="cpu", weights_only=True, mmap=True)["epoch"])


class RunCheckpoint(ModelCheckpoint):
    """ModelCheckpoint that keeps its checkpoints across a resume into a new run folder.

    Lightning forgets the best score when the checkpoint folder changes, so a resumed run
    would take its first epoch as "best" even when an earlier epoch was better: here the
    earlier best checkpoint(s) are copied into the new folder and their scores restored;
    the new run folder is complete, and the old one is never touched. A callback without
    a monitor (conf/callbacks/default.yaml's `last_checkpoint`: `last.ckpt` after every
    validation, or every training epoch without one) starts its file afresh there.

    `tie_break` (conf: `val/loss`): a score equal to the best one replaces it when this
    metric is lower. Lightning keeps the first epoch to reach a score, and a small
    validation set's metric saturates (the demo's 92 rows: macro-F1 1.000 from an early,
    high-lr epoch on); the lower loss picks the better fitted of the tied epochs.

    Only public API: the arguments of ModelCheckpoint, `state_key`, `check_monitor_top_k`,
    `state_dict` and `load_state_dict`.
    """

    def __init__(self, *args: Any, tie_break: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.tie_break = tie_break
        self.best_tie: float | None = None  # the tie-break metric of the best checkpoint

    def check_monitor_top_k(self, trainer, current: torch.Tensor | None = None) -> bool:
        """Lightning's rule, then a tie with the best score broken by `tie_break` (lower
        wins); the tie-break value of what is saved is kept."""
        better = super().check_monitor_top_k(trainer, current)
        tie = trainer.callback_metrics.get(self.tie_break) if self.tie_break else None
        if (not better and tie is not None and self.best_tie is not None
                and self.save_top_k == 1 and self.best_k_models):
            tied = bool(current == self.best_k_models[self.kth_best_model_path])
            better = trainer.strategy.reduce_boolean_decision(tied and float(tie) < self.best_tie)
        if better:  # Lightning saves it next
            self.best_tie = float(tie) if tie is not None else None
        return better

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "best_tie": self.best_tie}

    @property
    def state_key(self) -> str:
        """Lightning tells callbacks apart by this key: two instances also differ by their
        file (best, last), since with no validation split both watch nothing."""
        return f"{super().state_key}[{self.filename}]"

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        old_dir = state_dict.get("dirpath")
        if self.dirpath and old_dir and Path(old_dir) != Path(self.dirpath):
            state_dict = self.moved(state_dict)
        super().load_state_dict(state_dict)
        self.best_tie = state_dict.get("best_tie") if self.best_model_score is not None else None

    def moved(self, state_dict: dict[str, Any]) -> dict[str, Any]:
        """The state with its top-k checkpoints copied into this callback's folder and
        every path pointing there ("" where nothing was copied)."""
        copied = {}
        for path, score in state_dict.get("best_k_models", {}).items():
            if Path(path).is_file():
                target = Path(self.dirpath) / Path(path).name
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, target)
                copied[path] = (str(target), score)
        best = copied.get(state_dict.get("best_model_path"), ("",))[0]
        return {
            **state_dict, "dirpath": self.dirpath, "last_model_path": "",
            "best_k_models": dict(copied.values()), "best_model_path": best,
            "best_model_score": state_dict.get("best_model_score") if best else None,
            "kth_best_model_path": copied.get(state_dict.get("kth_best_model_path"),
                                              ("",))[0],
        }
