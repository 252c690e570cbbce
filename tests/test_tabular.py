"""Tables as competitions give them: column kinds, encoders equal to scikit-learn's and
rtdl_num_embeddings' own, TabM equal to the `tabm` package's, the folder read as a table
without data=tabular, targets in the competition's units, and predictions that travel."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import make_cfg, predict_new_folder, run_cli
from podium.data.columns import column_kinds, encode, fit_encoders, numeric_block
from podium.data.demo import build_tabular_demo


def titanic_like(root: Path, n: int = 240, seed: int = 0, target=("No", "Yes")) -> Path:
    """A small table the way Kaggle gives one: a running id, free-text names (a title in
    each), ticket codes unique to each row, missing ages, a rare port, a Yes/No target;
    test.csv + sample."""
    rng = np.random.default_rng(seed)
    m = n + n // 4
    sex = rng.choice(["male", "female"], m)
    pclass = rng.integers(1, 4, m)
    age = rng.normal(30, 12, m).clip(1, 80).round(1).astype(object)
    age[rng.random(m) < 0.2] = ""
    logit = 1.5 * (sex == "female") - 0.8 * (pclass - 2) + rng.normal(0, 0.7, m)
    frame = pd.DataFrame({
        "PassengerId": np.arange(1, m + 1), "Pclass": pclass,
        "Name": [f"Person{i}, {title}. Given {i}" for i, title in enumerate(
            np.where(sex == "male", "Mr", np.where(np.arange(m) % 2, "Mrs", "Miss")))],
        "Sex": sex, "Age": age,
        "Ticket": [f"T{i:06d}" for i in rng.permutation(m)],
        "Fare": np.round(rng.lognormal(3 - 0.5 * pclass, 0.6), 2),
        "Embarked": rng.choice(["S", "C", "Q", "Z"], m, p=[0.7, 0.2, 0.095, 0.005]),
        "Survived": np.where(logit > 0, target[1], target[0])})
    root.mkdir(parents=True)
    frame.iloc[:n].to_csv(root / "train.csv", index=False)
    frame.iloc[n:].drop(columns="Survived").to_csv(root / "test.csv", index=False)
    frame.iloc[n:][["PassengerId"]].assign(Survived=target[0]).to_csv(
        root / "sample_submission.csv", index=False)
    return root


def as_text(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.astype(str).replace("nan", "")


def mixed_frame(rows: int = 300, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"a": rng.normal(5, 2, rows).round(2), "b": rng.integers(0, 40, rows),
                          "c": rng.lognormal(0, 1, rows).round(3),
                          "colour": rng.choice(["red", "green", "blue", "rare"], rows,
                                               p=[0.5, 0.3, 0.19, 0.01])}).astype(object)
    frame.loc[[3, 7, 11], "a"] = ""
    return as_text(frame)


# -- encoders against their references -------------------------------------------------------
def test_quantile_statistics_equal_scikit_learns_quantile_transformer():
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import QuantileTransformer

    train = mixed_frame()
    kinds = column_kinds(train, ["a", "b", "c"], Path("train.csv"))
    features = fit_encoders(train, kinds, "quantile", n_bins=16, rare_min_count=1)
    numbers = lambda f: f[["a", "b", "c"]].replace("", np.nan).astype(float)  # noqa: E731
    reference = make_pipeline(SimpleImputer(strategy="median"), QuantileTransformer(
        n_quantiles=10, output_distribution="normal", subsample=10**9)).fit(numbers(train))
    new = as_text(pd.DataFrame({"a": ["-50", "", "5.1", "100"], "b": ["0", "39", "20", "41"],
                                "c": ["0.0001", "1.5", "", "1e6"]}))
    for frame in (train, new):  # values beyond the training range, missing cells, ties
        assert np.allclose(numeric_block(frame, features), reference.transform(numbers(frame)),
                           atol=1e-6)
    assert [features["numeric"][c]["indicator"] for c in "abc"] == [True, False, False]


def test_standard_statistics_equal_scikit_learns_imputer_and_scaler():
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    train = mixed_frame(seed=2)
    kinds = column_kinds(train, list(train.columns), Path("train.csv"))
    assert kinds["numeric"] == ["a", "b", "c"] and kinds["categorical"] == ["colour"]
    features = fit_encoders(train, kinds, "standard", n_bins=16, rare_min_count=1)
    numbers = lambda f: f[["a", "b", "c"]].replace("", np.nan).astype(float)  # noqa: E731
    scaler = make_pipeline(SimpleImputer(strategy="median"), StandardScaler()).fit(numbers(train))
    onehot = OneHotEncoder(handle_unknown="ignore", sparse_output=False).fit(train[["colour"]])
    new = as_text(pd.DataFrame({"a": ["", "1"], "b": ["3", "99"], "c": ["1", "2"],
                                "colour": ["purple", "red"]}))
    for frame in (train, new):
        x = encode(frame, features)
        assert np.allclose(x[:, :3], scaler.transform(numbers(frame)), atol=1e-5)
        levels = features["categorical"]["colour"]  # index 0: rare or never seen
        ours = np.eye(len(levels) + 1)[x[:, 3].astype(int)][:, 1:]
        order = [list(onehot.categories_[0]).index(level) for level in levels]
        assert np.array_equal(ours, onehot.transform(frame[["colour"]])[:, order])
        assert np.array_equal(x[:, 4], (frame.a == "").to_numpy(dtype=float))  # indicator


def test_rare_levels_share_one_index_with_unseen_ones():
    train = mixed_frame(seed=3)
    kinds = column_kinds(train, ["colour"], Path("train.csv"))
    features = fit_encoders(train, kinds, "standard", n_bins=8, rare_min_count=5)
    counts = train.colour.value_counts()
    assert features["categorical"]["colour"] == [c for c in counts.index if counts[c] >= 5]
    x = encode(as_text(pd.DataFrame({"colour": ["rare", "never", "red"]})), features)
    assert x[:, 0].tolist() == [0, 0, 1 + features["categorical"]["colour"].index("red")]


def test_piecewise_linear_bins_and_embeddings_equal_rtdl_num_embeddings():
    from rtdl_num_embeddings import PiecewiseLinearEmbeddings, compute_bins

    from podium.model.tabular import TableInputs

    train = mixed_frame(seed=4)
    kinds = column_kinds(train, ["a", "b", "c"], Path("train.csv"))
    features = fit_encoders(train, kinds, "quantile", n_bins=12, rare_min_count=1)
    numbers = torch.as_tensor(numeric_block(train, features), dtype=torch.float32)
    reference_bins = compute_bins(numbers, n_bins=12)
    assert len(features["bins"]) == 3
    for ours, theirs in zip(features["bins"], reference_bins, strict=True):
        assert torch.equal(torch.tensor(ours, dtype=torch.float32), theirs)
    torch.manual_seed(0)
    inputs = TableInputs(features, "piecewise_linear", d_embedding=6)
    reference = PiecewiseLinearEmbeddings(reference_bins, 6, activation=False, version="B")
    reference.load_state_dict(inputs.num_module.state_dict())
    x = torch.from_numpy(encode(train, features))
    assert torch.allclose(inputs(x)[:, :18], reference(numbers).flatten(1), atol=1e-6)


def test_one_bin_columns_are_said_once_instead_of_a_warning_each(capsys):
    """rtdl_num_embeddings warns once per column with one bin (two edges), in every fold:
    podium says it in one line naming them, and the library's warnings are not shown."""
    import warnings

    from podium.model.tabular import TableInputs

    train = mixed_frame(seed=4)
    kinds = column_kinds(train, ["a", "b", "c"], Path("train.csv"))
    features = fit_encoders(train, kinds, "quantile", n_bins=12, rare_min_count=1)
    features["bins"][0] = features["bins"][0][:2]
    features["bins"][2] = features["bins"][2][-2:]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        TableInputs(features, "piecewise_linear", d_embedding=6)
    assert not [w for w in caught if "bin edges" in str(w.message)]
    names = list(features["numeric"])
    assert capsys.readouterr().out.splitlines() == [
        f"piecewise-linear embeddings: 2 numeric column(s) have one bin, i.e. are min-max "
        f"scaled: {names[0]}, {names[2]}"]


def test_podiums_tabm_computes_what_the_tabm_package_does():
    """Numbers through piecewise-linear embeddings and one-hot categories: tabm.TabM loads
    podium's weights (the same names, less the `inputs.` prefix) and predicts the same."""
    import tabm
    from rtdl_num_embeddings import PiecewiseLinearEmbeddings

    from podium.model.tabular import TabM

    train = mixed_frame(seed=5)
    kinds = column_kinds(train, list(train.columns), Path("train.csv"))
    features = fit_encoders(train, kinds, "quantile", n_bins=8, rare_min_count=1)
    torch.manual_seed(0)
    ours = TabM(in_features=5, num_classes=3, features=features, k=4, d_block=16).eval()
    bins = [torch.tensor(b, dtype=torch.float32) for b in features["bins"]]
    theirs = tabm.TabM.make(n_num_features=3, cat_cardinalities=[5, 2], d_out=3, k=4,
                            d_block=16, num_embeddings=PiecewiseLinearEmbeddings(
                                bins, 16, activation=False, version="B")).eval()
    theirs.load_state_dict({k.removeprefix("inputs."): v for k, v in ours.state_dict().items()})
    x = torch.from_numpy(encode(train, features))
    expected = theirs(x[:, :3], x[:, 3:].long())
    assert expected.shape == (len(train), 4, 3)
    assert torch.allclose(ours(x), expected, atol=1e-5)


def test_members_loss_is_the_mean_of_every_members_loss():
    from podium.model.outputs import OutputLoss

    logits, targets = torch.randn(6, 4, 3), torch.randint(0, 3, (6,))
    got = OutputLoss(torch.nn.CrossEntropyLoss(), members=True)(logits, targets)
    each = [torch.nn.functional.cross_entropy(logits[:, j], targets) for j in range(4)]
    assert torch.allclose(got, torch.stack(each).mean())


# -- the folder read as a table --------------------------------------------------------------
def test_column_kinds_name_text_ids_and_constants(tmp_path):
    train = pd.read_csv(titanic_like(tmp_path / "t") / "train.csv", dtype=str,
                        keep_default_na=False).assign(Deck="A")
    kinds = column_kinds(train, [c for c in train.columns if c != "Survived"], Path("x"))
    assert kinds == {"numeric": ["Pclass", "Age", "Fare"], "categorical": ["Sex", "Embarked"],
                     "text": ["Name"], "id": ["PassengerId", "Ticket"], "constant": ["Deck"]}


def test_a_yes_no_table_without_data_tabular_is_a_binary_table_for_tabm(tmp_path):
    root = titanic_like(tmp_path / "comp")
    cfg = make_cfg(tmp_path, [f"data.root={root}", "data.target_col=Survived"])
    assert cfg.data._target_ == "podium.data.tabular.TabularDataModule"
    assert (cfg.data.task, cfg.data.target_col, cfg.data.batch_size) == ("binary", "Survived",
                                                                         None)
    assert cfg.model.net._target_ == "podium.model.tabular.TabM"
    assert cfg.trainer.max_epochs is None and cfg.metric.monitor == "val/auroc"
    explicit = make_cfg(tmp_path, ["data=tabular", f"data.root={root}",
                                   "data.target_col=Survived", "data.task=multiclass"])
    assert explicit.data.task == "multiclass"  # said explicitly: kept
    assert explicit.model.net._target_ == "podium.model.tabular.TabM"  # not the ResNet


def test_infer_task_reads_the_target():
    from podium.data.labels import infer_task

    assert infer_task(["Yes", "No", "Yes"])[0] == "binary"
    assert infer_task(["0", "1", "1"])[0] == "binary"
    assert infer_task(["a", "b", "c"])[0] == "multiclass"
    assert infer_task(["1", "2", "3", "2"])[0] == "multiclass"
    assert infer_task(["1.5", "2", "3.25"])[0] == "regression"
    assert infer_task([str(i) for i in range(60)])[0] == "regression"


def test_rows_set_the_batch_size_and_the_epochs():
    from types import SimpleNamespace

    from podium.data.base import CompetitionDataModule, rows_batch_size

    assert [rows_batch_size(n) for n in (100, 455, 20_000, 40_000, 10**6)] == [
        16, 16, 256, 512, 1024]
    from podium.data.image import ImageDataModule

    def epochs(rows: int, kind=CompetitionDataModule, batch_size: int | None = None) -> int:
        return kind.suggested_max_epochs(SimpleNamespace(
            train_idx=range(rows), batch_size=batch_size or rows_batch_size(rows),
            epoch_range=kind.epoch_range))

    assert [epochs(n) for n in (455, 40_000, 10**6)] == [71, 26, 10]  # ~2000 steps
    # images: 30 epochs at least (CIFAR-10-LT's 9,924 training images: 155 steps an epoch),
    # more when small, 100 at most (the demo's 369 images: 5 steps an epoch)
    assert [epochs(n, ImageDataModule, 64) for n in (369, 2_000, 9_924)] == [100, 65, 30]


def test_max_steps_without_max_epochs_is_the_nearest_whole_epochs(tmp_path, capsys):
    """A preset's length in optimizer steps (experiment=finetune: 1,100): CIFAR-10-LT's 155
    batches an epoch make 7 epochs, the demo's 5 make 220; Lightning's max_steps is off."""
    from types import SimpleNamespace

    from podium.build import resolve_max_epochs
    from podium.data.image import ImageDataModule

    for rows, expected in ((9_924, 7), (369, 220)):
        cfg = make_cfg(tmp_path, ["trainer.max_steps=1100"])
        data = SimpleNamespace(train_idx=range(rows), batch_size=64,
                               epoch_range=ImageDataModule.epoch_range)
        data.suggested_max_epochs = partial(ImageDataModule.suggested_max_epochs, data)
        resolve_max_epochs(cfg, data)
        assert (cfg.trainer.max_epochs, cfg.trainer.max_steps) == (expected, -1)
        assert f"trainer.max_epochs={expected}" in capsys.readouterr().out


@pytest.fixture(scope="module")
def table_run(tmp_path_factory):
    """A table folder trained without data=tabular (TabM chosen, task binary from Yes/No)."""
    tmp = tmp_path_factory.mktemp("table")
    root = titanic_like(tmp / "comp")
    proc = run_cli("podium.train", f"data.root={root}", "data.target_col=Survived",
                   "data.id_col=PassengerId", "trainer.max_epochs=2",
                   f"paths.log_dir={tmp / 'logs'}", f"hydra.run.dir={tmp / 'run'}",
                   "print_config=false")
    return tmp / "run", root, proc


def test_a_table_folder_trains_and_says_what_it_read(table_run):
    run, _, proc = table_run
    out = proc.stdout
    assert "read as a table (data=tabular)" in out
    assert "data.task=binary (train.csv's Survived: 2 classes: No, Yes" in out
    assert "model: tabm (a table needs a tabular network" in out
    assert "  text column Name -> 6 SVD components of word 1-2 gram tf-idf (7 terms) and its " \
           "length: Name_svd1 ... Name_svd6, Name_length" in out
    assert "  numeric (10, quantile, up to 48 bins): Pclass, Name_svd1, " in out
    assert "; missing: Age 2" in out
    assert "  id-like, dropped (1): Ticket" in out
    submission = pd.read_csv(run / "submission.csv")
    assert list(submission.columns) == ["PassengerId", "Survived"]
    assert submission.Survived.between(0, 1).all()  # p(Yes), as the 0.5 sample cells say


def test_predict_with_the_training_data_gone_reproduces_the_test_predictions(table_run,
                                                                             tmp_path):
    run, root, _ = table_run
    got = predict_new_folder(tmp_path, run, root)
    own = pd.read_csv(run / "test_probs.csv", dtype={0: str})
    assert np.allclose(got.set_index("PassengerId").loc[own.PassengerId].to_numpy(),
                       own.set_index("PassengerId").to_numpy(), atol=1e-6)


def test_log1p_regression_predicts_in_the_targets_units_and_travels(tmp_path):
    """demo_regression with the tabular recipe (standard numbers, MLP and TabM alike learn
    log1p(y) standardised): metrics, test_probs.csv and a new folder's predictions are in
    the target's units; val/rmsle is the scikit-learn RMSLE of oof.csv."""
    from sklearn.metrics import mean_absolute_error, root_mean_squared_log_error

    root = build_tabular_demo(tmp_path / "demo_regression", "regression")
    run = tmp_path / "run"
    run_cli("podium.train", "data=demo_regression", "experiment=tabular", f"data.root={root}",
            f"data.demo_root={root}", "data.target_transform=log1p",
            "data.numeric_transform=standard", "data.num_bins=8", "data.rare_min_count=2",
            "model.net.k=4", "model.net.d_block=16", "trainer.max_epochs=3",
            "metric.competition=rmsle", f"paths.log_dir={tmp_path / 'logs'}",
            f"hydra.run.dir={run}", "print_config=false")
    oof = pd.read_csv(run / "oof.csv")
    metrics = pd.read_json(run / "metrics.json", typ="series")
    assert metrics["val/rmsle"] == pytest.approx(
        root_mean_squared_log_error(oof.target, oof.prediction.clip(lower=0)), rel=1e-4)
    assert metrics["val/mae"] == pytest.approx(mean_absolute_error(oof.target, oof.prediction),
                                               rel=1e-4)
    train = pd.read_csv(root / "train.csv")
    own = pd.read_csv(run / "test_probs.csv", dtype={"id": str})
    assert own.prediction.between(train.target.min() / 3, train.target.max() * 2).all()
    got = predict_new_folder(tmp_path, run, root)
    assert np.allclose(got.set_index("id").loc[own.id].prediction, own.prediction, rtol=1e-5)


@pytest.mark.parametrize("overrides", [["model=mlp"], ["model.net.num_embedding=none",
                                                       "model.net.onehot_max=2"]])
def test_other_tabular_networks_run_on_the_layout(overrides, tmp_path):
    """model=mlp reads the same layout (one-hot categories); TabM without numeric
    embeddings, with embedded categories above onehot_max."""
    from podium.build import build_run

    root = titanic_like(tmp_path / "comp", n=80)
    cfg = make_cfg(tmp_path, ["experiment=tabular", f"data.root={root}",
                              "data.target_col=Survived", "data.id_col=PassengerId",
                              "trainer.max_epochs=1", *overrides])
    data, module, _ = build_run(cfg)
    x, _ = next(iter(data.train_dataloader()))
    logits = module(x)
    assert logits.shape[0] == len(x) and logits.shape[-1] == 2
    assert torch.isfinite(logits).all()


# -- bad input: one line, nothing written ---------------------------------------------------
def train_error(tmp: Path, root: Path, *overrides: str) -> str:
    proc = run_cli("podium.train", f"data.root={root}", "data.target_col=Survived",
                   "data.id_col=PassengerId", f"paths.log_dir={tmp / 'logs'}",
                   f"hydra.run.dir={tmp / 'run'}", "print_config=false", *overrides,
                   check=False)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and lines[-1].startswith("error: "), proc.stderr[-800:]
    assert not list((tmp / "run").glob("*.csv")) and not (tmp / "run" / "checkpoints").exists()
    return lines[-1]


def test_log1p_of_a_negative_target_is_one_line(tmp_path):
    root = titanic_like(tmp_path / "comp", n=60)
    train = pd.read_csv(root / "train.csv", dtype=str, keep_default_na=False)
    train["Survived"] = np.linspace(-1, 5, len(train)).round(2).astype(str)
    train.to_csv(root / "train.csv", index=False)
    assert train_error(tmp_path, root, "data.target_transform=log1p") == (
        f"error: {root}/train.csv: data.target_transform=log1p needs Survived >= 0, but row 1 "
        f"holds -1.0 (10 negative value(s)); use data.target_transform=none")


def test_a_feature_column_missing_everywhere_is_one_line(tmp_path):
    root = titanic_like(tmp_path / "comp", n=60)
    train = pd.read_csv(root / "train.csv", dtype=str, keep_default_na=False)
    train.assign(Age="").to_csv(root / "train.csv", index=False)
    assert train_error(tmp_path, root) == (
        f"error: {root}/train.csv: feature column 'Age' is empty in every row (60 rows); "
        f"leave it out with data.drop_cols=[Age]")


def test_a_binary_table_whose_sample_holds_0_1_labels_is_scored_on_accuracy(tmp_path, capsys):
    """Titanic: no metric named, a 0/1 target and a sample submission of 0/1 labels. The
    run says it scores accuracy (AUROC scores probabilities, which the sample contradicts),
    trains, and writes 0/1 labels; val/acc is scikit-learn's accuracy of the validation
    rows. A metric the user names (auroc) keeps the one-line error."""
    import json

    from sklearn.metrics import accuracy_score

    from podium.errors import PodiumError
    from podium.train import train

    root = titanic_like(tmp_path / "comp", n=120, target=(0, 1))
    args = [f"data.root={root}", "data.target_col=Survived", "data.id_col=PassengerId",
            "trainer.max_epochs=2"]
    cfg = make_cfg(tmp_path, args, resolve=False)
    train(cfg)
    assert "metric: accuracy (no metric.competition named, and the sample submission holds " \
           "labels (0)" in capsys.readouterr().out
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert (saved["competition"], saved["monitor"]) == ("acc", "val/acc")
    oof = pd.read_csv(tmp_path / "run" / "oof.csv")
    assert saved["val/acc"] == pytest.approx(
        accuracy_score(oof.Survived, (oof["1"] > oof["0"]).astype(int)), abs=1e-6)
    submission = pd.read_csv(tmp_path / "run" / "submission.csv")
    assert set(submission.Survived) <= {0, 1} and len(submission) == 30
    named = make_cfg(tmp_path / "named", [*args, "metric.competition=auroc"], resolve=False)
    with pytest.raises(PodiumError, match="val/auroc scores probabilities"):
        train(named)


def test_the_sample_submission_names_the_id_and_target_columns_train_csv_holds(tmp_path):
    """Titanic with neither column named (train.csv has no `id` or `target`): `make cv`
    takes PassengerId and Survived from the sample submission's header, says so in one
    line, and its folds, oof.csv and submission use them. A name train.csv holds is kept,
    and a sample of other than two columns names nothing."""
    from conftest import run_cli
    from podium.data.detect import sample_columns

    root = titanic_like(tmp_path / "comp", n=80, target=(0, 1))
    logs = tmp_path / "logs"
    proc = run_cli("podium.train", "-m", "task_name=cv", "sweep_name=named",  # as a table
                   f"data.root={root}", "data.n_folds=2", "data.fold=0,1",
                   "trainer.max_epochs=1", f"paths.log_dir={logs}", "print_config=false")
    assert ("data: data.id_col=PassengerId, data.target_col=Survived (the sample "
            "submission's columns; train.csv has no 'id' or 'target': set data.id_col / "
            "data.target_col to choose)"
            in proc.stdout)
    [cv] = (logs / "cv" / "named").iterdir()
    oof = pd.read_csv(cv / "oof.csv")
    assert sorted(oof.PassengerId) == list(range(1, 81))
    assert oof.Survived.tolist() == pd.read_csv(root / "train.csv").set_index(
        "PassengerId").Survived.loc[oof.PassengerId].tolist()
    assert list(pd.read_csv(cv / "submission.csv").columns) == ["PassengerId", "Survived"]
    assert sample_columns(root, "train.csv", "sample_submission.csv", "PassengerId",
                          "target") == {"target_col": "Survived"}
    pd.read_csv(root / "sample_submission.csv").assign(Extra=0).to_csv(
        root / "sample_submission.csv", index=False)
    assert sample_columns(root, "train.csv", "sample_submission.csv", "id", "target") == {}


def test_an_image_folder_takes_the_id_column_from_the_sample_and_keeps_a_given_name(tmp_path):
    """An image competition whose CSVs say image_id: data.id_col becomes image_id, the
    default label stays (train.csv holds it); an id name given on the command line that
    train.csv lacks is kept, so its own one-line error stops the run later."""
    from conftest import make_cfg
    from podium.config import resolve_data

    root = tmp_path / "comp"
    (root / "train").mkdir(parents=True)
    pd.DataFrame({"image_id": ["a", "b"], "label": ["cat", "dog"]}).to_csv(
        root / "train.csv", index=False)
    pd.DataFrame({"image_id": ["c"], "label": ["cat"]}).to_csv(
        root / "sample_submission.csv", index=False)
    cfg = make_cfg(tmp_path, [f"data.root={root}"], resolve=False)
    resolve_data(cfg)
    assert (cfg.data.id_col, cfg.data.target_col) == ("image_id", "label")
    given = make_cfg(tmp_path, [f"data.root={root}", "data.id_col=name"], resolve=False)
    resolve_data(given)
    assert given.data.id_col == "name"


def test_a_class_named_like_the_target_column_trains_writes_and_ensembles(tmp_path):
    """A `dead` column holding alive/dead: the run writes oof.csv with the class columns
    alive and dead and the true labels in dead_true; val/acc is scikit-learn's accuracy of
    those rows, the submission holds the labels, and make submit reads the folder back to
    the same OOF score. A class named `fold` stops before training, in one line."""
    import json

    from sklearn.metrics import accuracy_score

    from conftest import run_cli, run_dirs
    from podium.errors import PodiumError
    from podium.train import train

    root = titanic_like(tmp_path / "comp", n=120, target=("alive", "dead"))
    for name in ("train.csv", "sample_submission.csv"):
        frame = pd.read_csv(root / name)
        frame.rename(columns={"Survived": "dead"}).to_csv(root / name, index=False)
    args = [f"data.root={root}", "data.target_col=dead", "data.id_col=PassengerId",
            "trainer.max_epochs=2", "metric.competition=accuracy"]
    run_cli("podium.train", *args, f"paths.log_dir={tmp_path / 'logs'}", "print_config=false")
    [run] = run_dirs(tmp_path / "logs")
    oof = pd.read_csv(run / "oof.csv")
    assert list(oof.columns) == ["PassengerId", "fold", "dead_true", "alive", "dead"]
    predicted = np.where(oof.dead > oof.alive, "dead", "alive")
    saved = json.loads((run / "metrics.json").read_text())
    assert saved["val/acc"] == pytest.approx(accuracy_score(oof.dead_true, predicted), abs=1e-6)
    assert set(pd.read_csv(run / "submission.csv").dead) <= {"alive", "dead"}
    proc = run_cli("podium.submit", f"runs=[{run}]", f"paths.log_dir={tmp_path / 'logs'}")
    assert f"OOF acc (metric.competition): {saved['oof_score']:.4f}" \
        in proc.stdout
    train_rows = pd.read_csv(root / "train.csv")
    train_rows["dead"] = train_rows.dead.replace({"alive": "fold"})
    train_rows.to_csv(root / "train.csv", index=False)
    with pytest.raises(PodiumError, match="a class is named 'fold', like the run files' fold"):
        train(make_cfg(tmp_path / "fold", args))


def test_an_oof_file_with_the_label_moved_reads_back_with_or_without_the_classes(tmp_path):
    """read_oof: the labels in dead_true when a class is named dead (given the classes, or
    found in the file as cv's id check reads it); an older file reads as before."""
    from podium import run

    path = tmp_path / "oof.csv"
    pd.DataFrame({"id": ["a", "b"], "fold": [0, 1], "dead_true": ["dead", "alive"],
                  "alive": [0.25, 0.5], "dead": [0.75, 0.5]}).to_csv(path, index=False)
    for classes in (["alive", "dead"], ()):
        frame = run.read_oof(path, "id", "dead", classes)
        assert list(frame.dead_true) == ["dead", "alive"]
        assert frame.dead.dtype == np.float32 and list(frame.dead) == [0.75, 0.5]
    pd.DataFrame({"id": ["a"], "fold": [0], "target": ["dead"], "alive": [0.25],
                  "dead": [0.75]}).to_csv(path, index=False)
    assert list(run.read_oof(path, "id", "target", ["alive", "dead"]).target) == ["dead"]
