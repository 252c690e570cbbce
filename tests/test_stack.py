"""make stack: members on the same folds within a budget, blended on the one road."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import run_cli
from podium import stack as stack_module
from podium.errors import PodiumError


@pytest.mark.parametrize(("given", "expected"), [("900", 900), ("90s", 90), ("15m", 900),
                                                 ("1.5h", 5400), (120, 120)])
def test_budget_reads_seconds_minutes_and_hours(given, expected):
    assert stack_module.seconds(given) == expected


@pytest.mark.parametrize("given", ["15 minutes", "-3m", "0", "m"])
def test_a_bad_budget_is_one_line(given):
    with pytest.raises(PodiumError, match="budget="):
        stack_module.seconds(given)


def test_a_booster_starts_only_while_the_time_left_exceeds_the_longest_so_far(
        tmp_path, monkeypatch, capsys):
    clock = {"now": 0.0}
    took = {"lightgbm": 50.0, "catboost": 30.0, "xgboost": 5.0}
    ran = {}

    def fake_run(name, command, folder, timeout):
        ran[name] = command, timeout
        clock["now"] += took[name]
        return stack_module.Finished(name, folder, took[name], "ok")
    monkeypatch.setattr(stack_module, "run_member", fake_run)
    monkeypatch.setattr(stack_module.time, "monotonic", lambda: clock["now"])
    done = stack_module.run_boosters(tmp_path, 5, [], ["lightgbm", "catboost", "xgboost"],
                                     deadline=90.0, ends=1_000_081.0)
    # after lightgbm 40 s are left, less than its 50 s: neither catboost nor xgboost starts
    assert [f.name for f in done] == ["lightgbm"]
    # its folds end when the network's do; it is killed only a minute past the budget
    command, timeout = ran["lightgbm"]
    assert "deadline=1000081" in command and timeout == 90.0 + 60
    out = capsys.readouterr().out
    assert "catboost not started: 40 s of the budget left, the longest booster took 50 s" in out


@pytest.fixture(scope="module")
def stacked(tmp_path_factory):
    from podium.data.demo import build_tabular_demo

    base = tmp_path_factory.mktemp("stack")
    root = build_tabular_demo(base / "demo_binary", "binary")
    logs = base / "logs"
    proc = run_cli("podium.stack", "data=demo_binary", f"data.root={root}",
                   f"data.demo_root={root}", "data.n_folds=2", "budget=5m",
                   "members=[network,lightgbm,xgboost]", "trainer.max_epochs=2",
                   "callbacks.early_stopping.patience=5",  # a key of the network's recipe only
                   f"paths.log_dir={logs}")
    [folder] = list((logs / "stack" / "stack").iterdir())
    return folder, root, proc.stdout


def test_every_member_is_a_podium_folder_on_the_same_folds(stacked):
    folder, root, _ = stacked
    members = folder / "members"
    folds = {}
    for name in ("network", "lightgbm", "xgboost"):
        oof = pd.read_csv(members / name / "oof.csv", dtype={"id": str})
        folds[name] = oof.set_index("id").fold.sort_index()
        assert sorted(oof.id) == sorted(pd.read_csv(root / "train.csv", dtype={"id": str}).id)
    assert folds["network"].equals(folds["lightgbm"]) and folds["lightgbm"].equals(
        folds["xgboost"])
    # what was given is passed on to every member (a key of the network's recipe too, which
    # the boosters accept); the stack's own keys are not
    for overrides in (members / "lightgbm/.hydra/overrides.yaml",
                      members / "network/0/.hydra/overrides.yaml"):
        given = yaml.safe_load(overrides.read_text())
        assert f"data.root={root}" in given and "trainer.max_epochs=2" in given
        assert "callbacks.early_stopping.patience=5" in given
        assert not [o for o in given if o.startswith(("budget=", "members="))]


def test_the_file_is_the_members_blend_and_the_table_lists_them(stacked):
    folder, root, said = stacked
    metrics = json.loads((folder / "metrics.json").read_text())
    assert {m["status"] for m in metrics["members"].values()} == {"ok"}
    members = folder / "members"
    probs = [pd.read_csv(members / n / "test_probs.csv", dtype={"id": str}).set_index("id")
             for n in ("network", "lightgbm", "xgboost")]
    submission = pd.read_csv(folder / "submission.csv", dtype={"id": str}).set_index("id")
    blend = metrics.get("blend") or {}
    if not blend.get("used"):  # equal weights: the plain mean of the members' probabilities
        mean = sum(p.malignant for p in probs) / 3
        assert np.allclose(submission.target, mean.loc[submission.index], atol=1e-6)
    lines = said.splitlines()
    head = lines.index(next(line for line in lines if line.startswith("member ")
                            and "OOF auroc" in line))
    assert [line.split()[0] for line in lines[head + 1:head + 5]] == [
        "lightgbm", "xgboost", "network", "stack"]


def test_predict_and_export_of_the_stack_rebuild_its_file(stacked, tmp_path):
    """make predict RUN=<stack> and make export RUN=<stack> read the stack's folder as the
    members it blended, at its weights: the new file's probabilities are the stack's own,
    and the bundle keeps one member per stack member (the network's folds inside its
    own), so the bundle alone predicts the same."""
    folder, root, _ = stacked
    logs = tmp_path / "logs"
    own = pd.read_csv(folder / "test_probs.csv", dtype={"id": str}).set_index("id")

    def predicted(*given: str) -> pd.DataFrame:
        proc = run_cli("podium.predict", *given, f"data.root={root}", f"paths.log_dir={logs}")
        assert proc.returncode == 0, proc.stdout[-2000:]
        newest = max((logs / "predict").iterdir(), key=lambda p: p.stat().st_mtime)
        got = pd.read_csv(newest / "test_probs.csv", dtype={"id": str}).set_index("id")
        return got.loc[own.index, own.columns]

    assert np.allclose(predicted(f"runs=[{folder}]"), own, atol=1e-6)
    proc = run_cli("podium.export", f"runs=[{folder}]", "wheel=false", f"paths.log_dir={logs}")
    assert proc.returncode == 0, proc.stdout[-2000:]
    [bundle] = list((logs / "export").iterdir())
    manifest = json.loads((bundle / "bundle.json").read_text())
    assert [Path(s).name for s in manifest["sources"]] == ["lightgbm", "xgboost", "network"]
    assert sorted(p.name for p in (bundle / "members/2").iterdir()) == ["0", "1"]  # its folds
    assert np.allclose(predicted(f"export={bundle}"), own, atol=1e-6)


def test_a_blend_folder_stands_for_what_it_blended_at_its_weights(tmp_path):
    """ensemble_runs by hand: a submit folder of a whole cv folder (3 folds) and a booster
    stands for the cv folder (its folds' shares summed) and the booster, times the folder's
    own weight; one that blended a single fold keeps that fold; run folders pass as given."""
    from podium.submission.members import ensemble_runs

    def folder(path, config=None, metrics=None):
        path.mkdir(parents=True)
        if config is not None:
            (path / ".hydra").mkdir()
            (path / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
        if metrics is not None:
            (path / "metrics.json").write_text(json.dumps(metrics))
        return path
    cv = tmp_path / "cv"
    folds = [folder(cv / str(k), {"data": {"fold": k}}) for k in range(3)]
    trees = folder(tmp_path / "lightgbm", {"data": {"fold": None}, "task_name": "gbdt"})
    (trees / "models").mkdir()
    whole = folder(tmp_path / "whole", {"task_name": "submit"},
                   {"runs": [str(trees), *map(str, folds)], "weights": [0.4, 0.2, 0.2, 0.2]})
    one = folder(tmp_path / "one", {"task_name": "submit"},
                 {"runs": [str(folds[0]), str(trees)], "weights": [1.0, 1.0]})
    found, weights = ensemble_runs([whole, trees], [2.0, 1.0])
    assert found == [trees, cv] and weights == pytest.approx([0.8 + 1.0, 1.2])
    assert ensemble_runs([one]) == ([folds[0], trees], [0.5, 0.5])
    assert ensemble_runs([trees, cv]) == ([trees, cv], None)  # as given: equal weights


def test_a_fold_under_a_deadline_gets_its_share_of_the_time_left(tmp_path):
    import time

    from conftest import make_cfg
    from podium.train import plan_fold

    cfg = make_cfg(tmp_path, ["data.n_folds=3", "data.fold=1"])
    cfg.deadline = time.time() + 100
    plan_fold(cfg)
    # two folds left (this one and the next) share 100 s, less a quarter for predicting
    assert cfg.trainer.max_time in ("00:00:00:37", "00:00:00:36")
    assert cfg.callbacks.epoch_lines.folds_after == 1


def test_members_that_fail_say_why_and_the_stack_does_not_blame_the_budget(tmp_path):
    """Every member fails on the data (a target column train.csv lacks): each status and the
    stack's one-line error carry the member's own error line, not 'give a larger budget'."""
    from podium.data.demo import build_tabular_demo

    root = build_tabular_demo(tmp_path / "demo_binary", "binary")
    proc = run_cli("podium.stack", "data=demo_binary", f"data.root={root}",
                   f"data.demo_root={root}", "data.target_col=Nope", "data.n_folds=2",
                   "budget=5m", "members=[lightgbm]", f"paths.log_dir={tmp_path / 'logs'}",
                   check=False)
    missing = "column 'Nope' not found"
    assert proc.returncode == 2 and missing in proc.stdout  # the member's status line
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: every member failed; lightgbm: (exit 2: ") and missing in last
    assert "budget" not in last
