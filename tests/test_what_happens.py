"""Every row of README's "What happens when ..." table, driven against the real code.

The expected text is read from README.md itself, so the table and the behaviour cannot
drift apart: `<root>` stands for the competition folder, digits may differ (ids, steps),
and a message ending in "..." is compared up to there.
"""

from __future__ import annotations

import gzip
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch
from PIL import Image

from conftest import ROOT, run_cli
from podium.data.image import ImageDataModule
from podium.errors import PodiumError


def readme_rows() -> dict[str, str]:
    text = (ROOT / "README.md").read_text()
    table = text.split("## What happens when ...")[1].split("\n## ")[0]
    rows = re.findall(r"^\| (.+?) \| (.+) \|$", table, flags=re.M)
    return {when: said for when, said in rows if when not in ("when ...", "---")}


ROWS = readme_rows()


def normalise(message: str) -> str:
    return re.sub(r"\d+", "#", message.strip().strip("`"))


def assert_says(actual: str, row: str) -> None:
    expected = normalise(ROWS[row])
    actual = normalise(actual)
    if expected.endswith("..."):
        assert actual.startswith(expected[:-3]), actual
    else:
        assert actual == expected, actual


def copy_demo(demo_root: Path, tmp_path: Path) -> Path:
    root = tmp_path / "comp"
    shutil.copytree(demo_root, root)
    return root


def edit_csv(root: Path, change, name: str = "train.csv") -> None:
    frame = pd.read_csv(root / name, dtype=str, keep_default_na=False)
    change(frame).to_csv(root / name, index=False)


def first_id(root: Path) -> str:
    return pd.read_csv(root / "train.csv", dtype=str).id[0]


def setup_error(root: Path, **kwargs) -> str:
    if (root / "test.csv").is_file():  # listed_test_paths: the test images listed in test.csv
        kwargs = {"path_col": "path", "test_csv": "test.csv", **kwargs}
    with pytest.raises(PodiumError) as err:
        ImageDataModule(root=str(root), **kwargs).setup("fit")
    return "error: " + str(err.value).replace(str(root), "<root>")


BREAKAGES = {
    "`train.csv` is missing": lambda r: (r / "train.csv").unlink(),
    "a column is missing": lambda r: edit_csv(r, lambda f: f.rename(columns={"label": "target"})),
    "a training image is missing": lambda r: (r / "train" / f"{first_id(r)}.png").unlink(),
    "a sample-submission id has no test image": lambda r: edit_csv(
        r, lambda f: pd.concat([f, pd.DataFrame({"id": ["99999"], "label": ["zero"]})]),
        "sample_submission.csv"),
    "an image is corrupt or not an image": lambda r: (
        r / "train" / f"{first_id(r)}.png").write_bytes(b"not an image"),
    "an id appears twice": lambda r: edit_csv(r, lambda f: pd.concat([f, f.iloc[:1]])),
    "a target value is empty": lambda r: edit_csv(
        r, lambda f: f.assign(label=[""] + list(f.label[1:]))),
    "a class has a single example": lambda r: edit_csv(
        r, lambda f: f.assign(label=["rare"] + list(f.label[1:]))),
    "images differ in size": lambda r: Image.new("L", (9, 9)).save(
        r / "train" / f"{first_id(r)}.png"),
    "a CSV is empty (0 bytes, or blank lines)": lambda r: (
        r / "sample_submission.csv").write_bytes(b""),
    "a CSV has a header but no rows": lambda r: edit_csv(
        r, lambda f: f.iloc[:0], "sample_submission.csv"),
    "a CSV is not UTF-8 text (UTF-16, Latin-1, binary data)": lambda r: (
        r / "sample_submission.csv").write_bytes(
            (r / "sample_submission.csv").read_text().encode("utf-16")),
    "a CSV is an archive (zip, gzip)": lambda r: (r / "sample_submission.csv").write_bytes(
        gzip.compress((r / "sample_submission.csv").read_bytes())),
    "an id is empty (in any CSV with ids)": lambda r: edit_csv(
        r, lambda f: f.assign(id=[f.id[0], "", *f.id[2:]]), "sample_submission.csv"),
    "the sample submission has only the id column": lambda r: edit_csv(
        r, lambda f: f[["id"]], "sample_submission.csv"),
    "`data.test_csv` gives a test image no path": lambda r: listed_test_paths(r, blank=1),
}


def listed_test_paths(root: Path, blank: int) -> None:
    """train.csv and a test.csv (data.test_csv) with a path column; row `blank` of
    test.csv without its path."""
    edit_csv(root, lambda f: f.assign(path="train/" + f.id + ".png"))
    sample = pd.read_csv(root / "sample_submission.csv", dtype=str)
    paths = ["test/" + i + ".png" for i in sample.id]
    paths[blank] = ""
    sample[["id"]].assign(path=paths).to_csv(root / "test.csv", index=False)


@pytest.mark.parametrize("row", list(BREAKAGES))
def test_bad_data_row(row, demo_root, tmp_path):
    root = copy_demo(demo_root, tmp_path)
    BREAKAGES[row](root)
    assert_says(setup_error(root), row)


def test_multilabel_rows(demo_root, tmp_path):
    """The multi-label rows: an all-empty target column, a single-label loss or sampler, a
    sample submission with a column that is no label."""
    import numpy as np

    from conftest import make_cfg
    from podium.build import build_datamodule, check_loss_task
    from podium.submission.formats import write_submission

    row = ("multi-label data (`data.task=multilabel`) whose target column holds no label at "
           "all (an empty cell alone is fine: no label)")
    root = copy_demo(demo_root, tmp_path)
    edit_csv(root, lambda f: f.assign(label=""))
    assert_says(setup_error(root, task="multilabel"), row)
    for row, overrides, check in [
        ("a single-label loss on multi-label data", ["loss=focal"], check_loss_task),
        ("a class-balanced sampler on multi-label data", ["sampler=balanced"], build_datamodule),
    ]:
        cfg = make_cfg(tmp_path, ["data=demo_multilabel", *overrides])
        with pytest.raises(PodiumError) as err:
            check(cfg)
        assert_says(f"error: {err.value}", row)
    sample = pd.DataFrame({"id": ["1"], "cloudy": [0], "haze": [0], "snow": [0]})
    out = tmp_path / "out"
    with pytest.raises(PodiumError) as err:
        write_submission(out, sample, ["1"], np.full((1, 3), 0.7), ["cloudy", "haze", "rain"],
                         "id", "multilabel")
    assert_says(f"error: {err.value}", "the sample submission names a label the model does "
                "not know (multi-label, one column per label)")
    assert not out.exists()


@pytest.mark.parametrize(("row", "change"), [
    ("a tabular `test.csv` lacks feature columns of `train.csv`",
     lambda t: t.drop(columns=["bmi", "s3"])),
    ("a tabular `test.csv` lists other ids than the sample submission",
     lambda t: t.assign(id=["99999", *t.id[1:]])),
])
def test_tabular_test_csv_rows(row, change, tmp_path):
    from podium.data.demo import build_tabular_demo
    from podium.data.tabular import TabularDataModule

    root = build_tabular_demo(tmp_path / "comp", "regression")
    edit_csv(root, change, "test.csv")
    with pytest.raises(PodiumError) as err:
        TabularDataModule(root=str(root), task="regression", target_col="target").setup("fit")
    assert_says("error: " + str(err.value).replace(str(root), "<root>"), row)


def test_run_file_row(tmp_path):
    from test_inputs import TEST_PROBS, hand_run, submit_error

    run = hand_run(tmp_path, TEST_PROBS.replace("0.2,", "abc,"))
    assert_says(f"error: {submit_error(tmp_path, run)}", "a run's `test_probs.csv` or "
                "`oof.csv` holds a value that is no number (`make submit`)")


def test_missing_root_row(tmp_path):
    root = tmp_path / "nowhere"
    assert_says(setup_error(root), "`data.root` is not a folder")


@pytest.mark.parametrize(("row", "folds"), [
    ("a class has fewer examples than folds", {"n_folds": 20, "fold": 0}),
    ("`data.fold` is not below `data.n_folds`", {"n_folds": 3, "fold": 3}),
])
def test_fold_rows(row, folds, demo_root):
    assert_says(setup_error(demo_root, **folds), row)


def test_test_prior_rows(demo_root, tmp_path):
    root = copy_demo(demo_root, tmp_path)
    classes = sorted(set(pd.read_csv(root / "train.csv").label))
    pd.DataFrame({"class": [c for c in classes if c != "nine"], "share": 1}).to_csv(
        root / "prior.csv", index=False)
    assert_says(setup_error(root, test_prior="prior.csv"),
                "`data.test_prior` names a CSV that leaves out a class")
    edit_csv(root, lambda f: f.assign(label=range(len(f))))
    assert_says(setup_error(root, test_prior="uniform", task="regression"),
                "`data.test_prior` other than `train` on a task without exclusive classes")


def test_converted_images_and_messy_headers_row(demo_root, tmp_path):
    assert ROWS["grayscale / RGBA images, a BOM or spaces in CSV headers"].startswith("nothing")
    root = copy_demo(demo_root, tmp_path)
    Image.new("RGBA", (8, 8), (9, 9, 9, 255)).save(root / "train" / f"{first_id(root)}.png")
    text = (root / "train.csv").read_text().replace("id,label", " id , label ", 1)
    (root / "train.csv").write_text("\ufeff" + text)
    data = ImageDataModule(root=str(root), channels=3)
    data.setup("fit")
    assert data.spec.image_size == (8, 8) and data.spec.net_inputs == {"in_chans": 3}
    assert data.train_ids[0] == first_id(demo_root)


@pytest.mark.parametrize("row", ["the loss becomes NaN/inf", "`metric.monitor` is never logged",
                                 "a config option does not exist"])
def test_cli_rows(row, demo_root, tmp_path):
    overrides = {"the loss becomes NaN/inf": ["optimizer.lr=1e30", "trainer.max_epochs=3"],
                 "`metric.monitor` is never logged": ["metric.monitor=val/nope", "debug=limit",
                                                      "trainer.max_epochs=1"],
                 "a config option does not exist": ["loss=nope"]}[row]
    proc = run_cli("podium.train", f"data.root={demo_root}", f"data.demo_root={demo_root}",
                   f"paths.log_dir={tmp_path}", "model.net.depth=8", "model.net.width=4",
                   *overrides, check=False)
    assert "Traceback" not in proc.stderr
    if row == "a config option does not exist":
        assert proc.returncode == 1  # Hydra's own error
        assert "Could not find 'loss/nope'" in proc.stderr
        assert "Could not find 'loss/nope'" in ROWS[row]
    else:
        assert proc.returncode == 2  # podium's one-line errors
        assert_says(proc.stderr.strip().splitlines()[-1], row)
    assert not list(tmp_path.rglob("submission*.csv"))


def test_killed_run_row(tmp_path):
    """The resume half of the row (the SIGKILLs themselves: tests/test_faults.py, slow)."""
    from podium.callbacks.checkpoints import RunCheckpoint

    assert "resumes into a new folder (best checkpoint carried over)" in ROWS[
        "the run is killed (SIGKILL, power loss)"]
    old = tmp_path / "old" / "checkpoints"
    old.mkdir(parents=True)
    torch.save({"w": 1}, old / "best.ckpt")
    state = {"dirpath": str(old), "best_model_path": str(old / "best.ckpt"),
             "best_model_score": torch.tensor(0.7), "best_k_models": {
                 str(old / "best.ckpt"): torch.tensor(0.7)},
             "kth_best_model_path": str(old / "best.ckpt"), "kth_value": torch.tensor(0.7),
             "last_model_path": str(old / "last.ckpt"), "current_score": torch.tensor(0.7)}
    new = tmp_path / "new" / "checkpoints"
    callback = RunCheckpoint(dirpath=str(new), filename="best", monitor="val/f1", mode="max")
    callback.load_state_dict(state)
    assert callback.best_model_path == str(new / "best.ckpt") and (new / "best.ckpt").is_file()
    assert float(callback.best_model_score) == pytest.approx(0.7)
    assert (old / "best.ckpt").is_file()  # the old run folder is left as it was


def test_failed_fold_row(tmp_path, monkeypatch):
    from podium import errors

    monkeypatch.setattr(errors, "in_multirun", lambda: True)

    class Runtime:
        output_dir = str(tmp_path)

    class Config:
        runtime = Runtime()

    monkeypatch.setattr("hydra.core.hydra_config.HydraConfig.get", staticmethod(lambda: Config))
    result = errors.one_line_errors(lambda: 1 / 0)()
    assert result != result  # NaN: the sweeper records a failed trial
    assert (tmp_path / "failed.txt").read_text().startswith("ZeroDivisionError")
    assert "failed.txt" in ROWS["a fold of `make cv` or a sweep trial fails"]


def test_wrong_type_row(tmp_path):
    from conftest import make_cfg
    from podium.config import check_types

    cfg = make_cfg(tmp_path, ["trainer.max_epochs=abc"])
    with pytest.raises(PodiumError) as err:
        check_types(cfg)
    assert_says(f"error: {err.value}", "a config value has the wrong type")
    check_types(make_cfg(tmp_path, ["optimizer.lr=1"]))  # an integer is a number too


@pytest.mark.parametrize(("row", "name", "change", "args"), [
    ("a member folder's class columns differ from the other members' (`make submit`)",
     "test_probs.csv", lambda f: f.rename(columns={"benign": "healthy"}), ()),
    ("a member folder's OOF ids are not the competition's training ids", "oof.csv",
     lambda f: f.assign(id=["99999", *f.id[1:]]), ()),
])
def test_member_folder_rows(row, name, change, args, tmp_path):
    from test_blend import good, podium_run, rewrite, write_member

    from podium.data.demo import build_tabular_demo

    root = build_tabular_demo(tmp_path / "comp", "binary")
    run = podium_run(write_member(tmp_path / "run", root, good(0.3)), root)
    member = write_member(tmp_path / "member", root, good(0.3), seed=1)
    rewrite(member, name, change)
    proc = run_cli("podium.submit", f"runs=[{run},{member}]", *args,
                   f"paths.log_dir={tmp_path / 'logs'}", check=False)
    said = proc.stderr.strip().replace(str(member), "<member>").replace(str(run), "<run>")
    assert proc.returncode == 2
    assert_says(said.replace(str(root), "<root>"), row)
