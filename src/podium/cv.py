"""Cross-validation: gather a `data.fold=0..k-1` multirun into OOF scores and one submission.

`make cv` runs the folds as a Hydra multirun into `logs/cv/<experiment>/<time>/<job>/`;
this Hydra callback runs once the last fold has finished and writes, beside the folds:
`oof.csv` (every training id once: id, fold, label, class probabilities), `metrics.json`
(the OOF score for every metric) and the fold-averaged `submission.csv`/`test_probs.csv`.
A failed fold is reported and left out; the others are kept.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from podium import run
from podium.errors import PodiumError

if TYPE_CHECKING:
    from podium.submission.summary import Summary

log = logging.getLogger(__name__)


def gather_folds(cv_dir: Path, cfg: DictConfig) -> Summary:
    """The folds as one ensemble on the one road: the cross-validation folder's oof.csv
    (every training id once), test_probs.csv, submission and metrics.json."""
    from hydra.utils import instantiate

    from podium.config import resolve_data
    from podium.io import write_json
    from podium.model.metrics import resolve_metric
    from podium.submission.ensemble import Options, submit_members
    from podium.submission.members import Member

    jobs = sorted((p for p in cv_dir.iterdir() if p.is_dir()), key=lambda p: p.name)
    failed = [p for p in jobs if (p / "failed.txt").is_file()]
    folds = [p for p in jobs if (p / run.OOF).is_file() and (p / run.TEST_PROBS).is_file()]
    for job in failed:
        print(f"fold in {job} failed: {(job / 'failed.txt').read_text().strip()}")
    if not folds:
        why = (failed[0] / "failed.txt").read_text().strip().splitlines()[-1] if failed else ""
        raise PodiumError(f"no fold in {cv_dir} finished" + (f" (the first: {why})" if why
                                                            else ": see the folds' train.log"))
    resolve_data(cfg)  # the folder's columns and task (data.task=auto: the default metric)
    check_disjoint(folds, cfg.data.id_col, cfg.data.target_col)
    resolve_metric(cfg)
    # the folds share one weight, as when the folder is given to make submit (a sweep's cv
    # trial folder has a config of its own: its folds are listed here, not by expand_runs)
    runs = sorted(p.parents[1] for p in cv_dir.glob(f"*/{run.CONFIG}"))
    members = [replace(m, folder=cv_dir) for r in folds  # the folds share one weight
               for m in Member.from_folder(r, cfg.paths, 1.0 / len(runs))]
    for member in members:  # scored by this gathering's competition metric
        member.cfg.metric = cfg.metric
    options = Options((cfg.get("submission") or {}).get("format", "auto"),
                      instantiate(cfg.get("postprocess")))
    summary = submit_members(members, cv_dir, options)
    write_json(cv_dir / run.METRICS, {**summary.to_dict(), **summary.oof, "folds": len(folds),
                                      "failed": [str(f) for f in failed]})
    for line in summary.lines():
        print(line)
    print(f"cross-validation: {len(folds)} fold(s) in {cv_dir}")
    for key, value in sorted(summary.oof.items()):
        print(f"  {key}: {value:.4f}")
    return summary


def check_disjoint(folds: list[Path], id_col: str, target_col: str) -> None:
    """Each training id is validated by one fold only (each fold's oof.csv read and
    checked: podium.run.read_oof)."""
    seen: dict[str, Path] = {}
    for fold in folds:
        ids = run.read_oof(fold / run.OOF, id_col, target_col)
        for value in ids[id_col]:
            if value in seen:
                raise PodiumError(f"id {value} is in the oof.csv of {seen[value]} and of "
                                  f"{fold}: folds overlap")
            seen[value] = fold


class GatherFolds(Callback):
    """Hydra callback: after a multirun over `data.fold`, gather the folds (else do nothing).
    A failed gathering ends the command with exit status 2 and its one-line error."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if not config.get("data") or not config.data.get("n_folds"):
            return
        if config.get("sweep") is not None:  # an Optuna sweep: a cv trial gathers its folds
            return
        try:
            gather_folds(Path(config.hydra.sweep.dir), config)
        except PodiumError as err:
            print(f"error: {err}", file=sys.stderr)
            raise SystemExit(2) from err
