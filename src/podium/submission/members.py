"""The members of an ensemble: trained models found in run folders, and their predictions.

A member is one trained model: a run folder, or one fold of a cross-validation folder (an
exported bundle holds the same folders). Each folder given gets one weight (default 1); a
cross-validation folder's folds share it equally. A member's predictions are its
`test_probs.csv` and `oof.csv` (podium.run), or its `checkpoints/best.ckpt` predicts again
(test-time augmentation, a new test folder) through its own preprocessing, rebuilt from the
DataSpec in the checkpoint, which is read with `torch.load(weights_only=True)`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from omegaconf import DictConfig, OmegaConf

from podium import run
from podium.errors import PodiumError


@dataclass
class Member:
    """One trained model of an ensemble and its share of the average."""

    run: Path  # a run folder: .hydra/config.yaml, checkpoints/best.ckpt, test_probs.csv, oof.csv
    cfg: DictConfig | None  # None: an outside folder until complete_external gives it one
    weight: float
    folder: Path | None = None  # the folder given (a cv folder's folds share it); None: run
    # the class prior its probabilities carry, class -> share (podium.prior.score_prior:
    # metrics.json's score_prior); empty: its OOF rows' class shares (plain cross-entropy)
    score_prior: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_folder(cls, folder: Path, paths: DictConfig, weight: float = 1.0,
                    cfg: DictConfig | None = None,
                    score_prior: dict[str, float] | None = None) -> list[Member]:
        """The members of any folder: a run, each fold of a cross-validation folder (they
        share `weight`), a submit / predict / ensemble folder or an outside folder of
        predictions (podium.submission.external: its config comes from complete_external).
        Each reads its config (or takes `cfg`: a run still in progress) and the class prior
        its probabilities carry (metrics.json's score_prior, or `score_prior`)."""
        from podium.submission.external import is_external

        folder = Path(folder)
        if is_external(folder):
            return [cls(folder, cfg, weight, folder, carried_prior(folder, score_prior))]
        runs = expand_runs([folder])
        return [cls(r, cfg if cfg is not None else run_config(r, paths), weight / len(runs),
                    folder, carried_prior(r, score_prior)) for r in runs]


def carried_prior(folder: Path, given: dict[str, float] | None = None) -> dict[str, float]:
    """The class prior a folder's probabilities carry: `given`, else its metrics.json's."""
    if given:
        return dict(given)
    return dict(run.read_metrics(folder).get("score_prior") or {}) \
        if (folder / run.METRICS).is_file() else {}


@dataclass
class Predictions:
    """A member's probabilities on the test set and on its validation rows (None: none)."""

    test: pd.DataFrame
    oof: pd.DataFrame | None


def latest_run(log_dir: Path) -> Path:
    """The most recent training run that has predictions or a best checkpoint."""
    found = [p.parent for p in Path(log_dir).glob(f"train/*/*/{run.TEST_PROBS}")]
    found += [p.parents[1] for p in Path(log_dir).glob(f"train/*/*/{run.BEST_CHECKPOINT}")]
    if not found:
        raise PodiumError(f"no training run found under {log_dir}/train: run `make train` first")
    return max(found, key=lambda p: p.stat().st_mtime)


def expand_runs(runs: Sequence[Path]) -> list[Path]:
    """Run folders as given; a cross-validation folder stands for all of its folds."""
    expanded = []
    for folder in runs:
        if not folder.is_dir():
            raise PodiumError(f"run folder {folder} not found")
        expanded += cv_folds(folder) or [folder]
    return expanded


def cv_folds(folder: Path) -> list[Path]:
    """A cross-validation folder's fold folders; [] for any other folder. A cv folder has
    no config of its own (make cv), or is a sweep's cv trial (its gathered metrics.json
    counts the folds)."""
    folds = sorted(p.parents[1] for p in Path(folder).glob(f"*/{run.CONFIG}"))
    cv = folds and (not (folder / run.CONFIG).exists() or "folds" in run.read_metrics(folder))
    return folds if cv else []


def ensemble_runs(folders: Sequence[Path], weights: Sequence[float] | None = None
                  ) -> tuple[list[Path], list[float] | None]:
    """Folders as `make predict` and `make export` rebuild their models: a folder that
    `make submit`, `make stack` or `make predict` wrote (no model of its own: no checkpoint,
    no booster models, no folds; its metrics.json lists the runs it blended and their
    weights) stands for those runs at those weights, times its own weight; all the folds of
    one cv folder, for that folder. Other folders, and weights that do not match the folders
    (gather_members says so), pass as given."""
    from podium.model.gbdt import MODELS

    if weights and len(weights) != len(folders):
        return list(folders), list(weights)
    found: dict[Path, float] = {}
    for folder, weight in zip(folders, weights or [1.0] * len(folders), strict=True):
        folder = Path(folder)
        blended = run.read_metrics(folder) if (folder / run.METRICS).is_file() else {}
        own_model = ((folder / run.BEST_CHECKPOINT).is_file() or (folder / MODELS).is_dir()
                     or cv_folds(folder))
        if own_model or not sum(blended.get("weights") or []):
            found[folder] = found.get(folder, 0.0) + weight
            continue
        total, runs = sum(blended["weights"]), [Path(r) for r in blended["runs"]]
        for ran, share in zip(runs, blended["weights"], strict=True):
            if is_fold(ran) and set(cv_folds(ran.parent)) <= set(runs):  # the whole cv folder
                ran = ran.parent
            found[ran] = found.get(ran, 0.0) + weight * share / total
    expanded = list(found) != [Path(f) for f in folders]
    return list(found), list(found.values()) if weights or expanded else None  # None: equal


def is_fold(folder: Path) -> bool:
    """One fold of a cross-validation folder: its config names its `data.fold`."""
    config = Path(folder) / run.CONFIG
    return config.is_file() and OmegaConf.load(config).get("data", {}).get("fold") is not None


def run_config(folder: Path, paths: DictConfig) -> DictConfig:
    """A run's composed config; its `paths` resolve against this session's."""
    path = folder / run.CONFIG
    if not path.is_file():
        raise PodiumError(f"{folder} is not a podium run folder (no {run.CONFIG})")
    from podium.config import resolve_defaults

    cfg = OmegaConf.load(path)
    cfg.paths = paths
    return resolve_defaults(cfg)  # its loss and metric keys as its training resolved them


def gather_members(folders: Sequence[Path], paths: DictConfig,
                   weights: Sequence[float] | None = None,
                   external: DictConfig | None = None) -> list[Member]:
    """One weight per folder given; a cross-validation folder's folds share it equally.
    With `external` (make submit's options for them), a folder of predictions only (oof.csv
    + test_probs.csv made outside podium: podium.submission.external) is a member too."""
    from podium.submission.external import complete_external

    weights = list(weights) if weights else [1.0] * len(folders)
    if len(weights) != len(folders) or min(weights) < 0 or sum(weights) <= 0:
        raise PodiumError(f"weights={weights}: give one non-negative weight per folder "
                          f"({len(folders)} given)")
    members = [m for folder, weight in zip(folders, weights, strict=True)
               for m in Member.from_folder(folder, paths, weight)]
    return complete_external(members, external)


def load_checkpoint(path: Path) -> dict:
    """A checkpoint read with `torch.load(weights_only=True)`: tensors and plain types only,
    so a file carrying pickled code is refused, never run."""
    import pickle

    import torch

    if not path.is_file():
        raise PodiumError(f"{path} not found: train the run again or pick another run folder")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        reason = str(err).strip().splitlines()[0]
        raise PodiumError(f"{path} is not a plain podium checkpoint and was not loaded "
                          f"(it holds objects that could run code: {reason[:120]})") from err


def load_member(member: Member, tta: Sequence = ()):
    """The member's best checkpoint as a LightningModule (eval mode) and its DataSpec; the
    tta views as callables (config nodes instantiated)."""
    from hydra.utils import instantiate

    from podium.build import build_module
    from podium.spec import DataSpec

    checkpoint = load_checkpoint(member.run / run.BEST_CHECKPOINT)
    spec = DataSpec.from_dict(checkpoint["hyper_parameters"]["spec"])
    module = build_module(member.cfg, spec, pretrained=False)  # the checkpoint has the weights
    module.load_state_dict(checkpoint["state_dict"], strict=False)
    module.tta = [instantiate(t) if isinstance(t, (DictConfig, dict)) else t for t in tta]
    return module.eval(), spec


def predict_probs(module, loader):
    """The module's predictions over `loader` on one device: (N, C), or (N, 2, C) with tta."""
    import lightning as L
    import torch

    trainer = L.Trainer(accelerator="auto", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    return torch.cat(trainer.predict(module, dataloaders=loader))


def same_views(member: Member, tta: Sequence) -> bool:
    """The run's own `*_tta.csv` were predicted with exactly these (configured) views."""
    if not all(isinstance(t, (DictConfig, dict)) for t in tta):
        return False
    return (OmegaConf.to_container(OmegaConf.create(list(member.cfg.get("tta") or [])))
            == OmegaConf.to_container(OmegaConf.create(list(tta))))


def read_predictions(member: Member, names: Sequence[str], sample: pd.DataFrame | None = None
                     ) -> Predictions:
    """A member's (test_probs, oof) pair `names` read and checked (podium.run): the oof's
    class columns those of the test file, and (given the sample submission) the test ids
    exactly the sample's, put in its order; a refit's OOF borrowed (member_oof)."""
    from podium.io import check_same_ids

    data = member.cfg.data
    path = member.run / names[0]
    test = run.read_probs(path, data.id_col)
    if sample is not None:
        ids = sample[data.id_col].tolist()
        check_same_ids(path, test[data.id_col].tolist(), ids, "the sample submission",
                       f"the run predicted another test set; {run.redo(path)}")
        test = test.set_index(data.id_col).loc[ids].reset_index()
    return Predictions(test, member_oof(member, test.columns[1:], names[1]))


def own_predictions(member: Member, tta: Sequence = (), sample: pd.DataFrame | None = None
                    ) -> tuple[Predictions, Predictions | None]:
    """(plain, with the tta views or None) on the member's own competition: read from its
    files (their test ids checked against `sample`, when given), or predicted again from
    best.ckpt (both views in one pass; the OOF on its validation split)."""
    from podium.callbacks.predictions import plain_view, tta_view

    data, folder = member.cfg.data, member.run
    names = [run.TEST_PROBS, run.OOF]
    if tta and same_views(member, tta):
        names += [run.tta_name(n) for n in names]
    if all((folder / n).is_file() for n in names[::2]):
        found = [read_predictions(member, names[i:i + 2], sample)
                 for i in range(0, len(names), 2)]
        if not tta:
            return found[0], None
        if len(names) == 4:
            return found[0], found[1]
    from podium.build import build_datamodule

    datamodule = build_datamodule(member.cfg)
    datamodule.setup("predict")
    module, spec = load_member(member, tta)
    test = predict_probs(module, datamodule.predict_test_dataloader())
    val = (predict_probs(module, datamodule.oof_dataloader())
           if datamodule.has_oof else None)

    def predictions(view) -> Predictions:
        oof = member_oof(member, spec.class_names, run.OOF if view is plain_view
                         else run.tta_name(run.OOF)) if val is None else run.oof_frame(
            datamodule.oof_ids, view(val).numpy(), spec.class_names, spec.id_col,
            datamodule.fold or 0, data.target_col, datamodule.oof_labels)
        return Predictions(run.probs_frame(datamodule.test_ids, view(test).numpy(),
                                           spec.class_names, spec.id_col), oof)

    return predictions(plain_view), predictions(tta_view) if tta else None


def test_data(member_cfg: DictConfig, data: DictConfig) -> DictConfig:
    """The member's data config pointed at another folder (non-null `data.*` keys win;
    interpolations such as `${data.root}` resolve against the new values)."""
    cfg = member_cfg.copy()
    for key, value in data.items():
        if value is not None:
            OmegaConf.update(cfg, f"data.{key}", value, force_add=True)
    return cfg.data


def new_folder_predictions(member: Member, data: DictConfig, tta: Sequence = ()
                           ) -> tuple[Predictions, Predictions | None, pd.DataFrame]:
    """(plain, with tta or None, the folder's sample submission): the member predicts the
    test set of another folder through its own preprocessing (its DataSpec: image size,
    channels, normalisation, tabular encoders). Its OOF is the one it was trained with; a
    tta view has none (it cannot be proven here)."""
    from hydra.utils import instantiate

    from podium.callbacks.predictions import plain_view, tta_view

    if is_trees(member):
        return tree_predictions(member, data)
    module, spec = load_member(member, tta)
    datamodule = instantiate(test_data(member.cfg, data))
    datamodule.setup_test(spec)
    test = predict_probs(module, datamodule.predict_test_dataloader())
    frame = lambda view: run.probs_frame(datamodule.test_ids, view(test).numpy(),  # noqa: E731
                                         spec.class_names, spec.id_col)
    oof = member_oof(member, spec.class_names)
    with_tta = Predictions(frame(tta_view), None) if tta else None
    return Predictions(frame(plain_view), oof), with_tta, datamodule.sample


def is_trees(member: Member) -> bool:
    """A `make gbdt` folder: fold models in their library's own files, no checkpoint."""
    return member.cfg is not None and member.cfg.get("task_name") == "gbdt"


def tree_predictions(member: Member, data: DictConfig
                     ) -> tuple[Predictions, None, pd.DataFrame]:
    """(plain, None, the folder's sample submission): a `make gbdt` folder's fold models,
    read from their own files (podium.model.gbdt.predict_saved), predict another folder's
    test table, its columns made as in training (models/features.json: the hook, date parts,
    text components); no tta view."""
    from hydra.utils import instantiate

    from podium.model.gbdt import predict_saved, saved_features

    saved = saved_features(member.run)
    datamodule = instantiate(test_data(member.cfg, data))
    datamodule.check_root(datamodule.test_csv)
    datamodule.read_sample()
    frame = datamodule.made_test_frame(saved["made"])  # its columns made as in training
    test = run.probs_frame(datamodule.test_ids, predict_saved(member.run, frame),
                           saved["class_names"], datamodule.id_col)
    return Predictions(test, member_oof(member, saved["class_names"])), None, datamodule.sample


def borrowed_oof(member: Member, class_names: Sequence, name: str = run.OOF
                 ) -> pd.DataFrame | None:
    """A refit (`make refit`) has no validation rows: what the one road learns on OOF rows
    (the tta choice, post-processing, the threshold) it learns on the OOF of the runs it
    refits (`refit_of`: the same recipe on part of the rows). None for any other run."""
    sources = member.cfg.get("refit_of") if member.cfg is not None else None
    if not sources:
        return None
    from podium.submission.oof import combine_oof

    data = member.cfg.data
    return combine_oof([run.read_oof(Path(s) / name, data.id_col, data.target_col,
                                     class_names) for s in sources], data.id_col)


def member_oof(member: Member, class_names: Sequence, name: str = run.OOF
               ) -> pd.DataFrame | None:
    """The member's OOF rows: its own `name` file, else those its refit borrows."""
    data = member.cfg.data
    if (member.run / name).is_file():
        return run.read_oof(member.run / name, data.id_col, data.target_col, class_names)
    return borrowed_oof(member, class_names, name)
