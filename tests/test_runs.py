"""`make runs`: the table of runs under a folder (scripts/summarize_runs.py)."""

from __future__ import annotations

import importlib.util
import json
import time

import pandas as pd
import pytest
import yaml

from conftest import ROOT, run_cli, run_dirs

spec = importlib.util.spec_from_file_location("summarize_runs", ROOT / "scripts/summarize_runs.py")
summarize_runs = importlib.util.module_from_spec(spec)
spec.loader.exec_module(summarize_runs)


def fake_run(folder, experiment, overrides, seed, value, epochs=5, failed=False, mode="max"):
    hydra_dir = folder / ".hydra"
    hydra_dir.mkdir(parents=True)
    (hydra_dir / "config.yaml").write_text(yaml.safe_dump(
        {"seed": seed, "metric": {"monitor": "val/f1_macro", "mode": mode}}))
    (hydra_dir / "hydra.yaml").write_text(yaml.safe_dump(
        {"hydra": {"runtime": {"choices": {"experiment": experiment}}}}))
    (hydra_dir / "overrides.yaml").write_text(yaml.safe_dump(
        [*overrides, f"seed={seed}", "paths.log_dir=/somewhere"]))
    if failed:
        (folder / "failed.txt").write_text("ValueError: boom\n")
    else:
        (folder / "metrics.json").write_text(json.dumps(
            {"val/f1_macro": value, "monitor": "val/f1_macro", "epochs": epochs}))


def test_three_fake_runs_best_first_with_seed_groups(tmp_path, capsys):
    fake_run(tmp_path / "a", "focal", ["loss.gamma=2"], 1, 0.80)
    fake_run(tmp_path / "b", "focal", ["loss.gamma=2", "threads=1", "deadline=1796698366"],
             2, 0.90)  # how fast it ran (make stack's member) does not split the seeds
    fake_run(tmp_path / "c", "baseline", [], 1, 0.85, epochs=7)
    fake_run(tmp_path / "d", "baseline", ["optimizer.lr=9"], 1, None, failed=True)
    assert summarize_runs.main([str(tmp_path)]) == 0

    table = pd.read_csv(tmp_path / "runs.csv")
    assert list(table.path.map(lambda p: p.rsplit("/", 1)[-1])) == ["b", "c", "a", "d"]
    assert list(table.status) == ["ok", "ok", "ok", "failed"]
    focal = table[table.experiment == "focal"]
    assert focal.seed_mean.tolist() == pytest.approx([0.85, 0.85])
    assert focal.seed_std.tolist() == pytest.approx([0.05, 0.05])
    assert focal.seeds.tolist() == [2, 2]
    assert table.loc[1, "seeds"] == 1 and pd.isna(table.loc[1, "seed_mean"])
    assert table.loc[1, "epochs"] == 7
    assert table.loc[0, "overrides"] == "loss.gamma=2 seed=2"  # paths.*, threads= hidden
    out = capsys.readouterr().out
    assert "4 runs under" in out and "0.9000" in out


def test_an_ensemble_is_ranked_by_its_chains_cross_fitted_score(tmp_path):
    fake_run(tmp_path / "a", "focal", [], 1, 0.80)
    fake_run(tmp_path / "c", "baseline", [], 1, 0.85)
    blend = tmp_path / "submit" / "ensemble" / "2026-12-07_18-00-00"
    (blend / ".hydra").mkdir(parents=True)
    (blend / ".hydra" / "config.yaml").write_text(yaml.safe_dump({"task_name": "submit"}))
    (blend / "metrics.json").write_text(json.dumps(
        {"runs": [str(tmp_path / "a"), str(tmp_path / "c")], "weights": [0.25, 0.75],
         "metric": "f1_macro", "oof_score": 0.9, "oof_score_submitted": 0.875}))
    table = summarize_runs.best_first(summarize_runs.collect(tmp_path))
    assert table.experiment.tolist() == ["ensemble", "baseline", "focal"]
    row = table.iloc[0]
    assert row.score == 0.875 and row.scored_on == "oof: chain cross-fitted"
    assert row.overrides == "a:0.25 c:0.75" and row.path == str(blend)
    # a cv folder's folds (0, 1, ...) are one member, their shares summed
    (blend / "metrics.json").write_text(json.dumps(
        {"runs": [str(tmp_path / "a"), str(tmp_path / "cv" / "0"), str(tmp_path / "cv" / "1")],
         "weights": [0.5, 0.3, 0.2], "metric": "f1_macro", "oof_score_submitted": 0.875}))
    row = summarize_runs.best_first(summarize_runs.collect(tmp_path)).iloc[0]
    assert row.overrides == "a:0.50 cv:0.50"


def test_minimised_monitor_sorts_lowest_first(tmp_path):
    for name, value in (("x", 0.5), ("y", 0.2)):
        fake_run(tmp_path / name, "baseline", [], 1, 0, mode=None)  # inferred: min
        (tmp_path / name / "metrics.json").write_text(
            json.dumps({"val/loss": value, "monitor": "val/loss", "epochs": 1}))
    table = summarize_runs.best_first(summarize_runs.collect(tmp_path))
    assert table.best.tolist() == [0.2, 0.5]


def test_a_real_two_seed_multirun(tmp_path, demo_root, capsys):
    logs = tmp_path / "logs"
    started = time.monotonic()
    run_cli("podium.train", "-m", "seed=1,2", "debug=limit", "trainer.max_epochs=1",
            "model.net.depth=8", "model.net.width=4", f"data.root={demo_root}",
            f"data.demo_root={demo_root}", f"paths.log_dir={logs}")
    elapsed = time.monotonic() - started
    runs = sorted(p.parent for p in (logs / "train").glob("multirun/*/*/.hydra"))
    assert len(runs) == 2
    values = [json.loads((r / "metrics.json").read_text())["val/f1_macro"] for r in runs]

    capsys.readouterr()
    assert summarize_runs.main([str(logs)]) == 0  # `make runs DIR=...`
    assert "2 runs under" in capsys.readouterr().out
    table = pd.read_csv(logs / "runs.csv")
    assert sorted(table.path) == sorted(str(r) for r in runs)
    assert table.best.tolist() == sorted(values, reverse=True)
    assert table.seeds.tolist() == [2, 2] and table.experiment.tolist() == ["baseline"] * 2
    assert table.seed_mean[0] == pytest.approx(sum(values) / 2)
    assert (table.epochs == 1).all()
    # each run's seconds (its config to its metrics.json): one after the other, within the
    # multirun's time as measured here; a training takes longer than a tenth of a second
    assert (table.wall_s >= 0.1).all() and table.wall_s.sum() <= elapsed + 0.1
    assert run_dirs(logs) == []  # the multirun wrote no single-run folders


def fake_cv(folder, competition, oof_score, fold_scores):
    """A cross-validation folder: folds (runs) + the gathered metrics.json."""
    for i, value in enumerate(fold_scores):
        hydra_dir = folder / str(i) / ".hydra"
        hydra_dir.mkdir(parents=True)
        (hydra_dir / "config.yaml").write_text(yaml.safe_dump(
            {"seed": 1, "metric": {"competition": competition, "monitor": None}}))
        (folder / str(i) / "metrics.json").write_text(json.dumps(
            {f"val/{competition}": value, "monitor": f"val/{competition}",
             "competition": competition, "epochs": 2}))
    (folder / "metrics.json").write_text(json.dumps(
        {"folds": len(fold_scores), f"oof/{competition}": oof_score, "oof_score": oof_score,
         "metric": competition}))


@pytest.mark.parametrize(("competition", "order"), [("logloss", ["low", "high"]),
                                                   ("auroc", ["high", "low"])])
def test_cv_folders_rank_by_oof_in_the_metrics_direction(tmp_path, competition, order):
    """Ranked by the OOF score, not by a fold's best validation score (here the folder
    with the better folds has the worse OOF), lowest first for log-loss."""
    fake_cv(tmp_path / "low", competition, 0.30, [0.9, 0.95])
    fake_cv(tmp_path / "high", competition, 0.80, [0.1, 0.2])
    assert summarize_runs.main([str(tmp_path)]) == 0
    table = pd.read_csv(tmp_path / "runs.csv")
    assert [p.rsplit("/", 1)[-1] for p in table.path] == order
    assert table.scored_on.tolist() == ["oof", "oof"]
    assert sorted(table.score) == [0.30, 0.80]
    assert table.competition.tolist() == [competition] * 2
