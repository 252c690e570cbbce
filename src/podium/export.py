"""`python -m podium.export runs=[dir,...]`: one folder a notebook without internet predicts from.

The bundle (`logs/export/<time>/`):
  bundle.json            members and their weights, class names, podium's version
  members/<i>/           one per member (a run; a cross-validation folder's folds in
                         members/<i>/<fold>/, each as follows; a submit or stack folder
                         stands for the folders it blended, at its weights):
    .hydra/config.yaml   its composed config
    checkpoints/best.ckpt  weights + DataSpec (classes, input statistics, tabular encoders)
                         only: no optimizer state, readable with weights_only=True
    models/              a `make gbdt` folder's instead: each fold's model in its library's
                         own file and features.json (podium.model.gbdt.save_models)
    oof.csv              its out-of-fold predictions (for postprocess=...), when it has them
  podium-<version>-py3-none-any.whl, requirements.txt (the installed versions, pinned)
In the notebook: `pip install --no-index --find-links <bundle> podium` (add `--no-deps`
where the notebook's image already has torch, Lightning, Hydra, ...), then
`python -m podium.predict export=<bundle> data.root=<test competition>`.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import hydra
from omegaconf import DictConfig

from podium import run
from podium.config import CONFIG_DIR
from podium.errors import PodiumError, one_line_errors

REPO = Path(__file__).resolve().parents[2]


def pinned_requirements() -> str:
    """podium's dependencies at the versions installed here, one `name==version` a line."""
    import re

    lines = []
    for requirement in metadata.requires("podium") or []:
        if "extra ==" in requirement:
            continue
        name = re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0]
        try:
            lines.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    return "\n".join(sorted(lines, key=str.lower)) + "\n"


def build_wheel(out: Path) -> Path:
    """A wheel of this checkout of podium (its conf/ inside), built without internet."""
    if not (REPO / "pyproject.toml").is_file():
        raise PodiumError("make export builds podium's wheel from a checkout of podium; "
                          "this one is installed without its sources (set wheel=false)")
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                           "--no-build-isolation", "-q", "-w", str(out), str(REPO)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise PodiumError(f"pip wheel failed: {proc.stderr.strip().splitlines()[-1:]}")
    return next(out.glob("podium-*.whl"))


def slim_checkpoint(source: Path, target: Path) -> dict:
    """Only what prediction needs: the weights and the hyperparameters (with the spec);
    returns the spec."""
    import torch

    from podium.submission.members import load_checkpoint

    checkpoint = load_checkpoint(source)
    target.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": checkpoint["state_dict"],
                "hyper_parameters": checkpoint["hyper_parameters"]}, target)
    return checkpoint["hyper_parameters"]["spec"]


def export(cfg: DictConfig) -> Path:
    """Write the bundle into the run folder; returns its path."""
    from podium.io import write_atomic, write_json
    from podium.submission.members import ensemble_runs, gather_members, latest_run

    given = [Path(r) for r in cfg.runs] or [latest_run(Path(cfg.paths.log_dir))]
    folders, weights = ensemble_runs(given, cfg.weights)
    members = gather_members(folders, cfg.paths, weights)
    out = Path(cfg.paths.output_dir)
    groups: dict[Path, list] = {}  # a cv folder's folds stay one member, as they were given
    for member in members:
        groups.setdefault(member.folder or member.run, []).append(member)
    for i, group in enumerate(groups.values()):
        for member in group:
            folder = out / "members" / str(i)
            if member.run != (member.folder or member.run):  # a fold: members/<i>/<fold>
                folder = folder / member.run.name
            spec = write_member(member, folder)
    write_atomic(out / "requirements.txt", pinned_requirements(), replace=True)
    if cfg.wheel:
        build_wheel(out)
    write_json(out / "bundle.json", {
        "members": [f"members/{i}" for i in range(len(groups))],
        "weights": [sum(m.weight for m in group) for group in groups.values()],
        "classes": spec["class_names"], "sources": [str(folder) for folder in groups],
        "podium": metadata.version("podium"),
    })
    return out


def write_member(member, folder: Path) -> dict:
    """One member's model (a slim checkpoint, or a booster's own model files), config, OOF
    and carried prior into `folder`; returns its DataSpec."""
    from podium.io import write_atomic, write_json
    from podium.model.gbdt import MODELS, saved_features
    from podium.submission.members import is_trees, member_oof

    if is_trees(member):  # the fold models' own files, no checkpoint
        spec = saved_features(member.run)
        shutil.copytree(member.run / MODELS, folder / MODELS)
    else:
        spec = slim_checkpoint(member.run / run.BEST_CHECKPOINT, folder / run.BEST_CHECKPOINT)
    (folder / run.CONFIG).parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(member.run / run.CONFIG, folder / run.CONFIG)
    oof = member_oof(member, spec["class_names"])  # a refit's: the OOF it borrows
    if oof is not None:
        write_atomic(folder / run.OOF, oof.to_csv(index=False))
    if member.score_prior:  # what make predict moves its probabilities from
        write_json(folder / run.METRICS, {"score_prior": member.score_prior})
    return spec


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="export")
@one_line_errors
def main(cfg: DictConfig) -> None:
    out = export(cfg)
    print(f"bundle: {out}")
    print(f"offline: pip install --no-index --find-links {out} podium")
    print(f"         python -m podium.predict export={out} data.root=<test competition>")


if __name__ == "__main__":
    main()
