"""`python -m podium.stack [budget=15m] [overrides]` (`make stack`): the table's ensemble in
one command, within a time budget.

On the same folds (`data.n_folds`, `data.seed`), in two streams side by side when the
machine has two cores or more (one after the other otherwise):
- the network: `make cv EXP=tabular`, its folds ending by 90% of the budget (`deadline`:
  each fold's fit is capped at its share of the time left, and the best checkpoint so far
  predicts);
- the boosters: LightGBM, then CatBoost, then XGBoost, each started only while the budget
  left exceeds the longest booster so far took (`make gbdt MODEL=...`), its folds capped by
  the same `deadline` (each keeps its best round so far).
Every member is an ordinary podium folder under the stack's own (`members/<name>/`): one
can resubmit, refit, predict or export it. A member stopped by the budget, or failed, is
left out with one line. The finished members are blended on the one road (`make submit
weights=auto`: the blend weights replace equal ones only when the chain gains, cross-
fitted), and a table of them is printed: OOF ± standard error, weight, wall time.
Every override given (data, metric, loss, ...) is passed on to every member, so one ARGS
line serves `make cv`, `make gbdt` and `make stack`.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import hydra
from omegaconf import DictConfig

from podium import run
from podium.config import CONFIG_DIR
from podium.errors import PodiumError, one_line_errors

BOOSTERS = ("lightgbm", "catboost", "xgboost")
# not passed on: the stack's own keys, and what each member's command sets itself
OWN_KEYS = ("budget", "members", "task_name", "run_name", "hydra.", "data.n_folds=")
RESERVE = 0.9  # the members' folds end by this share of the budget: the rest blends
GRACE = 60.0   # seconds past the budget before a member still running is stopped
BUDGET_STOP = "stopped at the budget"


@dataclass
class Finished:
    """One member's command as it ran: its folder, wall time and how it ended."""

    name: str
    folder: Path
    seconds: float
    status: str  # ok | stopped at the budget | failed (exit n)

    @property
    def ok(self) -> bool:
        return self.status == "ok" and (self.folder / run.METRICS).is_file()


def seconds(budget: str | int | float) -> float:
    """`900`, `90s`, `15m`, `1.5h` -> seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", str(budget))
    if not match or float(match.group(1)) <= 0:
        raise PodiumError(f"budget={budget}: give a time such as 900, 90s, 15m or 1h")
    return float(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[match.group(2)]


def passed_on() -> list[str]:
    """The command line's overrides, less the stack's own keys: every member gets them."""
    from hydra.core.hydra_config import HydraConfig

    return [o for o in HydraConfig.get().overrides.task
            if not o.lstrip("+~").startswith(OWN_KEYS)]


def network_command(folder: Path, folds: int, deadline: float, args: list[str]) -> list[str]:
    """`make cv EXP=tabular` into `folder`, its folds ending by `deadline` (unix seconds:
    each fold's fit capped at its share of the time left, podium.train.plan_fold)."""
    return [sys.executable, "-m", "podium.train", "-m", "task_name=cv", "experiment=tabular",
            "sweep_name=tabular", f"data.n_folds={folds}", f"data.fold=range(0,{folds})",
            *args, f"deadline={deadline:.0f}", f"hydra.sweep.dir={folder}"]


def booster_command(name: str, folder: Path, folds: int, deadline: float,
                    args: list[str]) -> list[str]:
    """`make gbdt MODEL=name` into `folder`, on one thread (the network runs beside it;
    a `threads=` given wins), its folds ending by `deadline` (unix seconds: each fold's fit
    capped at its share of the time left, podium.model.gbdt.cross_validate)."""
    return [sys.executable, "-m", "podium.gbdt", f"gbdt={name}", f"data.n_folds={folds}",
            "threads=1", *args, f"deadline={deadline:.0f}", f"hydra.run.dir={folder}"]


def run_member(name: str, command: list[str], folder: Path, timeout: float) -> Finished:
    """Run one member's command (its output in members/<name>.log), stopped at `timeout`."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    log = folder.parent / f"{name}.log"
    started = time.monotonic()
    with open(log, "w") as out:
        try:
            proc = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT,
                                  timeout=max(timeout, 1), env={**os.environ, "PYTHONWARNINGS":
                                                               "ignore"})
            status = "ok" if proc.returncode == 0 else \
                f"failed (exit {proc.returncode}: {last_error(log)}; {log})"
        except subprocess.TimeoutExpired:
            status = BUDGET_STOP
    finished = Finished(name, folder, time.monotonic() - started, status)
    print(f"stack: {name} {finished.status} in {finished.seconds:.0f} s", flush=True)
    return finished


def last_error(log: Path) -> str:
    """The last `error: ...` line a member printed (podium's one-line errors), else its last
    line."""
    lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    errors = [line.removeprefix("error: ") for line in lines if line.startswith("error: ")]
    return (errors or lines or ["no output"])[-1]


def run_boosters(members: Path, folds: int, args: list[str], names: list[str],
                 deadline: float, ends: float) -> list[Finished]:
    """The boosters one after the other; each starts only while the time left before
    `deadline` (monotonic seconds) exceeds the longest one so far (a first one always
    starts), its folds ending by `ends` (unix seconds, the network's end), and is killed
    only well past the budget."""
    done: list[Finished] = []
    for name in names:
        left = deadline - time.monotonic()
        longest = max((f.seconds for f in done), default=0.0)
        if left <= longest:
            print(f"stack: {name} not started: {left:.0f} s of the budget left, the "
                  f"longest booster took {longest:.0f} s", flush=True)
            continue
        folder = members / name
        done.append(run_member(name, booster_command(name, folder, folds, ends, args), folder,
                               left + GRACE))
    return done


def stack(cfg: DictConfig) -> tuple[list[Finished], object]:
    """Run the members within the budget, then blend the finished ones into the stack's
    folder (submission.csv, test_probs.csv, oof.csv, metrics.json)."""
    from podium.io import write_json
    from podium.submission.ensemble import Options, submit_members
    from podium.submission.members import gather_members
    from podium.threads import cores

    budget, folds = seconds(cfg.budget), int(cfg.data.n_folds)
    wanted = list(cfg.members)
    unknown = sorted(set(wanted) - {"network", *BOOSTERS})
    if unknown or not wanted:
        raise PodiumError(f"members={wanted}: choose from network, {', '.join(BOOSTERS)}")
    output_dir = Path(cfg.paths.output_dir)
    members, args = output_dir / "members", passed_on()
    started = time.monotonic()
    deadline = started + budget
    print(f"stack: {', '.join(wanted)} on {folds} folds within {budget:.0f} s; members in "
          f"{members}", flush=True)
    network, ends = None, time.time() + RESERVE * budget  # members end by then: time to blend
    if "network" in wanted:
        network = (members / "network", network_command(members / "network", folds, ends,
                                                        args))
    boosters = [b for b in BOOSTERS if b in wanted]
    with ThreadPoolExecutor(max_workers=2 if cores() >= 2 else 1) as pool:
        jobs = [pool.submit(run_boosters, members, folds, args, boosters, deadline, ends)]
        if network is not None:
            jobs.append(pool.submit(lambda: [run_member(  # killed only well past it
                "network", network[1], network[0], deadline - time.monotonic() + GRACE)]))
        finished = [f for job in jobs for f in job.result()]
    kept = [f for f in finished if f.ok]
    if not kept and finished and all(f.status != BUDGET_STOP for f in finished):
        raise PodiumError(f"every member failed; {finished[0].name}: "
                          f"{finished[0].status.removeprefix('failed ')}")
    if not kept:
        raise PodiumError(f"no member finished within budget={cfg.budget}: give a larger "
                          f"budget (see {members}/*.log)")
    summary = submit_members(gather_members([f.folder for f in kept], cfg.paths),
                             output_dir, Options(cfg.submission.format, blend=True))
    write_json(output_dir / run.METRICS, {
        **summary.to_dict(), "budget_s": budget, "wall_s": round(time.monotonic() - started, 1),
        "members": {f.name: {"folder": str(f.folder), "seconds": round(f.seconds, 1),
                             "status": f.status} for f in finished}})
    return finished, summary


def member_table(finished: list[Finished], summary, metric: str, wall: float) -> list[str]:
    """member, its OOF score ± bootstrap standard error, its blend weight, its wall time;
    then the stack's cross-fitted score and its whole wall time `wall`."""
    import json

    def weight(folder: Path) -> float:  # a cv folder's folds share its weight
        return sum(w for r, w in zip(summary.runs, summary.weights, strict=True)
                   if folder == Path(r) or folder in Path(r).parents)
    lines = [f"{'member':<10} {'OOF ' + metric:>22} {'weight':>7} {'wall s':>7}"]
    for f in finished:
        if not f.ok:
            lines.append(f"{f.name:<10} {f.status:>22} {'-':>7} {f.seconds:>7.0f}")
            continue
        scores = json.loads((f.folder / run.METRICS).read_text())
        spread = f" ± {scores['oof_se']:.4f}" if scores.get("oof_se") is not None else ""
        lines.append(f"{f.name:<10} {scores[f'oof/{metric}']:>13.4f}{spread:<9} "
                     f"{weight(f.folder):>7.3f} {f.seconds:>7.0f}")
    spread = f" ± {summary.oof_se:.4f}" if summary.oof_se is not None else ""
    lines.append(f"{'stack':<10} {summary.oof_score_submitted:>13.4f}{spread:<9} "
                 f"{'':>7} {wall:>7.0f}  (the blend, cross-fitted; wall: the whole stack)")
    return lines


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="stack")
@one_line_errors
def main(cfg: DictConfig) -> float:
    import json

    from podium.config import resolve_data
    from podium.model.metrics import resolve_metric

    resolve_data(cfg)
    resolve_metric(cfg)
    finished, summary = stack(cfg)
    for line in summary.lines():
        if not line.startswith("member "):  # the table below lists them
            print(line)
    wall = json.loads((Path(cfg.paths.output_dir) / run.METRICS).read_text())["wall_s"]
    for line in member_table(finished, summary, cfg.metric.competition, wall):
        print(line)
    print(f"stack folder: {cfg.paths.output_dir}")
    return summary.oof_score_submitted


if __name__ == "__main__":
    main()
