"""`python -m podium.train [overrides]`: the whole competition loop, top to bottom.

config -> data spec -> module -> trainer -> fit -> validate and predict with the best
checkpoint (test_probs.csv, oof.csv) -> the one road to the submission -> metrics.json.

What chose the checkpoint is kept apart from what scores it honestly: a single hold-out
validates on the rows it writes to oof.csv (its best val score chose the checkpoint, so it
is optimistic); a fold of `make cv` validates on an inner split of its training rows and
predicts its held-out rows once, for oof.csv (podium.data.splits.nested_split).
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import hydra
from omegaconf import DictConfig

from podium import run
from podium.config import CONFIG_DIR, check_types, print_config, resolve_defaults
from podium.errors import PodiumError, one_line_errors

if TYPE_CHECKING:
    from podium.submission.summary import Summary

log = logging.getLogger(__name__)


@dataclass
class Outcome:
    """A training run's result: its validation metrics (with the leaderboard score where
    the competition has an answer key), what the one road wrote (None off rank zero, or
    when only part of the data was predicted) and the rows that validated and were
    predicted for oof.csv (`nested`: a fold's inner split chose the checkpoint, its
    held-out rows chose nothing)."""

    metrics: dict[str, float]
    summary: Summary | None
    val_rows: int = 0
    oof_rows: int = 0
    nested: bool = False

    @property
    def oof_score(self) -> float | None:
        """The OOF score of metric.competition on the oof rows (None: none written)."""
        return self.summary.oof_score if self.summary is not None else None


def train(cfg: DictConfig) -> Outcome:
    """Fit; validate and predict with the best checkpoint; the run, an ensemble of one,
    writes its submission on the one road (podium.submission.ensemble)."""
    from lightning.pytorch.utilities import rank_zero_only

    from podium.build import best_checkpoint, build_run
    from podium.callbacks.checkpoints import checkpoint_epoch
    from podium.io import write_json
    from podium.threads import use_threads

    check_types(cfg)
    quiet_known_noise(cfg)
    # loss: null -> the task's usual loss (said in one line); metric.monitor/mode: null ->
    # the task's key, inferred mode
    resolve_defaults(cfg, announce=rank_zero_only.rank == 0)
    table = str(cfg.data.get("_target_", "")).endswith("TabularDataModule")
    said = use_threads(cfg.get("threads", "auto"), table_network=table)
    if rank_zero_only.rank == 0:
        print(said, flush=True)
    if rank_zero_only.rank == 0:
        record_loss(cfg)
    if cfg.get("print_config", True) and rank_zero_only.rank == 0:  # true | full | false
        print_config(cfg, Path(cfg.paths.output_dir) / "config_tree.txt",  # a cv: fold 0
                     full=cfg.print_config == "full",  # lists the keys, once
                     listed=not cfg.data.get("fold"))
    plan_fold(cfg)
    datamodule, module, trainer = build_run(cfg)
    announce_format(cfg, datamodule)  # a sample that fits no format stops before training
    trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))

    ckpt = best_checkpoint(trainer)
    if datamodule.has_validation:
        metrics = trainer.validate(module, datamodule=datamodule, ckpt_path=ckpt,
                                   verbose=False)[0]
    else:  # data.val_fraction=0: the last epoch's training metrics, nothing validated
        metrics = {k: v for k, v in trainer.callback_metrics.items() if k.startswith("train/")}
    metrics = {k: float(v) for k, v in metrics.items()}
    # test_probs.csv and oof.csv (with tta views: *_tta.csv too, from the same pass): the
    # oof rows are predicted here, once, by the checkpoint the validation rows chose
    trainer.predict(module, datamodule=datamodule, ckpt_path=ckpt, return_predictions=False)
    rows = {"val_rows": len(datamodule.val_idx), "oof_rows": len(datamodule.oof_idx),
            "nested": datamodule.nested}
    if not trainer.is_global_zero:
        return Outcome(metrics, None, **rows)
    output_dir = Path(cfg.paths.output_dir)
    # the class prior the run's probabilities carry: what a test prior moves them from
    # (the chosen checkpoint's: a loss that re-weights from an epoch on carries it only then)
    score_prior = dict(zip(datamodule.spec.class_names, module.score_prior, strict=False))
    summary = submit_run(cfg, datamodule, score_prior)
    if summary is not None:
        metrics.update(summary.leaderboard)
    write_json(output_dir / run.METRICS, {  # oof_rows: the summary's (a refit's borrowed)
        **metrics, **rows, **(summary.to_dict() if summary else {}),
        "monitor": cfg.metric.monitor,
        "mode": cfg.metric.mode, "competition": cfg.metric.competition,
        "best_checkpoint": ckpt, "best_epoch": checkpoint_epoch(ckpt),
        "epochs": trainer.current_epoch, "validation": datamodule.has_validation,
        "train_rows": len(datamodule.train_idx), "score_prior": score_prior,
    })
    return Outcome(metrics, summary, **rows)


def plan_fold(cfg: DictConfig) -> None:
    """A cross-validation's fold: how many folds follow it per parallel job (`make cv
    JOBS=n`), for its epoch lines' whole-cv `cv_eta`; under `deadline` (unix seconds, as
    `make stack` gives its network), its fit's cap (`trainer.max_time`): its share of the
    time left, less a quarter for validating and predicting."""
    import time

    from omegaconf import open_dict

    from podium.threads import parallel_jobs

    fold, n_folds = cfg.data.get("fold"), cfg.data.get("n_folds")
    if fold is None or not n_folds:
        return
    after = max(int(n_folds) - int(fold) - 1, 0) / parallel_jobs()
    lines = (cfg.get("callbacks") or {}).get("epoch_lines")
    if lines is not None:
        with open_dict(lines):
            lines.folds_after = after
    if cfg.get("deadline"):
        share = int(max(0.75 * (float(cfg.deadline) - time.time()) / (after + 1), 5))
        with open_dict(cfg):
            cfg.trainer.max_time = time.strftime("00:%H:%M:%S", time.gmtime(share))
        print(f"deadline: this fold's fit stops after {share} s, its share of the time "
              f"left", flush=True)


def record_loss(cfg: DictConfig) -> None:
    """Hydra saves the run's config (`.hydra/config.yaml`) before the task's default loss,
    and the data and model the folder chose, are filled in: write them into it, so the run
    folder says what it trained with and refit, submit and predict rebuild that loss (and
    that datamodule and network) whatever a later default is."""
    from omegaconf import OmegaConf

    from podium.io import write_atomic

    path = Path(cfg.paths.output_dir) / run.CONFIG
    if not path.is_file():  # not a Hydra run (a notebook, the tests' composed configs)
        return
    saved = OmegaConf.load(path)
    # data and model as the folder chose them (config.resolve_data: a table, its task)
    chosen = {"data": cfg.data, "model": cfg.model}
    if not (saved.get("loss") or {}).get("_target_"):  # chosen (loss=...): already there
        chosen["loss"] = cfg.loss
    plain = lambda node: OmegaConf.to_container(node, resolve=False) if node else node  # noqa: E731
    if all(plain(saved.get(group)) == plain(value) for group, value in chosen.items()):
        return
    for group, value in chosen.items():
        saved[group] = value
    write_atomic(path, OmegaConf.to_yaml(saved), replace=True)


def announce_format(cfg: DictConfig, datamodule) -> None:
    """The submission's shape, decided from the sample submission and printed when the run
    starts (the one road decides it again, the same way, at the end)."""
    from lightning.pytorch.utilities import rank_zero_only

    from podium.submission.formats import choose_format

    if datamodule.sample is None:
        return
    shape = choose_format(cfg.submission.format, datamodule.sample, datamodule.id_col,
                          datamodule.class_names, datamodule.task,
                          f"val/{cfg.metric.competition}", cfg.metric.k)
    if rank_zero_only.rank == 0:
        print(f"submission format: {shape.format} ({shape.why})", flush=True)


def submit_run(cfg: DictConfig, datamodule, score_prior: dict[str, float] | None = None
               ) -> Summary | None:
    """The run as an ensemble of one: its own predictions, its tta views proven on its
    validation split, its post-processing and threshold learned there."""
    from hydra.utils import instantiate

    from podium.submission.ensemble import Options, write_ensemble
    from podium.submission.members import Member, own_predictions

    output_dir = Path(cfg.paths.output_dir)
    if not (output_dir / run.TEST_PROBS).is_file():
        log.warning("no %s (only part of the data was predicted): no submission written",
                    run.TEST_PROBS)
        return None
    members = Member.from_folder(output_dir, cfg.paths, cfg=cfg, score_prior=score_prior)
    tta = list(cfg.get("tta") or [])
    return write_ensemble(members, output_dir, datamodule.sample,
                          [own_predictions(members[0], tta)],
                          Options(cfg.submission.format, instantiate(cfg.get("postprocess")),
                                  cfg.get("force", False), datamodule.answers))


def report(output_dir: Path, outcome: Outcome, monitor: str) -> None:
    """The lines a competitor looks for at the end of a run: the validation score that
    chose the checkpoint, said as such, and a fold's OOF score, which chose nothing."""
    print(f"run folder: {output_dir}")
    for line in selection_lines(outcome, monitor):
        print(line)
    if outcome.summary is not None:
        for line in outcome.summary.lines()[1:]:  # [0]: the run itself, weight 1
            print(line)


def selection_lines(outcome: Outcome, monitor: str) -> list[str]:
    """`best val/f1_macro: 0.9478 (...)` saying which rows chose the checkpoint; for a fold
    of a k-fold also its OOF score on the held-out rows (they chose nothing)."""
    lines = []
    if monitor in outcome.metrics:
        why = (f"the inner validation split, {outcome.val_rows} of the fold's training rows, "
               "chose the checkpoint" if outcome.nested else
               f"this split chose the checkpoint: optimistic; its {outcome.val_rows} rows are "
               "oof.csv's")
        lines.append(f"best {monitor}: {outcome.metrics[monitor]:.4f} ({why})")
    elif outcome.nested:
        lines.append("no inner validation split (data.val_fraction=0): best.ckpt is the last "
                     "epoch")
    else:
        lines.append("no validation split (data.val_fraction=0): best.ckpt is the last epoch, "
                     "no oof.csv")
    if outcome.nested and outcome.summary is not None:
        name = monitor.removeprefix("val/")
        key = name if f"oof/{name}" in outcome.summary.oof else outcome.summary.metric
        if f"oof/{key}" in outcome.summary.oof:
            lines.append(f"fold OOF {key}: {outcome.summary.oof[f'oof/{key}']:.4f} (the "
                         f"fold's {outcome.oof_rows} held-out rows, predicted once: they "
                         "chose nothing)")
    return lines


class KnownNoise(logging.Filter):
    """Drops Lightning's info lines that every run prints and no run acts on: the device
    inventory (podium's `fit: ...` line names the device used) and the litlogger tip."""

    PREFIXES = ("GPU available: ", "TPU available: ", "💡 Tip: For seamless cloud logging")

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.levelno == logging.INFO
                    and str(record.msg).startswith(self.PREFIXES))


LIGHTNING_NOISE = KnownNoise()


def quiet_known_noise(cfg: DictConfig) -> None:
    """Process-wide settings a run makes first (never the builders: a notebook that only
    builds a Trainer keeps its warnings filters and environment as they were)."""
    # an epoch shorter than log_every_n_steps is fine: the loggers count steps across epochs
    warnings.filterwarnings("ignore", message="The number of training batches .* is smaller "
                            "than the logging interval")
    # torch deprecates LeafSpec; Lightning's own _pytree.py still uses it (not podium's to fix)
    warnings.filterwarnings("ignore", category=FutureWarning,
                            message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning_fabric.utilities.rank_zero"):
        logging.getLogger(name).addFilter(LIGHTNING_NOISE)  # the same filter object: added once
    if any(str(c.get("tracking_uri", "")).startswith("file:")
           for c in (cfg.get("logger") or {}).values() if c):
        # logger=mlflow's local file store: recent mlflow refuses it unless opted in
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
@one_line_errors
def main(cfg: DictConfig) -> float | None:
    """Hydra entry point; returns the monitored metric (the sweep objective), or with
    `sweep.objective=cv` the OOF score of the trial's k folds (podium.sweep.objective)."""
    from lightning.pytorch.utilities import rank_zero_only

    from podium.build import no_validation
    from podium.model.metrics import never_logged

    if (cfg.get("sweep") or {}).get("objective") == "cv":  # a trial of k folds
        from podium.sweep.objective import cv_objective

        return cv_objective(cfg, train)
    outcome = train(cfg)
    metrics = outcome.metrics
    if rank_zero_only.rank == 0:
        report(Path(cfg.paths.output_dir), outcome, cfg.metric.monitor)
    if no_validation(cfg):
        return None
    if cfg.metric.monitor not in metrics:
        raise PodiumError(never_logged(cfg.metric.monitor, metrics))
    return metrics[cfg.metric.monitor]


if __name__ == "__main__":
    main()
