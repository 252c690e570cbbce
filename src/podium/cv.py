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

import numpy as np
import pandas as pd
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from podium.errors import PodiumError

log = logging.getLogger(__name__)


def oof_scores(oof: pd.DataFrame, class_names: list[str], target_col: str,
               task: str = "multiclass") -> dict[str, float]:
    """Every validation metric, computed once over all out-of-fold predictions."""
    import torch

    from podium.metrics import classification_metrics, multilabel_metrics

    if task == "multilabel":  # label sets in the label column
        from podium.labels import multi_hot, split_label_set

        sets = [split_label_set(cell) for cell in oof[target_col]]
        target = torch.from_numpy(multi_hot(sets, class_names, Path("oof.csv"), target_col)[0])
        probs = torch.tensor(oof[class_names].to_numpy(dtype=np.float32))
        metrics = multilabel_metrics(len(class_names)).clone(prefix="oof/")
        return {k: float(v) for k, v in metrics(probs, target).items()}
    index = {name: i for i, name in enumerate(class_names)}
    target = torch.tensor(oof[target_col].map(index).to_numpy())
    probs = torch.tensor(oof[class_names].to_numpy(dtype=np.float32))
    metrics = classification_metrics(len(class_names)).clone(prefix="oof/")
    return {k: float(v) for k, v in metrics(probs, target).items()}


def gather_folds(cv_dir: Path, cfg: DictConfig) -> dict[str, Any]:
    """Write the cross-validation folder's oof.csv, metrics.json and submission."""
    from podium.ensemble import print_summary, run_config, write_ensemble
    from podium.io import write_atomic, write_json

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
    metrics = oof_scores(oof, class_names, data.target_col, data.get("task", "multiclass"))
    write_atomic(cv_dir / "oof.csv", oof.to_csv(index=False))

    configs = [run_config(f, cfg.paths) for f in folds]
    summary = write_ensemble(folds, configs, cv_dir, postprocess=cfg.get("postprocess"))
    print_summary(summary)
    summary.update(metrics, folds=len(folds), failed=[str(f) for f in failed])
    write_json(cv_dir / "metrics.json", summary)
    print(f"cross-validation: {len(folds)} fold(s) in {cv_dir}")
    for key, value in sorted(metrics.items()):
        print(f"  {key}: {value:.4f}")
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
