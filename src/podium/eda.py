"""`make eda [ARGS=...]`: what the data says about scores before any training.

Class distribution (table + bar chart), imbalance ratio, and what two models that learn
nothing score on every configured metric over the validation split the runs will use:
a constant majority-class prediction and a random guess drawn from the class prior
(scikit-learn's DummyClassifier `most_frequent` and `stratified`, fitted on the training
split). Writes `class_distribution.png` and `eda.json` into `logs/eda/<data>/<time>/`.
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


def baseline_scores(labels: np.ndarray, train_idx: np.ndarray, val_idx: np.ndarray,
                    num_classes: int, k: int, seed: int) -> dict[str, dict[str, float]]:
    """Every metric of the multiclass collection for two DummyClassifiers on the val split."""
    import torch
    from sklearn.dummy import DummyClassifier

    from podium.model.metrics import classification_metrics

    scores = {}
    features = np.zeros((len(labels), 1))
    for strategy, name in (("most_frequent", "majority"), ("stratified", "prior_random")):
        dummy = DummyClassifier(strategy=strategy, random_state=seed)
        dummy.fit(features[train_idx], labels[train_idx])
        predicted = dummy.predict(features[val_idx])
        probs = torch.nn.functional.one_hot(torch.tensor(predicted), num_classes).float()
        metrics = classification_metrics(num_classes, k=k)
        values = metrics(probs, torch.tensor(labels[val_idx]))
        scores[name] = {key: float(v) for key, v in values.items()}
    return scores


def class_distribution_png(path: Path, names: list[str], counts: list[int]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(4.0, 0.5 * len(names) + 2), 3.2))
    ax.bar([str(n) for n in names], counts, color="#4c72b0")
    ax.set_ylabel("training images")
    ax.set_title(f"class distribution (imbalance {max(counts) / min(counts):.1f}:1)")
    ax.tick_params(axis="x", rotation=45 if len(names) > 8 else 0)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def eda(cfg: DictConfig) -> dict:
    from hydra.utils import instantiate
    from rich.console import Console
    from rich.table import Table

    from podium.io import write_json

    if cfg.data.get("task", "multiclass") in ("regression", "multilabel"):
        raise PodiumError(f"make eda covers single-label classification data (data.task="
                          f"{cfg.data.task} is not; a multi-label run's report/per_class.csv "
                          f"has each label's support)")
    data = instantiate(cfg.data)
    data.prepare_data()
    data.split()
    names, labels, train_idx, val_idx = data.class_names, data.labels, data.train_idx, data.val_idx
    counts = np.bincount(labels, minlength=len(names)).tolist()
    k = cfg.get("metric", {}).get("k", 3) or 3
    scores = baseline_scores(labels, train_idx, val_idx, len(names), k, data.seed)

    output_dir = Path(cfg.paths.output_dir)
    console = Console()
    table = Table(title=f"{data.root}: {len(labels)} training rows, {len(names)} classes")
    for column in ("class", "count", "share"):
        table.add_column(column, justify="left" if column == "class" else "right")
    for name, count in sorted(zip(names, counts, strict=True), key=lambda x: -x[1]):
        table.add_row(str(name), str(count), f"{count / len(labels):.1%}")
    console.print(table)
    ratio = max(counts) / max(min(counts), 1)
    console.print(f"imbalance ratio (largest / smallest class): {ratio:.1f}")

    baselines = Table(title=f"baselines on the validation split ({len(val_idx)} rows)")
    baselines.add_column("metric")
    for name in scores:
        baselines.add_column(name, justify="right")
    for key in scores["majority"]:
        baselines.add_row(key, *(f"{scores[s][key]:.4f}" for s in scores))
    console.print(baselines)
    majority = scores["majority"]
    text = EXPLANATION.format(majority_acc=majority["acc"], others=len(names) - 1,
                              majority_f1=majority["f1_macro"],
                              majority_bacc=majority["balanced_acc"])
    console.print(text)

    png = class_distribution_png(output_dir / "class_distribution.png", names, counts)
    summary = {"classes": dict(zip(map(str, names), counts, strict=True)),
               "imbalance_ratio": ratio, "validation_rows": len(val_idx),
               "baselines": scores, "explanation": text, "plot": str(png)}
    write_json(output_dir / "eda.json", summary)
    print(f"eda folder: {output_dir}")
    return summary


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
@one_line_errors
def main(cfg: DictConfig) -> None:
    eda(cfg)


if __name__ == "__main__":
    main()
