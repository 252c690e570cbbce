"""Optuna sweeps: search space, pruning, failed trials, resume after a kill, many workers."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, make_cfg, run_cli

# tiny but real training: a pruner needs several epochs to compare trials
FAST = ["debug=limit", "trainer.max_epochs=2", "trainer.limit_train_batches=4",
        "+trainer.limit_predict_batches=1", "model.net.depth=8", "model.net.width=8",
        "data.batch_size=32", "callbacks.class_report=null", "callbacks.learning_curves=null",
        "print_config=false"]


def study_trials(journal: Path, name: str) -> list:
    """The study's trials, read from its journal file ([] before the sweep created it)."""
    import optuna

    from podium.sweep.study import open_storage

    if not journal.exists():
        return []
    try:
        study = optuna.load_study(study_name=name, storage=open_storage(str(journal)))
    except KeyError:
        return []
    return study.get_trials(deepcopy=False)


def kill_after(cmd: list[str], journal: Path, study: str, finished: int,
               timeout: int = 300) -> None:
    """Start `cmd`, and SIGKILL its process group once `finished` trials have ended."""
    from podium.sweep.study import ended

    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if sum(ended(t) for t in study_trials(journal, study)) >= finished:
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


def train_command(stdout: str) -> list[str]:
    """The `make train ...` command a sweep prints for its best trial, as argv."""
    import shlex

    line = next(x for x in stdout.splitlines() if x.startswith("train it: "))
    return shlex.split(line[len("train it: "):])


def test_search_space_syntax_becomes_optuna_distributions():
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    from podium.sweep.search_space import search_space

    params = {"optimizer.lr": "tag(log, interval(1e-4, 1e-2))",
              "loss.gamma": "interval(0.5, 4.0)", "model.net.depth": "int(interval(1, 8))",
              "data.batch_size": "range(16, 129, 16)", "optimizer": "choice(adamw, sgd)",
              "optimizer.weight_decay": "interval(0.0, 0.1)"}
    space, fixed = search_space(params, ["seed=3", "optimizer.weight_decay=0.05",
                                         "++loss.tau=choice(0.5, 1.0)"], None)
    assert space == {
        "optimizer.lr": FloatDistribution(1e-4, 1e-2, log=True),
        "loss.gamma": FloatDistribution(0.5, 4.0),
        "model.net.depth": IntDistribution(1, 8),
        "data.batch_size": IntDistribution(16, 128, step=16),  # Hydra's range excludes 129
        "optimizer": CategoricalDistribution(["adamw", "sgd"]),
        "++loss.tau": CategoricalDistribution([0.5, 1.0]),
    }
    assert fixed == ["seed=3", "optimizer.weight_decay=0.05"]  # the command line fixes a key


def test_storages_and_pruners_from_their_config_values(tmp_path):
    import optuna

    from podium.errors import PodiumError
    from podium.sweep.study import make_pruner, open_storage

    journal = open_storage(str(tmp_path / "a" / "s.journal"))  # a path: a journal file
    rdb = open_storage(f"sqlite:///{tmp_path}/b/s.db")            # a URL: a database
    assert isinstance(journal, optuna.storages.JournalStorage)
    assert isinstance(rdb, optuna.storages.RDBStorage)
    for storage in (journal, rdb):
        optuna.create_study(study_name="s", storage=storage).optimize(
            lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    reread = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path}/b/s.db")
    assert len(reread.trials) == 2

    assert isinstance(make_pruner("median", 3, 2), optuna.pruners.MedianPruner)
    assert isinstance(make_pruner("hyperband", 3, 2), optuna.pruners.HyperbandPruner)
    assert isinstance(make_pruner("none"), optuna.pruners.NopPruner)
    custom = {"_target_": "optuna.pruners.PercentilePruner", "percentile": 25.0}
    assert isinstance(make_pruner(custom), optuna.pruners.PercentilePruner)
    with pytest.raises(PodiumError, match="sweep.pruner=medain is not a pruner: use median"):
        make_pruner("medain")


CLAIMER = """
import json, sys, time
from pathlib import Path
import optuna
from podium.sweep.study import claim_trial, open_storage
optuna.logging.set_verbosity(optuna.logging.WARNING)
journal, n_studies, n_trials = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
go = Path(sys.argv[4])
studies = [optuna.load_study(study_name=f"race{i}", storage=open_storage(journal))
           for i in range(n_studies)]
print("ready", flush=True)
while not go.exists():
    time.sleep(0.01)
claimed = []
for study in studies:  # the processes reach each study's last trials together
    claimed.append([])
    while (trial := claim_trial(study, n_trials)) is not None:
        claimed[-1].append(trial.number)
        study.tell(trial, 1.0)
print(json.dumps(claimed), flush=True)
"""


def test_processes_racing_for_trials_stop_at_exactly_the_budget(tmp_path):
    """Three processes claim-and-finish trials as fast as they can, on five studies in turn:
    each study ends with exactly n_trials counting trials, each claimed by one process."""
    import optuna

    from podium.sweep.study import counts, open_storage

    journal, go, n_studies, n_trials = tmp_path / "race.journal", tmp_path / "go", 5, 8
    for i in range(n_studies):
        optuna.create_study(study_name=f"race{i}", storage=open_storage(str(journal)))
    procs = [subprocess.Popen([sys.executable, "-c", CLAIMER, str(journal), str(n_studies),
                               str(n_trials), str(go)], stdout=subprocess.PIPE, text=True)
             for _ in range(3)]
    for proc in procs:
        assert proc.stdout.readline().strip() == "ready"
    go.touch()  # all three start claiming at once
    claimed = [json.loads(proc.communicate(timeout=120)[0]) for proc in procs]

    assert sum(bool(c) for per_process in claimed for c in per_process) > n_studies  # a race
    for i in range(n_studies):
        numbers = [n for per_process in claimed for n in per_process[i]]
        assert len(numbers) == len(set(numbers)) == n_trials, claimed
        trials = study_trials(journal, f"race{i}")
        assert sorted(t.number for t in trials if counts(t)) == sorted(numbers)
        assert all(t.state.name == "COMPLETE" for t in trials if counts(t))
        assert all(t.user_attrs.get("surplus") and t.state.name == "FAIL"
                   for t in trials if not counts(t))


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


def test_a_loss_key_with_no_loss_chosen_says_to_choose_one(tmp_path):
    """`SEARCH=focal` without `EXP=focal`: the task's loss is filled in after the overrides,
    so `loss.gamma` has nothing to set; the error says what to do instead."""
    from podium.errors import PodiumError
    from podium.sweep.search_space import check_search_space

    with pytest.raises(PodiumError) as err:
        check_search_space(make_cfg(tmp_path, ["hparams_search=focal"], resolve=False))
    assert str(err.value) == (
        "conf/hparams_search/focal.yaml: hydra.sweeper.params names loss.gamma, which is not "
        "in the config; no loss= is chosen (the task's default comes later): choose one or "
        "write ++loss.gamma")
    check_search_space(make_cfg(tmp_path, ["hparams_search=focal", "loss=focal"],
                                resolve=False))  # the focal recipe: accepted


def test_failed_trials_are_recorded_and_a_killed_sweep_resumes(tmp_path, demo_root):
    """The fast variant of `make sweep` killed after 2 trials and re-run (fast_dev_run)."""
    extra = search_dir(tmp_path, "mixed", "      optimizer.lr: choice(0.003, -1.0)\n")
    logs = tmp_path / "logs"  # lr=-1: AdamW refuses it, the trial fails, the sweep goes on
    args = ["-m", "hparams_search=mixed", "sweep_name=demo", f"hydra.searchpath=[file://{extra}]",
            "hydra.sweeper.n_trials=4", "hydra/sweeper/sampler=random",
            "hydra.sweeper.n_jobs=2", "debug=fdr",  # rounds of 2 trials, told together
            f"data.root={demo_root}", f"paths.log_dir={logs}"]
    journal = logs / "sweep" / "demo" / "optuna.journal"
    kill_after([sys.executable, "-m", "podium.train", *args], journal, "mixed", finished=2)
    before = [t.state.name for t in study_trials(journal, "mixed")]
    done_before = sum(s in ("COMPLETE", "FAIL") for s in before)
    assert 2 <= done_before < 4, before

    proc = run_cli("podium.train", *args)
    assert f"{done_before} of 4 trials done" in proc.stdout
    second = max((logs / "sweep" / "demo").glob("20*"))  # the re-run's timestamp folder
    assert len(list(second.glob("*/.hydra"))) == 4 - done_before  # only the missing trials

    trials = study_trials(journal, "mixed")
    finished = [t for t in trials if not t.user_attrs.get("interrupted")]
    assert len(finished) == 4 and all(t.state.name in ("COMPLETE", "FAIL") for t in finished)
    assert all(t.state.name == "FAIL" for t in trials if t.user_attrs.get("interrupted"))
    assert {"COMPLETE", "FAIL"} <= {t.state.name for t in finished}  # lr=-1 failed, went on
    for trial in finished:
        assert (trial.state.name == "FAIL") == (trial.params["optimizer.lr"] < 0)
        run = Path(trial.user_attrs["run_dir"])
        assert run.name == str(trial.number)  # one folder per trial, named by its number
        assert (run / "failed.txt").is_file() == (trial.state.name == "FAIL")
    best = max((t for t in finished if t.state.name == "COMPLETE"), key=lambda t: t.value)
    assert f"best val/f1_macro: {best.value:.4f}" in proc.stdout
    command = train_command(proc.stdout)
    assert command[:3] == ["make", "train", "EXP=baseline"]
    assert "debug=fdr" in command[3] and "optimizer.lr=0.003" in command[3].split()


def test_pruner_stops_the_bad_region_and_make_runs_shows_it(tmp_path, demo_root):
    """6 seeded trials, lr either fine or far too small: the median pruner cuts the hopeless
    ones after one epoch; they end cleanly (checkpoints, metrics.json) and are PRUNED."""
    extra = search_dir(tmp_path, "bad", "      optimizer.lr: choice(0.01, 0.0000001)\n")
    logs = tmp_path / "logs"
    proc = run_cli("podium.train", "-m", "hparams_search=bad", "sweep_name=demo",
                   f"hydra.searchpath=[file://{extra}]", "hydra.sweeper.n_trials=6",
                   "hydra.sweeper.sampler.n_startup_trials=6", "sweep.pruner=median",
                   "sweep.startup_trials=2", *FAST, f"data.root={demo_root}",
                   f"paths.log_dir={logs}")
    trials = study_trials(logs / "sweep" / "demo" / "optuna.journal", "bad")
    assert len(trials) == 6
    pruned = [t for t in trials if t.state.name == "PRUNED"]
    assert pruned and all(t.params["optimizer.lr"] < 1e-6 for t in pruned), \
        [(t.number, t.state.name, t.params) for t in trials]
    assert all(t.state.name == "COMPLETE" for t in trials if t.params["optimizer.lr"] > 1e-6)
    assert f"{len(pruned)} pruned, 0 failed" in proc.stdout
    for trial in trials:
        run = Path(trial.user_attrs["run_dir"])
        metrics = json.loads((run / "metrics.json").read_text())  # every run ended cleanly
        assert (run / "checkpoints" / "last.ckpt").is_file()
        assert (run / "pruned.txt").is_file() == (trial.state.name == "PRUNED")
        assert metrics["epochs"] == (1 if trial.state.name == "PRUNED" else 2)
        assert sorted(trial.intermediate_values) == ([1] if trial in pruned else [1, 2])

    spec = importlib.util.spec_from_file_location("summarize_runs",
                                                  ROOT / "scripts/summarize_runs.py")
    summarize_runs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(summarize_runs)
    table = summarize_runs.collect(logs / "sweep" / "demo")
    status = dict(zip(table.path.map(lambda p: Path(p).name), table.status, strict=True))
    assert status == {str(t.number): "pruned" if t in pruned else "ok" for t in trials}
    assert "sweep." not in " ".join(table.overrides)  # the trial number is not a parameter


# Slow: three interpreters (the sweep and its two workers). Claiming a trial once under a
# race between processes, the heart of it, is in the fast suite: the racing test above.
@pytest.mark.slow
def test_two_workers_share_one_study_each_trial_once(tmp_path, demo_root):
    """`make sweep JOBS=2`: two worker processes on one study run 5 trials, none twice."""
    logs = tmp_path / "logs"
    proc = run_cli("podium.train", "-m", "hparams_search=lr_wd", "sweep_name=demo",
                   "hydra.sweeper.n_trials=5", "hydra.sweeper.workers=2", "debug=fdr",
                   f"data.root={demo_root}", f"paths.log_dir={logs}", process=True)
    from podium.sweep.study import counts

    trials = study_trials(logs / "sweep" / "demo" / "optuna.journal", "lr_wd")
    counted = [t for t in trials if counts(t)]
    assert sorted(t.state.name for t in counted) == ["COMPLETE"] * 5
    assert all(t.user_attrs.get("surplus") for t in trials if not counts(t))
    assert len({t.user_attrs["worker"] for t in counted}) == 2  # both workers ran trials
    assert len({tuple(t.params.items()) for t in counted}) == 5  # workers draw differently
    (sweep_dir,) = (logs / "sweep" / "demo").glob("20*")
    runs = sorted(p.parent.name for p in sweep_dir.glob("*/.hydra"))
    assert runs == sorted(str(t.number) for t in counted)  # each trial ran exactly once
    assert {p.name for p in sweep_dir.glob("worker-*.log")} == {"worker-0.log", "worker-1.log"}
    assert proc.stdout.count("best params: ") == 1  # the summary, once, from the parent
    assert "5 trials complete, 0 pruned, 0 failed" in proc.stdout


@pytest.mark.slow
def test_make_sweep_killed_after_two_trials_completes_the_study(tmp_path, demo_root):
    """The issue's acceptance check, literally: `make sweep EXP=focal TRIALS=4`."""
    logs = tmp_path / "logs"
    args = f"trainer.max_epochs=1 data.root={demo_root} paths.log_dir={logs}"
    cmd = ["make", "-s", "sweep", "EXP=focal", "TRIALS=4", f"ARGS={args}", f"PY={sys.executable}"]
    journal = logs / "sweep" / "focal" / "optuna.journal"
    kill_after(cmd, journal, "focal", finished=2)
    assert sum(t.state.name == "COMPLETE" for t in study_trials(journal, "focal")) in (2, 3)

    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "trials done" in proc.stdout and "best params: " in proc.stdout
    states = [t.state.name for t in study_trials(journal, "focal")]
    assert states.count("COMPLETE") + states.count("PRUNED") == 4, states


# the smallest real run: one epoch of a depth-8, width-4 ResNet on a few batches
TINY = ["debug=limit", "trainer.max_epochs=1", "model.net.depth=8", "model.net.width=4",
        "data.batch_size=32", "callbacks.class_report=null", "callbacks.learning_curves=null",
        "print_config=false"]


def trial_config(run_dir: Path) -> dict:
    """A run's composed config as Hydra recorded it (interpolations unresolved)."""
    from omegaconf import OmegaConf

    return OmegaConf.to_container(OmegaConf.load(run_dir / ".hydra" / "config.yaml"))


def test_study_belongs_to_its_data_root_and_best_command_reruns_the_trial(tmp_path, demo_root):
    """A study records its competition: the same sweep on another data folder stops in one
    line naming both folders; the printed command composes the best trial's config."""
    import shlex
    import shutil

    from hydra import compose, initialize_config_dir

    from conftest import CONF

    logs = tmp_path / "logs"
    sweep = ["-m", "hparams_search=lr_wd", "sweep_name=demo", "hydra.sweeper.n_trials=1",
             "debug=fdr", "seed=7", f"paths.log_dir={logs}"]
    proc = run_cli("podium.train", *sweep, f"data.root={demo_root}")
    [trial] = study_trials(logs / "sweep" / "demo" / "optuna.journal", "lr_wd")
    assert trial.state.name == "COMPLETE"

    command = train_command(proc.stdout)
    assert command[:3] == ["make", "train", "EXP=baseline"] and command[3].startswith("ARGS=")
    args = shlex.split(command[3][len("ARGS="):])
    assert f"data.root={os.path.realpath(demo_root)}" in args
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        again = compose(config_name="train", overrides=["experiment=baseline", *args])
    from omegaconf import OmegaConf

    from podium.config import resolve_data, resolve_model
    from podium.losses import resolve_loss

    # as the rerun does first (its run folder records the data, model and loss it used)
    resolve_data(again), resolve_model(again), resolve_loss(again)

    ran, rerun = trial_config(Path(trial.user_attrs["run_dir"])), OmegaConf.to_container(again)
    for cfg in (ran, rerun):  # what only a sweep has; the folder names of its runs
        cfg.pop("sweep", None), cfg["callbacks"].pop("prune_trial", None)
        cfg.pop("task_name"), cfg.pop("sweep_name")
        cfg["data"]["root"] = os.path.realpath(cfg["data"]["root"])
    assert rerun == ran

    other = tmp_path / "other"
    shutil.copytree(demo_root, other)
    proc = run_cli("podium.train", *sweep, f"data.root={other}", check=False)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert os.path.realpath(demo_root) in lines[0] and os.path.realpath(other) in lines[0]
    assert "sweep_name=" in lines[0] and "optuna.journal" in lines[0]
    assert len(study_trials(logs / "sweep" / "demo" / "optuna.journal", "lr_wd")) == 1

    proc = run_cli("podium.train", *sweep, f"data.root={other}", "sweep_name=other")
    assert "trials done" not in proc.stdout  # another name: a new study, its own trial
    assert len(study_trials(logs / "sweep" / "other" / "optuna.journal", "lr_wd")) == 1


def test_cv_objective_trial_is_a_cv_folder_that_make_cv_and_submit_agree_with(tmp_path,
                                                                              demo_root):
    """`sweep.objective=cv data.n_folds=2`: each trial trains both folds; the best trial's
    value is the OOF score `make cv` gets for its parameters, its folder is a cv folder."""
    import pandas as pd

    logs = tmp_path / "logs"
    proc = run_cli("podium.train", "-m", "hparams_search=lr_wd", "sweep_name=demo",
                   "hydra.sweeper.n_trials=2", "sweep.objective=cv", "data.n_folds=2", *TINY,
                   f"data.root={demo_root}", f"data.demo_root={demo_root}",
                   f"paths.log_dir={logs}", timeout=600)
    trials = study_trials(logs / "sweep" / "demo" / "optuna.journal", "lr_wd")
    assert [t.state.name for t in trials] == ["COMPLETE"] * 2
    best = max(trials, key=lambda t: t.value)  # f1_macro: maximised
    trial_dir = Path(best.user_attrs["run_dir"])
    assert sorted(p.parent.parent.name for p in trial_dir.glob("*/.hydra/config.yaml")) \
        == ["0", "1"]
    oof = pd.read_csv(trial_dir / "oof.csv", dtype=str)
    train = pd.read_csv(demo_root / "train.csv", dtype=str)
    assert sorted(oof.id) == sorted(train.id) and sorted(oof.fold.unique()) == ["0", "1"]
    # pruning looked after fold 0, at its held-out rows' score (the inner split chose)
    fold0 = json.loads((trial_dir / "0" / "metrics.json").read_text())["oof_score"]
    assert best.intermediate_values == {0: pytest.approx(fold0)}

    params = [f"{k}={v!r}" for k, v in best.params.items()]
    run_cli("podium.train", "-m", "task_name=cv", "experiment=baseline", "sweep_name=ref",
            "data.n_folds=2", "data.fold=range(0,2)", *TINY, *params,
            f"data.root={demo_root}", f"data.demo_root={demo_root}", f"paths.log_dir={logs}")
    [reference] = list((logs / "cv" / "ref").iterdir())
    expected = json.loads((reference / "metrics.json").read_text())["oof_score"]
    assert abs(best.value - expected) < 1e-6
    assert abs(json.loads((trial_dir / "metrics.json").read_text())["oof_score"]
               - expected) < 1e-6
    assert f"best OOF f1_macro (2 folds): {best.value:.4f}" in proc.stdout
    command = train_command(proc.stdout)
    assert command[:4] == ["make", "cv", "EXP=baseline", "FOLDS=2"]
    assert f"data.root={os.path.realpath(demo_root)}" in command[4]
    assert f"submit it: make submit RUN={trial_dir}" in proc.stdout

    submit = run_cli("podium.submit", f"runs=[{trial_dir}]",
                     f"paths.log_dir={logs}")
    assert "weight 0.500" in submit.stdout  # both folds, sharing the folder's weight
    [folder] = list((logs / "submit").glob("*/*"))
    submission = pd.read_csv(folder / "submission.csv", dtype=str)
    test = pd.read_csv(demo_root / "sample_submission.csv", dtype=str)
    assert sorted(submission.id) == sorted(test.id)
    assert (submission == pd.read_csv(reference / "submission.csv", dtype=str)).all().all()
