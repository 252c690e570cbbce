"""Shared fixtures: the demo folder, composed configs, CLI runs (in this process or a new one)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hypothesis import settings
from omegaconf import DictConfig, open_dict

# One torch (OpenMP) thread here and in every process a test starts, set before torch is
# imported: the tests' models are tiny, and a second thread spins idle whenever another
# process holds a core (measured: a third of the suite's CPU time on a busy 2-core machine).
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("PODIUM_THREADS", "1")  # threads=auto would give an image run every core

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
CIFAR = ROOT.parent / "shared" / "data" / "cifar10-lt"
# property tests run the same examples every time (CI stays reproducible);
# HYPOTHESIS_PROFILE=explore draws new ones to hunt for failures
settings.register_profile("fixed", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "fixed"))

needs_cifar = pytest.mark.skipif(not (CIFAR / "train.csv").exists(),
                                 reason="../shared/data/cifar10-lt is absent")


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory) -> Path:
    """One demo competition folder for the whole session (built like `make demo-data`)."""
    from podium.data.demo import build_demo

    return build_demo(tmp_path_factory.mktemp("data") / "demo")


def make_cfg(tmp_path: Path, overrides: list[str] = (), config_name: str = "train",
             resolve: bool = True) -> DictConfig:
    """Compose the real config as the CLI would, with every output under tmp_path;
    `resolve=False` leaves the task's defaults (loss, metric keys) to the entry point."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name=config_name, overrides=list(overrides),
                      return_hydra_config=True)
    with open_dict(cfg):
        cfg.paths.root_dir = str(ROOT)
        cfg.paths.log_dir = str(tmp_path / "logs")
        cfg.paths.output_dir = str(tmp_path / "run")
        cfg.hydra.runtime.output_dir = str(tmp_path / "run")
    HydraConfig.instance().set_config(cfg)
    if resolve and "metric" in cfg:  # as the entry points do, once, before anything reads it
        from podium.config import resolve_defaults

        resolve_defaults(cfg)
    return cfg


def image_spec(class_names, mean=(0.5,), std=(0.5,), counts=None):
    """A DataSpec for hand-built modules: images of len(mean) channels."""
    from podium.spec import DataSpec

    return DataSpec(task="multiclass", class_names=tuple(class_names),
                    class_counts=tuple(counts or [1] * len(class_names)),
                    net_inputs={"in_chans": len(mean)}, mean=tuple(mean), std=tuple(std))


def run_cli(module: str, *overrides: str, cwd: Path = ROOT, check: bool = True,
            timeout: int = 300, process: bool = False) -> subprocess.CompletedProcess:
    """Run `python -m <module> <overrides>` like `make` does; return the finished process.

    podium's entry points run in this process unless `process=True`: the module's own
    `__main__` code with the argv `python -m` gives it (Hydra parses it, the exit code is
    SystemExit's), stdout and stderr captured, warnings ignored (PYTHONWARNINGS=ignore), no
    new interpreter to import torch and Lightning into (~7 s of CPU each). `process=True`
    (and any module outside podium) starts a real process: for what needs one (DDP ranks,
    sweep workers, a kill, the imports a command makes).
    """
    if process or not module.startswith("podium.") or cwd != ROOT:
        env = {**os.environ, "PYTHONWARNINGS": "ignore"}
        proc = subprocess.run([sys.executable, "-m", module, *overrides], cwd=cwd, env=env,
                              capture_output=True, text=True, timeout=timeout)
    else:
        proc = run_in_process(module, list(overrides))
    if check and proc.returncode != 0:
        raise AssertionError(f"{module} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def run_in_process(module: str, overrides: list[str]) -> subprocess.CompletedProcess:
    """`python -m <module> <overrides>` in this process; what the run sets up process-wide
    (Hydra's state and log handlers, sys.argv, warning filters) is put back afterwards."""
    import contextlib
    import io
    import logging
    import runpy
    import traceback
    import warnings

    from hydra.core.global_hydra import GlobalHydra

    out, err = io.StringIO(), io.StringIO()
    root = logging.getLogger()
    handlers, level, argv = root.handlers[:], root.level, sys.argv
    HydraConfig.instance().cfg = None  # as in a new process: no composed config yet
    GlobalHydra.instance().clear()
    code = 0
    sys.argv = [module, *overrides]  # runpy puts the module's file in argv[0], as -m does
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), \
                warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                runpy.run_module(module, run_name="__main__", alter_sys=True)
            except SystemExit as exit:
                if isinstance(exit.code, str):
                    print(exit.code, file=sys.stderr)
                code = exit.code if isinstance(exit.code, int) else int(exit.code is not None)
            except Exception:  # what the interpreter does with an uncaught exception
                traceback.print_exc()
                code = 1
    finally:
        sys.argv = argv
        for handler in root.handlers:
            if handler not in handlers:
                handler.close()
        root.handlers[:] = handlers
        root.setLevel(level)
        HydraConfig.instance().cfg = None
        GlobalHydra.instance().clear()
    return subprocess.CompletedProcess([sys.executable, "-m", module, *overrides], code,
                                       out.getvalue(), err.getvalue())


def run_dirs(log_dir: Path, task: str = "train") -> list[Path]:
    return sorted(p.parent for p in (log_dir / task).glob("*/*/.hydra"))


def fit_postprocess(step, oof, names, target_col, metric="f1_macro", task="multiclass",
                    parts=None, test_prior=None, k=3):
    """One post-processing step judged alone by the chain (podium.submission.steps) on an
    OOF frame: (what the test set gets, the step's report, its one-line warning or None)."""
    from podium.submission.crossfit import make_parts
    from podium.submission.ensemble import prior_weights
    from podium.submission.oof import truth
    from podium.submission.steps import Adjust, Scoring, Slot, choose
    from podium.submission.summary import not_used_line

    names = [str(n) for n in names]
    y = truth(oof, names, target_col, task)
    weights = None if test_prior is None else prior_weights(test_prior, y, len(names))
    slot = Slot(Adjust(), Adjust(step, names, test_prior, name=step.name))
    chosen = choose([slot], oof[names].to_numpy(float), y, Scoring(metric, task, len(names),
                                                                    k, weights),
                    parts or make_parts(oof, y))
    report = chosen.reports[step.name]
    return chosen.fitted[0].apply, report, not_used_line(report)


def predict_new_folder(tmp: Path, run: Path, root: Path):
    """`make predict` of `run` on a fresh folder (root's test.csv rows reversed, its
    train.csv moved away meanwhile): the predicted test_probs.csv."""
    import shutil

    import pandas as pd

    folder = tmp / "new"
    folder.mkdir()
    test = pd.read_csv(root / "test.csv", dtype=str, keep_default_na=False)
    test.iloc[::-1].to_csv(folder / "test.csv", index=False)
    shutil.copy(root / "sample_submission.csv", folder)
    (root / "train.csv").rename(tmp / "train_gone.csv")
    try:
        run_cli("podium.predict", f"runs=[{run}]", f"data.root={folder}",
                f"paths.log_dir={tmp / 'logs'}")
    finally:
        (tmp / "train_gone.csv").rename(root / "train.csv")
    [probs] = (tmp / "logs").glob("predict/*/test_probs.csv")
    return pd.read_csv(probs, dtype={0: str})
