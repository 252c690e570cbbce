"""DDP on 2 CPU processes (trainer=ddp_cpu): one run folder, one submission, synced metrics."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf

from conftest import CONF, ROOT, run_cli, run_dirs


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory, demo_root):
    logs = tmp_path_factory.mktemp("logs")
    proc = run_cli("podium.train", "trainer=ddp_cpu", "debug=limit", "trainer.max_epochs=1",
                   "model.net.depth=8", "model.net.width=4",
                   "tta=hflip", f"data.root={demo_root}", f"data.demo_root={demo_root}",
                   f"paths.log_dir={logs}", process=True)
    return logs, proc


def test_tta_is_proven_on_every_ranks_validation_rows(ddp_run):
    """The views are checked against the plain prediction on the whole validation split
    (both ranks' shards), as in one process: kept only when they do not lower the score."""
    from sklearn.metrics import f1_score

    logs, proc = ddp_run
    [run] = run_dirs(logs)
    tta = json.loads((run / "metrics.json").read_text())["tta"]
    scores = []
    for name in ("oof.csv", "oof_tta.csv"):
        oof = pd.read_csv(run / name, dtype=str)
        classes = list(oof.columns[3:])
        predicted = np.array(classes)[oof[classes].astype(float).to_numpy().argmax(1)]
        scores.append(f1_score(oof.label, predicted, labels=classes, average="macro"))
    # before: the plain view; in-sample: the better view on every row (plain on a tie)
    assert (tta["before"], tta["after_in_sample"]) == pytest.approx(
        (scores[0], max(scores)), abs=1e-6)
    assert tta["used"] == (tta["after_cross_fitted"] - tta["before"] > tta["se"])
    assert f"tta: OOF f1_macro {tta['before']:.4f} -> {tta['after_cross_fitted']:.4f}" \
        in proc.stdout


def test_per_class_report_covers_every_rank(ddp_run):
    logs, _ = ddp_run
    [run] = run_dirs(logs)
    table = pd.read_csv(run / "report" / "per_class.csv")
    oof = pd.read_csv(run / "oof.csv", dtype=str)
    assert table["support"].sum() == len(oof)  # the whole split, not one rank's half
    assert (run / "report" / "confusion_matrix.png").is_file()


def test_one_run_folder_one_submission(ddp_run, demo_root):
    logs, proc = ddp_run
    [run] = run_dirs(logs)  # rank 1 re-ran the script into the same folder
    assert proc.stdout.count("run folder:") == 1  # only rank zero reports
    assert sorted(p.name for p in run.glob("submission*.csv")) == ["submission.csv"]
    submission = pd.read_csv(run / "submission.csv", dtype=str)
    sample = pd.read_csv(demo_root / "sample_submission.csv", dtype=str)
    assert list(submission.id) == list(sample.id)  # every test id once, in order
    assert len(list((run / "checkpoints").glob("*.ckpt"))) == 2  # best + last, once


def test_metrics_and_predictions_equal_a_single_process_evaluation(ddp_run):
    import lightning as L

    from podium.build import build_datamodule, build_module

    logs, _ = ddp_run
    [run] = run_dirs(logs)
    cfg = OmegaConf.load(run / ".hydra" / "config.yaml")
    cfg.paths = OmegaConf.create({"root_dir": str(ROOT), "data_dir": str(ROOT / "data"),
                                  "log_dir": str(logs), "output_dir": str(run)})
    cfg.trainer = OmegaConf.load(CONF / "trainer" / "default.yaml")
    data = build_datamodule(cfg)
    data.setup("fit")
    module = build_module(cfg, data.spec)
    ckpt = torch.load(run / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=False)
    module.load_state_dict(ckpt["state_dict"])
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                        enable_checkpointing=False)
    single = trainer.validate(module, datamodule=data, verbose=False)[0]
    metrics = json.loads((run / "metrics.json").read_text())
    monitor = metrics["monitor"]
    # DistributedSampler pads the validation set to a multiple of the world size with
    # repeated samples; with an even split the synced metric is exactly the single one.
    assert len(data.val_idx) % 2 == 0
    assert metrics[monitor] == pytest.approx(single[monitor], abs=1e-5)

    module.eval()  # the gathered validation predictions (oof.csv), in dataset order
    with torch.no_grad():
        probs = module(data.val_set.inputs[data.val_set.index]).softmax(1).numpy()
    oof = pd.read_csv(run / "oof.csv", dtype={"id": str})
    assert list(oof.id) == [str(i) for i in data.oof_ids]
    assert np.allclose(oof[list(data.class_names)].to_numpy(), probs, atol=1e-5)
