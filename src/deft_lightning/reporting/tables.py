"""Result tables shaped like the paper's, built from finished run directories.

A run directory is recognised by its ``config.yaml`` (written by every run) plus
``detection/summary.json`` and/or ``adaptation/metrics.json``. Tables have one row per method and one
column per noise setting (``sym 0.2``, ``idn 0.4``, ``real``…), one table per dataset; runs that differ
only by seed are averaged (± sample standard deviation when there are several).
"""

from __future__ import annotations

import json
import math
import warnings
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import yaml

MODE_ORDER = ("none", "sym", "asym", "idn", "real")
METHOD_LABELS = {"deft": "DEFT", "ce": "CE", "gce": "GCE", "sce": "SCE", "elr": "ELR", "gmm": "GMM"}

PAPER_NUMBERS = Path(__file__).with_name("paper_numbers.json")


def read_paper_numbers(path: Path = PAPER_NUMBERS) -> tuple[dict, dict]:
    """The paper's numbers (SPEC §6), kept as data in ``paper_numbers.json``, for side-by-side rows:
    detection (dataset, noise mode, ratio) → (precision, recall) and accuracy (dataset, mode, ratio) →
    {(method, backbone): (best, last)}, values in %."""
    data = json.loads(path.read_text(encoding="utf-8"))
    detection = {(r["dataset"], r["noise"], r["ratio"]): (r["precision"], r["recall"]) for r in data["detection"]}
    accuracy: dict[tuple, dict] = {}
    for r in data["accuracy"]:
        accuracy.setdefault((r["dataset"], r["noise"], r["ratio"]), {})[(r["method"], r["backbone"])] = (r["best"], r["last"])
    return detection, accuracy


PAPER_DETECTION, PAPER_ACCURACY = read_paper_numbers()


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


# ----- statistics ---------------------------------------------------------------------------------
@dataclass
class Stat:
    """Mean and sample std over seeds, in percent."""

    values: list[float]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return sum(self.values) / len(self.values)

    @property
    def std(self) -> float:
        if self.n < 2:
            return 0.0
        m = self.mean
        return math.sqrt(sum((v - m) ** 2 for v in self.values) / (self.n - 1))

    def text(self) -> str:
        return f"{self.mean:.2f}" + (f"±{self.std:.2f}" if self.n > 1 else "")


def _pct(values: Iterable[float | None]) -> Stat | None:
    kept = [100.0 * float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return Stat(kept) if kept else None


@dataclass
class Table:
    """One paper-shaped table: ``cells[(row, column)]`` holds the stats of the named metrics."""

    title: str
    dataset: str
    metrics: tuple[str, ...]
    rows: list[str] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)
    cells: dict[tuple[str, str], dict[str, Stat | None]] = field(default_factory=dict)
    column_keys: dict[str, tuple] = field(default_factory=dict)

    def add(self, row: str, column_key: tuple, stats: dict[str, Stat | None]) -> None:
        column = column_key[2]
        if row not in self.rows:
            self.rows.append(row)
        self.column_keys.setdefault(column, column_key)
        self.columns = sorted(self.column_keys, key=lambda c: self.column_keys[c][:2])
        self.cells[(row, column)] = stats

    def cell_text(self, row: str, column: str) -> str:
        stats = self.cells.get((row, column))
        if not stats:
            return "–"
        return " / ".join(s.text() if s is not None else "–" for s in (stats.get(m) for m in self.metrics))

    def markdown(self) -> str:
        header = f"| method ({' / '.join(self.metrics)}, %) | " + " | ".join(self.columns) + " |"
        lines = [f"### {self.title}: {self.dataset}", "", header, "|" + "---|" * (len(self.columns) + 1)]
        for row in self.rows:
            lines.append(f"| {row} | " + " | ".join(self.cell_text(row, c) for c in self.columns) + " |")
        return "\n".join(lines) + "\n"

    def csv_rows(self) -> tuple[list[str], list[list]]:
        """Wide numeric form: one row per method, ``<setting> <metric>`` columns (mean %), plus ``n``."""
        header = ["dataset", "method"] + [f"{c} {m}" for c in self.columns for m in self.metrics] + \
                 [f"{c} n" for c in self.columns]
        body = []
        for row in self.rows:
            values: list = [self.dataset, row]
            for column in self.columns:
                stats = self.cells.get((row, column)) or {}
                values += [round(stats[m].mean, 4) if stats.get(m) is not None else "" for m in self.metrics]
            for column in self.columns:
                stats = self.cells.get((row, column)) or {}
                ns = [s.n for s in stats.values() if s is not None]
                values.append(max(ns) if ns else "")
            body.append(values)
        return header, body


# ----- building the tables ------------------------------------------------------------------------
def _method_row(run: RunResult, with_backbone: bool, test_set: str | None) -> str:
    label = METHOD_LABELS.get(run.method or "", run.method or "?")
    if run.method == "deft" and run.detector and run.detector != "deft":
        label += f" [{run.detector_label or run.detector} selection]"
    if with_backbone:
        label += f" ({run.backbone})"
    if test_set:
        label += f" · {test_set}"
    return label


def detection_tables(runs: list[RunResult], with_online: bool = False, paper: bool = False) -> list[Table]:
    """Table 1: precision / recall / F1 of the clean selection, per detector and noise setting."""
    groups: dict[tuple[str, str, tuple], list[RunResult]] = defaultdict(list)
    for run in runs:
        if run.detection and "precision" in run.detection:
            groups[(run.dataset, run.detector or "deft", run.setting)].append(run)
    tables: dict[str, Table] = {}
    for (dataset, detector, setting), members in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][2], kv[0][1])):
        table = tables.setdefault(dataset, Table("Clean-sample selection", dataset, ("P", "R", "F1")))
        label = members[0].detector_label or detector_label(detector)
        table.add(label, setting, {m: _pct(r.detection.get(k) for r in members)
                                   for m, k in (("P", "precision"), ("R", "recall"), ("F1", "f1"))})
        if with_online and any(r.online for r in members):
            table.add(f"{label} (last-epoch online mask)", setting,
                      {m: _pct((r.online or {}).get(k) for r in members)
                       for m, k in (("P", "precision"), ("R", "recall"), ("F1", "f1"))})
    if paper:
        for dataset, table in tables.items():
            for column in list(table.columns):
                mode, ratio = _mode_ratio(table.column_keys[column])
                reference = PAPER_DETECTION.get((dataset, mode, ratio))
                if reference:
                    table.add("DEFT (paper)", table.column_keys[column],
                              {"P": Stat([reference[0]]), "R": Stat([reference[1]]), "F1": None})
    return [tables[name] for name in sorted(tables)]


def accuracy_tables(runs: list[RunResult], paper: bool = False) -> list[Table]:
    """Tables 2–3 and the backbone table: test accuracy best / last per method and noise setting."""
    with_backbone = len({r.backbone for r in runs if r.accuracy}) > 1
    test_sets: dict[str, set[str]] = defaultdict(set)
    for run in runs:
        test_sets[run.dataset].update(run.accuracy)
    groups: dict[tuple[str, str, tuple], list[tuple[RunResult, str]]] = defaultdict(list)
    for run in runs:
        for test_set in run.accuracy:
            suffix = test_set if len(test_sets[run.dataset]) > 1 else None
            groups[(run.dataset, _method_row(run, with_backbone, suffix), run.setting)].append((run, test_set))
    tables: dict[str, Table] = {}
    for (dataset, row, setting), members in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][2], kv[0][1])):
        table = tables.setdefault(dataset, Table("Test accuracy", dataset, ("best", "last")))
        table.add(row, setting, {m: _pct(r.accuracy[t].get(m) for r, t in members) for m in ("best", "last")})
    if paper:
        for dataset, table in tables.items():
            for column in list(table.columns):
                mode, ratio = _mode_ratio(table.column_keys[column])
                for (method, backbone), (best, last) in (PAPER_ACCURACY.get((dataset, mode, ratio)) or {}).items():
                    if with_backbone or backbone == "clip_vit_b16":
                        label = METHOD_LABELS.get(method, method) + (f" ({backbone})" if with_backbone else "") + " (paper)"
                        table.add(label, table.column_keys[column],
                                  {"best": Stat([best]), "last": Stat([last]) if last is not None else None})
    return [tables[name] for name in sorted(tables)]


def _mode_ratio(column_key: tuple) -> tuple[str, float | None]:
    label = column_key[2]
    mode = label.split(" ")[0]
    return mode, (None if mode in ("real", "none") else round(column_key[1], 4))


def runs_table(runs: list[RunResult]) -> tuple[list[str], list[list]]:
    """Long form, one row per run directory: everything the other tables are computed from."""
    test_sets = sorted({name for run in runs for name in run.accuracy})
    header = ["run_dir", "dataset", "noise_mode", "noise_ratio", "seed", "detector", "method", "backbone",
              "det_precision", "det_recall", "det_f1", "det_clean_fraction",
              "online_precision", "online_recall", "online_f1"]
    header += [f"{name}_acc_{kind}" for name in test_sets for kind in ("best", "last")]
    body = []
    for run in runs:
        detection, online = run.detection or {}, run.online or {}
        row = [str(run.run_dir), run.dataset, run.noise_mode, "" if run.noise_ratio is None else run.noise_ratio,
               "" if run.seed is None else run.seed, run.detector or "", run.method or "", run.backbone or "",
               detection.get("precision", ""), detection.get("recall", ""), detection.get("f1", ""),
               detection.get("clean_fraction", ""), online.get("precision", ""), online.get("recall", ""),
               online.get("f1", "")]
        row += [run.accuracy.get(name, {}).get(kind, "") for name in test_sets for kind in ("best", "last")]
        body.append(row)
    return header, body


def noise_series(runs: list[RunResult]) -> list[dict]:
    """Lines for the noise-ratio plot: mean best accuracy (first test set) and detection F1, in %."""
    series: dict[tuple[str, str, str], dict[float, dict[str, list[float]]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    with_backbone = len({r.backbone for r in runs if r.accuracy}) > 1
    for run in runs:
        if run.noise_ratio is None:
            continue
        # a missing value (null or NaN, e.g. no evaluation finished) leaves the point out, as the tables show "–"
        best = _pct([next(iter(run.accuracy.values())).get("best")]) if run.accuracy else None
        if best is not None:
            key = (run.dataset, run.noise_mode, _method_row(run, with_backbone, None))
            series[key][run.noise_ratio]["accuracy"].append(best.mean)
        f1 = _pct([run.detection.get("f1")]) if run.detection else None
        if f1 is not None:
            label = run.detector_label or detector_label(run.detector)
            key = (run.dataset, run.noise_mode, label if run.method in (None, "deft") else f"{label} (detector)")
            series[key][run.noise_ratio]["f1"].append(f1.mean)
    out = []
    for (dataset, mode, label), points in sorted(series.items()):
        ratios = sorted(points)
        mean = lambda xs: sum(xs) / len(xs) if xs else None  # noqa: E731
        out.append({"label": f"{dataset} {mode} · {label}", "ratio": ratios,
                    "accuracy": [mean(points[r]["accuracy"]) for r in ratios],
                    "f1": [mean(points[r]["f1"]) for r in ratios]})
    return out
