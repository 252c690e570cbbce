"""The embedded demo is a real competition folder with a long-tailed training split."""

from __future__ import annotations

import numpy as np
import pandas as pd
from PIL import Image


def test_demo_folder_follows_the_data_contract(demo_root):
    train = pd.read_csv(demo_root / "train.csv", dtype=str)
    sample = pd.read_csv(demo_root / "sample_submission.csv", dtype=str)
    answers = pd.read_csv(demo_root / "answers.csv", dtype=str)
    assert list(train.columns) == ["id", "label"] == list(sample.columns)
    assert all((demo_root / "train" / f"{i}.png").is_file() for i in train.id)
    assert all((demo_root / "test" / f"{i}.png").is_file() for i in sample.id)
    assert list(answers.id) == list(sample.id)
    assert not set(train.id) & set(sample.id)
    assert np.asarray(Image.open(demo_root / "train" / f"{train.id[0]}.png")).shape == (8, 8)


def test_demo_training_split_is_long_tailed_and_test_balanced(demo_root):
    counts = pd.read_csv(demo_root / "train.csv", dtype=str).label.value_counts()
    assert len(counts) == 10
    assert counts.max() >= 10 * counts.min()
    test_counts = pd.read_csv(demo_root / "answers.csv", dtype=str).label.value_counts()
    assert test_counts.nunique() == 1
