"""`python -m podium.submit runs=[dir,...]`: average runs' test probabilities into one submission.

A run is a training run folder or a cross-validation folder (all its folds); see
podium.submission.ensemble. The class probabilities are averaged (optionally weighted), optionally
post-processed with what the runs' out-of-fold predictions teach
(`postprocess=f1_offsets|logit_adjust`), and written as a validated `submission.csv` with
the averaged `test_probs.csv` into a new `logs/submit/...` folder. `weights=auto` learns
one weight per folder on the OOF predictions (podium.submission.blend); a folder holding
only `oof.csv` + `test_probs.csv` made outside podium is a member too
(podium.submission.external).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import hydra
from omegaconf import DictConfig

from podium import run
from podium.config import CONFIG_DIR
from podium.errors import PodiumError, one_line_errors

if TYPE_CHECKING:
    from podium.submission.summary import Summary


def submit(cfg: DictConfig) -> Summary:
    """Average the given runs (default: the latest) and write the submission; returns the
    summary (also in metrics.json)."""
    from hydra.utils import instantiate

    from podium.io import write_json
    from podium.submission.ensemble import Options, submit_members
    from podium.submission.members import gather_members, latest_run

    given = [Path(r) for r in cfg.runs] or [latest_run(Path(cfg.paths.log_dir))]
    auto = cfg.weights == "auto"  # learned on the OOF (podium.submission.blend)
    if isinstance(cfg.weights, str) and not auto:
        raise PodiumError(f"weights={cfg.weights}: give one number per folder "
                          f"(weights=[2,1]), null (equal) or auto (learned on the OOF)")
    members = gather_members(given, cfg.paths, None if auto else cfg.weights, cfg.external)
    output_dir = Path(cfg.paths.output_dir)
    options = Options(cfg.submission.format, instantiate(cfg.get("postprocess")), cfg.force,
                      blend=auto, test_prior=cfg.get("test_prior"))
    summary = submit_members(members, output_dir, options, list(cfg.get("tta") or []))
    write_json(output_dir / run.METRICS, summary.to_dict())
    return summary


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="submit")
@one_line_errors
def main(cfg: DictConfig) -> None:
    for line in submit(cfg).lines():
        print(line)


if __name__ == "__main__":
    main()
