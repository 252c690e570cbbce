"""`python -m podium.predict runs=[dir,...] data.root=<folder>`: predict another folder's test set.

Code competitions show the hidden test images only at inference time, in a folder the model
never saw, often with the training data gone. Each member (a run, a fold of a
cross-validation folder, or a member of an exported bundle: `export=<folder>`) is rebuilt
from its checkpoint's DataSpec and predicts the new folder's test set through its own
preprocessing (image size, channels, normalisation; tabular encoders); the average is
written, shaped by the new `sample_submission.csv`, into `logs/predict/<time>/`.
"""

from __future__ import annotations

import json
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from podium.config import CONFIG_DIR
from podium.errors import PodiumError, one_line_errors


def bundle_folders(export: Path) -> tuple[list[Path], list[float]]:
    """An exported bundle's member folders and weights (bundle.json)."""
    manifest = Path(export) / "bundle.json"
    if not manifest.is_file():
        raise PodiumError(f"{manifest} not found: export={export} must be a folder written by "
                          f"make export")
    bundle = json.loads(manifest.read_text())
    return [Path(export) / m for m in bundle["members"]], bundle["weights"]


def test_data(member_cfg: DictConfig, data: DictConfig) -> DictConfig:
    """The member's data config pointed at the new folder (non-null `data.*` keys win;
    interpolations such as `${data.root}` resolve against the new values)."""
    cfg = member_cfg.copy()
    for key, value in data.items():
        if value is not None:
            OmegaConf.update(cfg, f"data.{key}", value, force_add=True)
    return cfg.data


def predict(cfg: DictConfig) -> dict:
    """Every member predicts the new folder's test set; returns the ensemble's summary."""
    from hydra.utils import instantiate

    from podium.ensemble import (
        gather_members,
        load_member,
        member_oof,
        predict_test,
        write_ensemble,
    )
    from podium.io import write_json

    if cfg.export:
        folders, weights = bundle_folders(Path(cfg.export))
    elif cfg.runs:
        folders, weights = [Path(r) for r in cfg.runs], cfg.weights
    else:
        raise PodiumError("nothing to predict with: give runs=[<run folder>,...] "
                          "(make predict RUN=...) or export=<bundle folder>")
    members = gather_members(folders, cfg.paths, weights)
    _, spec = load_member(members[0], [])
    datamodule = instantiate(test_data(members[0].cfg, cfg.data))
    datamodule.setup_test(spec)
    tta = [instantiate(t) for t in cfg.get("tta") or []]
    warnings = []
    if tta and not cfg.force:  # no validation images here to prove it on
        warnings.append("tta left out: it cannot be checked on a new folder (check it with "
                        "make submit ... tta=..., then force=true)")
        tta = []
    frames = [predict_test(m, datamodule, tta) for m in members]
    oofs = [member_oof(m) for m in members]
    output_dir = Path(cfg.paths.output_dir)
    summary = write_ensemble(members, output_dir, datamodule.sample, frames, oofs,
                             cfg.submission.format, instantiate(cfg.get("postprocess")))
    summary["warnings"] = warnings + summary.get("warnings", [])
    summary["data_root"] = str(datamodule.root)
    write_json(output_dir / "metrics.json", summary)
    return summary


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="predict")
@one_line_errors
def main(cfg: DictConfig) -> None:
    from podium.ensemble import print_summary

    print_summary(predict(cfg))


if __name__ == "__main__":
    main()
