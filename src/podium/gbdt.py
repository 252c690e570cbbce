"""`python -m podium.gbdt gbdt=lightgbm|catboost|xgboost|hgb [overrides]`: the field's
gradient-boosting libraries on a table, the bar a tabular network must beat.

The booster (podium.model.boosters, conf/gbdt/<name>.yaml) cross-validated on the same
data config, folds and seed as `make cv`, each fold stopped early on the same inner split
of its training rows (podium.model.gbdt), written as a cross-validation folder
(`logs/gbdt/<booster>/<time>/`): `oof.csv` (every training id once, with its fold),
`test_probs.csv` (the folds' models averaged), `metrics.json` (the OOF score of every
metric, `folds`, rounds and seconds per fold), `feature_importance.csv` and
`report/feature_importance.png`, `models/` (each fold's model in its library's own format
and `features.json`: `make predict` and `make export` read them) and `submission.csv` made
on the one road (podium.submission.ensemble), with the composed config in
`.hydra/config.yaml`. `make submit`, `make runs`, post-processing and thresholds take the
folder as one more member. `bar_to_beat(cfg)` is the same k-fold OOF score without writing
anything (for `make eda`).
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

    from podium.data.splits import Split
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


def fold_indices(data: TabularDataModule, nested: bool = False) -> list[tuple]:
    """Every fold's (train, held-out) row indices: `split_indices` with the arguments the
    datamodule's own `split()` gives it for `data.fold=f`, so fold f is `make cv`'s fold f.
    `nested`: (train, inner, held-out) (podium.data.splits.Split: `nested_split`), the
    inner split the fold's network would validate on carved from its training rows."""
    from podium.data.splits import nested_split, split_indices

    groups = None
    if data.group_col:
        from podium.io import read_csv

        groups = read_csv(data.root / data.train_csv, [data.group_col],
                          "the training labels")[data.group_col].tolist()
    split = nested_split if nested else split_indices
    return [split(data.labels, data.class_names, data.val_fraction, data.seed, data.n_folds,
                  fold, groups, stratify=data.task != "regression")
            for fold in range(data.n_folds)]


def label_text(data: TabularDataModule, rows) -> list:
    """The true labels of `rows` as oof.csv spells them (a class name, or the value)."""
    if data.task == "regression":
        return data.labels[rows].tolist()
    return [data.class_names[i] for i in data.labels[rows]]


def cross_validate_table(cfg: DictConfig, progress: bool = True) -> Result:
    """Read the table, fit one model per fold (`progress`: a line as each finishes), score
    the OOF predictions (nothing written)."""
    from podium.config import resolve_data
    from podium.model.gbdt import column_kinds, cross_validate
    from podium.model.metrics import resolve_metric

    resolve_data(cfg)  # a table folder under data=image; data.task=auto: the folder's task
    resolve_metric(cfg, announce=True)
    data = read_table(cfg)
    columns = column_kinds(data.train_frame, data.features, data.categorical_cols,
                           data.root / data.train_csv)
    folds: list[Split] = fold_indices(data, nested=True)
    factor = class_factor(cfg, data)
    if factor is not None and progress:
        shares = ", ".join(f"{c} {w:.3g}" for c, w in zip(data.class_names, factor, strict=True))
        print(f"gbdt: each row weighs its class's factor from loss "
              f"{cfg.loss._target_.rsplit('.', 1)[-1]}: {shares}", flush=True)
    carried, test_prior = priors(data, factor)
    metric = cfg.metric.competition

    def report_fold(fold: int, cv: CrossValidation) -> None:
        held_out = folds[fold].oof
        score = scores(data, oof_rows(data, cv, held_out, fold), carried, test_prior,
                       cfg.metric.k)[f"oof/{metric}"]
        cut = " (its share of the deadline ended it)" if cv.models[-1].out_of_time else ""
        print(f"fold {fold + 1}/{len(folds)}: {cv.seconds[-1]:.1f} s, {cv.iterations[-1]} "
              f"rounds{cut}, OOF {metric} {score:.4f} ({len(held_out)} rows)", flush=True)
    cv = cross_validate(data.train_frame, data.test_frame, data.labels, folds, columns,
                        data.task, len(data.class_names), booster_config(cfg),
                        int(data.seed), data.target_transform, factor,
                        report_fold if progress else None, cfg.get("deadline"))
    oof = oof_rows(data, cv, np.concatenate([f.oof for f in folds]))
    test = run.probs_frame(data.test_ids, cv.test, data.class_names, data.id_col)
    names = [str(c) for c in data.class_names]
    score_prior = {} if carried is None else dict(zip(names, carried.tolist(), strict=True))
    return Result(data, columns, cv, oof, test, scores(data, oof, carried, test_prior,
                                                       cfg.metric.k), score_prior)


def booster_config(cfg: DictConfig) -> dict:
    """The `gbdt` group's booster config as a dict (name, rounds, early_stopping, params)."""
    from omegaconf import OmegaConf

    gbdt = cfg.get("gbdt")
    if gbdt is None or "name" not in gbdt:
        raise PodiumError("no booster chosen: give gbdt=lightgbm | catboost | xgboost | hgb")
    return OmegaConf.to_container(gbdt, resolve=True)


def oof_rows(data: TabularDataModule, cv: CrossValidation, rows, fold: int | None = None
             ) -> pd.DataFrame:
    """oof.csv's frame of `rows` (training-row indices), each with its fold (or `fold`)."""
    import pandas as pd

    folds = cv.fold[rows] if fold is None else np.full(len(rows), fold)
    frames = [run.oof_frame([data.train_ids[i] for i in rows[folds == k]],
                            cv.oof[rows[folds == k]], data.class_names, data.id_col, int(k),
                            data.target_col, label_text(data, rows[folds == k]))
              for k in np.unique(folds)]
    return pd.concat(frames, ignore_index=True)


def scores(data: TabularDataModule, oof: pd.DataFrame, carried: np.ndarray | None,
           test_prior: np.ndarray | None, k: int) -> dict[str, float]:
    """Every metric of the task on OOF rows (`oof/<metric>`), under the test prior as a
    network's are: moved there by Bayes' rule from the prior they carry, and weighted."""
    from podium.submission.oof import oof_scores

    names = [str(c) for c in data.class_names]
    if test_prior is not None:
        from podium.prior import shift

        oof = oof.copy()
        oof[names] = shift(oof[names].to_numpy(np.float64), carried, test_prior)
    return oof_scores(oof, names, data.target_col, data.task, k, test_prior)


def class_factor(cfg: DictConfig, data: TabularDataModule) -> np.ndarray | None:
    """The per-class factor a classification `loss` puts on the training prior, as the
    network's loss applies it (its `prior_factor`: loss=weighted_ce's class weights, focal's
    alpha, ...), from the table's class counts: each tree row weighs its class's. None: no
    loss given (or it changes no class's weight)."""
    from podium import prior

    if data.task not in prior.CLASSIFICATION or not cfg.get("loss"):
        return None
    from podium.build import build_loss

    loss = build_loss(cfg, np.bincount(data.labels, minlength=len(data.class_names)).tolist())
    factor = getattr(loss, "prior_factor", getattr(loss, "weight", None))
    if factor is None:
        return None
    return np.asarray(factor.detach().cpu() if hasattr(factor, "detach") else factor,
                      dtype=np.float64)


def priors(data: TabularDataModule, factor: np.ndarray | None = None
           ) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(the class prior the trees' probabilities carry, the test prior): the training
    table's class shares times the loss's class `factor` (each fold's model fits near them:
    podium.prior.score_prior) and `data.test_prior` resolved (None for train and estimate;
    (None, None) without classes)."""
    from podium import prior

    prior.check_setting(data.test_prior, data.task)
    if data.task not in prior.CLASSIFICATION:
        return None, None
    carried = np.bincount(data.labels, minlength=len(data.class_names)).astype(np.float64)
    if factor is not None:
        carried = carried * factor
    return carried / carried.sum(), prior.resolve(data.test_prior, data.class_names, data.root)


def bar_to_beat(cfg: DictConfig, n_folds: int | None = None) -> float:
    """The k-fold OOF score of `metric.competition` that the default booster (conf/gbdt.yaml's
    choice) reaches on this table: what a tabular network has to beat. `cfg`: any config with
    `data` (make eda's, a training run's, conf/gbdt.yaml's); the booster is its `gbdt`, else
    the default's file; the folds `n_folds`, else `data.n_folds`, else 5 (with `cfg`'s seed:
    make cv's folds). Nothing is written, nothing printed per fold."""
    from omegaconf import open_dict

    cfg = cfg.copy()
    with open_dict(cfg):
        if cfg.get("gbdt") is None:
            cfg.gbdt = default_booster()
        cfg.data.n_folds = n_folds or cfg.data.get("n_folds") or 5
        cfg.data.fold = None
    return cross_validate_table(cfg, progress=False).score(cfg.metric.competition)


def default_booster() -> DictConfig:
    """conf/gbdt/<the booster conf/gbdt.yaml's defaults choose>.yaml."""
    from omegaconf import OmegaConf

    defaults = OmegaConf.load(Path(CONFIG_DIR) / "gbdt.yaml").defaults
    [name] = [d["gbdt"] for d in defaults if isinstance(d, DictConfig) and "gbdt" in d]
    return OmegaConf.load(Path(CONFIG_DIR) / "gbdt" / f"{name}.yaml")


def gbdt(cfg: DictConfig) -> tuple[Result, Summary]:
    """Cross-validate the trees and write the folder: oof.csv, test_probs.csv, the fold
    models and the feature importance, then the submission on the one road (the folder is
    an ensemble of one member, as a training run is) and metrics.json."""
    from hydra.utils import instantiate

    from podium.io import write_atomic, write_json
    from podium.model.boosters import BOOSTERS
    from podium.model.gbdt import importance_frame, plot_importance, save_models
    from podium.submission.ensemble import Options, write_ensemble
    from podium.submission.members import Member, own_predictions
    from podium.threads import use_threads

    print(use_threads(cfg.get("threads", "auto")), flush=True)
    result = cross_validate_table(cfg)
    data, cv, output_dir = result.data, result.cv, Path(cfg.paths.output_dir)
    name = cfg.gbdt.name
    write_atomic(output_dir / run.OOF, result.oof.to_csv(index=False))
    write_atomic(output_dir / run.TEST_PROBS, result.test.to_csv(index=False))
    if BOOSTERS[name].SUFFIX:  # scikit-learn's trees save only by pickle: not saved
        save_models(output_dir, cv, result.columns, name, data.task, data.class_names,
                    data.target_transform, data.made_frame_features())
    importance = importance_frame(cv, result.columns)
    write_atomic(output_dir / IMPORTANCE, importance.to_csv(index=False), replace=True)
    plot_importance(importance, output_dir / "report" / "feature_importance.png",
                    f"{model_name(name, data.task)}: feature importance "
                    f"({BOOSTERS[name].IMPORTANCE}, mean over {len(cv.models)} folds)")
    members = Member.from_folder(output_dir, cfg.paths, cfg=cfg,
                                 score_prior=result.score_prior)
    summary = write_ensemble(members, output_dir, data.sample,
                             [own_predictions(members[0], (), data.sample)],
                             Options(cfg.submission.format, instantiate(cfg.get("postprocess")),
                                     cfg.get("force", False), data.answers))
    write_json(output_dir / run.METRICS, {
        **summary.to_dict(), **summary.oof, "folds": data.n_folds, "failed": [],
        "monitor": f"oof/{cfg.metric.competition}", "mode": cfg.metric.mode,
        "competition": cfg.metric.competition, "model": model_name(name, data.task),
        "booster": name, "iterations": cv.iterations,
        "fold_seconds": [round(t, 3) for t in cv.seconds], "train_rows": len(data.train_ids),
        "score_prior": result.score_prior,
        "columns": {"numeric": len(result.columns.numeric),
                    "categorical": result.columns.categorical,
                    "categorical_as_codes": cv.ordinal},
    })
    return result, summary


IMPORTANCE = "feature_importance.csv"


def model_name(name: str, task: str) -> str:
    """The booster as metrics.json and the report name it."""
    from podium.model.boosters import BOOSTERS

    label = BOOSTERS[name].LABEL
    if name == "hgb":
        return label + ("Regressor" if task == "regression" else "Classifier")
    return label


def report(cfg: DictConfig, result: Result, summary: Summary) -> list[str]:
    """What `make gbdt` prints after the fold lines: the columns, the rounds, the one road's
    lines, the bar."""
    columns, cv = result.columns, result.cv
    codes = f" ({len(cv.ordinal)} with more than 255 levels as codes)" if cv.ordinal else ""
    lines = [f"gbdt: {model_name(cfg.gbdt.name, result.data.task)}, {len(cv.iterations)} "
             f"folds, boosting rounds per fold {cv.iterations} ({sum(cv.seconds):.1f} s); "
             f"{len(columns.numeric)} numeric and {len(columns.categorical)} categorical "
             f"column(s){codes}"]
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
