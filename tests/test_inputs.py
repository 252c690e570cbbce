"""Every CSV podium reads is checked as strictly as train.csv (podium.io.read_csv).

The sample submission, a tabular test.csv, `data.test_csv` (test image paths), an answer
key, and a run's test_probs.csv / oof.csv read by `make submit`: an empty file, UTF-16,
an archive or binary data, a missing column, an empty or repeated id, ids that differ
from the sample submission's, a probability that is no number, each stop with the one
line written out here, and nothing is written.
"""

from __future__ import annotations

import gzip
import io
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf, open_dict
from PIL import Image

from conftest import make_cfg
from podium.data.demo import build_tabular_demo
from podium.data.image import ImageDataModule
from podium.data.tabular import TabularDataModule
from podium.errors import PodiumError
from podium.io import read_sample_submission


def files_in(root: Path) -> set[Path]:
    return {p.relative_to(root) for p in root.rglob("*")}


def error_of(call, *placeholders: tuple[Path, str]) -> str:
    """The PodiumError message of `call()`, folders replaced by their placeholder."""
    with pytest.raises(PodiumError) as err:
        call()
    message = str(err.value)
    for folder, name in placeholders:
        message = message.replace(str(folder), name)
    assert "\n" not in message
    return message


def png_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (4, 4)).save(buffer, format="PNG")
    return buffer.getvalue()


def zip_bytes(text: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("sample_submission.csv", text)
    return buffer.getvalue()


# -- the sample submission (the shared reader) ------------------------------------------------
GOOD = "id,label\n1,a\n2,a\n3,a\n"
RESAVE = "re-save the sample submission as a UTF-8 CSV"
SAMPLE_CASES = {
    "0 bytes": (b"", "<p> is empty: the sample submission needs a header line and one row "
                     "per id; fix or re-export it"),
    "blank lines only": (b"\n  \n", "<p> is empty: the sample submission needs a header line "
                                    "and one row per id; fix or re-export it"),
    "a header only": (b"id,label\n", "<p> has a header but no rows: the sample submission "
                                     "needs one row per id; fix or re-export it"),
    "UTF-16": (GOOD.encode("utf-16"), f"<p> is UTF-16 text, not a UTF-8 CSV: {RESAVE}"),
    "UTF-16 without a byte-order mark": (
        GOOD.encode("utf-16-le"), "<p> is binary data (NUL bytes; UTF-16 text without a "
                                  f"byte-order mark?), not a UTF-8 CSV: {RESAVE}"),
    "Latin-1": ("id,label\n1,café\n".encode("latin-1"),
                f"<p> is not UTF-8 text (byte 0xe9): {RESAVE}"),
    "an image": (png_bytes(), "<p> is binary data (NUL bytes; UTF-16 text without a "
                              f"byte-order mark?), not a UTF-8 CSV: {RESAVE}"),
    "a zip archive": (zip_bytes(GOOD), "<p> is a zip archive, not a UTF-8 CSV: unpack it "
                                       "and point podium at the CSV inside"),
    "a gzip archive": (gzip.compress(GOOD.encode()), "<p> is a gzip archive, not a UTF-8 "
                                                     "CSV: unpack it and point podium at "
                                                     "the CSV inside"),
    "a row longer than the header": (b"id,label\n1,a,x\n", "<p> is not a readable CSV (a row "
                                     "has more cells than the header): fix or re-export it"),
    "no id column": (b"ID,label\n1,a\n", "<p>: column 'id' not found (columns: ID, label); "
                                         "set data.id_col / data.target_col to the right names"),
    "an empty id": (b"id,label\n1,a\n ,a\n3,a\n,a\n", "<p>: empty id in row 2 (2 row(s)); every "
                                                      "row needs an id: fill or drop those rows"),
    "an id twice": (b"id,label\n1,a\n2,a\n1,a\n", "<p>: id 1 appears more than once "
                                                  "(1 duplicate(s)); ids must be unique"),
    "only the id column": (b"id\n1\n2\n", "<p> has only the column 'id': a sample submission "
                                          "needs the id column and the prediction column(s) "
                                          "the leaderboard reads"),
    "two headers equal but for spaces": (b"id,label,label \n1,a,b\n", "<p>: column 'label' "
                                         "appears twice in the header; rename or drop one of "
                                         "them"),
}


@pytest.mark.parametrize("case", SAMPLE_CASES)
def test_a_bad_sample_submission_is_one_line(case, tmp_path):
    content, expected = SAMPLE_CASES[case]
    path = tmp_path / "sample_submission.csv"
    path.write_bytes(content)
    assert error_of(lambda: read_sample_submission(path, "id"), (path, "<p>")) == expected


def test_a_good_sample_submission_keeps_ids_as_text(tmp_path):
    path = tmp_path / "sample_submission.csv"
    path.write_text("\ufeff id , label\n007,a\n10,\n")  # BOM, spaced header, an empty label
    sample = read_sample_submission(path, "id")
    assert sample.to_dict("list") == {"id": ["007", "10"], "label": ["a", ""]}


def empty_ids(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.assign(id=[frame.id[0], "", *frame.id[2:3], " ", *frame.id[4:]])


@pytest.mark.parametrize(("name", "change", "expected"), [
    ("sample_submission.csv", lambda f: f.iloc[:0],
     "<root>/sample_submission.csv has a header but no rows: the sample submission needs one "
     "row per id; fix or re-export it"),
    ("sample_submission.csv", empty_ids,
     "<root>/sample_submission.csv: empty id in row 2 (2 row(s)); every row needs an id: fill "
     "or drop those rows"),
    ("train.csv", empty_ids,
     "<root>/train.csv: empty id in row 2 (2 row(s)); every row needs an id: fill or drop "
     "those rows"),
    ("sample_submission.csv", "utf-16",
     "<root>/sample_submission.csv is UTF-16 text, not a UTF-8 CSV: re-save the sample "
     "submission as a UTF-8 CSV"),
    ("train.csv", "utf-16",
     "<root>/train.csv is UTF-16 text, not a UTF-8 CSV: re-save the training labels as a "
     "UTF-8 CSV"),
])
def test_the_datamodule_stops_before_writing_anything(name, change, expected, demo_root,
                                                      tmp_path):
    """The same checks on train.csv and the sample submission, through the datamodule;
    the competition folder is left as it was."""
    root = tmp_path / "comp"
    shutil.copytree(demo_root, root)
    path = root / name
    if change == "utf-16":
        path.write_bytes(path.read_text().encode("utf-16"))
    else:
        change(pd.read_csv(path, dtype=str, keep_default_na=False)).to_csv(path, index=False)
    before = files_in(root)
    data = ImageDataModule(root=str(root))
    assert error_of(lambda: data.setup("fit"), (root, "<root>")) == expected
    assert files_in(root) == before


# -- a tabular test.csv ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tabular(tmp_path_factory) -> Path:
    return build_tabular_demo(tmp_path_factory.mktemp("tab") / "demo", "regression")


def tabular_copy(tabular: Path, tmp_path: Path, change=None) -> Path:
    root = tmp_path / "comp"
    shutil.copytree(tabular, root)
    if change is not None:
        test = pd.read_csv(root / "test.csv", dtype=str, keep_default_na=False)
        change(test).to_csv(root / "test.csv", index=False)
    return root


def tabular_module(root: Path, **kwargs) -> TabularDataModule:
    return TabularDataModule(root=str(root), task="regression", target_col="target", **kwargs)


def tabular_error(root: Path, **kwargs) -> str:
    return error_of(lambda: tabular_module(root, **kwargs).setup("fit"), (root, "<root>"))


def test_the_tabular_demo_has_the_columns_these_tests_name(tabular):
    assert pd.read_csv(tabular / "test.csv", nrows=0).columns.tolist() == [
        "id", "age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]


def test_test_csv_without_the_id_column(tabular, tmp_path):
    root = tabular_copy(tabular, tmp_path, lambda t: t.rename(columns={"id": "key"}))
    assert tabular_error(root) == (
        "<root>/test.csv: column 'id' not found (columns: key, age, sex, bmi, bp, s1, s2, s3, "
        "s4, s5, ... (11 in all)); set data.id_col / data.target_col to the right names")


def test_test_csv_without_feature_columns_names_them(tabular, tmp_path):
    root = tabular_copy(tabular, tmp_path, lambda t: t.drop(columns=["bmi", "s3"]))
    before = files_in(root)
    assert tabular_error(root) == (
        "<root>/test.csv: feature columns 'bmi', 's3' not found (columns: id, age, sex, bp, "
        "s1, s2, s4, s5, s6); the test table needs every feature column of train.csv (or "
        "leave a column out of both with data.drop_cols)")
    assert files_in(root) == before
    data = tabular_module(root, drop_cols=["bmi", "s3"])  # the fix the message gives
    data.setup("fit")
    assert data.features == ["age", "sex", "bp", "s1", "s2", "s4", "s5", "s6"]


def test_predicting_a_test_csv_without_the_models_features(tabular, tmp_path):
    trained = tabular_module(tabular)
    trained.setup("fit")
    root = tabular_copy(tabular, tmp_path, lambda t: t.drop(columns=["s6"]))
    fresh = tabular_module(root)
    assert error_of(lambda: fresh.setup_test(trained.spec), (root, "<root>")) == (
        "<root>/test.csv: feature column 's6' not found (columns: id, age, sex, bmi, bp, s1, "
        "s2, s3, s4, s5); the model was trained on them: give the test table every feature "
        "column it was trained on")


def test_test_csv_ids_must_be_the_sample_submissions(tabular, tmp_path):
    ids = pd.read_csv(tabular / "sample_submission.csv", dtype=str).id.tolist()
    root = tabular_copy(tabular, tmp_path, lambda t: t.assign(id=["99999", *t.id[1:]]))
    fix = ("test.csv and sample_submission.csv must list the same test ids (is data.test_csv "
           "or data.sample_submission another competition's?)")
    assert tabular_error(root) == (
        f"<root>/test.csv: 1 id(s) of sample_submission.csv have no row, e.g. {ids[0]}; "
        f"1 id(s) are not in sample_submission.csv, e.g. 99999: {fix}")
    root = tabular_copy(tabular, tmp_path / "b", lambda t: t.iloc[3:])
    assert tabular_error(root) == (
        f"<root>/test.csv: 3 id(s) of sample_submission.csv have no row, e.g. {ids[0]}: {fix}")
    root = tabular_copy(tabular, tmp_path / "c", lambda t: pd.concat(
        [t, t.iloc[:1].assign(id="x1")]))
    assert tabular_error(root) == (
        f"<root>/test.csv: 1 id(s) are not in sample_submission.csv, e.g. x1: {fix}")


@pytest.mark.parametrize(("change", "expected"), [
    (lambda t: pd.concat([t, t.iloc[[4]]]), "<root>/test.csv: id {4} appears more than once "
                                            "(1 duplicate(s)); ids must be unique"),
    (lambda t: t.assign(id=[*t.id[:2], " ", *t.id[3:]]),
     "<root>/test.csv: empty id in row 3 (1 row(s)); every row needs an id: fill or drop those "
     "rows"),
])
def test_test_csv_ids_are_checked_like_train_csvs(change, expected, tabular, tmp_path):
    ids = pd.read_csv(tabular / "test.csv", dtype=str).id.tolist()
    root = tabular_copy(tabular, tmp_path, change)
    assert tabular_error(root) == expected.replace("{4}", ids[4])


def test_test_csv_rows_in_another_order_follow_the_sample_submission(tabular, tmp_path):
    root = tabular_copy(tabular, tmp_path, lambda t: t.iloc[::-1])
    data = tabular_module(root)
    data.setup("fit")
    sample = pd.read_csv(root / "sample_submission.csv", dtype=str)
    test = pd.read_csv(root / "test.csv", dtype=str, keep_default_na=False).set_index("id")
    expected = test.loc[sample.id, data.features].reset_index(drop=True)
    pd.testing.assert_frame_equal(data.test_frame, expected)


# -- data.test_csv: the test images' paths ------------------------------------------------------
def path_folder(root: Path, test_rows: list[tuple[str, str]]) -> Path:
    """train.csv (id, label, path) of 4 images, sample submission t1, t2, and a test.csv of
    `test_rows` (id, path)."""
    for name in ("r1", "r2", "r3", "r4", "t1", "t2"):
        (root / "img").mkdir(parents=True, exist_ok=True)
        Image.new("L", (4, 4), 40).save(root / "img" / f"{name}.png")
    pd.DataFrame({"id": ["r1", "r2", "r3", "r4"], "label": ["x", "y", "x", "y"],
                  "path": [f"img/r{i}.png" for i in range(1, 5)]}).to_csv(
        root / "train.csv", index=False)
    pd.DataFrame({"id": ["t1", "t2"], "label": "x"}).to_csv(root / "sample_submission.csv",
                                                             index=False)
    pd.DataFrame(test_rows, columns=["id", "path"]).to_csv(root / "test.csv", index=False)
    return root


def paths_error(root: Path) -> str:
    data = ImageDataModule(root=str(root), path_col="path", test_csv="test.csv")
    return error_of(data.read_inputs, (root, "<root>"))


def test_test_csv_paths_each_id_once(tmp_path):
    root = path_folder(tmp_path, [("t1", "img/t1.png"), ("t2", "img/t2.png"),
                                  ("t1", "img/t2.png")])
    assert paths_error(root) == ("<root>/test.csv: id t1 appears more than once "
                                 "(1 duplicate(s)); ids must be unique")


def test_test_csv_paths_not_empty(tmp_path):
    root = path_folder(tmp_path, [("t1", "img/t1.png"), ("t2", " ")])
    assert paths_error(root) == ("<root>/test.csv: empty path for id t2 (1 row(s)); give "
                                 "every test image its path (relative to data.root)")


def test_a_row_the_sample_submission_does_not_ask_for_may_lack_a_path(tmp_path):
    root = path_folder(tmp_path, [("t1", "img/t1.png"), ("t2", "img/t2.png"), ("t9", "")])
    data = ImageDataModule(root=str(root), path_col="path", test_csv="test.csv")
    data.read_inputs()
    assert data.test_paths == [root / "img" / "t1.png", root / "img" / "t2.png"]


def test_train_csv_paths_not_empty(tmp_path):
    root = path_folder(tmp_path, [("t1", "img/t1.png"), ("t2", "img/t2.png")])
    train = pd.read_csv(root / "train.csv", dtype=str)
    train.assign(path=["img/r1.png", "", "img/r3.png", "img/r4.png"]).to_csv(
        root / "train.csv", index=False)
    assert paths_error(root) == ("<root>/train.csv: empty path for id r2 (1 row(s)); give "
                                 "every image its path (relative to data.root)")


# -- a run's test_probs.csv and oof.csv, read by make submit ----------------------------------
TEST_PROBS = "id,benign,malignant\n1,0.9,0.1\n2,0.2,0.8\n3,0.6,0.4\n"
OOF = ("id,fold,target,benign,malignant\n10,0,benign,0.7,0.3\n11,0,malignant,0.4,0.6\n"
       "12,0,malignant,0.1,0.9\n13,0,benign,0.8,0.2\n")


def hand_run(tmp_path: Path, test_probs: str = TEST_PROBS, oof: str = OOF) -> Path:
    """A run folder written by hand (a binary competition with test ids 1, 2, 3): its
    composed config, test_probs.csv and oof.csv; no checkpoint."""
    root = tmp_path / "comp"
    root.mkdir(parents=True)
    pd.DataFrame({"id": ["1", "2", "3"], "target": "benign"}).to_csv(
        root / "sample_submission.csv", index=False)
    cfg = make_cfg(tmp_path / "trained", ["data=demo_binary", f"data.root={root}"])
    with open_dict(cfg):
        del cfg["hydra"]
    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    OmegaConf.save(cfg, run / ".hydra" / "config.yaml")
    (run / "test_probs.csv").write_text(test_probs)
    (run / "oof.csv").write_text(oof)
    return run


def submit_run(tmp_path: Path, run: Path):
    """`make submit RUN=<run>` in-process; returns (summary, its output folder)."""
    from podium.submit import submit

    cfg = make_cfg(tmp_path / "submit", [f"runs=[{run}]"], config_name="submit")
    return submit(cfg), Path(cfg.paths.output_dir)


def submit_error(tmp_path: Path, run: Path) -> str:
    out = tmp_path / "submit" / "run"
    message = error_of(lambda: submit_run(tmp_path, run), (run, "<run>"))
    assert not out.exists() or not any(out.iterdir())  # nothing written
    return message


def test_a_hand_written_run_in_another_row_order_is_submitted_in_the_samples(tmp_path):
    shuffled = "id,malignant,benign\n3,0.4,0.6\n1,0.1,0.9\n2,0.8,0.2\n"
    summary, out = submit_run(tmp_path, hand_run(tmp_path, shuffled))
    submission = pd.read_csv(out / "submission.csv", dtype={"id": str})
    assert summary.format["name"] == "probability"  # binary, scored by AUROC
    assert submission.id.tolist() == ["1", "2", "3"]
    assert np.allclose(submission.target, [0.1, 0.8, 0.4])


REDO = "a run's {name} is podium's own output: predict again, or leave <run> out of the ensemble"
MEMBER_CASES = {
    "no id column": ("test_probs.csv", TEST_PROBS.replace("id,", "ID,", 1),
                     "<run>/test_probs.csv: column 'id' not found (columns: ID, benign, "
                     "malignant); {redo}"),
    "no class column": ("test_probs.csv", "id\n1\n2\n3\n",
                        "<run>/test_probs.csv has only the column 'id': it needs one "
                        "probability column per class; {redo}"),
    "text for a probability": ("test_probs.csv", TEST_PROBS.replace("0.2,", "abc,"),
                               "<run>/test_probs.csv: column 'benign' holds 'abc' for id 2 "
                               "(row 2; 1 bad value(s)), not a finite number; {redo}"),
    "NaN": ("test_probs.csv", TEST_PROBS.replace("0.8", "nan").replace("0.4", "NaN"),
            "<run>/test_probs.csv: column 'malignant' holds 'nan' for id 2 (row 2; 2 bad "
            "value(s)), not a finite number; {redo}"),
    "an empty cell": ("test_probs.csv", TEST_PROBS.replace("0.6,0.4", ",0.4"),
                      "<run>/test_probs.csv: column 'benign' holds '' for id 3 (row 3; 1 bad "
                      "value(s)), not a finite number; {redo}"),
    "an id twice": ("test_probs.csv", TEST_PROBS + "2,0.5,0.5\n",
                    "<run>/test_probs.csv: id 2 appears more than once (1 duplicate(s)); ids "
                    "must be unique"),
    "other ids than the sample submission": (
        "test_probs.csv", TEST_PROBS.replace("\n3,", "\n9,"),
        "<run>/test_probs.csv: 1 id(s) of the sample submission have no row, e.g. 3; 1 id(s) "
        "are not in the sample submission, e.g. 9: the run predicted another test set; "
        "{redo}"),
    "UTF-16": ("test_probs.csv", TEST_PROBS.encode("utf-16"),
               "<run>/test_probs.csv is UTF-16 text, not a UTF-8 CSV: re-save a run's test "
               "probabilities as a UTF-8 CSV"),
    "header only": ("test_probs.csv", "id,benign,malignant\n",
                    "<run>/test_probs.csv has a header but no rows: a run's test "
                    "probabilities needs one row per id; {redo}"),
    "oof without a class column": (
        "oof.csv", "\n".join(r.rsplit(",", 1)[0] for r in OOF.splitlines()) + "\n",
        "<run>/oof.csv: column 'malignant' not found (columns: id, fold, target, benign); "
        "{redo}"),
    "oof without the label column": (
        "oof.csv", OOF.replace(",target,", ",truth,"),
        "<run>/oof.csv: column 'target' not found (columns: id, fold, truth, benign, "
        "malignant); {redo}"),
    "oof text for a probability": (
        "oof.csv", OOF.replace("0.4,0.6", "0.4,high"),
        "<run>/oof.csv: column 'malignant' holds 'high' for id 11 (row 2; 1 bad value(s)), "
        "not a finite number; {redo}"),
    "oof id twice": ("oof.csv", OOF + "10,0,benign,0.5,0.5\n",
                     "<run>/oof.csv: id 10 appears more than once (1 duplicate(s)); ids must "
                     "be unique"),
}


@pytest.mark.parametrize("case", MEMBER_CASES)
def test_a_bad_member_file_is_one_line_naming_the_run(case, tmp_path):
    name, content, expected = MEMBER_CASES[case]
    files = {"test_probs.csv": TEST_PROBS, "oof.csv": OOF, name: content}
    run = hand_run(tmp_path)
    for file, text in files.items():
        (run / file).write_bytes(text if isinstance(text, bytes) else text.encode())
    assert submit_error(tmp_path, run) == expected.format(redo=REDO.format(name=name))


# -- the answer key --------------------------------------------------------------------------
@pytest.mark.parametrize(("content", "expected"), [
    ("id\n1\n", "<p> has only the column 'id': an answer key needs the true label column; set "
                "data.answers=null to score nothing"),
    ("key,target\n1,a\n", "<p>: column 'id' not found (columns: key, target); set data.answers "
                          "to the demo's answers.csv, or to null"),
    ("id,target\n1,a\n1,b\n", "<p>: id 1 appears more than once (1 duplicate(s)); ids must be "
                              "unique"),
])
def test_a_bad_answer_key_is_one_line(content, expected, tmp_path):
    from podium.submission.leaderboard import answer_key

    path = tmp_path / "answers.csv"
    path.write_text(content)
    assert error_of(lambda: answer_key(path, "id"), (path, "<p>")) == expected
    assert answer_key(tmp_path / "absent.csv", "id") is None  # a real competition: no key


def test_a_bad_answer_key_stops_before_the_submission_is_written(tmp_path):
    run = hand_run(tmp_path)
    (tmp_path / "comp" / "answers.csv").write_text("id,target\n1,benign\n1,benign\n")
    assert submit_error(tmp_path, run) == (
        f"{tmp_path}/comp/answers.csv: id 1 appears more than once (1 duplicate(s)); ids "
        f"must be unique")
