"""Finished run directories, read into one :class:`RunResult` each: what the result tables are built from.

A run directory is recognised by its ``config.yaml`` (written by every run) plus
``detection/summary.json`` and/or ``adaptation/metrics.json``. A file that cannot be read makes the run
:class:`DamagedRun`; it is reported, never filed under a guessed setting.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import yaml

MODE_ORDER = ("none", "sym", "asym", "idn", "real")


@dataclass
class RunResult:
    """What one run directory contributes to the tables (metrics as fractions, as the run wrote them)."""

    run_dir: Path
    dataset: str
    noise_mode: str
    noise_ratio: float | None
    seed: int | None
    detector: str | None = None
    detector_label: str | None = None  # as the run recorded it (summary.json), else from the registry
    method: str | None = None
    backbone: str | None = None
    detection: dict | None = None
    online: dict | None = None
    accuracy: dict[str, dict] = field(default_factory=dict)  # test set → {"best", "last"}

    @property
    def setting(self) -> tuple[int, float, str]:
        return setting_key(self.noise_mode, self.noise_ratio)


def detector_label(name: str | None, recorded: str | None = None) -> str:
    """A detector's table label: the one its run recorded, else its registry entry's, else its name.

    Runs record the label in ``summary.json``, so the tables of a detector registered by a plugin that
    is not imported here still show its own label; the registry (which imports the project's detector
    modules) is only asked for runs written before labels were recorded.
    """
    if recorded:
        return str(recorded)
    name = name or "deft"
    from deft_lightning.modules.registry import find_rule

    rule = find_rule(name)
    return rule.label if rule is not None else name


def setting_key(mode: str, ratio: float | None) -> tuple[int, float, str]:
    """Sortable key and label of a noise setting: ``sym 0.2`` …; ``real``/``none`` have no ratio."""
    order = MODE_ORDER.index(mode) if mode in MODE_ORDER else len(MODE_ORDER)
    if mode in ("real", "none") or ratio is None:
        return order, 0.0, mode
    return order, float(ratio), f"{mode} {float(ratio):g}"


# ----- reading run directories ----------------------------------------------------------------------
def find_run_dirs(root: str | Path) -> list[Path]:
    """Directories under ``root`` (itself included) holding a run's ``config.yaml``, sorted."""
    root = Path(root)
    found = {p.parent for p in root.rglob("config.yaml") if ".hydra" not in p.parts}
    return sorted(found)


class DamagedRun(Exception):
    """A run directory whose config or result files cannot be read (truncated, invalid, incomplete)."""


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DamagedRun(f"{path.name} is not readable JSON ({type(error).__name__}: {error})") from None
    if not isinstance(data, dict):
        raise DamagedRun(f"{path.name} holds a {type(data).__name__}, not an object")
    return data


def read_run(run_dir: str | Path) -> RunResult | None:
    """The run's results, or None when it has neither a finished phase 1 nor a finished phase 2.

    Raises :class:`DamagedRun` when a file cannot be read, or when the config does not say which
    setting (dataset, noise mode) the run belongs to: such a run is never filed under a guess.
    """
    run_dir = Path(run_dir)
    summary_path = run_dir / "detection" / "summary.json"
    metrics_path = run_dir / "adaptation" / "metrics.json"
    if not summary_path.is_file() and not metrics_path.is_file():
        return None
    try:
        cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise DamagedRun(f"config.yaml is not readable YAML ({type(error).__name__})") from None
    if not isinstance(cfg, dict):
        raise DamagedRun("config.yaml is empty or not a mapping")
    noise = cfg.get("noise") if isinstance(cfg.get("noise"), dict) else {}
    dataset = (cfg.get("dataset") or {}).get("name") if isinstance(cfg.get("dataset"), dict) else None
    mode = noise.get("mode")
    if not dataset or not mode:
        raise DamagedRun("config.yaml does not name its dataset.name and noise.mode")
    mode = str(mode)
    ratio = noise.get("ratio")
    if mode not in ("real", "none") and not isinstance(ratio, (int, float)):
        raise DamagedRun(f"config.yaml has noise.mode={mode} without a numeric noise.ratio")
    result = RunResult(
        run_dir=run_dir,
        dataset=str(dataset),
        noise_mode=mode,
        noise_ratio=None if ratio is None or mode in ("real", "none") else float(ratio),
        seed=cfg.get("seed"),
    )
    if summary_path.is_file():
        summary = _read_json(summary_path)
        detector_cfg = cfg.get("detector") or {}
        result.detector = str(summary.get("detector") or detector_cfg.get("name") or detector_cfg.get("kind") or "deft")
        result.detector_label = detector_label(summary.get("detector_rule") or result.detector,
                                               summary.get("detector_label"))
        result.detection = summary.get("inference")
        result.online = summary.get("online_last_epoch")
        if result.detection is not None and not isinstance(result.detection, dict):
            raise DamagedRun("detection/summary.json has no 'inference' metrics object")
    if metrics_path.is_file():
        metrics = _read_json(metrics_path)
        result.method = str(metrics.get("method") or (cfg.get("method") or {}).get("name", "?"))
        result.backbone = str(metrics.get("backbone") or (cfg.get("backbone") or {}).get("name", "?"))
        result.accuracy = {name: value for name, value in metrics.items()
                           if isinstance(value, dict) and "best" in value and "last" in value}
    return result


def collect_runs(root: str | Path, damaged: list[tuple[Path, str]] | None = None) -> tuple[list[RunResult], list[Path]]:
    """(finished runs, run directories without results yet) under ``root``.

    Damaged runs are left out: appended as (run dir, reason) to ``damaged`` when given, else warned about.
    """
    runs, unfinished = [], []
    for run_dir in find_run_dirs(root):
        try:
            result = read_run(run_dir)
        except DamagedRun as error:
            if damaged is not None:
                damaged.append((run_dir, str(error)))
            else:
                warnings.warn(f"skipping damaged run {run_dir}: {error}")
            continue
        (runs.append(result) if result is not None else unfinished.append(run_dir))
    return runs, unfinished
