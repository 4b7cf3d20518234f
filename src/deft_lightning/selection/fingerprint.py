"""What a selection was made from: dataset, N, a hash of the sample ids and given labels, the noise.

A selection (``selection.csv``) is only meaningful for the exact training set and labels it was computed
on: the same length is not enough (another noise seed gives other labels for the same images). Phase 1
writes this fingerprint into ``summary.json`` (as a dict) and into every row of ``selection.csv`` (as
a short token in a constant ``fingerprint`` column, so it travels with the file and ``pandas.read_csv``
reads it as an ordinary column); phase 2 and ``resume`` refuse a selection whose fingerprint differs.

The token is ``v1:<dataset>:<N>:<noise mode>:<ratio>:<seed>:<label file name>:<data hash>``. Ratio and
seed are ``-`` where the noise mode has none (``none``, ``real``), the label file is ``-`` unless
``noise.label_file`` is set (only its file name: moving the file does not invalidate a selection, and
its content is in the data hash), and the data hash is the first 16 hex digits of the SHA-256 of the
sample ids and the given labels.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from deft_lightning.errors import SelectionError

VERSION = "v1"
FIELDS = ("dataset", "num_samples", "noise_mode", "noise_ratio", "noise_seed", "label_file", "data_hash")
SYNTHETIC_MODES = ("sym", "asym", "idn")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.+-]+")


@dataclass(frozen=True)
class Fingerprint:
    dataset: str
    num_samples: int
    noise_mode: str
    noise_ratio: str  # "-" where the mode has no ratio; text so that the token and the dict agree exactly
    noise_seed: str
    label_file: str
    data_hash: str

    def token(self) -> str:
        return ":".join([VERSION] + [str(getattr(self, name)) for name in FIELDS])

    def to_dict(self) -> dict:
        return asdict(self) | {"token": self.token()}

    @classmethod
    def from_token(cls, token: str, source: str | Path) -> "Fingerprint":
        parts = str(token).strip().split(":")
        if len(parts) != len(FIELDS) + 1 or parts[0] != VERSION or not parts[2].isdigit():
            raise SelectionError(
                f"{source}: fingerprint {token!r} is not a selection fingerprint "
                f"(expected {VERSION}:<dataset>:<N>:<noise mode>:<ratio>:<seed>:<label file>:<data hash>)."
            )
        values = dict(zip(FIELDS, parts[1:]))
        values["num_samples"] = int(values["num_samples"])
        return cls(**values)

    def differences(self, other: "Fingerprint") -> list[str]:
        return [name for name in FIELDS if getattr(self, name) != getattr(other, name)]

    def describe(self) -> str:
        noise = self.noise_mode
        if self.noise_ratio != "-":
            noise += f" ratio {self.noise_ratio} seed {self.noise_seed}"
        if self.label_file != "-":
            noise += f" label_file {self.label_file}"
        return f"dataset {self.dataset}, N={self.num_samples}, noise {noise}, data hash {self.data_hash}"


def data_hash(sample_ids, given_labels) -> str:
    """SHA-256 (16 hex digits) of the sample ids (in index order) and the given labels."""
    h = hashlib.sha256(f"{len(given_labels)}|".encode())
    h.update("\n".join(str(s) for s in sample_ids).encode())
    h.update(b"|")
    h.update(np.ascontiguousarray(np.asarray(given_labels), dtype=np.int64).tobytes())
    return h.hexdigest()[:16]


def make_fingerprint(dataset: str, sample_ids, given_labels, noise_mode: str, noise_ratio=0.0, noise_seed=0,
                     label_file: str | None = None) -> Fingerprint:
    mode = str(noise_mode)
    synthetic = mode in SYNTHETIC_MODES
    return Fingerprint(
        dataset=_safe(dataset) or "dataset",
        num_samples=int(len(given_labels)),
        noise_mode=_safe(mode),
        noise_ratio=f"{float(noise_ratio):g}" if synthetic else "-",
        noise_seed=str(int(noise_seed)) if synthetic else "-",
        label_file=(_safe(Path(str(label_file)).name) or "-") if label_file and mode == "real" else "-",
        data_hash=data_hash(sample_ids, given_labels),
    )


def fingerprint_of(dm) -> Fingerprint:
    """The fingerprint of a loaded :class:`NoisyLabelDataModule`'s training set and labels."""
    dm.load()
    options = dm.noise_options
    return make_fingerprint(dm.dataset_name, dm.files.train.sample_ids, dm.given_labels, dm.noise.mode,
                            dm.noise.ratio, dm.noise.seed, options.get("label_file"))


def check_fingerprint(found: Fingerprint | None, expected: Fingerprint, source: str | Path) -> None:
    """Refuse a selection made from other data than this run's, naming both sides and what differs."""
    if found is None or found == expected:
        return
    differing = ", ".join(found.differences(expected))
    raise SelectionError(
        f"{source} was made from other data than this run's (differs in: {differing}). "
        f"The file's fingerprint: {found.token()} ({found.describe()}); "
        f"this run's: {expected.token()} ({expected.describe()}). "
        "Use a selection written by phase 1 under the same dataset and noise settings, or rerun phase 1."
    )


def _safe(text) -> str:
    return _UNSAFE.sub("_", str(text)).strip("_")
