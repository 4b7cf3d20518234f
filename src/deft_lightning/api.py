"""The Python API for practitioners: ``find_label_issues`` on a folder, a CSV, paths or in-memory images.

It is the ``detect`` entry point without a command line: the same config tree, the same detector
options (as overrides), the same files in a run directory and the same errors (``UserError``
subclasses, which the CLI prints as one paragraph). The labels are taken as given (``noise=none``)
unless an override says otherwise.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from deft_lightning.errors import ConfigError

if TYPE_CHECKING:  # pandas and the pipeline are imported on use: `import deft_lightning` stays light
    import pandas as pd


class LabelIssues(NamedTuple):
    """What ``find_label_issues`` found: one row per sample, and where the full report is."""

    issues: "pd.DataFrame"  # the columns of detection/selection.csv, in sample order
    pred_probs: np.ndarray  # (N, C) class probabilities, rows as ``issues``, columns as ``class_names``
    class_names: list[str]
    summary: dict  # detection/summary.json
    run_dir: Path


def find_label_issues(
    data: Any,
    labels: Sequence[Any] | None = None,
    *,
    class_names: Sequence[str] | None = None,
    overrides: Sequence[str] = (),
    config: Any | None = None,
    output_dir: str | Path | None = None,
    **options: Any,
) -> LabelIssues:
    """Train the configured detector (DEFT by default) on ``data`` and return its label-issue table.

    ``data`` is one of: a folder in imagefolder layout (``<root>/train/<class>/*``, or ``<root>/<class>/*``);
    a CSV file with ``path,label`` columns; a list of ``(path, label)`` pairs; image paths with
    ``labels``; in-memory images (an ``(N, H, W, 3)`` uint8 array or a list of PIL images of one size)
    with ``labels``. Labels are class names or 0-based indices (then ``class_names`` names them).

    Detector options are Hydra overrides, as on the command line (``overrides=["detector=label_match",
    "detector.epochs=5"]``), or keywords with ``__`` for dots (``detector__epochs=5``); ``config`` is an
    already composed detect config, used instead of composing one. Files go to ``output_dir``
    (default: a new ``<paths.log_dir>/label_issues/<name>-<time>-<id>/``).
    """
    from omegaconf import open_dict

    from deft_lightning.cli import compose_config
    from deft_lightning.data.readers import in_memory

    all_overrides = list(overrides) + [_keyword_override(key, value) for key, value in options.items()]
    dataset_overrides, files = _dataset_source(data, labels, class_names)
    if config is None:
        given = {item.split("=", 1)[0].lstrip("+~") for item in all_overrides}
        defaults = ["noise=none"] if "noise" not in given else []
        config = compose_config(dataset_overrides + defaults + all_overrides, config_name="detect")
    cfg = config.copy()
    key = None
    with open_dict(cfg):
        if files is not None:
            key = in_memory.register(files)
            cfg.dataset.name = files.name
            cfg.dataset.root = None
            cfg.dataset.reader = {"_target_": "deft_lightning.data.readers.in_memory.read_registered",
                                  "_partial_": True, "key": key}
        if output_dir is None and not cfg.paths.get("output_dir"):
            stamp = time.strftime("%Y-%m-%d_%H-%M-%S")
            output_dir = Path(str(cfg.paths.log_dir)) / "label_issues" / f"{cfg.dataset.name}-{stamp}-{uuid.uuid4().hex[:6]}"
        if output_dir is not None:
            cfg.paths.output_dir = str(Path(output_dir).expanduser().resolve())
    try:
        from deft_lightning.detect import detect

        results = detect(cfg)
    finally:
        if key is not None:
            in_memory.unregister(key)
    return read_label_issues(Path(str(cfg.paths.output_dir)), results.get("detection"))


def read_label_issues(run_dir: str | Path, summary: Mapping | None = None) -> LabelIssues:
    """The :class:`LabelIssues` of a finished detection run directory (``RUN`` or ``RUN/detection``)."""
    import json

    import pandas as pd

    run_dir = Path(run_dir)
    out = run_dir if (run_dir / "selection.csv").is_file() else run_dir / "detection"
    issues = pd.read_csv(out / "selection.csv")
    pred_probs = np.load(out / "pred_probs.npy", allow_pickle=False)
    if summary is None:
        summary = json.loads((out / "summary.json").read_text())
    class_names = _class_order(out, issues, pred_probs.shape[1])
    return LabelIssues(issues, pred_probs, class_names, dict(summary), out.parent)


def _class_order(out: Path, issues: "pd.DataFrame", num_classes: int) -> list[str]:
    """The class of each ``pred_probs`` column: ``classes.txt`` when written, else from the table."""
    listed = out / "classes.txt"
    if listed.is_file():
        return [line for line in listed.read_text().splitlines() if line]
    names = [str(i) for i in range(num_classes)]
    for column, label in (("given_class", "given_label"), ("predicted_class", "predicted_label")):
        if column in issues and label in issues:
            for index, name in zip(issues[label], issues[column], strict=True):
                names[int(index)] = str(name)
    return names


def _keyword_override(key: str, value: Any) -> str:
    path = key.replace("__", ".")
    if isinstance(value, bool):
        value = str(value).lower()
    elif value is None:
        value = "null"
    elif isinstance(value, (list, tuple)):
        value = "[" + ",".join(str(v) for v in value) + "]"
    return f"{path}={value}"


def _dataset_source(data: Any, labels: Sequence[Any] | None, class_names: Sequence[str] | None):
    """(overrides for a dataset read from disk, or the DatasetFiles of data handed over in memory)."""
    from deft_lightning.data.readers import in_memory

    if isinstance(data, (str, Path)):
        path = Path(data).expanduser().resolve()
        if labels is not None:
            raise ConfigError("labels=... goes with image paths or in-memory images, not with a folder or a CSV.")
        if path.is_file() and path.suffix.lower() == ".csv":
            extra = [f"dataset.reader.class_names=[{','.join(class_names)}]"] if class_names else []
            return ["dataset=csv", f"dataset.root={path}", *extra], None
        if path.is_dir() and (path / "train").is_dir():
            return ["dataset=imagefolder", f"dataset.root={path}"], None
        if path.is_dir():
            return [], _class_folders(path, class_names)
        raise ConfigError(f"{path}: expected an image folder or a .csv file with path,label columns.")
    if labels is None:
        pairs = list(data)
        if not pairs or not all(isinstance(p, (tuple, list)) and len(p) == 2 for p in pairs):
            raise ConfigError("without labels=..., data must be a folder, a CSV file or a list of (path, label) pairs.")
        return [], in_memory.files_from_paths([p for p, _ in pairs], [lab for _, lab in pairs], class_names)
    if isinstance(data, np.ndarray) or (len(data) and not isinstance(data[0], (str, Path))):
        return [], in_memory.files_from_images(data, labels, class_names)
    return [], in_memory.files_from_paths(list(data), labels, class_names)


def _class_folders(root: Path, class_names: Sequence[str] | None):
    """``<root>/<class>/*`` without a ``train/`` level: every image file under each class folder."""
    from deft_lightning.data.readers import in_memory

    suffixes = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    paths, labels = [], []
    for folder in folders:
        for file in sorted(folder.rglob("*")):
            if file.suffix.lower() in suffixes and file.is_file():
                paths.append(file)
                labels.append(folder.name)
    if not paths:
        raise ConfigError(f"{root}: no images in class sub-folders (<root>/<class>/*.jpg) nor a train/ folder.")
    names = list(class_names) if class_names is not None else [f.name for f in folders]
    files = in_memory.files_from_paths(paths, labels, names, name=root.name or "folder")
    files.train.sample_ids = [str(p.relative_to(root)) for p in paths]
    return files
