"""`python -m podium.refit run=<run or cv folder>`: retrain a run on every labelled row.

A validation split (or k-fold) chooses the recipe and how long to train it; the submission
is then best trained on all the labels. Refit takes the run's exact config
(`.hydra/config.yaml`), sets `data.val_fraction=0` (no validation: best.ckpt is the last
epoch, no oof.csv) and trains it for the epoch count the run found best: `best_epoch + 1`
from its metrics.json, or for a cross-validation folder the mean over its folds, rounded
(each fold's best epoch was chosen on its inner validation split, never on the held-out
rows whose OOF the refit then learns on). `epochs=N` overrides that. Writes a new run
folder `logs/refit/<experiment>/<time>/` with checkpoints, `test_probs.csv`,
`submission.csv` and the config it trained
(`.hydra/config.yaml`, so `make submit RUN=<refit folder>` averages it like any run).
Having no validation rows, the refit learns what the one road learns on OOF rows (the tta
choice, the shift to `data.test_prior`, post-processing, the decision threshold) on the
OOF of the run or folds it refits (`refit_of` in its config).
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf, open_dict

from podium import run
from podium.config import CONFIG_DIR
from podium.errors import PodiumError, one_line_errors

log = logging.getLogger(__name__)


def check_refittable(folder: Path) -> None:
    """A network run or cv folder refits; any other folder stops with one line saying
    what to refit instead."""
    config = Path(folder) / run.CONFIG
    task = OmegaConf.load(config).get("task_name") if config.is_file() else None
    if task == "stack":
        raise PodiumError(f"run={folder} is a stack folder: refit its network, make refit "
                          f"RUN={Path(folder) / 'members' / 'network'} (its boosters' folds "
                          f"are refitted on their inner rows already)")
    if task == "gbdt":
        raise PodiumError(f"run={folder} is a booster folder (make gbdt): make refit retrains "
                          f"a network run or cv folder; a booster's folds are refitted on "
                          f"their inner rows already (gbdt.refit_inner)")
    if task in ("submit", "predict"):
        raise PodiumError(f"run={folder} is a {task} folder (a blend, no model of its own): "
                          f"refit each of the run folders its metrics.json lists")


def best_epochs(runs: list[Path]) -> int:
    """Epochs to refit: the mean over the runs (folds) of `best_epoch + 1`, rounded."""
    counts = []
    for folder in runs:
        best = run.read_metrics(folder).get("best_epoch")
        if best is None:
            raise PodiumError(f"{folder / run.METRICS} has no best_epoch (the run did not "
                              "finish, or predates it): pass epochs=N to refit for N epochs")
        counts.append(int(best) + 1)
    return max(1, int(sum(counts) / len(counts) + 0.5))  # half up, not to even


def refit_config(run_cfg: DictConfig, epochs: int, experiment: str,
                 sources: list[Path] = ()) -> DictConfig:
    """The run's config on every labelled row for `epochs` epochs (early stopping dropped:
    nothing validates), written as a new run; `refit_of`: the runs whose OOF rows the one
    road learns its steps on (it has none)."""
    from hydra.utils import get_class
    from lightning.pytorch.callbacks import EarlyStopping

    with open_dict(run_cfg):
        run_cfg.refit_of = [str(s) for s in sources]
        run_cfg.data.val_fraction = 0
        run_cfg.data.n_folds = None
        run_cfg.data.fold = None
        run_cfg.trainer.max_epochs = epochs
        run_cfg.ckpt_path = None
        run_cfg.task_name = "refit"
        run_cfg.run_name = experiment
        run_cfg.print_config = False
        for name, callback in list((run_cfg.get("callbacks") or {}).items()):
            if callback and issubclass(get_class(callback._target_), EarlyStopping):
                run_cfg.callbacks[name] = None  # the epochs are fixed: nothing validates
    return run_cfg


def refit(cfg: DictConfig) -> dict:
    """Retrain the run (or cv folder) `cfg.run` on all labelled data with `train`; returns
    its metrics.json."""
    from podium.io import write_atomic, write_json
    from podium.submission.members import expand_runs, run_config
    from podium.train import train

    check_refittable(Path(cfg.run))
    runs = expand_runs([Path(cfg.run)])
    epochs = cfg.epochs or best_epochs(runs)
    train_cfg = refit_config(run_config(runs[0], cfg.paths), epochs, experiment_of(cfg.run),
                             runs)
    output_dir = Path(cfg.paths.output_dir)
    write_atomic(output_dir / run.CONFIG, OmegaConf.to_yaml(train_cfg), replace=True)
    outcome = train(train_cfg)
    summary = {**run.read_metrics(output_dir), "refit_of": [str(r) for r in runs]}
    write_json(output_dir / run.METRICS, summary)
    return {**summary, "lines": outcome.summary.lines()[1:] if outcome.summary else []}


def experiment_of(run_dir: str) -> str:
    """The experiment a run (or a cv folder's first fold) was trained with: the refit
    folder's name, `logs/refit/<experiment>/<time>/`."""
    folder = Path(run_dir)
    hydra_files = [folder / run.HYDRA_DIR / "hydra.yaml",
                   *sorted(folder.glob(f"*/{run.HYDRA_DIR}/hydra.yaml"))]
    for path in hydra_files:
        if path.is_file():
            choice = OmegaConf.load(path).hydra.runtime.choices.get("experiment")
            return str(choice or "run")
    return "run"


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="refit")
@one_line_errors
def main(cfg: DictConfig) -> None:
    summary = refit(cfg)
    print(f"run folder: {cfg.paths.output_dir}")
    print(f"refit on {summary['train_rows']} labelled rows for {summary['epochs']} epochs "
          "(no validation split: no oof.csv)")
    for line in summary["lines"]:  # the format, the leaderboard (demos), the file
        print(line)


if __name__ == "__main__":
    OmegaConf.register_new_resolver("podium_experiment_of", experiment_of, replace=True)
    main()
