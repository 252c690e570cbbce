"""Optuna sweeps: search-space check, failed trials recorded, resume after a kill."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, run_cli


def study_states(db: Path, name: str) -> list[str]:
    import optuna

    if not db.exists():
        return []
    try:
        study = optuna.load_study(study_name=name, storage=f"sqlite:///{db}")
    except KeyError:
        return []
    return [t.state.name for t in study.get_trials(deepcopy=False)]


def finished_count(db: Path) -> int:
    """Ended trials, read with plain sqlite3 (optuna would race the sweep creating its tables)."""
    import sqlite3

    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as con:
            rows = con.execute("SELECT state FROM trials").fetchall()
    except sqlite3.Error:
        return 0
    return sum(state in ("COMPLETE", "FAIL") for (state,) in rows)


def kill_after(cmd: list[str], db: Path, study: str, finished: int, timeout: int = 300) -> None:
    """Start `cmd`, and SIGKILL its process group once `finished` trials have ended."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if finished_count(db) >= finished:
                break
            time.sleep(0.2)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def search_dir(tmp_path: Path, name: str, params: str) -> Path:
    """A config folder with `hparams_search/<name>.yaml` (on Hydra's search path)."""
    folder = tmp_path / "extra_conf"
    (folder / "hparams_search").mkdir(parents=True)
    (folder / "hparams_search" / f"{name}.yaml").write_text(
        "# @package _global_\ndefaults:\n  - lr_wd\n  - _self_\n"
        f"hydra:\n  sweeper:\n    params:\n{params}"
    )
    return folder


def test_unknown_parameter_is_one_line_error_before_any_trial(tmp_path, demo_root):
    extra = search_dir(tmp_path, "typo", "      optimizer.lrr: interval(0.001, 0.01)\n")
    logs = tmp_path / "logs"
    proc = run_cli("podium.train", "-m", "hparams_search=typo", "sweep_name=typo",
                   f"hydra.searchpath=[file://{extra}]", "debug=fdr", f"data.root={demo_root}",
                   f"paths.log_dir={logs}", check=False)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "optimizer.lrr" in lines[0] and "did you mean optimizer.lr?" in lines[0]
    assert not list((logs / "sweep" / "typo").glob("*/*"))  # no trial ran


def test_failed_trials_are_recorded_and_a_killed_sweep_resumes(tmp_path, demo_root):
    """The fast variant of `make sweep` killed after 2 trials and re-run (fast_dev_run)."""
    extra = search_dir(tmp_path, "mixed", "      optimizer.lr: choice(0.003, -1.0)\n")
    logs = tmp_path / "logs"  # lr=-1: AdamW refuses it, the trial fails, the sweep goes on
    args = ["-m", "hparams_search=mixed", "sweep_name=demo", f"hydra.searchpath=[file://{extra}]",
            "hydra.sweeper.n_trials=4", "hydra.sweeper.sampler.n_startup_trials=4", "debug=fdr",
            f"data.root={demo_root}", f"paths.log_dir={logs}"]
    db = logs / "sweep" / "demo" / "optuna.db"
    kill_after([sys.executable, "-m", "podium.train", *args], db, "mixed", finished=2)
    before = study_states(db, "mixed")
    done_before = sum(s in ("COMPLETE", "FAIL") for s in before)
    assert 2 <= done_before < 4, before

    proc = run_cli("podium.train", *args)
    assert f"{done_before} of 4 trials done" in proc.stdout
    second = max((logs / "sweep" / "demo").glob("20*"))  # the re-run's timestamp folder
    assert len(list(second.glob("*/.hydra"))) == 4 - done_before  # only the missing trials

    states = study_states(db, "mixed")
    import optuna

    study = optuna.load_study(study_name="mixed", storage=f"sqlite:///{db}")
    finished = [t for t in study.trials if not t.user_attrs.get("interrupted")]
    assert len(finished) == 4 and all(t.state.name in ("COMPLETE", "FAIL") for t in finished)
    assert {"COMPLETE", "FAIL"} <= set(states)  # lr=-1 failed, and the sweep went on
    for trial in finished:
        assert (trial.state.name == "FAIL") == (trial.params["optimizer.lr"] < 0)
    best = study.best_trial
    assert f"best val/f1_macro: {best.value:.4f}" in proc.stdout


@pytest.mark.slow
def test_make_sweep_killed_after_two_trials_completes_the_study(tmp_path, demo_root):
    """The issue's acceptance check, literally: `make sweep EXP=focal TRIALS=4`."""
    logs = tmp_path / "logs"
    args = f"trainer.max_epochs=1 data.root={demo_root} paths.log_dir={logs}"
    cmd = ["make", "-s", "sweep", "EXP=focal", "TRIALS=4", f"ARGS={args}", f"PY={sys.executable}"]
    db = logs / "sweep" / "focal" / "optuna.db"
    kill_after(cmd, db, "focal", finished=2)
    assert sum(s == "COMPLETE" for s in study_states(db, "focal")) in (2, 3)

    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "trials done" in proc.stdout and "best params: " in proc.stdout
    states = study_states(db, "focal")
    assert states.count("COMPLETE") == 4, states
