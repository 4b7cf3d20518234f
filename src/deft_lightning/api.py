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
            extra = [f"dataset.class_names=[{','.join(class_names)}]"] if class_names else []
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


# ----- a trained detector, for new images -------------------------------------------------------------
class DetectorScores(NamedTuple):
    """What ``Detector.score`` found: one row per image, in the order given."""

    table: "pd.DataFrame"
    pred_probs: np.ndarray  # (N, C) class probabilities of the detector's classifier, columns as ``class_names``
    class_names: list[str]


class Detector:
    """A detector rebuilt from a ``detection/detector_weights.pt`` artefact, for scoring new images.

    Made by :func:`load_detector`. The artefact is read through ``pipeline/artefact.py``'s checked path
    (``torch.load(weights_only=True)``, plain values only, nothing in the file is called) and the model is
    rebuilt from the project's own config nodes; images go through the inference pass's test-time
    transform (the training images' transform family, recorded in the artefact; ``generic`` for older ones).
    """

    def __init__(self, path: str | Path, device: str | None = None, cache_dir: str | Path | None = None) -> None:
        import torch
        from omegaconf import open_dict

        from deft_lightning.cli import compose_config
        from deft_lightning.data.transforms import FAMILIES, build_transform, decode_size
        from deft_lightning.pipeline.artefact import config_from_artefact, read_artefact
        from deft_lightning.pipeline.detection import build_detector, load_detector_weights

        self.path = Path(path).expanduser()
        artefact = read_artefact(self.path)
        overrides = [f"paths.cache_dir={Path(cache_dir).expanduser().resolve()}"] if cache_dir is not None else []
        cfg = config_from_artefact(compose_config(overrides, config_name="detect"), artefact)
        saved = artefact.get("detector") or {}
        with open_dict(cfg):  # the rule options the detector was trained with, not a dataset's defaults
            for key in ("real_noise_variant", "forget_rate"):
                if key in saved:
                    cfg.detector[key] = saved[key]
            if cfg.detector.get("forget_rate") == "oracle":  # no noise to read it from: the estimate is used
                cfg.detector.forget_rate = None
        self.kind = str(artefact["kind"])
        self.class_names = list(artefact["class_names"])
        self.config = cfg
        module, inputs = build_detector(cfg, self.class_names, None)
        load_detector_weights(module, artefact, self.path)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.module = module.eval().to(self.device)
        recorded = artefact.get("inputs") or {}
        self.family = str(recorded.get("family") or "generic")
        if self.family not in FAMILIES:
            raise ConfigError(f"{self.path}: inputs.family={self.family!r} is not one of {list(FAMILIES)}")
        self.transform = build_transform(self.family, False, inputs, recorded.get("native_size"))
        self.decode_size = decode_size(self.family, inputs)

    def __repr__(self) -> str:
        return f"Detector({self.kind}, {len(self.class_names)} classes, {self.device}, from {self.path})"

    def _image(self, item: Any):
        from PIL import Image

        from deft_lightning.data.image_io import load_rgb

        if isinstance(item, (str, Path)):
            return load_rgb(str(item), self.decode_size)
        if isinstance(item, Image.Image):
            return item.convert("RGB")
        array = np.asarray(item)
        if array.dtype != np.uint8 or array.ndim not in (2, 3):
            raise ConfigError(f"an image must be a path, a PIL image or an (H, W[, 3]) uint8 array; got {array.dtype} "
                              f"of shape {array.shape}")
        return Image.fromarray(array).convert("RGB")

    def _labels(self, labels: Sequence[Any], count: int) -> np.ndarray:
        labels = list(labels)
        if len(labels) != count:
            raise ConfigError(f"{len(labels)} labels for {count} images: give one label per image.")
        index = {name: k for k, name in enumerate(self.class_names)}
        out = []
        for label in labels:
            if isinstance(label, (int, np.integer)) and not isinstance(label, bool):
                if not 0 <= int(label) < len(self.class_names):
                    raise ConfigError(f"label {label} is not a class index of this detector "
                                      f"(0..{len(self.class_names) - 1}).")
                out.append(int(label))
            elif str(label) in index:
                out.append(index[str(label)])
            else:
                raise ConfigError(f"label {label!r} is not one of the detector's classes {self.class_names[:8]}"
                                  f"{' ...' if len(self.class_names) > 8 else ''}.")
        return np.asarray(out, dtype=np.int64)

    def _batch_rows(self, pixels, labels):
        """Per-image rows of one batch: the inference pass's own computation (``predict_step``)."""
        import torch

        from deft_lightning.modules.detector import DetectorModule

        index = torch.arange(len(pixels), device=self.device)
        if labels is not None:
            return self.module.predict_step((pixels, labels, index), 0)
        if isinstance(self.module, DetectorModule):  # p_clean at the predicted class: one forward
            from deft_lightning.losses.dual_prompt import class_yes_probability

            s_pos, s_neg = self.module.scores(pixels)
            predicted = s_pos.argmax(dim=1)
            p_yes = class_yes_probability(s_pos, s_neg)
            return {"predicted_label": predicted, "class_probs": s_pos.softmax(dim=1),
                    "p_clean": p_yes.gather(1, predicted.view(-1, 1)).squeeze(1)}
        predicted = self.module(pixels).argmax(dim=1)
        return self.module.predict_step((pixels, predicted, index), 0)

    def score(self, images: Sequence[Any], labels: Sequence[Any] | None = None, batch_size: int = 64) -> DetectorScores:
        """Score ``images`` (paths, PIL images or uint8 arrays, or one (N, H, W, 3) array) in batches.

        With ``labels`` (class names or indices): ``given_label``/``given_class``, ``predicted_label``/
        ``predicted_class``, ``p_clean`` (the detector's clean probability of the given label, as in
        ``selection.csv``), ``is_clean``, ``is_label_issue`` and ``label_quality``. A small-loss detector
        decides ``is_clean`` over the images scored together (its rule ranks a whole set). Without
        labels: ``predicted_label``/``predicted_class`` and ``p_clean_predicted``, the clean probability
        *of the predicted class*. ``pred_probs`` holds the class probabilities, columns as ``class_names``.
        """
        import pandas as pd
        import torch

        from deft_lightning.selection.clean_selection import label_quality_scores

        items = list(images)
        given = None if labels is None else self._labels(labels, len(items))
        if int(batch_size) < 1:
            raise ConfigError(f"batch_size={batch_size} must be a positive number of images.")
        parts: list[dict] = []
        with torch.inference_mode():
            for start in range(0, len(items), int(batch_size)):
                chunk = items[start : start + int(batch_size)]
                pixels = torch.stack([self.transform(self._image(item)) for item in chunk]).to(self.device)
                batch_labels = None if given is None else torch.as_tensor(given[start : start + len(chunk)],
                                                                          device=self.device)
                rows = self._batch_rows(pixels, batch_labels)
                parts.append({k: v.detach().cpu() for k, v in rows.items() if k != "index"})
        if not parts:
            raise ConfigError("no images to score.")
        rows = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
        if given is not None and hasattr(self.module, "finalize_selection"):
            rows = self.module.finalize_selection(dict(rows, index=torch.arange(len(items))))
        probs = rows["class_probs"].float().numpy()
        predicted = rows["predicted_label"].numpy().astype(np.int64)
        names = np.asarray(self.class_names, dtype=object)
        table = {}
        if given is not None:
            p_clean = rows["p_clean"].double().numpy()
            clean = rows["is_clean"].numpy().astype(bool)
            table.update(given_label=given, given_class=names[given])
            table.update(predicted_label=predicted, predicted_class=names[predicted], p_clean=p_clean,
                         is_clean=clean, is_label_issue=~clean,
                         label_quality=label_quality_scores(p_clean, given, probs))
        else:
            table.update(predicted_label=predicted, predicted_class=names[predicted],
                         p_clean_predicted=rows["p_clean"].double().numpy())
        return DetectorScores(pd.DataFrame(table), probs, list(self.class_names))


def load_detector(path: str | Path, device: str | None = None, cache_dir: str | Path | None = None) -> Detector:
    """The detector saved by a detection run (``RUN/detection/detector_weights.pt``, or the run folder),
    rebuilt on ``device`` (default: cuda when available, else cpu); ``Detector.score`` scores new images.
    ``cache_dir`` is where its CLIP weights are looked up (default ``paths.cache_dir``)."""
    path = Path(path).expanduser()
    for candidate in (path / "detection" / "detector_weights.pt", path / "detector_weights.pt"):
        if path.is_dir() and candidate.is_file():
            path = candidate
            break
    return Detector(path, device=device, cache_dir=cache_dir)
