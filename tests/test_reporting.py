"""Runs that report: one line per epoch off a terminal, best_epoch in metrics.json and on
the learning curves, a short config print, no known third-party noise, `make runs` grouped
by competition and metric."""

from __future__ import annotations

import importlib.util
import json
import logging
import math
import re
import warnings
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import torch
import yaml

from conftest import ROOT, make_cfg, run_cli, run_dirs

EPOCHS = 3
LINE = re.compile(r"^epoch=(\d+)  (.*)$")


@pytest.fixture(scope="module")
def piped_run(tmp_path_factory, demo_root):
    """A real `python -m podium.train` whose stdout is a pipe (not a terminal)."""
    logs = tmp_path_factory.mktemp("logs")
    proc = run_cli("podium.train", "debug=limit", f"trainer.max_epochs={EPOCHS}",
                   f"paths.log_dir={logs}", f"data.root={demo_root}",
                   f"data.demo_root={demo_root}", process=True)
    (run,) = run_dirs(logs)
    return proc.stdout, run


def epoch_lines(stdout: str) -> list[tuple[int, dict[str, str]]]:
    """(epoch, {field: value}) for every epoch line; `(best)` becomes best=yes."""
    lines = []
    for text in stdout.splitlines():
        match = LINE.match(text)
        if match:
            rest = match.group(2).replace(" (best)", " best=yes")
            lines.append((int(match.group(1)), dict(f.split("=", 1) for f in rest.split())))
    return lines


def logged_per_epoch(run, column: str) -> list[float]:
    """`column` at each training epoch 0..EPOCHS-1 in csv/metrics.csv (the row after fit,
    from the final validation, has epoch EPOCHS and is left out)."""
    frame = pd.read_csv(run / "csv" / "metrics.csv")
    return [frame.loc[(frame.epoch == e) & frame[column].notna(), column].item()
            for e in range(EPOCHS)]


def test_piped_run_prints_one_line_per_epoch(piped_run):
    stdout, run = piped_run
    lines = epoch_lines(stdout)
    assert [epoch for epoch, _ in lines] == list(range(EPOCHS))
    f1 = logged_per_epoch(run, "val/f1_macro")
    loss = logged_per_epoch(run, "train/loss_epoch")
    best_so_far = -math.inf
    for (epoch, fields), f1_e, loss_e in zip(lines, f1, loss, strict=True):
        assert float(fields["val/f1_macro"]) == pytest.approx(f1_e, abs=5.1e-5)
        assert float(fields["train/loss"]) == pytest.approx(loss_e, abs=5.1e-5)
        # the default schedule: cosine over max_epochs from optimizer.lr=3e-3, per epoch
        lr = 3e-3 * (1 + math.cos(math.pi * epoch / EPOCHS)) / 2
        assert float(fields["lr"]) == pytest.approx(lr, rel=5e-3)
        assert ("best" in fields) == (f1_e > best_so_far)  # strictly better, as the checkpoint
        best_so_far = max(best_so_far, f1_e)
        for key in ("elapsed", "eta"):
            assert re.fullmatch(r"\d+:\d\d:\d\d", fields[key]), fields
    assert lines[-1][1]["eta"] == "0:00:00"
    assert "it/s" not in stdout  # the progress bar is off in a pipe: the lines replace it
    assert "fit: epochs 0..2, 3 batches each, on cpu x1" in stdout


def test_metrics_json_names_the_best_epoch(piped_run):
    stdout, run = piped_run
    f1 = logged_per_epoch(run, "val/f1_macro")
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["best_epoch"] == f1.index(max(f1))  # the first epoch with the best value
    assert metrics["val/f1_macro"] == pytest.approx(max(f1), abs=1e-6)


def test_piped_run_prints_the_changed_keys_and_no_known_noise(piped_run, demo_root):
    stdout, run = piped_run
    lines = stdout.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("config: "))
    assert lines[head].startswith("config: debug=limit; 6 key(s) differ from conf/train.yaml")
    changed = dict(line.strip().split("=", 1) for line in lines[head + 1:head + 7])
    assert set(changed) == {"trainer.max_epochs", "trainer.limit_train_batches",
                            "trainer.limit_val_batches", "paths.log_dir", "data.root",
                            "data.demo_root"}
    assert changed["trainer.max_epochs"] == f"{EPOCHS}  (default: null)"
    assert changed["data.root"] == f"{demo_root}  (default: ./data/demo)"
    assert not lines[head + 7].startswith("  ")
    assert "├──" not in stdout
    for noise in ("GPU available", "TPU available", "litlogger"):
        assert noise not in stdout

    tree = (run / "config_tree.txt").read_text()  # the whole tree, as before
    for text in ("├── data", "└── ", "max_epochs: 3", "cache_ram_gb: 8", "val_fraction: 0.2"):
        assert text in tree


def test_print_config_lists_overrides_experiment_and_groups(tmp_path, capsys):
    from podium.config import print_config

    cfg = make_cfg(tmp_path, ["experiment=focal", "optimizer.lr=0.01"])
    print_config(cfg, tmp_path / "config_tree.txt")
    head, *lines = capsys.readouterr().out.splitlines()
    assert head.startswith("config: experiment=focal loss=focal; 6 key(s) differ")
    assert lines == [
        "  loss._target_=podium.losses.multiclass.FocalLoss  (default: torch.nn.CrossEntropyLoss)",
        "  loss.gamma=2.0",  # loss.alpha: null, a new key left unset, is not listed
        "  optimizer.lr=0.01  (default: 0.003)",
        f"  paths.root_dir={ROOT}  (default: .)",  # make_cfg's own changes
        f"  paths.log_dir={tmp_path / 'logs'}  (default: ./logs)",
        f"  paths.output_dir={tmp_path / 'run'}  (default: ${{hydra:runtime.output_dir}})",
    ]
    assert "alpha: null" in (tmp_path / "config_tree.txt").read_text()

    print_config(cfg, None, full=True)
    assert "├── loss" in capsys.readouterr().out


def test_quiet_known_noise_drops_only_the_known_lines():
    from lightning.pytorch.utilities import rank_zero_info
    from lightning_utilities.core import rank_zero
    from omegaconf import OmegaConf

    from podium.train import quiet_known_noise

    records = []
    handler = logging.Handler(logging.INFO)
    handler.emit = records.append
    logger = rank_zero.log  # where Lightning's rank_zero_info lines come from
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            quiet_known_noise(OmegaConf.create({}))
            warnings.warn("`isinstance(treespec, LeafSpec)` is deprecated, use ...",
                          FutureWarning, stacklevel=1)
            warnings.warn("some other deprecation", FutureWarning, stacklevel=1)
            rank_zero_info("GPU available: True (cuda), used: True")
            rank_zero_info("TPU available: False, using: 0 TPU cores")
            rank_zero_info("💡 Tip: For seamless cloud logging and experiment tracking, ...")
            rank_zero_info("Restoring states from the checkpoint path at best.ckpt")
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    assert [str(w.message) for w in caught] == ["some other deprecation"]
    assert [r.getMessage() for r in records] == [
        "Restoring states from the checkpoint path at best.ckpt"]


def test_epoch_lines_setting():
    from podium.callbacks.epoch_lines import EpochLines, wants_lines
    from podium.errors import PodiumError

    assert wants_lines(True) and wants_lines("true") and not wants_lines(False)
    assert wants_lines("auto") is True  # pytest captures stdout: not a terminal
    for bad in ("sometimes", 1):
        with pytest.raises(PodiumError, match=f"callbacks.epoch_lines.enabled={bad!r}"):
            EpochLines(enabled=bad)


def test_learning_curves_mark_the_best_checkpoint_epoch(tmp_path, monkeypatch):
    import podium.callbacks.curves
    from podium.callbacks.checkpoints import checkpoint_epoch
    from podium.callbacks.curves import LearningCurves

    rows = [{"epoch": e, "step": e, "val/loss": 1 - e / 10, "val/f1_macro": f1,
             "train/loss_epoch": 2 - e / 10} for e, f1 in enumerate([0.2, 0.6, 0.4])]
    csv = tmp_path / "metrics.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)
    fig = podium.callbacks.curves.plot_learning_curves(csv, tmp_path / "curves.png", "val/f1_macro",
                                             best_epoch=1)
    for ax in fig.axes[:2]:
        (line,) = [x for x in ax.get_lines() if x.get_label() == "best.ckpt (epoch 1)"]
        assert list(line.get_xdata()) == [1, 1]
    assert not [x for x in fig.axes[2].get_lines() if "best" in x.get_label()]

    ckpt = tmp_path / "best.ckpt"
    torch.save({"epoch": 7, "state_dict": {"w": torch.zeros(3)}}, ckpt)
    assert checkpoint_epoch(ckpt) == 7 and checkpoint_epoch(None) is None
    drawn = {}
    monkeypatch.setattr(podium.callbacks.curves, "plot_learning_curves",
                        lambda metrics, path, monitor, best_epoch: drawn.update(epoch=best_epoch))
    logger = SimpleNamespace(save=lambda: None, log_dir=str(tmp_path))
    monkeypatch.setattr("lightning.pytorch.loggers.CSVLogger", SimpleNamespace)
    trainer = SimpleNamespace(is_global_zero=True, loggers=[logger], checkpoint_callback=
                              SimpleNamespace(best_model_path=str(ckpt), monitor="val/f1_macro"))
    LearningCurves(str(tmp_path)).on_fit_end(trainer, None)
    assert drawn == {"epoch": 7}


spec = importlib.util.spec_from_file_location("summarize_runs", ROOT / "scripts/summarize_runs.py")
summarize_runs = importlib.util.module_from_spec(spec)
spec.loader.exec_module(summarize_runs)


def fake_run(folder, root, monitor, value, seed=1, trainer=None, debug=None, overrides=(),
             test_prior="train"):
    """A run folder as Hydra and podium.train leave it (config.yaml unresolved)."""
    (folder / ".hydra").mkdir(parents=True)
    config = {"seed": seed, "run_name": "${hydra:runtime.choices.experiment}",
              "paths": {"root_dir": "/comp", "data_dir": "${paths.root_dir}/data"},
              "data": {"root": root, "test_prior": test_prior},
              "trainer": {"max_epochs": 5, **(trainer or {})},
              "metric": {"monitor": monitor, "mode": None}}
    (folder / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    (folder / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump(
        {"hydra": {"runtime": {"choices": {"experiment": "focal", "debug": debug}}}}))
    (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([*overrides,
                                                                       f"seed={seed}"]))
    (folder / "metrics.json").write_text(json.dumps(
        {monitor: value, "monitor": monitor, "epochs": 5, "best_epoch": 3}))


def test_make_runs_ranks_within_each_competition_and_metric(tmp_path, capsys):
    fake_run(tmp_path / "a1", "${paths.data_dir}/digits", "val/f1_macro", 0.70)
    fake_run(tmp_path / "a2", "${paths.data_dir}/digits", "val/f1_macro", 0.90)
    fake_run(tmp_path / "a3", "/comp/data/digits", "val/f1_macro", 0.95,
             trainer={"limit_train_batches": 3})  # a quick check: after the real runs
    fake_run(tmp_path / "a4", "/comp/data/digits", "val/f1_macro", 0.99, debug="fdr")
    fake_run(tmp_path / "b1", "/comp/data/houses", "val/loss", 0.5)
    fake_run(tmp_path / "b2", "/comp/data/houses", "val/loss", 0.2)
    assert summarize_runs.main([str(tmp_path)]) == 0

    table = pd.read_csv(tmp_path / "runs.csv", keep_default_na=False)
    table["name"] = table.path.map(lambda p: p.rsplit("/", 1)[-1])
    groups = {key: list(g.name) for key, g in table.groupby(["data_root", "competition"],
                                                             sort=False)}
    assert groups == {("/comp/data/digits", "f1_macro"): ["a2", "a1", "a4", "a3"],
                      ("/comp/data/houses", "loss"): ["b2", "b1"]}  # min: lowest first
    assert set(table.scored_on) == {"val"}
    assert list(table["rank"]) == [1, 2, 3, 4, 1, 2]
    assert list(table.debug) == ["", "", "debug=fdr", "limit_train_batches=3", "", ""]
    assert set(table.run_name) == {"focal"} and set(table.best_epoch) == {3}
    out = capsys.readouterr().out
    assert "6 runs under" in out and "2 group(s)" in out
    assert ("data.root=/comp/data/digits  metric.competition=f1_macro  data.test_prior=train"
            "  (4 runs)") in out
    assert "data.root=/comp/data/houses  metric.competition=loss  data.test_prior=train" in out


def test_make_runs_ranks_scores_under_another_test_prior_apart(tmp_path):
    """A validation score weighted to a uniform test prior is another yardstick: its run
    is ranked in a group of its own, even when its number is the best."""
    fake_run(tmp_path / "a", "/comp/d", "val/f1_macro", 0.70)
    fake_run(tmp_path / "b", "/comp/d", "val/f1_macro", 0.90, test_prior="uniform")
    fake_run(tmp_path / "c", "/comp/d", "val/f1_macro", 0.80)
    assert summarize_runs.main([str(tmp_path)]) == 0
    table = pd.read_csv(tmp_path / "runs.csv")
    ranks = {Path(p).name: (prior, rank) for p, prior, rank in
             zip(table.path, table.test_prior, table["rank"], strict=True)}
    assert ranks == {"c": ("train", 1), "a": ("train", 2), "b": ("uniform", 1)}


def test_make_runs_keeps_seed_groups_within_a_competition(tmp_path):
    fake_run(tmp_path / "x", "/comp/a", "val/f1_macro", 0.6, seed=1, overrides=["loss=focal"])
    fake_run(tmp_path / "y", "/comp/b", "val/f1_macro", 0.8, seed=2, overrides=["loss=focal"])
    fake_run(tmp_path / "z", "/comp/b", "val/f1_macro", 0.9, seed=3, overrides=["loss=focal"])
    table = summarize_runs.best_first(summarize_runs.collect(tmp_path))
    assert list(table.data_root) == ["/comp/a", "/comp/b", "/comp/b"]
    assert list(table.seeds) == [1, 2, 2]
    assert table.seed_mean[1:].tolist() == pytest.approx([0.85, 0.85])
    assert pd.isna(table.seed_mean[0])


def test_make_runs_shows_an_unresolvable_root_as_written():
    config = {"data": {"root": "${oc.env:PODIUM_NOT_SET}/x"}, "run_name": "${hydra:job.name}"}
    assert summarize_runs.resolved(config, {}, "data.root") == "${oc.env:PODIUM_NOT_SET}/x"
    assert summarize_runs.resolved(config, {"job": {"name": "train"}}, "run_name") == "train"
