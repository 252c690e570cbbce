"""DataSpec: the one handoff from the data to the model and the submission.

A datamodule declares it after `setup()`; `build_module(cfg, spec)` reads it; every
checkpoint stores it whole (as plain types, so `torch.load(weights_only=True)` reads it), and
`make submit`, `make lr-find` and prediction on a new folder rebuild the model from it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from podium.errors import PodiumError

TASKS = ("multiclass", "binary", "regression", "multilabel")


def check_task(task: str) -> None:
    if task not in TASKS:
        raise PodiumError(f"data.task={task} is unknown: use one of {', '.join(TASKS)}")


@dataclass(frozen=True)
class DataSpec:
    """What the data tells the model, fixed once the training split is known.

    task: multiclass | binary | regression | multilabel.
    class_names: original label values in index order (regression: the output's name).
    class_counts: training-split examples per class (empty for regression; multilabel: the
        positives of each label).
    train_rows: training-split rows (multilabel: a label's negatives are train_rows minus
        its count, for BCE's pos_weight; 0 in checkpoints older than the field).
    net_inputs: the network's input-size argument: `{"in_chans": C}` for images,
        `{"in_features": F}` for tabular features.
    mean, std: per-channel image normalisation in [0, 1] units; empty = none (tabular).
    image_size: (H, W) images are decoded at (None: as stored); test images must match.
    interpolation: how images were resized to image_size (bilinear | bicubic | nearest).
    id_col, target_col: the competition's column names.
    test_prior: the test set's class prior (`data.test_prior`: uniform or a CSV); empty =
        the training prior (`train`) or one estimated after prediction (`estimate`).
    test_prior_setting: what `data.test_prior` said (train | uniform | estimate | a CSV).
    """

    task: str
    class_names: tuple[str, ...]
    class_counts: tuple[int, ...]
    net_inputs: dict[str, int]
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    image_size: tuple[int, int] | None = None
    interpolation: str = "bilinear"
    id_col: str = "id"
    target_col: str = "label"
    features: dict[str, Any] = field(default_factory=dict)  # tabular encoders (podium.data.tabular)
    # regression: the target's transform, mean and std the network learns in (data.targets)
    target_scale: dict[str, Any] = field(default_factory=dict)
    train_rows: int = 0
    test_prior: tuple[float, ...] = ()
    test_prior_setting: str = "train"

    @property
    def class_weights(self) -> tuple[float, ...] | None:
        """Validation rows' weights per class under the test prior (None: unweighted)."""
        if not self.test_prior:
            return None
        from podium.prior import class_weights

        return tuple(class_weights(self.test_prior, self.class_counts).tolist())

    @property
    def image_inputs(self) -> bool:
        """The network takes images (else tabular feature rows)."""
        return "in_chans" in self.net_inputs

    def to_dict(self) -> dict[str, Any]:
        """Plain lists/dicts/strings/numbers: what a checkpoint stores."""
        data = asdict(self)
        for key in ("class_names", "class_counts", "mean", "std", "image_size", "test_prior"):
            data[key] = list(data[key]) if data[key] is not None else None
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DataSpec:
        data = dict(data)
        for key in ("class_names", "class_counts", "mean", "std", "test_prior"):
            data[key] = tuple(data.get(key) or ())
        size = data.get("image_size")
        data["image_size"] = tuple(size) if size is not None else None
        return cls(**data)
