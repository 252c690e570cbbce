"""Cross-validation: gather a `data.fold=0..k-1` multirun into OOF scores and one submission.

`make cv` runs the folds as a Hydra multirun into `logs/cv/<experiment>/<time>/<job>/`;
this Hydra callback runs once the last fold has finished and writes, beside the folds:
`oof.csv` (every training id once: id, fold, label, class probabilities), `metrics.json`
(the OOF score for every metric) and the fold-averaged `submission.csv`/`test_probs.csv`.
A failed fold is reported and left out; the others are kept.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from podium.errors import PodiumError

log = logging.getLogger(__name__)


def gather_folds(cv_dir: Path, cfg: DictConfig) -> dict[str, Any]:
    """Write the cross-validation folder's oof.csv, metrics.json and submission."""
    from hydra.utils import instantiate

    from podium.ensemble import gather_members, print_summary, submit_members
    from podium.io import write_atomic, write_json
    from podium.metrics import resolve_metric
    from podium.oof import oof_scores

    jobs = sorted((p for p in cv_dir.iterdir() if p.is_dir()), key=lambda p: p.name)
    failed = [p for p in jobs if (p / "failed.txt").is_file()]
    folds = [p for p in jobs if (p / "oof.csv").is_file() and (p / "test_probs.csv").is_file()]
    for job in failed:
        print(f"fold in {job} failed: {(job / 'failed.txt').read_text().strip()}")
    if not folds:
        raise PodiumError(f"no fold in {cv_dir} finished: see the folds' train.log")

    data = cfg.data
    oof = pd.concat([pd.read_csv(f / "oof.csv", dtype={data.id_col: str, data.target_col: str})
                     for f in folds], ignore_index=True)
    repeated = oof[data.id_col][oof[data.id_col].duplicated()]
    if len(repeated):
        raise PodiumError(f"id {repeated.iloc[0]} is in two folds' oof.csv: folds overlap")
    class_names = list(oof.columns[3:])
    resolve_metric(cfg)
    metrics = oof_scores(oof, class_names, data.target_col, data.get("task", "multiclass"),
                         cfg.metric.k)
    write_atomic(cv_dir / "oof.csv", oof.to_csv(index=False))

    members = gather_members([cv_dir], cfg.paths)
    members = [m for m in members if m.run in folds]  # failed folds left out
    fmt = (cfg.get("submission") or {}).get("format", "auto")
    summary = submit_members(members, cv_dir, fmt, instantiate(cfg.get("postprocess")))
    print_summary(summary)
    summary.update(metrics, folds=len(folds), failed=[str(f) for f in failed],
                   oof_score=metrics.get(f"oof/{cfg.metric.competition}"))
    write_json(cv_dir / "metrics.json", summary)
    print(f"cross-validation: {len(folds)} fold(s) in {cv_dir}")
    for key, value in sorted(metrics.items()):
        print(f"  {key}: {value:.4f}")
    if summary["oof_score"] is not None:
        print(f"OOF {cfg.metric.competition} (metric.competition): {summary['oof_score']:.4f}")
    return summary


class GatherFolds(Callback):
    """Hydra callback: after a multirun over `data.fold`, gather the folds (else do nothing)."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if not config.get("data") or not config.data.get("n_folds"):
            return
        try:
            gather_folds(Path(config.hydra.sweep.dir), config)
        except PodiumError as err:
            print(f"error: {err}")
