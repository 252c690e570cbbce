"""The embedded demo competition, built from scikit-learn's bundled handwritten digits.

Real data with no download: 1,797 8x8 grayscale digits. The training split is made
long-tailed (largest class >= 10x the smallest) so that the imbalance tools matter, the
test split is balanced, and a held-back `answers.csv` lets `make train` print a
leaderboard score. Labels are words ("zero" ... "nine") so the conversion of class
indices back to the competition's labels is visible in the submission.
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
