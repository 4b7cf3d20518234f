"""Paper-shaped result tables from finished runs (see :mod:`deft_lightning.reporting.runs`).

One table per dataset, one row per method and one column per noise setting (``sym 0.2``, ``idn 0.4``,
``real``…). Runs that differ only by seed are averaged: mean ± sample standard deviation over seeds, in %.
Each table keeps its values in long form (row, setting, metric, value) and pandas groups them when the
table is rendered; pandas is imported there, so importing this module stays light.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from deft_lightning.reporting.runs import RunResult, detector_label

if TYPE_CHECKING:
    import pandas as pd

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


def percent(values: Iterable[float | None]) -> list[float]:
    """Fractions as the runs wrote them → percent. A missing value (None or NaN, e.g. no evaluation
    finished) becomes NaN, which the statistics skip and the tables show as "–"."""
    return [math.nan if v is None else 100.0 * float(v) for v in values]


def _stat_text(mean: float, std: float, n: int) -> str:
    if n == 0:
        return "–"
    return f"{mean:.2f}" + (f"±{std:.2f}" if n > 1 else "")


@dataclass
class Table:
    """One paper-shaped table; :meth:`add` files a cell's values, :meth:`stats` groups them."""

    title: str
    dataset: str
    metrics: tuple[str, ...]
    rows: list[str] = field(default_factory=list)
    column_keys: dict[str, tuple] = field(default_factory=dict)  # column label → setting_key
    records: list[tuple[str, str, str, float]] = field(default_factory=list, repr=False)  # (row, column, metric, %)

    @property
    def columns(self) -> list[str]:
        return sorted(self.column_keys, key=lambda column: self.column_keys[column][:2])

    def add(self, row: str, column_key: tuple, values: dict[str, Iterable[float]]) -> None:
        """File one cell: per metric, the values in % (NaN = missing). Adding a cell again replaces it."""
        column = column_key[2]
        if row not in self.rows:
            self.rows.append(row)
        self.column_keys.setdefault(column, column_key)
        self.records = [r for r in self.records if r[:2] != (row, column)]
        for metric in self.metrics:
            # every metric of a cell gets at least one (missing) value, so the cell exists even when empty
            self.records += [(row, column, metric, v) for v in (list(values.get(metric) or ()) or [math.nan])]

    def stats(self) -> pd.DataFrame:
        """Mean, sample std and number of values per (row, column, metric), skipping missing values."""
        import pandas as pd

        frame = pd.DataFrame(self.records, columns=["row", "column", "metric", "value"])
        return frame.groupby(["row", "column", "metric"], sort=False)["value"].agg(["mean", "std", "count"])

    def cell_texts(self) -> pd.DataFrame:
        """rows × columns of ``mean±std`` texts joined over the metrics; "–" where nothing was filed."""
        import pandas as pd

        stats = self.stats()
        texts = pd.Series([_stat_text(m, s, n) for m, s, n in zip(stats["mean"], stats["std"], stats["count"])],
                          index=stats.index)
        cells = texts.unstack("metric")[list(self.metrics)].agg(" / ".join, axis=1).unstack("column")
        return cells.reindex(index=self.rows, columns=self.columns).fillna("–")

    def cell_text(self, row: str, column: str) -> str:
        if row not in self.rows or column not in self.column_keys:
            return "–"
        return str(self.cell_texts().at[row, column])

    def markdown(self) -> str:
        cells = self.cell_texts()
        header = f"| method ({' / '.join(self.metrics)}, %) | " + " | ".join(self.columns) + " |"
        lines = [f"### {self.title}: {self.dataset}", "", header, "|" + "---|" * (len(self.columns) + 1)]
        lines += [f"| {row} | " + " | ".join(cells.loc[row]) + " |" for row in self.rows]
        return "\n".join(lines) + "\n"

    def csv_rows(self) -> tuple[list[str], list[list]]:
        """Wide numeric form: one row per method, ``<setting> <metric>`` columns (mean %), plus ``n``."""
        import pandas as pd

        stats = self.stats()
        columns = self.columns
        means = stats["mean"].unstack(["column", "metric"]).reindex(
            index=self.rows, columns=pd.MultiIndex.from_product([columns, self.metrics]))
        counts = stats["count"].groupby(level=["row", "column"], sort=False).max().unstack("column").reindex(
            index=self.rows, columns=columns)
        header = ["dataset", "method"] + [f"{c} {m}" for c in columns for m in self.metrics] + [f"{c} n" for c in columns]
        body = [[self.dataset, row]
                + ["" if math.isnan(v) else round(float(v), 4) for v in means.loc[row]]
                + ["" if math.isnan(n) or n == 0 else int(n) for n in counts.loc[row]]
                for row in self.rows]
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
        table.add(label, setting, {m: percent(r.detection.get(k) for r in members)
                                   for m, k in (("P", "precision"), ("R", "recall"), ("F1", "f1"))})
        if with_online and any(r.online for r in members):
            table.add(f"{label} (last-epoch online mask)", setting,
                      {m: percent((r.online or {}).get(k) for r in members)
                       for m, k in (("P", "precision"), ("R", "recall"), ("F1", "f1"))})
    if paper:
        for dataset, table in tables.items():
            for column in list(table.columns):
                mode, ratio = _mode_ratio(table.column_keys[column])
                reference = PAPER_DETECTION.get((dataset, mode, ratio))
                if reference:
                    table.add("DEFT (paper)", table.column_keys[column],
                              {"P": [reference[0]], "R": [reference[1]]})
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
        table.add(row, setting, {m: percent(r.accuracy[t].get(m) for r, t in members) for m in ("best", "last")})
    if paper:
        for dataset, table in tables.items():
            for column in list(table.columns):
                mode, ratio = _mode_ratio(table.column_keys[column])
                for (method, backbone), (best, last) in (PAPER_ACCURACY.get((dataset, mode, ratio)) or {}).items():
                    if with_backbone or backbone == "clip_vit_b16":
                        label = METHOD_LABELS.get(method, method) + (f" ({backbone})" if with_backbone else "") + " (paper)"
                        table.add(label, table.column_keys[column],
                                  {"best": [best], "last": [] if last is None else [last]})
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
    """Lines for the noise-ratio plot: mean best accuracy (first test set) and detection F1, in %.

    A missing value (null or NaN, e.g. no evaluation finished) leaves its point out, as the tables show "–".
    """
    import pandas as pd

    with_backbone = len({r.backbone for r in runs if r.accuracy}) > 1
    points = []  # (dataset, mode, line label, ratio, kind, value in %)
    for run in runs:
        if run.noise_ratio is None:
            continue
        if run.accuracy:
            best = next(iter(run.accuracy.values())).get("best")
            points.append((run.dataset, run.noise_mode, _method_row(run, with_backbone, None), run.noise_ratio,
                           "accuracy", *percent([best])))
        if run.detection:
            label = run.detector_label or detector_label(run.detector)
            label = label if run.method in (None, "deft") else f"{label} (detector)"
            points.append((run.dataset, run.noise_mode, label, run.noise_ratio, "f1", *percent([run.detection.get("f1")])))
    frame = pd.DataFrame(points, columns=["dataset", "mode", "label", "ratio", "kind", "value"]).dropna(subset=["value"])
    if frame.empty:
        return []
    means = frame.groupby(["dataset", "mode", "label", "ratio", "kind"])["value"].mean().unstack("kind")
    means = means.reindex(columns=["accuracy", "f1"])
    out = []
    for (dataset, mode, label), line in means.groupby(level=["dataset", "mode", "label"], sort=True):
        values = lambda kind: [None if math.isnan(v) else float(v) for v in line[kind]]  # noqa: E731
        out.append({"label": f"{dataset} {mode} · {label}", "ratio": [float(r) for r in line.index.get_level_values("ratio")],
                    "accuracy": values("accuracy"), "f1": values("f1")})
    return out
