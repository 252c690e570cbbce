"""Competition folders without a train.csv: class folders, as many image datasets come.

```
<root>/train/<class>/**/<image>    one folder per class (torchvision's ImageFolder, timm, fastai)
<root>/test/<image>                the test images, flat
<root>/sample_submission.csv       optional: written from test/ when absent
```
The layout is used when `train.csv` is absent and `train/` holds only folders (hidden
entries such as `.ipynb_checkpoints` and `.DS_Store`, and files that are not images, are
ignored). The class is the folder name; the id is the file name without its extension,
so ids must be unique across classes (a one-line error names both files otherwise), and
the test ids are what a submission is keyed by. Rows are sorted by id, so the same images
give the same ids, order, split and results as a train.csv sorted by id.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from podium.data.decode import IMAGE_EXTENSIONS
from podium.data.labels import sort_labels
from podium.errors import PodiumError
from podium.io import check_filled, check_same_ids, read_csv, write_atomic

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClassFolders:
    """What `read_labels` takes from a class-folder layout."""

    train: pd.DataFrame  # id and label columns, one row per image, sorted by id
    paths: list[str]  # each row's image, relative to the competition folder
    source: Path  # <root>/train, named in messages about the labels

    def check_unused(self, **columns: str | None) -> None:
        """Options that name train.csv columns (data.group_col, data.path_col) have
        nothing to read here: one line instead of a KeyError later."""
        for key, value in columns.items():
            if value:
                raise PodiumError(
                    f"data.{key}={value} names a train.csv column, and {self.source.parent} "
                    f"has class folders (train/<class>/) instead: set data.{key}=null"
                )

    def sample_submission(self, path: Path) -> pd.DataFrame | None:
        """None when `path` exists (the user's file is read as usual), else one written
        from the test images (write_sample_submission)."""
        if path.exists():
            return None
        id_col, target_col = self.train.columns[:2]
        return write_sample_submission(self.source.parent, path, id_col, target_col,
                                       self.train[target_col].unique().tolist())


def visible(name: str) -> bool:
    return not name.startswith(".")


def is_image(name: str) -> bool:
    return visible(name) and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def shown(names: list[str]) -> str:
    return ", ".join(names[:3]) + (" ..." if len(names) > 3 else "")


def class_folders(root: Path, train_csv: str, id_col: str, target_col: str
                  ) -> ClassFolders | None:
    """The class-folder layout of `root`, or None when the train.csv layout applies
    (train.csv exists, or train/ holds images or is absent: a missing train.csv is then
    reported as before). Mixed images and folders in train/, a class folder without
    images and an id in two places are one-line errors."""
    folder = root / "train"
    if (root / train_csv).exists() or not folder.is_dir():
        return None
    entries = sorted((e for e in os.scandir(folder) if visible(e.name)), key=lambda e: e.name)
    classes = [e.name for e in entries if e.is_dir()]
    files = [e.name for e in entries if not e.is_dir() and is_image(e.name)]
    if not classes:
        return None
    if files:
        raise PodiumError(
            f"{folder} holds both images ({shown(files)}) and folders ({shown(classes)}): "
            f"put every image in a class folder train/<class>/, or write {root / train_csv}"
        )
    rows = [(name, path) for name in classes for path in class_images(root, folder / name)]
    ids = check_unique_ids([root / path for _, path in rows], folder)
    order = sorted(range(len(ids)), key=ids.__getitem__)  # as text, like sorted(train.csv)
    train = pd.DataFrame({id_col: [ids[i] for i in order],
                          target_col: [rows[i][0] for i in order]})
    return ClassFolders(train, [rows[i][1] for i in order], folder)


def class_images(root: Path, folder: Path) -> list[str]:
    """Every image under one class folder (sub-folders too, as ImageFolder walks them),
    relative to `root`, sorted."""
    found = []
    for top, dirs, names in os.walk(folder, followlinks=True):
        dirs[:] = sorted(d for d in dirs if visible(d))
        found += [os.path.relpath(os.path.join(top, n), root) for n in sorted(names)
                  if is_image(n)]
    if not found:
        raise PodiumError(
            f"class folder {folder} holds no images ({', '.join(IMAGE_EXTENSIONS)}): "
            f"add its images or remove the folder"
        )
    return found


def check_unique_ids(paths: list[Path], folder: Path) -> list[str]:
    """File stems as ids; the first two files that share one are named."""
    ids = [p.stem for p in paths]
    seen: dict[str, Path] = {}
    for path, i in zip(paths, ids, strict=True):
        if i in seen:
            raise PodiumError(
                f"{seen[i]} and {path} have the same id '{i}' (ids are file names without "
                f"extension, unique across {folder}/): rename one of them"
            )
        seen[i] = path
    return ids


def folder_test_ids(root: Path) -> list[str]:
    """The stems of the images directly in test/, sorted; duplicates are an error."""
    folder = root / "test"
    if not folder.is_dir():
        raise PodiumError(f"{folder} not found: put the test images there (one file per image)")
    names = sorted(e.name for e in os.scandir(folder) if e.is_file() and is_image(e.name))
    if not names:
        raise PodiumError(f"{folder} holds no images: put the test images there, not in "
                          f"sub-folders")
    ids = check_unique_ids([folder / n for n in names], folder)
    return sorted(ids)


def write_sample_submission(root: Path, path: Path, id_col: str, target_col: str,
                            labels: list[str]) -> pd.DataFrame:
    """A sample submission from the test images (`id_col,target_col`, every row the first
    class), written atomically to `path` (the caller checked that no file is there: a
    user's file is read instead); where the folder is read-only it is kept in memory and
    the run goes on."""
    sample = pd.DataFrame({id_col: folder_test_ids(root), target_col: sort_labels(labels)[0]})
    try:
        written = write_atomic(path, sample.to_csv(index=False))
    except OSError as err:
        log.warning("no %s and %s is not writable (%s): the sample submission (%d test "
                    "images, header %s,%s) is kept in memory; set data.sample_submission="
                    "<a writable path> to keep it", path.name, path.parent, err.strerror,
                    len(sample), id_col, target_col)
        return sample
    log.warning("no %s: wrote %s from the %d images in %s (header %s,%s; every later run "
                "reads it)", path.name, written, len(sample), root / "test", id_col,
                target_col)
    return sample


def paths_from_test_csv(path: Path, id_col: str, path_col: str | None, ids: list[str],
                   sample_name: str) -> list[str]:
    """The test images' paths, one per id of the sample submission, from `data.test_csv`
    (its id column and `data.path_col`, as in train.csv): each id once, every id of the
    sample submission with a path (other rows may be there: a table of every image)."""
    if not path_col:
        raise PodiumError(f"data.test_csv={path.name} needs data.path_col, the column of "
                          f"image paths in it (and in train.csv)")
    table = read_csv(path, [id_col, path_col], "the test image paths (data.test_csv)",
                     id_col=id_col)
    check_same_ids(path, table[id_col].tolist(), ids, sample_name,
                   f"give every test image a row with its {path_col}", extra_ok=True)
    check_filled(table[table[id_col].isin(set(ids))], path, path_col, id_col,
                 f"give every test image its {path_col} (relative to data.root)")
    by_id = dict(zip(table[id_col], table[path_col], strict=True))
    return [by_id[i] for i in ids]
