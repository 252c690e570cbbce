"""`python -m podium.gbdt [overrides]`: the gradient-boosting bar a tabular model must beat.

scikit-learn's HistGradientBoosting (podium.model.gbdt) cross-validated on the same data
config, folds and seed as `make cv`, written as a cross-validation folder
(`logs/gbdt/<run_name>/<time>/`): `oof.csv` (every training id once, with its fold),
`test_probs.csv` (the folds' models averaged), `metrics.json` (the OOF score of every
metric, `folds`) and `submission.csv` made on the one road (podium.submission.ensemble),
with the composed config in `.hydra/config.yaml`. `make submit`, `make runs`,
post-processing and thresholds take the folder as one more member. `bar_to_beat(cfg)` is
the same k-fold OOF score without writing anything (for `make eda`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import hydra
import numpy as np
from omegaconf import DictConfig

from podium import run
from podium.config import CONFIG_DIR
from podium.errors import PodiumError, one_line_errors

if TYPE_CHECKING:
    import pandas as pd

    from podium.data.tabular import TabularDataModule
    from podium.model.gbdt import Columns, CrossValidation
    from podium.submission.summary import Summary


@dataclass
class Result:
    """A finished cross-validation of the trees: the table read, the columns' kinds, the
    predictions and the OOF scores (`oof/<metric>` for every metric of the task, under the
    test prior as a network's are), the class prior the trees' probabilities carry."""

    data: TabularDataModule
    columns: Columns
    cv: CrossValidation
    oof: pd.DataFrame
    test: pd.DataFrame
    scores: dict[str, float]
    score_prior: dict[str, float]

    def score(self, metric: str) -> float:
        return self.scores[f"oof/{metric}"]


def read_table(cfg: DictConfig) -> TabularDataModule:
    """The tabular datamodule of `cfg.data` with its CSVs read and checked (labels,
    features, test rows in the sample submission's order); the demos are built on first
    use as for a training run."""
    from hydra.utils import instantiate

    from podium.data.tabular import TabularDataModule

    n_folds = cfg.data.get("n_folds")
    if not n_folds or int(n_folds) < 2:
        raise PodiumError(f"data.n_folds={n_folds}: make gbdt cross-validates; give "
                          f"data.n_folds=2 or more (FOLDS=5)")
    datamodule = instantiate(cfg.data, n_folds=int(n_folds), fold=0)
    if not isinstance(datamodule, TabularDataModule):
        raise PodiumError(f"make gbdt fits trees on a table: data={cfg.data._target_} is not "
                          f"one; give data=tabular data.root=<folder with train.csv and "
                          f"test.csv> (or data=demo_binary)")
    datamodule.prepare_data()
    datamodule.split()
    return datamodule


def fold_indices(data: TabularDataModule) -> list[tuple]:
    """Every fold's (train, validation) row indices: `split_indices` with the arguments the
    datamodule's own `split()` gives it for `data.fold=f`, so fold f is `make cv`'s fold f."""
    from podium.data.splits import split_indices

    groups = None
    if data.group_col:
        from podium.io import read_csv

        groups = read_csv(data.root / data.train_csv, [data.group_col],
                          "the training labels")[data.group_col].tolist()
    return [split_indices(data.labels, data.class_names, data.val_fraction, data.seed,
                          data.n_folds, fold, groups, stratify=data.task != "regression")
            for fold in range(data.n_folds)]


def label_text(data: TabularDataModule, rows) -> list:
    """The true labels of `rows` as oof.csv spells them (a class name, or the value)."""
    if data.task == "regression":
        return data.labels[rows].tolist()
    return [data.class_names[i] for i in data.labels[rows]]


def cross_validate_table(cfg: DictConfig) -> Result:
    """Read the table, fit one model per fold, score the OOF predictions (nothing written)."""
    import pandas as pd

    from podium.config import resolve_data
    from podium.model.gbdt import column_kinds, cross_validate
    from podium.model.metrics import resolve_metric
    from podium.submission.oof import oof_scores

    resolve_data(cfg)  # a table folder under data=image; data.task=auto: the folder's task
    resolve_metric(cfg, announce=True)
    data = read_table(cfg)
    columns = column_kinds(data.train_frame, data.features, data.categorical_cols,
                           data.root / data.train_csv)
    folds = fold_indices(data)
    params = dict(cfg.get("gbdt") or {})
    cv = cross_validate(data.train_frame, data.test_frame, data.labels, folds, columns,
                        data.task, len(data.class_names), params, int(data.seed),
                        data.target_transform)
    oof = pd.concat([run.oof_frame([data.train_ids[i] for i in val], cv.oof[val],
                                   data.class_names, data.id_col, fold, data.target_col,
                                   label_text(data, val))
                     for fold, (_, val) in enumerate(folds)], ignore_index=True)
    test = run.probs_frame(data.test_ids, cv.test, data.class_names, data.id_col)
    carried, test_prior = priors(data)
    names = [str(c) for c in data.class_names]
    scored = oof
    if test_prior is not None:  # moved by Bayes' rule and weighted, as a network's OOF rows
        from podium.prior import shift

        scored = oof.copy()
        scored[names] = shift(oof[names].to_numpy(np.float64), carried, test_prior)
    scores = oof_scores(scored, names, data.target_col, data.task, cfg.metric.k, test_prior)
    score_prior = {} if carried is None else dict(zip(names, carried.tolist(), strict=True))
    return Result(data, columns, cv, oof, test, scores, score_prior)


def priors(data: TabularDataModule) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(the class prior the trees' probabilities carry, the test prior): the training
    table's class shares (each fold's model fits near them, unweighted) and
    `data.test_prior` resolved (None for train and estimate; (None, None) without classes)."""
    from podium import prior

    prior.check_setting(data.test_prior, data.task)
    if data.task not in prior.CLASSIFICATION:
        return None, None
    counts = np.bincount(data.labels, minlength=len(data.class_names)).astype(np.float64)
    return counts / counts.sum(), prior.resolve(data.test_prior, data.class_names, data.root)


def bar_to_beat(cfg: DictConfig, n_folds: int | None = None) -> float:
    """The k-fold OOF score of `metric.competition` that HistGradientBoosting reaches on
    this table: what a tabular network has to beat. `cfg`: any config with `data` (make
    eda's, a training run's, conf/gbdt.yaml's); the trees' arguments are its `gbdt`, else
    conf/gbdt.yaml's; the folds `n_folds`, else `data.n_folds`, else 5 (with `cfg`'s seed:
    make cv's folds). Nothing is written."""
    from omegaconf import OmegaConf, open_dict

    cfg = cfg.copy()
    with open_dict(cfg):
        if cfg.get("gbdt") is None:
            cfg.gbdt = OmegaConf.load(Path(CONFIG_DIR) / "gbdt.yaml").gbdt
        cfg.data.n_folds = n_folds or cfg.data.get("n_folds") or 5
        cfg.data.fold = None
    return cross_validate_table(cfg).score(cfg.metric.competition)


def gbdt(cfg: DictConfig) -> tuple[Result, Summary]:
    """Cross-validate the trees and write the folder: oof.csv, test_probs.csv, then the
    submission on the one road (the folder is an ensemble of one member, as a training run
    is) and metrics.json."""
    from hydra.utils import instantiate

    from podium.io import write_atomic, write_json
    from podium.submission.ensemble import Options, write_ensemble
    from podium.submission.members import Member, own_predictions

    from podium.threads import use_threads

    print(use_threads(cfg.get("threads", "auto")), flush=True)
    result = cross_validate_table(cfg)
    data, output_dir = result.data, Path(cfg.paths.output_dir)
    write_atomic(output_dir / run.OOF, result.oof.to_csv(index=False))
    write_atomic(output_dir / run.TEST_PROBS, result.test.to_csv(index=False))
    members = Member.from_folder(output_dir, cfg.paths, cfg=cfg,
                                 score_prior=result.score_prior)
    summary = write_ensemble(members, output_dir, data.sample,
                             [own_predictions(members[0], (), data.sample)],
                             Options(cfg.submission.format, instantiate(cfg.get("postprocess")),
                                     cfg.get("force", False), data.answers))
    write_json(output_dir / run.METRICS, {
        **summary.to_dict(), **summary.oof, "folds": data.n_folds, "failed": [],
        "monitor": f"oof/{cfg.metric.competition}", "mode": cfg.metric.mode,
        "competition": cfg.metric.competition, "model": model_name(data.task),
        "iterations": result.cv.iterations, "train_rows": len(data.train_ids),
        "score_prior": result.score_prior,
        "columns": {"numeric": len(result.columns.numeric),
                    "categorical": result.columns.categorical,
                    "categorical_as_codes": result.cv.ordinal},
    })
    return result, summary


def model_name(task: str) -> str:
    return "HistGradientBoosting" + ("Regressor" if task == "regression" else "Classifier")


def report(cfg: DictConfig, result: Result, summary: Summary) -> list[str]:
    """What `make gbdt` prints: the columns, the rounds, the one road's lines, the bar."""
    columns, cv = result.columns, result.cv
    codes = f" ({len(cv.ordinal)} with more than 255 levels as codes)" if cv.ordinal else ""
    lines = [f"gbdt: {model_name(result.data.task)}, {len(cv.iterations)} folds, boosting "
             f"rounds per fold {cv.iterations}; {len(columns.numeric)} numeric and "
             f"{len(columns.categorical)} categorical column(s){codes}"]
    lines += summary.lines()[1:]  # [0]: the folder itself, weight 1
    metric, setting = cfg.metric.competition, result.data.test_prior
    under = f" under data.test_prior={setting}" if setting not in ("train", "estimate") else ""
    lines.append(f"k-fold OOF {metric} (metric.competition) of the trees{under}: "
                 f"{result.score(metric):.4f}: the bar to beat")
    lines.append(f"run folder: {cfg.paths.output_dir}")
    return lines


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="gbdt")
@one_line_errors
def main(cfg: DictConfig) -> float:
    result, summary = gbdt(cfg)
    for line in report(cfg, result, summary):
        print(line)
    return result.score(cfg.metric.competition)


if __name__ == "__main__":
    main()
