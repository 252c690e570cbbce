"""The embedded demo competitions and their leaderboard, built from scikit-learn's data.

The image demo: scikit-learn's bundled handwritten digits.

Real data with no download: 1,797 8x8 grayscale digits. The training split is made
long-tailed (largest class >= 10x the smallest) so that the imbalance tools matter, the
test split is balanced, and a held-back `answers.csv` lets `make train` print a
leaderboard score. Labels are words ("zero" ... "nine") so the conversion of class
indices back to the competition's labels is visible in the submission. The tabular demos:
diabetes (regression) and breast cancer (binary). Nothing here is on the path of a real
competition: the datamodule builds a demo only at its own `demo_root`, and a run scores
the leaderboard only when an answer key exists. The multi-label demo: two digits side by
side, labelled with the set of digits shown.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from podium.errors import PodiumError

LABELS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
TEST_PER_CLASS = 60
IMBALANCE = 10.0  # largest / smallest training class


def long_tail_counts(largest: int, n_classes: int, imbalance: float) -> list[int]:
    """Exponential profile n_c = largest * imbalance^(-c / (C-1)) (Cui et al. 2019)."""
    return [int(largest * imbalance ** (-c / (n_classes - 1))) for c in range(n_classes)]


@contextmanager
def built_aside(root: Path) -> Iterator[Path]:
    """A temporary folder beside `root`, renamed to `root` when the block succeeds.

    Readers never see a half-built folder; when two processes build at once, the first
    rename wins and the other's copy is dropped.
    """
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}-", dir=root.parent))
    try:
        yield tmp
        os.replace(tmp, root)
    except OSError:
        if not (root / "train.csv").exists():
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def build_demo(root: str | Path, seed: int = 0) -> Path:
    """Write the demo competition folder at `root` (atomically: built aside, then renamed)."""
    from sklearn.datasets import load_digits

    root = Path(root)
    digits = load_digits()
    images = (digits.images * (255.0 / 16.0)).round().astype(np.uint8)
    rng = np.random.default_rng(seed)

    per_class = [rng.permutation(np.flatnonzero(digits.target == c)) for c in range(10)]
    test_idx = np.concatenate([idx[:TEST_PER_CLASS] for idx in per_class])
    pools = [idx[TEST_PER_CLASS:] for idx in per_class]
    counts = long_tail_counts(min(len(p) for p in pools), 10, IMBALANCE)
    train_idx = np.concatenate([pool[:n] for pool, n in zip(pools, counts, strict=False)])
    train_idx, test_idx = rng.permutation(train_idx), rng.permutation(test_idx)

    # Ids look like a real competition's: shuffled, zero-padded strings.
    ids = [f"{i:05d}" for i in rng.permutation(len(digits.target))]

    with built_aside(root) as tmp:
        for split, index in (("train", train_idx), ("test", test_idx)):
            (tmp / split).mkdir()
            for i in index:
                Image.fromarray(images[i], mode="L").save(tmp / split / f"{ids[i]}.png")
        labelled = lambda index: pd.DataFrame(  # noqa: E731
            {"id": [ids[i] for i in index], "label": [LABELS[digits.target[i]] for i in index]}
        )
        labelled(train_idx).to_csv(tmp / "train.csv", index=False)
        labelled(test_idx).to_csv(tmp / "answers.csv", index=False)
        sample = labelled(test_idx).assign(label=LABELS[0])
        sample.to_csv(tmp / "sample_submission.csv", index=False)
    return root


# -- the multi-label image demo ---------------------------------------------------------------
MULTILABEL_TRAIN, MULTILABEL_TEST = 600, 300
BLANK = 0.1  # chance that a half of a demo image holds no digit (both halves: no label)


def draw_pairs(pools: list[np.ndarray], n: int, weights: np.ndarray,
               rng: np.random.Generator) -> tuple[np.ndarray, list[list[int]]]:
    """`n` pairs of digit-image indices (-1: blank) drawn with class probabilities `weights`
    from per-class pools, and each pair's sorted set of digit classes."""
    classes = rng.choice(len(pools), size=(n, 2), p=weights / weights.sum())
    blank = rng.random((n, 2)) < BLANK
    pairs = np.array([[rng.choice(pools[c]) for c in row] for row in classes])
    pairs[blank] = -1
    sets = [sorted({int(c) for c, b in zip(row, hole, strict=True) if not b})
            for row, hole in zip(classes, blank, strict=True)]
    return pairs, sets


def build_multilabel_demo(root: str | Path, seed: int = 0) -> Path:
    """Write the multi-label demo at `root`: 8x16 images of two digits side by side
    (scikit-learn's digits; a half may be blank), labelled with the set of digits shown, as
    words, space-separated (an image of two blanks has an empty label). Training digits
    are long-tailed (IMBALANCE between the most and least frequent), test digits uniform,
    and the two are drawn from disjoint digit images. `answers.csv` holds the test sets."""
    from sklearn.datasets import load_digits

    root = Path(root)
    digits = load_digits()
    images = (digits.images * (255.0 / 16.0)).round().astype(np.uint8)
    rng = np.random.default_rng(seed)
    per_class = [rng.permutation(np.flatnonzero(digits.target == c)) for c in range(10)]
    test_pools = [idx[:TEST_PER_CLASS] for idx in per_class]
    train_pools = [idx[TEST_PER_CLASS:] for idx in per_class]
    tail = np.array(long_tail_counts(1000, 10, IMBALANCE), dtype=float)
    splits = {"train": draw_pairs(train_pools, MULTILABEL_TRAIN, tail, rng),
              "test": draw_pairs(test_pools, MULTILABEL_TEST, np.ones(10), rng)}
    ids = iter(f"{i:05d}" for i in rng.permutation(MULTILABEL_TRAIN + MULTILABEL_TEST))
    blank = np.zeros((8, 8), dtype=np.uint8)
    names = sorted(LABELS)  # the class order podium will use (and write the sets in)

    with built_aside(root) as tmp:
        tables = {}
        for split, (pairs, sets) in splits.items():
            (tmp / split).mkdir()
            split_ids = [next(ids) for _ in pairs]
            for image_id, pair in zip(split_ids, pairs, strict=True):
                halves = [images[i] if i >= 0 else blank for i in pair]
                Image.fromarray(np.hstack(halves), mode="L").save(tmp / split / f"{image_id}.png")
            labels = [" ".join(sorted((LABELS[c] for c in s), key=names.index)) for s in sets]
            tables[split] = pd.DataFrame({"id": split_ids, "labels": labels})
        tables["train"].to_csv(tmp / "train.csv", index=False)
        tables["test"].to_csv(tmp / "answers.csv", index=False)
        tables["test"].assign(labels=LABELS[0]).to_csv(tmp / "sample_submission.csv",
                                                        index=False)
    return root


# -- tabular demos --------------------------------------------------------------------------
# -- the embedded demos ---------------------------------------------------------------------
DEMOS = ("regression", "binary")


def build_tabular_demo(root: str | Path, kind: str, seed: int = 0,
                       test_fraction: float = 0.2) -> Path:
    """Write a demo folder from scikit-learn's bundled data (no download), atomically.

    regression: diabetes (442 rows, 10 features, `sex` as a text category so one-hot is
    exercised; target = disease progression, a float). binary: breast cancer (569 rows,
    30 features; target `malignant` | `benign`).
    """
    from sklearn.datasets import load_breast_cancer, load_diabetes

    if kind not in DEMOS:
        raise PodiumError(f"data.demo={kind} is unknown: use one of {', '.join(DEMOS)}")
    if kind == "regression":
        data = load_diabetes(as_frame=True, scaled=False)
        features = data.frame.drop(columns="target")
        features["sex"] = features["sex"].map({1.0: "a", 2.0: "b"})
        target = data.frame["target"].astype(float)
    else:
        data = load_breast_cancer(as_frame=True)
        features = data.frame.drop(columns="target")
        target = pd.Series(np.asarray(data.target_names)[data.target], name="target")
    return write_table_competition(root, features, target, seed, test_fraction)


def write_table_competition(root: str | Path, features: pd.DataFrame, target: pd.Series,
                            seed: int = 0, test_fraction: float = 0.2,
                            stratify: bool = False) -> Path:
    """A Kaggle-style table competition from labelled rows, atomically: a random
    `test_fraction` of the rows becomes the test set (train.csv: id, features, target;
    test.csv: id, features; sample_submission.csv: id + a placeholder target;
    answers.csv: the test rows' true targets). `stratify`: a class target keeps its class
    shares in both parts (scikit-learn's `train_test_split`; regression ignores it). Ids
    are shuffled row numbers, so they carry no signal; missing feature values are written
    as empty cells."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    n = len(features)
    ids = [f"{i:05d}" for i in rng.permutation(n)]
    order = rng.permutation(n)
    n_test = int(round(test_fraction * n))
    test_idx, train_idx = order[:n_test], order[n_test:]
    table = features.reset_index(drop=True).assign(target=np.asarray(target))
    table.insert(0, "id", ids)
    regression = pd.api.types.is_float_dtype(table["target"])
    if stratify and not regression:
        from sklearn.model_selection import train_test_split

        train_idx, test_idx = train_test_split(np.arange(n), test_size=n_test,
                                               random_state=seed, stratify=table["target"])

    with built_aside(root) as tmp:
        table.iloc[train_idx].to_csv(tmp / "train.csv", index=False)
        table.iloc[test_idx].drop(columns="target").to_csv(tmp / "test.csv", index=False)
        table.iloc[test_idx][["id", "target"]].to_csv(tmp / "answers.csv", index=False)
        placeholder = 0.0 if regression else str(table["target"].iloc[0])
        sample = table.iloc[test_idx][["id"]].assign(target=placeholder)
        sample.to_csv(tmp / "sample_submission.csv", index=False)
    return root



def build_if_missing(root: Path, kind: str | None, train_csv: str = "train.csv") -> None:
    """Build the demo `kind` (None: the image demo, else a tabular one) at `root` unless it
    is there already (the datamodule calls this only at the demo's own path)."""
    import logging

    if (Path(root) / train_csv).exists():
        return
    logging.getLogger(__name__).info("building the %s demo competition in %s",
                                     kind or "image", root)
    if kind == "multilabel":
        build_multilabel_demo(root)
    elif kind:
        build_tabular_demo(root, kind)
    else:
        build_demo(root)


# -- the demo leaderboard -------------------------------------------------------------------
def main() -> None:
    """`make demo-data`: (re)build data/demo if it is missing."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--root", default="data/demo")
    root = Path(parser.parse_args().root)
    if (root / "train.csv").exists():
        print(f"{root} already exists; delete it to rebuild")
    else:
        print(f"built {build_demo(root)}")


if __name__ == "__main__":
    main()
