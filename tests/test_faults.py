"""Nothing lost: SIGKILL at three moments, resume, and finish exactly like an uninterrupted
run; two identical runs give byte-identical outputs (CPU, trainer.deterministic=true)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import ROOT

# A tiny budget: 4 epochs of 3 batches. hydra.run.dir pins each run folder. metric.k=9 (of
# 10 classes): a resumed run's first validation then has every true class within the top k,
# the case in which torchmetrics' automatic compute groups gave mrr map@9's value.
BUDGET = ["model.net.depth=8", "trainer.max_epochs=4", "++trainer.limit_train_batches=3",
          "trainer.deterministic=true", "seed=7", "metric.k=9"]

# Runs podium.train in this process after installing a fault hook chosen by PODIUM_TEST_KILL:
#   step:N         SIGKILL as training step N begins (mid-epoch when N is not a multiple of
#                  the 3 batches per epoch); at a step, not a time, so it holds on any machine.
#   ckpt_commit:N  SIGKILL inside fsspec's transaction commit of the N-th write of last.ckpt:
#                  the checkpoint bytes are in the temporary file, the rename has not happened
#                  (the real "mid-checkpoint-write" window of Lightning's atomic save).
#   submission     SIGKILL inside podium.io.write_atomic for submission.csv after the
#                  temporary file is written and before os.replace (mid-submission-write).
RUNNER = r"""
import os, signal, sys
kill = os.environ.get("PODIUM_TEST_KILL", "")
if kill.startswith("step:"):
    import podium.model.module as module
    training_step, at = module.CompetitionModule.training_step, int(kill.split(":")[1])
    def dying_step(self, batch, batch_idx):
        if self.global_step == at:
            os.kill(os.getpid(), signal.SIGKILL)
        return training_step(self, batch, batch_idx)
    module.CompetitionModule.training_step = dying_step
elif kill.startswith("ckpt_commit:"):
    from fsspec.implementations.local import LocalFileOpener
    commit, seen, nth = LocalFileOpener.commit, [0], int(kill.split(":")[1])
    def dying_commit(self):
        if str(self.path).endswith("last.ckpt"):
            seen[0] += 1
            if seen[0] == nth:
                os.kill(os.getpid(), signal.SIGKILL)
        return commit(self)
    LocalFileOpener.commit = dying_commit
elif kill == "submission":
    import podium.io as sub
    replace = os.replace
    def dying_replace(src, dst):
        if os.path.basename(dst).startswith("submission"):  # submission[-N].csv
            os.kill(os.getpid(), signal.SIGKILL)
        return replace(src, dst)
    sub.os = type(sys)("os_with_fault")
    sub.os.__dict__.update({k: getattr(os, k) for k in dir(os) if not k.startswith("__")})
    sub.os.replace = dying_replace
import runpy
sys.argv = ["podium.train", *sys.argv[1:]]
runpy.run_module("podium.train", run_name="__main__")
"""


def start(run_dir: Path, demo_root: Path, *extra: str, kill: str = "") -> subprocess.Popen:
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "PODIUM_TEST_KILL": kill}
    args = [f"data.root={demo_root}", f"data.demo_root={demo_root}",
            f"paths.log_dir={run_dir.parent / 'logs'}", f"hydra.run.dir={run_dir}",
            *BUDGET, *extra]
    return subprocess.Popen([sys.executable, "-c", RUNNER, *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen, timeout: float = 300) -> int:
    out, err = proc.communicate(timeout=timeout)
    proc.stderr_text = err
    return proc.returncode


def train(run_dir: Path, demo_root: Path, *extra: str) -> Path:
    proc = start(run_dir, demo_root, *extra)
    assert finish(proc) == 0, proc.stderr_text
    return run_dir


def metrics(run_dir: Path) -> dict:
    data = json.loads((run_dir / "metrics.json").read_text())
    for key in ("best_checkpoint", "submission", "runs"):  # paths inside the run folder
        data.pop(key)
    return data


def validation_history(run_dir: Path) -> dict[int, dict[str, float]]:
    """Every validation metric logged at each epoch end (csv/metrics.csv)."""
    import pandas as pd

    frame = pd.read_csv(run_dir / "csv" / "metrics.csv")
    keys = [c for c in frame.columns if c.startswith("val/")]
    rows = frame.dropna(subset=["val/loss"])
    return {int(r["epoch"]): {k: r[k] for k in keys} for _, r in rows.iterrows()}


def weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=False)["state_dict"]


def assert_loadable(run_dir: Path) -> None:
    for name in ("last.ckpt", "best.ckpt"):
        ckpt = torch.load(run_dir / "checkpoints" / name, map_location="cpu", weights_only=False)
        assert "state_dict" in ckpt and "epoch" in ckpt


def no_partial_submission(run_dir: Path) -> None:
    assert not (run_dir / "submission.csv").exists()
    assert not list(run_dir.glob("submission-*.csv"))


@pytest.fixture(scope="module")
def whole(tmp_path_factory, demo_root) -> Path:
    """The uninterrupted reference run."""
    return train(tmp_path_factory.mktemp("whole") / "run", demo_root)


# Slow: a third fresh interpreter and training for what the kill test below checks already
# (its resumed runs equal this reference byte for byte: test_probs.csv, submission.csv,
# metrics, every weight of both checkpoints).
@pytest.mark.slow
def test_two_identical_runs_give_byte_identical_outputs(whole, tmp_path, demo_root):
    again = train(tmp_path / "run", demo_root)
    assert (again / "submission.csv").read_bytes() == (whole / "submission.csv").read_bytes()
    assert (again / "test_probs.csv").read_bytes() == (whole / "test_probs.csv").read_bytes()
    assert metrics(again) == metrics(whole)
    for name, value in weights(whole / "checkpoints/last.ckpt").items():
        assert torch.equal(weights(again / "checkpoints/last.ckpt")[name], value), name


# In the fast suite on purpose: CI must prove that nothing is lost on a kill (~40 s alone).
def test_sigkill_at_three_moments_then_resume_matches_whole_run(whole, tmp_path, demo_root):
    # 1. Mid-epoch: SIGKILL at the second step of epoch 1 (after epoch 0's last.ckpt).
    a = tmp_path / "a"
    proc = start(a, demo_root, kill="step:4")
    assert finish(proc) == -signal.SIGKILL, proc.stderr_text
    assert_loadable(a)
    no_partial_submission(a)

    # 2. Mid-checkpoint-write: resumed from a, killed while committing its second last.ckpt
    #    (bytes in the temp file, rename pending): the first one must still load.
    b = tmp_path / "b"
    proc = start(b, demo_root, f"ckpt_path={a / 'checkpoints/last.ckpt'}", kill="ckpt_commit:2")
    assert finish(proc) == -signal.SIGKILL, proc.stderr_text
    assert_loadable(b)
    no_partial_submission(b)

    # 3. Mid-submission-write: resumed from b, finishes training, killed between writing the
    #    temporary submission file and renaming it. An earlier submission.csv stays as it was.
    c = tmp_path / "c"
    c.mkdir()
    (c / "submission.csv").write_text("id,label\nearlier,file\n")
    proc = start(c, demo_root, f"ckpt_path={b / 'checkpoints/last.ckpt'}", kill="submission")
    assert finish(proc) == -signal.SIGKILL, proc.stderr_text
    assert_loadable(c)
    assert (c / "submission.csv").read_text() == "id,label\nearlier,file\n"
    assert not list(c.glob("submission-*.csv"))

    # Resume the last one into a fresh folder: same metrics, weights and submission.
    d = train(tmp_path / "d", demo_root, f"ckpt_path={c / 'checkpoints/last.ckpt'}")
    assert metrics(d) == metrics(whole)  # every validation metric of the best checkpoint

    # Resumed mid-training (from a): every validation metric of every epoch it trains, as
    # well as the best checkpoint's, equals the uninterrupted run's (a metric that took
    # another one's value after a resume was caught here: torchmetrics compute groups).
    e = train(tmp_path / "e", demo_root, f"ckpt_path={a / 'checkpoints/last.ckpt'}")
    assert metrics(e) == metrics(whole)
    history, resumed = validation_history(whole), validation_history(e)
    assert sorted(resumed) == sorted(history)[1:] and len(resumed[1]) >= 10
    for epoch, values in resumed.items():
        assert values == history[epoch], epoch
    assert (d / "submission.csv").read_bytes() == (whole / "submission.csv").read_bytes()
    assert (d / "test_probs.csv").read_bytes() == (whole / "test_probs.csv").read_bytes()
    for name in ("last.ckpt", "best.ckpt"):
        resumed = weights(c / "checkpoints" / name)
        for key, value in weights(whole / "checkpoints" / name).items():
            assert torch.equal(resumed[key], value), (name, key)


def default_checkpoints(dirpath: Path, monitor: str, mode: str) -> list:
    """conf/callbacks/default.yaml's two checkpoint callbacks, writing into `dirpath`."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    callbacks = OmegaConf.load(ROOT / "conf" / "callbacks" / "default.yaml")
    best, last = callbacks.model_checkpoint, callbacks.last_checkpoint
    best.monitor, best.mode = monitor, mode
    return [instantiate(c, dirpath=str(dirpath)) for c in (best, last)]


@pytest.mark.parametrize("validate", [True, False])
def test_last_checkpoint_is_the_latest_epoch_when_the_metric_stops_improving(tmp_path,
                                                                            validate):
    """Lightning's save_last rewrites last.ckpt only when the monitor improves; a crash would
    then resume from the last improvement. The unmonitored `last_checkpoint` writes it after
    every validation (every training epoch without one), holding that epoch's best."""
    import lightning as L
    from torch.utils.data import DataLoader, TensorDataset

    class Flat(L.LightningModule):  # the monitored score never improves after epoch 0
        def __init__(self):
            super().__init__()
            self.layer = torch.nn.Linear(2, 1)

        def training_step(self, batch, batch_idx):
            self.log("score", 1.0)
            return self.layer(batch[0]).square().mean()

        def validation_step(self, batch, batch_idx):
            self.log("score", 1.0)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    data = DataLoader(TensorDataset(torch.randn(8, 2)), batch_size=4)
    callbacks = default_checkpoints(tmp_path, "score", "max")
    trainer = L.Trainer(max_epochs=3, callbacks=callbacks, logger=False,
                        enable_progress_bar=False, enable_model_summary=False,
                        limit_val_batches=1.0 if validate else 0)
    trainer.fit(Flat(), data, data if validate else None)
    assert trainer.checkpoint_callback is callbacks[0]  # best.ckpt: what podium predicts with
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.ckpt", "last.ckpt"]
    last = torch.load(tmp_path / "last.ckpt", weights_only=False)
    best = torch.load(tmp_path / "best.ckpt", weights_only=False)
    assert (best["epoch"], last["epoch"]) == (0, 2)
    assert last["global_step"] == 6
    [best_state] = [v for k, v in last["callbacks"].items() if "'score'" in k]
    assert best_state["best_model_path"] == str(tmp_path / "best.ckpt")


def test_a_resume_into_a_new_folder_carries_the_best_and_starts_last_afresh(tmp_path):
    """Resumed from an old folder's last.ckpt, the best checkpoint is copied with its score;
    the last checkpoint's path no longer points into the old folder (nothing there is
    overwritten or deleted), and Lightning's "dirpath has changed" warning stays quiet."""
    import warnings

    old, new = tmp_path / "old", tmp_path / "new"
    old.mkdir()
    torch.save({"epoch": 0}, old / "best.ckpt")
    torch.save({"epoch": 2}, old / "last.ckpt")
    best, last = default_checkpoints(new, "score", "max")
    score = torch.tensor(0.7)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        best.load_state_dict({
            "dirpath": str(old), "monitor": "score", "best_model_score": score,
            "best_model_path": str(old / "best.ckpt"), "current_score": score,
            "best_k_models": {str(old / "best.ckpt"): score}, "kth_value": score,
            "kth_best_model_path": str(old / "best.ckpt"), "last_model_path": ""})
        last.load_state_dict({
            "dirpath": str(old), "monitor": None, "best_model_score": None,
            "best_model_path": str(old / "last.ckpt"), "current_score": None,
            "best_k_models": {}, "kth_value": torch.tensor(float("inf")),
            "kth_best_model_path": "", "last_model_path": ""})
    assert best.best_model_path == str(new / "best.ckpt") and (new / "best.ckpt").is_file()
    assert best.best_k_models == {str(new / "best.ckpt"): score}
    assert float(best.best_model_score) == pytest.approx(0.7)
    assert last.best_model_path == "" and last.dirpath == str(new)
    assert sorted(p.name for p in old.iterdir()) == ["best.ckpt", "last.ckpt"]
