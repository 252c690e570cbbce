"""Bad input stops with one line naming the problem and the fix, and leaves no submission."""

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


def test_nan_loss_stops_with_one_line_and_keeps_checkpoints(demo_root, tmp_path):
    # lr=1e30 makes the weights overflow within a few steps.
    proc = run_cli("podium.train", f"data.root={demo_root}", f"data.demo_root={demo_root}",
                   f"paths.log_dir={tmp_path}", "optimizer.lr=1e30",
                   "trainer.max_epochs=3", check=False)
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: training loss became") and "optimizer.lr" in last
    assert not list(tmp_path.rglob("submission*.csv"))
