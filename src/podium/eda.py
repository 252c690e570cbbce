"""`make eda [ARGS=...]`: what the data says about scores before any training.

Every single-label task:
- the target: classification: the class distribution (table + bar chart) and imbalance
  ratio; regression: its moments and skew (histogram), and `data.target_transform=log1p`
  suggested when the target is positive and heavily right-skewed (podium.data.profile);
- what models that learn nothing score on every metric of the task (binary: AUROC too)
  over the validation split the runs will use: classification, a constant majority-class
  prediction and a random guess drawn from the class prior (scikit-learn's DummyClassifier
  `most_frequent` and `stratified`); regression, the training mean and median
  (DummyRegressor), all fitted on the training split.
A table also gets (podium.data.profile): each column's kind as a run reads it (numeric,
categorical, text-like, id-like, constant), missing share and cardinality; each column
(and the id column) scored alone out-of-fold, a near-perfect one flagged as a possible leak;
and the default booster's (LightGBM's) k-fold OOF score on make cv's folds
(podium.gbdt.bar_to_beat, the score `make gbdt` writes): the bar to beat.
Writes a plot and `eda.json` into `logs/eda/<data>/<time>/`.
"""

from __future__ import annotations

from pathlib import Path

import hydra
import numpy as np
from omegaconf import DictConfig

from podium.config import CONFIG_DIR
from podium.errors import PodiumError, one_line_errors

EXPLANATION = (
    "A model that always predicts the majority class scores its share of the data on "
    "accuracy ({majority_acc:.1%} here) while being useless: it never finds a single "
    "example of the other {others} classes, which macro-averaged scores (macro-F1 "
    "{majority_f1:.3f}, balanced accuracy {majority_bacc:.3f}) expose at once. Judge a "
    "model by how far it climbs above these baselines on the competition's metric, not "
    "by its accuracy."
)
REGRESSION_EXPLANATION = (
    "Predicting the training mean for every row scores MAE {mean_mae:.4g} and R2 "
    "{mean_r2:.3f}; the median, MAE {median_mae:.4g} (the median is what minimises MAE). A "
    "model has learned something only as far as it climbs above these on the competition's "
    "metric."
)
FOLDS = 5  # the single-column scores and the bar, when data.n_folds is not given


def baseline_scores(labels: np.ndarray, train_idx: np.ndarray, val_idx: np.ndarray,
                    num_classes: int, k: int, seed: int, task: str = "multiclass",
                    ) -> dict[str, dict[str, float]]:
    """Every metric of the task's collection for two do-nothing models on the val split:
    DummyClassifier most_frequent / stratified (their predicted labels, one-hot), or
    DummyRegressor mean / median."""
    import torch
    from sklearn.dummy import DummyClassifier, DummyRegressor

    from podium.model.metrics import task_metrics

    features = np.zeros((len(labels), 1))
    if task == "regression":
        models = {"mean": DummyRegressor(strategy="mean"),
                  "median": DummyRegressor(strategy="median")}
    else:
        models = {"majority": DummyClassifier(strategy="most_frequent", random_state=seed),
                  "prior_random": DummyClassifier(strategy="stratified", random_state=seed)}
    scores = {}
    for name, dummy in models.items():
        dummy.fit(features[train_idx], labels[train_idx])
        predicted = torch.tensor(dummy.predict(features[val_idx]))
        if task == "regression":
            preds, target = predicted.float(), torch.tensor(labels[val_idx]).float()
        else:
            preds = torch.nn.functional.one_hot(predicted, num_classes).float()
            target = torch.tensor(labels[val_idx])
        values = task_metrics(task, num_classes, k)(preds, target)
        scores[name] = {key: float(v) for key, v in values.items()}
    return scores


def class_distribution_png(path: Path, names: list[str], counts: list[int]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(4.0, 0.5 * len(names) + 2), 3.2))
    ax.bar([str(n) for n in names], counts, color="#4c72b0")
    ax.set_ylabel("training rows")
    ax.set_title(f"class distribution (imbalance {max(counts) / max(min(counts), 1):.1f}:1)")
    ax.tick_params(axis="x", rotation=45 if len(names) > 8 else 0)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def target_histogram_png(path: Path, y: np.ndarray, skew: float) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.0, 3.2))
    ax.hist(y, bins=min(50, max(10, len(y) // 20)), color="#4c72b0")
    ax.set_xlabel("target")
    ax.set_ylabel("training rows")
    ax.set_title(f"target distribution (skew {skew:.2f})")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def classification_section(console, data, scores: dict) -> tuple[dict, str, str]:
    """The class table and imbalance line; (summary fields, explanation, plot path)."""
    from rich.table import Table

    names, labels = data.class_names, data.labels
    counts = np.bincount(labels, minlength=len(names)).tolist()
    table = Table(title=f"{data.root}: {len(labels)} training rows, {len(names)} classes")
    for column in ("class", "count", "share"):
        table.add_column(column, justify="left" if column == "class" else "right")
    for name, count in sorted(zip(names, counts, strict=True), key=lambda x: -x[1]):
        table.add_row(str(name), str(count), f"{count / len(labels):.1%}")
    console.print(table)
    ratio = max(counts) / max(min(counts), 1)
    console.print(f"imbalance ratio (largest / smallest class): {ratio:.1f}")
    majority = scores["majority"]
    text = EXPLANATION.format(majority_acc=majority["acc"], others=len(names) - 1,
                              majority_f1=majority["f1_macro"],
                              majority_bacc=majority["balanced_acc"])
    return ({"classes": dict(zip(map(str, names), counts, strict=True)),
             "imbalance_ratio": ratio}, text, "class_distribution.png")


def regression_section(console, data, scores: dict) -> tuple[dict, str, str]:
    """The target's moments and skew, with the log1p suggestion when it fits."""
    from rich.table import Table

    from podium.data.profile import SKEWED, target_profile

    target = target_profile(data.labels, "regression", ())
    table = Table(title=f"{data.root}: {len(data.labels)} training rows, target column "
                        f"'{data.target_col}'")
    for key in ("mean", "std", "min", "median", "max", "skew"):
        table.add_column(key, justify="right")
    table.add_row(*(f"{target[k]:.4g}" for k in ("mean", "std", "min", "median", "max",
                                                 "skew")))
    console.print(table)
    if target["suggest_log1p"]:
        console.print(f"the target is positive and right-skewed (skew {target['skew']:.2f} > "
                      f"{SKEWED}; after log1p {target['skew_log1p']:.2f}): try "
                      f"data.target_transform=log1p (learned as log1p(y), predicted back in "
                      f"y's units; the large values stop dominating the loss)")
    else:
        console.print(f"target skew {target['skew']:.2f}: no transform suggested "
                      f"(log1p is suggested for a positive target skewed above {SKEWED})")
    text = REGRESSION_EXPLANATION.format(mean_mae=scores["mean"]["mae"],
                                         mean_r2=scores["mean"]["r2"],
                                         median_mae=scores["median"]["mae"])
    return {"target": target}, text, "target_distribution.png"


def table_section(console, cfg: DictConfig, data) -> dict:
    """Columns (kind, missing, cardinality, single-column score, leaks) and the bar."""
    import pandas as pd
    from rich.table import Table

    from podium.data.profile import LEAK_SCORE, ColumnProfile, as_dicts, column_profiles, flag_leaks
    from podium.gbdt import bar_to_beat, default_booster, fold_indices, model_name

    profiles = column_profiles(data.train_frame, data.features, data.root / data.train_csv,
                               data.categorical_cols)
    ids = pd.Series([str(i) for i in data.train_ids], name=data.id_col)
    profiles.append(ColumnProfile(data.id_col, "id column", 0.0, int(ids.nunique())))
    frame = data.train_frame.assign(**{data.id_col: ids.to_numpy()})
    n_folds = int(cfg.data.get("n_folds") or FOLDS)
    data.n_folds = n_folds  # make cv FOLDS=n_folds's folds (the hold-out split is kept)
    folds = fold_indices(data)
    flag_leaks(profiles, frame, data.labels, folds, data.task, len(data.class_names),
               int(data.seed))

    scale = "R2" if data.task == "regression" else "AUROC"
    table = Table(title=f"columns ({len(data.features)} features + the id column; alone: "
                        f"{n_folds}-fold OOF {scale} of a tiny model on that column)")
    for column in ("column", "kind", "missing", "distinct", f"alone ({scale})", ""):
        table.add_column(column, justify="left" if column in ("column", "kind", "")
                         else "right")
    for p in profiles:
        table.add_row(p.name, p.kind, f"{p.missing:.1%}", str(p.distinct),
                      "" if p.single_score is None else f"{p.single_score:.3f}",
                      "possible leak" if p.leak else "")
    console.print(table)
    for kind, why in (("id-like", "a value unique to every row: a run drops it"),
                      ("text-like", "free text, distinct in most rows: a run drops it; keep "
                                    "it as categories with data.categorical_cols=[...]"),
                      ("constant", "one value in every row: a run drops it")):
        named = [p.name for p in profiles if p.kind == kind]
        if named:
            console.print(f"{kind}: {', '.join(named)} ({why})")
    leaks = [p for p in profiles if p.leak]
    for p in leaks:
        fix = ("ids numbered in the target's order: check how the ids were made"
               if p.kind == "id column" else
               f"check how it is made; leave it out with data.drop_cols=[{p.name}]")
        console.print(f"possible leak: {p.name} alone scores {n_folds}-fold OOF {scale} "
                      f"{p.single_score:.3f} (>= {LEAK_SCORE}): {fix}")
    metric = cfg.metric.competition
    bar = bar_to_beat(cfg, n_folds)
    trees = model_name((cfg.get("gbdt") or default_booster()).name, data.task)
    console.print(f"{trees} {n_folds}-fold OOF {metric} (metric.competition): "
                  f"{bar:.4f}: the bar to beat (make gbdt FOLDS={n_folds} writes it as a "
                  f"folder; make cv EXP=tabular FOLDS={n_folds} should beat it, and make "
                  f"submit RUN=\"<cv> <gbdt>\" ARGS=\"weights=auto\" blend them)")
    return {"columns": as_dicts(profiles), "leaks": [p.name for p in leaks],
            "leak_threshold": LEAK_SCORE, "single_column_scale": scale, "folds": n_folds,
            "bar_to_beat": {"model": trees, "metric": metric,
                            "folds": n_folds, "oof": bar}}


def eda(cfg: DictConfig) -> dict:
    from hydra.utils import instantiate
    from rich.console import Console
    from rich.table import Table

    from podium.config import resolve_data
    from podium.data.tabular import TabularDataModule
    from podium.io import write_json
    from podium.model.metrics import resolve_metric

    resolve_data(cfg)  # a table folder read as a table; data.task=auto from the target
    task = cfg.data.get("task", "multiclass")
    if task == "multilabel":
        raise PodiumError("make eda covers single-label data (data.task=multilabel is not; a "
                          "multi-label run's report/per_class.csv has each label's support)")
    resolve_metric(cfg)
    data = instantiate(cfg.data)
    data.prepare_data()
    data.split()
    k = cfg.get("metric", {}).get("k", 3) or 3
    scores = baseline_scores(data.labels, data.train_idx, data.val_idx,
                             len(data.class_names), k, data.seed, data.task)

    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    # one line a message (copyable), brackets as typed (data.drop_cols=[a]), not markup
    console = Console(soft_wrap=True, markup=False, highlight=False)
    section = regression_section if data.task == "regression" else classification_section
    fields, text, plot = section(console, data, scores)

    baselines = Table(title=f"do-nothing baselines on the validation split "
                            f"({len(data.val_idx)} rows)")
    baselines.add_column("metric")
    for name in scores:
        baselines.add_column(name, justify="right")
    for key in next(iter(scores.values())):
        baselines.add_row(key, *(f"{scores[s][key]:.4f}" for s in scores))
    console.print(baselines)
    console.print(text)

    if data.task == "regression":
        png = target_histogram_png(output_dir / plot, data.labels.astype(float),
                                   fields["target"]["skew"])
    else:
        counts = list(fields["classes"].values())
        png = class_distribution_png(output_dir / plot, list(data.class_names), counts)
    summary = {"task": data.task, "train_rows": len(data.labels), **fields,
               "validation_rows": len(data.val_idx), "competition": cfg.metric.competition,
               "baselines": scores, "explanation": text, "plot": str(png)}
    if isinstance(data, TabularDataModule):
        summary.update(table_section(console, cfg, data))
    write_json(output_dir / "eda.json", summary)
    print(f"eda folder: {output_dir}")
    return summary


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
@one_line_errors
def main(cfg: DictConfig) -> None:
    eda(cfg)


if __name__ == "__main__":
    main()
