"""Columns made from columns (podium.data.engineering, podium.data.text): the stored text
transform equals scikit-learn's fitted one, dates become their parts, constant and one-level
columns go with one line, the competitor's own columns arrive through data.features_fn, and
a run trained on them predicts a new folder the same with the training data gone."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import predict_new_folder, run_cli
from podium.data.columns import column_kinds
from podium.data.engineering import engineer, fit_engineering, is_date
from podium.data.text import fit_text_models, text_components, text_stats
from podium.errors import PodiumError

TITLES = ["Mr", "Mrs", "Miss", "Master", "Dr", "Rev"]
SURNAMES = ["Smith", "Brown", "Jones", "Taylor", "Wilson", "Davies", "Evans", "Thomas"]


def names(rng: np.random.Generator, n: int) -> list[str]:
    return [f"{rng.choice(SURNAMES)}, {rng.choice(TITLES)}. {rng.choice(SURNAMES)} "
            f"{rng.choice(['John', 'Mary', 'Anna', 'Karl'])} {i}" for i in range(n)]


def texts_table(root: Path, n: int = 120, seed: int = 0) -> Path:
    """A table with a name column (words shared across rows, a number unique to each), an
    ISO date with times, a flag almost always 0, a constant, a number and a Yes/No target."""
    rng = np.random.default_rng(seed)
    m = n + n // 4
    when = pd.Timestamp("2014-03-01") + pd.to_timedelta(rng.integers(0, 900 * 24, m), "h")
    frame = pd.DataFrame({
        "id": [f"r{i:04d}" for i in range(m)], "Name": names(rng, m),
        "Joined": when.strftime("%Y-%m-%d %H:%M:%S"), "x": rng.normal(0, 1, m).round(3),
        "Flag": np.where(np.arange(m) % 50 == 7, 1, 0), "Deck": "A"})
    frame.loc[5, "Joined"] = ""
    frame.loc[9, "Name"] = ""
    logit = frame.x + frame.Name.str.contains("Mrs|Miss") - 0.5
    frame["target"] = np.where(logit > 0, "Yes", "No")
    root.mkdir(parents=True)
    frame.iloc[:n].to_csv(root / "train.csv", index=False)
    frame.iloc[n:].drop(columns="target").to_csv(root / "test.csv", index=False)
    frame.iloc[n:][["id"]].assign(target="No").to_csv(root / "sample_submission.csv",
                                                      index=False)
    return root


# -- text: the stored numbers are the library's transform ---------------------------------------
@pytest.mark.parametrize("analyzer, ngrams", [("word", (1, 2)), ("char_wb", (2, 4))])
def test_the_stored_text_transform_equals_scikit_learns_fitted_one(analyzer, ngrams):
    """podium's text_components, from the stored plain numbers (read back by torch.load with
    weights_only=True), equals svd.transform(tfidf.transform(texts)) of the fitted
    scikit-learn pair, on training texts and new ones with unseen words or none at all."""
    texts = names(np.random.default_rng(1), 200)
    tfidf, svd = fit_text_models(texts, 6, analyzer, ngrams, max_terms=300)
    buffer = io.BytesIO()
    torch.save({"text": text_stats(tfidf, svd)}, buffer)
    buffer.seek(0)
    stats = torch.load(buffer, weights_only=True)["text"]
    assert len(stats["components"]) == 6 and len(stats["terms"]) == len(stats["idf"]) <= 300
    new = ["Zebedee, Mr. Quixotic Xylophone 7", "", "miss MISS miss", "Smith", "unseen words"]
    for batch in (texts, new):
        expected = svd.transform(tfidf.transform(batch))
        assert np.allclose(text_components(batch, stats), expected, atol=1e-12)
    assert np.allclose(text_components([""], stats), 0)


def test_text_with_no_shared_word_is_left_to_the_kinds():
    assert fit_text_models([f"w{i}" for i in range(30)], 8) is None  # every word once


# -- dates ----------------------------------------------------------------------------------
def test_iso_dates_become_their_parts_and_other_columns_do_not():
    cells = pd.Series(["2014-03-01 10:30:00", "2015-12-31 00:00:00", "", "2016-02-29 23:00:00"])
    plain = pd.Series(["2014-03-01", "2015-12-31", "2016-02-29", "2014-03-02"])
    assert is_date(cells) and is_date(plain)
    for other in (["2014", "2015", "2016"], ["red", "2014-03-01", "blue"],
                  ["03/01/2014", "12/31/2015", "02/29/2016"], ["2014-13-45", "2015-01-01"]):
        assert not is_date(pd.Series(other)), other
    train = pd.DataFrame({"When": cells, "Day": plain, "x": ["1", "2", "3", "4"]})
    engineering = fit_engineering(train, train.iloc[:0])
    assert engineering["dates"] == {
        "When": ["year", "month", "day", "dayofweek", "hour", "days"],
        "Day": ["year", "month", "day", "dayofweek", "days"]}  # no time of day: no hour
    made = engineer(pd.DataFrame({"When": ["2016-02-29 23:00:00", "", "not a date"],
                                  "Day": ["1970-01-02", "2000-01-01", "2014-03-01"],
                                  "x": ["5", "6", "7"]}), engineering)
    assert list(made.columns) == ["When_year", "When_month", "When_day", "When_dayofweek",
                                  "When_hour", "When_days", "Day_year", "Day_month", "Day_day",
                                  "Day_dayofweek", "Day_days", "x"]
    stamp = pd.Timestamp("2016-02-29 23:00:00")
    assert made.iloc[0, :6].tolist() == [
        "2016", "2", "29", str(stamp.dayofweek), "23",
        repr((stamp - pd.Timestamp("1970-01-01")) / pd.Timedelta(days=1))]
    assert made.iloc[1:, :6].eq("").all().all()  # missing or no date: missing parts
    assert made.Day_days.tolist() == ["1", "10957", "16130"]


# -- the datamodule: constants, one-level flags, the lines printed --------------------------
def read_table(root: Path, **options):
    from podium.data.tabular import TabularDataModule

    data = TabularDataModule(str(root), target_col="target", task="binary", **options)
    data.setup()
    return data


def test_text_and_date_columns_become_numbers_and_one_level_columns_go(tmp_path, capsys):
    data = read_table(texts_table(tmp_path / "t"), rare_min_count=5)
    out = capsys.readouterr().out
    assert ("  date column Joined -> year, month, day, day of week, hour, days since "
            "1970-01-01: Joined_year, Joined_month, Joined_day, Joined_dayofweek, Joined_hour, "
            "Joined_days") in out
    assert "  text column Name -> 8 SVD components of word 1-2 gram tf-idf (" in out
    assert "  constant or one level, dropped (2): Flag, Deck (one value, or one level once " \
           "levels seen fewer than 5 times are pooled)" in out
    made = [f"Name_svd{i}" for i in range(1, 9)] + ["Name_length"]
    assert data.features[:9] == made and "Flag" not in data.features
    # what the trees read: the frames' columns, numbers as text cells, kinds as a run's
    kinds = column_kinds(data.train_frame, data.features, Path("train.csv"))
    assert set(made) <= set(kinds["numeric"]) and not kinds["constant"]
    assert list(data.test_frame.columns) == data.features
    assert data.train_frame.Name_svd1.iloc[9] == "" and data.train_frame.Joined_year.iloc[5] == ""
    # the spec carries every fitted number as plain types, and they rebuild the test frame
    spec = data.spec.features
    assert spec["inputs"] == ["Name", "Joined", "x", "Flag", "Deck"]
    assert list(spec["engineering"]["text"]) == ["Name"]
    test = pd.read_csv(tmp_path / "t" / "test.csv", dtype=str, keep_default_na=False)
    again = engineer(test[spec["inputs"]], spec["engineering"])[spec["columns"]]
    assert again.equals(data.test_frame)
    # a model without a DataSpec (a tree folder) saves the same as JSON and rebuilds the
    # test frame of a folder from it, the training table unread
    from podium.data.tabular import TabularDataModule

    saved = json.loads(json.dumps(data.made_frame_features()))
    assert saved == {k: spec[k] for k in ("columns", "inputs", "features_fn", "engineering")}
    fresh = TabularDataModule(str(tmp_path / "t"), target_col="target")
    fresh.read_sample()
    assert fresh.made_test_frame(saved).equals(data.test_frame)
    # a flag kept at rare_min_count=1; text dropped as before with text_components=0
    data = read_table(tmp_path / "t", rare_min_count=1, text_components=0, dates=False)
    assert "Flag" in data.features and data.spec.features["engineering"]["text"] == {}
    assert data.spec.features["dropped"]["text"] == ["Name", "Joined"]  # as raw text
    assert "  text-like, dropped (2): Name, Joined" in capsys.readouterr().out


@pytest.mark.parametrize("analyzer, ngrams", [("char_wb", [2, 3]), ("word", [1, 1])])
def test_text_settings_reach_the_transform(tmp_path, analyzer, ngrams, capsys):
    data = read_table(texts_table(tmp_path / "t"), text_components=3, text_analyzer=analyzer,
                      text_ngrams=ngrams, text_max_terms=50)
    stats = data.spec.features["engineering"]["text"]["Name"]
    assert (stats["analyzer"], stats["ngrams"]) == (analyzer, ngrams)
    assert len(stats["components"]) == 3 and len(stats["terms"]) <= 50
    kind = "word" if analyzer == "word" else "character"
    grams = "1" if ngrams == [1, 1] else "2-3"
    assert f"text column Name -> 3 SVD components of {kind} {grams} gram tf-idf" in \
        capsys.readouterr().out


def test_bad_text_settings_are_one_line(tmp_path):
    root = texts_table(tmp_path / "t")
    with pytest.raises(PodiumError, match="data.text_analyzer=chars is unknown: use word or "
                                          "char_wb"):
        read_table(root, text_analyzer="chars")
    with pytest.raises(PodiumError, match=r"data.text_ngrams=\[3, 1\]: give \[low, high\]"):
        read_table(root, text_ngrams=[3, 1])


# -- the competitor's own columns ---------------------------------------------------------------
HOOK = '''
import pandas as pd

def add_features(frame):
    title = frame["Name"].str.extract(r", ([A-Za-z]+)\\.", expand=False)
    return frame.assign(title=title, x_squared=pd.to_numeric(frame["x"]) ** 2).drop(
        columns=["Deck"])

def fewer_rows(frame):
    return frame.iloc[1:]

def not_a_frame(frame):
    return frame["x"].tolist()

def reordered(frame):
    return frame.iloc[::-1]
'''


def test_features_fn_adds_columns_to_train_and_test_alike(tmp_path, monkeypatch, capsys):
    root = texts_table(tmp_path / "t")
    (tmp_path / "my_features.py").write_text(HOOK)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    data = read_table(root, features_fn="my_features:add_features")
    out = capsys.readouterr().out
    assert "  data.features_fn=my_features:add_features: new columns (2): title, x_squared; " \
           "removed (1): Deck" in out
    assert {"title", "x_squared"} <= set(data.features) and "Deck" not in data.features
    kinds = column_kinds(data.train_frame, data.features, Path("train.csv"))
    assert "title" in kinds["categorical"] and "x_squared" in kinds["numeric"]
    test = pd.read_csv(root / "test.csv", dtype=str, keep_default_na=False)
    expected = test.Name.str.extract(r", ([A-Za-z]+)\.", expand=False).fillna("")
    assert data.test_frame.title.tolist() == expected.tolist()
    assert np.allclose(data.test_frame.x_squared.astype(float), test.x.astype(float) ** 2)
    assert data.spec.features["features_fn"] == "my_features:add_features"
    # the file form, from any working directory
    monkeypatch.chdir(root)
    data = read_table(root, features_fn=f"{tmp_path / 'my_features.py'}:add_features")
    assert "title" in data.features


@pytest.mark.parametrize("name, message", [
    ("no_such_module:add", "data.features_fn=no_such_module:add: cannot import no_such_module "
                           "\\(No module named 'no_such_module'\\); give module:function "
                           "importable from "),
    ("my_features:missing", "data.features_fn=my_features:missing: my_features has no "
                            "function missing"),
    ("add_features", "data.features_fn=add_features is not module:function"),
    ("my_features:fewer_rows", "data.features_fn=my_features:fewer_rows returned 119 rows for "
                               ".*train.csv \\(120 rows\\): return a DataFrame of the same "
                               "120 rows in their order"),
    ("my_features:not_a_frame", "data.features_fn=my_features:not_a_frame returned list for "),
    ("my_features:reordered", "data.features_fn=my_features:reordered changed the order or "
                              "the values of id in "),
])
def test_a_features_fn_that_cannot_be_used_is_one_line(tmp_path, monkeypatch, name, message):
    root = texts_table(tmp_path / "t")
    (tmp_path / "my_features.py").write_text(HOOK)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(PodiumError, match=message) as err:
        read_table(root, features_fn=name)
    assert "\n" not in str(err.value)


# -- a run trained on made columns predicts a new folder the same --------------------------------
def test_a_run_with_text_dates_and_features_fn_predicts_a_new_folder_the_same(tmp_path):
    """Trained for one epoch on the text, date and own columns, the run's checkpoint (read
    with weights_only=True by make predict) rebuilds them for a new folder with train.csv
    gone and reproduces the run's own test probabilities."""
    root = texts_table(tmp_path / "comp", n=100)
    hook = tmp_path / "hooks" / "my_features.py"
    hook.parent.mkdir()
    hook.write_text(HOOK)
    run = tmp_path / "run"
    proc = run_cli("podium.train", "experiment=tabular", f"data.root={root}",
                   "data.target_col=target", f"data.features_fn={hook}:add_features",
                   "data.text_components=4", "model.net.k=2", "model.net.d_block=16",
                   "trainer.max_epochs=1", f"paths.log_dir={tmp_path / 'logs'}",
                   f"hydra.run.dir={run}", "print_config=false")
    assert "text column Name -> 4 SVD components of word 1-2 gram tf-idf" in proc.stdout
    assert "date column Joined -> year, month, day" in proc.stdout
    got = predict_new_folder(tmp_path, run, root).set_index("id")
    own = pd.read_csv(run / "test_probs.csv", dtype={"id": str}).set_index("id")
    assert np.allclose(got.loc[own.index].to_numpy(), own.to_numpy(), atol=1e-6)


def test_folds_in_one_process_make_the_frames_once(tmp_path, monkeypatch):
    """make cv's folds share one process: the frames (fold-independent) are made once, and
    made again when anything they depend on changes (a setting, the table's cells)."""
    import podium.data.tabular as tabular

    calls = []
    real = tabular.fit_engineering
    monkeypatch.setattr(tabular, "fit_engineering", lambda *a, **k: calls.append(1) or
                        real(*a, **k))
    root = texts_table(tmp_path / "t")
    first, second = (read_table(root, rare_min_count=5) for _ in range(2))
    assert len(calls) == 1
    assert first.features == second.features
    pd.testing.assert_frame_equal(first.train_frame, second.train_frame)
    read_table(root, rare_min_count=5, text_components=2)
    assert len(calls) == 2
    table = pd.read_csv(root / "train.csv", dtype=str, keep_default_na=False)
    table.loc[0, "Name"] = "a name never seen before"
    table.to_csv(root / "train.csv", index=False)
    changed = read_table(root, rare_min_count=5, text_components=2)
    assert len(calls) == 3 and not changed.train_frame.equals(first.train_frame)
