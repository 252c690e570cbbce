"""Bad input stops `python -m podium.train` with one line naming the problem and the fix
(exit code 2), and leaves no submission. (A NaN loss: tests/test_what_happens.py.)"""

from __future__ import annotations

import shutil

import pandas as pd
import pytest

from conftest import run_cli


def broken_copy(demo_root, tmp_path, breakage):
    root = tmp_path / "comp"
    shutil.copytree(demo_root, root)
    breakage(root)
    return root


def drop_column(root):
    pd.read_csv(root / "train.csv", dtype=str).rename(columns={"label": "target"}).to_csv(
        root / "train.csv", index=False)


def delete_train_image(root):
    first = pd.read_csv(root / "train.csv", dtype=str).id[0]
    (root / "train" / f"{first}.png").unlink()


def add_unknown_test_id(root):
    sample = pd.read_csv(root / "sample_submission.csv", dtype=str)
    sample.loc[len(sample)] = ["99999", "zero"]
    sample.to_csv(root / "sample_submission.csv", index=False)


CASES = {
    "missing root": (None, "data.root=", "is not a folder"),
    "missing train.csv": (lambda r: (r / "train.csv").unlink(), "train.csv not found", ""),
    "missing column": (drop_column, "column 'label' not found", "data.target_col"),
    "missing train image": (delete_train_image, "image(s) missing", "data.train_images"),
    "sample id without image": (add_unknown_test_id, "99999", "test"),
}


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_one_line(case, demo_root, tmp_path):
    breakage, *expected = CASES[case]
    root = tmp_path / "nowhere" if breakage is None else broken_copy(demo_root, tmp_path, breakage)
    proc = run_cli("podium.train", f"data.root={root}", f"paths.log_dir={tmp_path / 'logs'}",
                   "debug=fdr", check=False)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith("error: ") and "Traceback" not in proc.stderr
    for text in expected:
        assert text in lines[-1]
    assert not list((tmp_path / "logs").rglob("submission*.csv"))
