"""Label noise models (SPEC §5): none, sym, asym, idn (instance-dependent, Xia et al. 2020) and real.

Noise is a pure function of (labels, images for idn, mode, ratio, seed): it draws from its own
``np.random.Generator`` seeded by (seed, mode, ratio), never from global RNG state, so every worker,
rank and rerun gets the same labels. Synthetic noise is cached as ``.npz`` under ``<cache_dir>/noise/``,
keyed by dataset, mode, ratio, seed and a digest of the clean labels (and sample ids/images), written
atomically and only after everything succeeded.
"""

from __future__ import annotations

import hashlib
import logging
import re
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deft_lightning.data.base import DatasetError, Split
from deft_lightning.io import atomic_path

log = logging.getLogger(__name__)

VALID_MODES = ("none", "sym", "asym", "idn", "real")
NOISE_VERSION = 1  # bump when an algorithm changes, so old cache files are not reused
FEATURE_SIDE = 32  # idn pixel vector: the image resized to 32x32 RGB, raw 0-255 values (3072 numbers)
IDN_FLIP_SD = 0.1


@dataclass
class NoisyLabels:
    """The labels a model trains on, with what is known about how they were made."""

    given: np.ndarray  # int64 (N,)
    true: np.ndarray | None  # int64 (N,) when known
    mode: str
    ratio: float
    seed: int
    realised_rate: float | None  # fraction of given != true, when true is known
    transition: np.ndarray | None  # (C, C) row-normalised P(given | true); all-zero rows for absent classes

    def summary(self) -> dict:
        """JSON-able facts (no matrix) for logs and reports."""
        return {
            "mode": self.mode,
            "ratio": float(self.ratio),
            "seed": int(self.seed),
            "num_samples": int(len(self.given)),
            "true_labels_known": self.true is not None,
            "realised_rate": None if self.realised_rate is None else float(self.realised_rate),
            "num_changed": None if self.true is None else int((self.given != self.true).sum()),
        }


def _validate(mode: str, ratio: float, seed: int, num_classes: int) -> None:
    if mode not in VALID_MODES:
        raise DatasetError(f"Unknown noise mode {mode!r}; expected one of: {', '.join(VALID_MODES)}.")
    try:
        ratio_ok = 0.0 <= float(ratio) < 1.0
    except (TypeError, ValueError):
        ratio_ok = False
    if not ratio_ok:
        raise DatasetError(f"noise.ratio={ratio!r} is invalid; expected a number in [0, 1) (e.g. 0.4 for 40 %).")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise DatasetError(f"noise.seed={seed!r} is invalid; expected a non-negative integer.")
    if mode in ("sym", "asym", "idn") and num_classes < 2:
        raise DatasetError(f"noise={mode} needs at least 2 classes, the dataset has {num_classes}.")


def _generator(seed: int, mode: str, ratio: float) -> np.random.Generator:
    return np.random.default_rng([int(seed), zlib.crc32(mode.encode()), int(round(float(ratio) * 1_000_000))])


def _transition(given: np.ndarray, true: np.ndarray, num_classes: int) -> np.ndarray:
    counts = np.bincount(true * num_classes + given, minlength=num_classes * num_classes)
    counts = counts.reshape(num_classes, num_classes).astype(np.float64)
    rows = counts.sum(axis=1, keepdims=True)
    return np.divide(counts, rows, out=np.zeros_like(counts), where=rows > 0)


def _result(
    given: np.ndarray, true: np.ndarray | None, num_classes: int, mode: str, ratio: float, seed: int
) -> NoisyLabels:
    given = np.asarray(given, dtype=np.int64)
    if true is None:
        rate, transition = None, None
    else:
        rate = float((given != true).mean()) if len(given) else 0.0
        transition = _transition(given, true, num_classes)
    return NoisyLabels(given, true, mode, float(ratio), int(seed), rate, transition)


# ----- synthetic noise models ---------------------------------------------------------------------


def _flip_indices(rng: np.random.Generator, n: int, ratio: float) -> np.ndarray:
    return rng.permutation(n)[: int(np.floor(ratio * n))]


def symmetric(true: np.ndarray, num_classes: int, ratio: float, rng: np.random.Generator) -> np.ndarray:
    """floor(rN) random samples get a uniform label over all C classes (may redraw the true one)."""
    given = true.copy()
    idx = _flip_indices(rng, len(true), ratio)
    given[idx] = rng.integers(0, num_classes, size=len(idx))
    return given


def asymmetric(true: np.ndarray, num_classes: int, ratio: float, rng: np.random.Generator) -> np.ndarray:
    """floor(rN) random samples flip to the next class, i -> i+1 mod C."""
    given = true.copy()
    idx = _flip_indices(rng, len(true), ratio)
    given[idx] = (true[idx] + 1) % num_classes
    return given


def _truncated_normal(rng: np.random.Generator, mean: float, sd: float, n: int) -> np.ndarray:
    """Exact TruncNormal(mean, sd, [0, 1]) by rejection (acceptance >= ~50 % for mean in [0, 1))."""
    out = np.empty(n)
    todo = np.arange(n)
    while len(todo):
        draw = rng.normal(mean, sd, size=len(todo))
        ok = (draw >= 0.0) & (draw <= 1.0)
        out[todo[ok]] = draw[ok]
        todo = todo[~ok]
    return out


def _pixel_vectors(split: Split, indices: np.ndarray, bar) -> np.ndarray:
    """Raw 0-255 pixels of the images resized to 32x32 RGB, flattened: (len(indices), 3072) float64."""
    from PIL import Image

    side = FEATURE_SIDE
    if split.images is not None and split.images.shape[1:3] == (side, side):
        bar.update(len(indices))
        return split.images[indices].reshape(len(indices), -1).astype(np.float64)
    out = np.empty((len(indices), side * side * 3), dtype=np.float64)
    for row, i in enumerate(indices):
        if split.images is not None:
            image = Image.fromarray(np.asarray(split.images[i], dtype=np.uint8)).convert("RGB")
        else:
            from deft_lightning.data.image_io import load_rgb

            image = load_rgb(split.paths[i], decode_size=side)
        out[row] = np.asarray(image.resize((side, side), Image.BILINEAR), dtype=np.float64).reshape(-1)
        bar.update(1)
    return out


def instance_dependent(
    split: Split, true: np.ndarray, num_classes: int, ratio: float, rng: np.random.Generator, progress: bool = False
) -> np.ndarray:
    """Part-dependent noise (PTD, Xia et al. 2020), vectorised per class.

    f_i ~ TruncNormal(r, 0.1, [0, 1]); W[c] ~ N(0, 1) of shape (F, C), drawn class by class so the full
    (C, F, C) tensor is never held; a = x_i W[y_i] with a[y_i] = -inf; P_i = f_i softmax(a) + (1 - f_i)
    at y_i; the new label is drawn from P_i.
    """
    from tqdm import tqdm

    n = len(true)
    flip_rate = _truncated_normal(rng, ratio, IDN_FLIP_SD, n)
    given = true.copy()
    features = FEATURE_SIDE * FEATURE_SIDE * 3
    with tqdm(total=n, desc="instance-dependent noise", unit="img", disable=not progress) as bar:
        for c in range(num_classes):
            weights = rng.standard_normal((features, num_classes))  # drawn even for absent classes: stable stream
            members = np.flatnonzero(true == c)
            if len(members) == 0:
                continue
            logits = _pixel_vectors(split, members, bar) @ weights
            logits[:, c] = -np.inf
            logits -= logits.max(axis=1, keepdims=True)
            probs = np.exp(logits)
            probs /= probs.sum(axis=1, keepdims=True)
            probs *= flip_rate[members, None]
            probs[:, c] += 1.0 - flip_rate[members]
            draws = rng.random(len(members))
            chosen = (np.cumsum(probs, axis=1) < draws[:, None]).sum(axis=1)
            given[members] = np.minimum(chosen, num_classes - 1)
    return given


# ----- real noise -----------------------------------------------------------------------------------


def read_label_file(path: str | Path, num_samples: int, num_classes: int) -> np.ndarray:
    """User labels: ``.npy`` (integer array), or text/CSV with one label per line or ``index,label`` lines
    (an optional header row is skipped). Must give exactly one label in [0, C) per training sample.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(
            f"Label file {path} not found; expected a .npy array or a .csv/.txt with one label per line."
        )
    if path.suffix.lower() == ".npy":
        try:
            raw = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as err:
            raise DatasetError(f"{path} is not a readable .npy integer array ({err}).") from None
        if raw.dtype.kind not in "iu" and not (raw.dtype.kind == "f" and np.all(np.mod(raw, 1) == 0)):
            raise DatasetError(f"{path}: holds {raw.dtype} values; expected integer class labels.")
        labels = raw.reshape(-1).astype(np.int64)
        where = lambda i: f"entry {i}"  # noqa: E731
    else:
        try:
            with open(path, encoding="utf-8-sig") as fh:
                lines = [(n, line.strip()) for n, line in enumerate(fh, 1) if line.strip()]
        except UnicodeDecodeError as err:
            raise DatasetError(
                f"Label file {path} (noise.label_file) is not UTF-8 text ({err.reason} at byte {err.start}); "
                "expected integer labels, one per line, or a .npy array."
            ) from None
        if lines and not re.fullmatch(r"-?\d+\s*([,\s]\s*-?\d+)?", lines[0][1]):
            lines = lines[1:]  # header row such as "index,label"
        rows = []
        for line_no, line in lines:
            fields = [f for f in re.split(r"[,\s]+", line) if f]
            if len(fields) not in (1, 2) or not all(re.fullmatch(r"-?\d+", f) for f in fields):
                raise DatasetError(
                    f"{path}, line {line_no}: expected '<label>' or '<index>,<label>' integers, got {line!r}."
                )
            rows.append((line_no, [int(f) for f in fields]))
        widths = {len(f) for _, f in rows}
        if len(widths) > 1:
            raise DatasetError(f"{path}: mixes '<label>' and '<index>,<label>' lines; use one form throughout.")
        line_of = [n for n, _ in rows]
        if widths == {2}:
            labels = np.full(num_samples, -1, dtype=np.int64)
            for line_no, (index, label) in rows:
                if not 0 <= index < num_samples or labels[index] != -1:
                    raise DatasetError(
                        f"{path}, line {line_no}: index {index} is out of [0, {num_samples}) or repeated."
                    )
                if label < 0:
                    raise DatasetError(
                        f"{path}, line {line_no}: label {label} is negative; expected [0, {num_classes})."
                    )
                labels[index] = label
            line_of = [0] * num_samples
            for line_no, (index, _) in rows:
                line_of[index] = line_no
            missing = np.flatnonzero(labels < 0)
            if len(missing):
                raise DatasetError(f"{path}: no label for sample index {int(missing[0])}; expected one per sample.")
        else:
            labels = np.asarray([f[0] for _, f in rows], dtype=np.int64)
        where = lambda i: f"line {line_of[i]}"  # noqa: E731
    if labels.shape != (num_samples,):
        raise DatasetError(f"{path}: has {labels.size} labels, expected {num_samples} (one per training sample).")
    bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
    if len(bad):
        i = int(bad[0])
        raise DatasetError(
            f"{path}, {where(i)}: label {int(labels[i])} is outside [0, {num_classes}) for {num_classes} classes."
        )
    return labels


def _real(split: Split, num_classes: int, label_file: str | Path | None) -> np.ndarray:
    if label_file is not None:
        return read_label_file(label_file, len(split), num_classes)
    if split.noisy_labels is None:
        raise DatasetError(
            "noise=real needs the dataset's own noisy labels (cifar100n, clothing1m, webvision) or a label "
            "file: set noise.label_file=PATH (.npy, or .csv/.txt with one label per line)."
        )
    return split.noisy_labels.copy()


# ----- cache ----------------------------------------------------------------------------------------


def _digest(split: Split, num_classes: int, mode: str) -> str:
    h = hashlib.sha256(f"v{NOISE_VERSION}|{num_classes}|{len(split)}|".encode())
    h.update(np.ascontiguousarray(split.clean_labels, dtype=np.int64).tobytes())
    h.update("\n".join(split.sample_ids).encode())
    if mode == "idn" and split.images is not None:
        h.update(np.ascontiguousarray(split.images[:, ::4, ::4]).tobytes())  # idn depends on the pixels
    return h.hexdigest()[:12]


def cache_path(cache_dir: str | Path, dataset_key: str, mode: str, ratio: float, seed: int, digest: str) -> Path:
    safe_key = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(dataset_key)) or "dataset"
    return Path(cache_dir) / "noise" / f"{safe_key}__{mode}_r{float(ratio):.6g}_s{int(seed)}_{digest}.npz"


def _load_cached(path: Path, num_samples: int, num_classes: int) -> np.ndarray | None:
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            given = np.asarray(data["given"], dtype=np.int64)
    except Exception as err:  # a foreign or damaged file is recomputed, never trusted
        log.warning("ignoring unreadable noise cache %s (%s)", path, err)
        return None
    if given.shape != (num_samples,) or (len(given) and (given.min() < 0 or given.max() >= num_classes)):
        log.warning("ignoring noise cache %s: it does not fit this dataset", path)
        return None
    return given


def _save_atomic(path: Path, result: NoisyLabels) -> None:
    """Written through a temp file and a rename (an interrupted run leaves no partial cache); an
    unwritable cache folder only costs a warning."""
    try:
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, given=result.given, mode=result.mode, ratio=result.ratio, seed=result.seed)
    except OSError as err:
        log.warning("noise cache not written (%s): %s", path, err)


# ----- entry point ----------------------------------------------------------------------------------


def apply_noise(
    split: Split,
    num_classes: int,
    mode: str,
    ratio: float,
    seed: int,
    *,
    dataset_key: str,
    cache_dir: str | Path | None = None,
    label_file: str | Path | None = None,
    progress: bool = False,
) -> NoisyLabels:
    """Labels to train on for ``split`` under a noise model; deterministic in its inputs.

    ``none`` keeps the split's labels (clean when known, else the dataset's own) and claims no true
    labels: they are the given labels, not a check of them (a user's folder labels are what is being
    examined). ``real`` uses the dataset's noisy labels or ``label_file``, with the clean labels as the
    truth only where the files give a separate clean list; ``sym``/``asym``/``idn`` corrupt the clean
    labels (ratio 0 leaves them unchanged), so their truth is known, and are cached under ``cache_dir``.
    """
    _validate(mode, ratio, seed, num_classes)
    ratio, seed = float(ratio), int(seed)
    true = split.clean_labels
    if mode == "none":  # the labels as given: nothing says which are right, so the truth is unknown
        return _result(split.best_labels.copy(), None, num_classes, mode, ratio, seed)
    if mode == "real":
        return _result(_real(split, num_classes, label_file), true, num_classes, mode, ratio, seed)
    if true is None:
        raise DatasetError(
            f"noise={mode} corrupts clean labels, but this dataset's training split has none (only its own "
            "noisy labels); use noise=real or noise=none."
        )
    if ratio == 0.0:
        return _result(true.copy(), true, num_classes, mode, ratio, seed)

    path = None
    if cache_dir is not None:
        path = cache_path(cache_dir, dataset_key, mode, ratio, seed, _digest(split, num_classes, mode))
        cached = _load_cached(path, len(split), num_classes)
        if cached is not None:
            return _result(cached, true, num_classes, mode, ratio, seed)

    rng = _generator(seed, mode, ratio)
    if mode == "sym":
        given = symmetric(true, num_classes, ratio, rng)
    elif mode == "asym":
        given = asymmetric(true, num_classes, ratio, rng)
    else:
        given = instance_dependent(split, true, num_classes, ratio, rng, progress=progress)
    result = _result(given, true, num_classes, mode, ratio, seed)
    if path is not None:
        _save_atomic(path, result)
    return result
