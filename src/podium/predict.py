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
from typing import TYPE_CHECKING

import hydra
from omegaconf import DictConfig

from podium import run
from podium.config import CONFIG_DIR
from podium.errors import PodiumError, one_line_errors

if TYPE_CHECKING:
    from podium.submission.summary import Summary


def bundle_folders(export: Path) -> tuple[list[Path], list[float]]:
    """An exported bundle's member folders and weights (bundle.json)."""
    manifest = Path(export) / "bundle.json"
    if not manifest.is_file():
        raise PodiumError(f"{manifest} not found: export={export} must be a folder written by "
                          f"make export")
    bundle = json.loads(manifest.read_text())
    return [Path(export) / m for m in bundle["members"]], bundle["weights"]


def predict(cfg: DictConfig) -> Summary:
    """Every member predicts the new folder's test set through its own preprocessing; the
    one road writes the ensemble. Returns its summary (also in metrics.json)."""
    from hydra.utils import instantiate

    from podium.io import write_json
    from podium.submission.ensemble import Options, check_members_agree, write_ensemble
    from podium.submission.members import ensemble_runs, gather_members, new_folder_predictions

    if cfg.export:
        folders, weights = bundle_folders(Path(cfg.export))
    elif cfg.runs:
        folders, weights = ensemble_runs([Path(r) for r in cfg.runs], cfg.weights)
    else:
        raise PodiumError("nothing to predict with: give runs=[<run folder>,...] "
                          "(make predict RUN=...) or export=<bundle folder>")
    if not str(cfg.data.get("root") or "").strip():
        raise PodiumError("no competition folder to predict: give DATA=<folder with "
                          "sample_submission.csv and the test inputs> (data.root=...)")
    members = gather_members(folders, cfg.paths, weights)
    warnings = check_members_agree(members, cfg.force)
    tta = list(cfg.get("tta") or [])
    predictions, sample = [], None
    for member in members:
        plain, with_tta, sample = new_folder_predictions(member, cfg.data, tta)
        predictions.append((plain, with_tta))
    output_dir = Path(cfg.paths.output_dir)
    options = Options(cfg.submission.format, instantiate(cfg.get("postprocess")), cfg.force,
                      test_prior=cfg.get("test_prior"))
    summary = write_ensemble(members, output_dir, sample, predictions, options, warnings)
    write_json(output_dir / run.METRICS, {**summary.to_dict(), "data_root": str(cfg.data.root)})
    return summary


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="predict")
@one_line_errors
def main(cfg: DictConfig) -> None:
    for line in predict(cfg).lines():
        print(line)


if __name__ == "__main__":
    main()
