"""The label-issue report of phase 1: the files a user opens to see which labels look wrong.

``detection/`` holds ``selection.csv`` (and ``selection.parquet`` when pyarrow is installed),
``pred_probs.npy`` and ``classes.txt`` (written with the CSV by the ``SelectionWriter``),
``noise_matrix.npy``, ``p_clean_hist.png``, ``suspects.png``, ``report.md`` and ``summary.json`` —
written last, because its presence marks phase 1 as complete.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from deft_lightning.data.base import DatasetError, Split
from deft_lightning.io import atomic_path, write_json, write_text
from deft_lightning.reporting.gallery import SuspectTile, save_suspects_grid
from deft_lightning.selection.clean_selection import CleanSelection

LABEL_QUALITY = ("label_quality = sqrt(p_clean · pred_probs[i, given label]) in [0, 1], the geometric mean of "
                 "the detector's clean probability and the classifier's self-confidence in the given label "
                 "(for detectors whose p_clean is that self-confidence, it is the self-confidence); "
                 "rank 1 = lowest label_quality = most likely label issue")
IN_SAMPLE = ("pred_probs are in-sample: the detector was trained on these very samples and labels (no "
             "cross-validation), so they are more confident in the given labels than out-of-sample "
             "probabilities would be")
NOISE_MATRIX = ("given class × predicted class counts among the samples flagged as label issues (is_label_issue), "
                "rows = given class, columns = the detector classifier's predicted class; not cleanlab's "
                "confident joint")
FILE_NOTES = {
    "selection.csv": "one row per training sample (index, sample_id, labels and class names, p_clean, is_clean, "
                     "is_label_issue, label_quality, rank; online_is_clean: the last training epoch's decisions when "
                     "the detector trained; true_label when known; fingerprint: what the selection was made from)",
    "selection.parquet": "the same table as Parquet",
    "pred_probs.npy": "N × C class probabilities of the detector's classifier (cleanlab's pred_probs; in-sample)",
    "classes.txt": "the class of each pred_probs column (and label number), one name per line, in order",
    "features.npy": "N × E L2-normalised image features of the inference pass (report.features=true), "
                    "for cleanlab's Datalab (near duplicates, outliers)",
    "noise_matrix.npy": "C × C " + NOISE_MATRIX,
    "p_clean_hist.png": "histogram of p_clean (truly clean vs truly noisy when the true labels are known)",
    "clean_dataset.csv": "the cleaned dataset (kept samples, path,label,split,relabelled), ready for dataset=csv",
    "suspects.png": "the most likely label issues (by rank) with their given and predicted (and true) class",
    "summary.json": "counts, clean fraction per class, the fingerprint, precision / recall / F1 when the true labels are known",
    "detector_weights.pt": "the trained detector parameters and their config (detector.weights=PATH reuses them)",
    "online_mask.npy": "the decisions made during the last training epoch (the reference's mask; -1 = unseen), "
                       "as staged between training and the inference pass; selection.csv's online_is_clean holds them",
}


def per_class_summary(selection: CleanSelection, num_classes: int,
                      noise_counts: np.ndarray | None = None) -> list[dict]:
    """Per *given* class (where a user would start cleaning): samples, clean count, the estimated clean
    fraction (the class's health), its estimated noise rate, mean label_quality, the class its issues
    are most often predicted as and, when known, the true clean fraction."""
    total = np.bincount(selection.given_label, minlength=num_classes)
    clean = np.bincount(selection.given_label[selection.is_clean], minlength=num_classes)
    names = selection.class_name(np.arange(num_classes))
    quality = None
    if selection.label_quality is not None:
        quality = np.bincount(selection.given_label, weights=selection.label_quality, minlength=num_classes)
    truly = None
    if selection.true_label is not None:
        truly = np.bincount(selection.given_label[selection.given_label == selection.true_label], minlength=num_classes)
    rows = []
    for k in range(num_classes):
        row = {"label": k, "class": str(names[k]), "num_samples": int(total[k]), "num_clean": int(clean[k]),
               "clean_fraction": round(float(clean[k] / total[k]), 6) if total[k] else None,
               "estimated_noise_rate": round(float(1.0 - clean[k] / total[k]), 6) if total[k] else None}
        if quality is not None:
            row["mean_label_quality"] = round(float(quality[k] / total[k]), 6) if total[k] else None
        if noise_counts is not None:
            off = noise_counts[k].copy()
            off[k] = 0
            row["issues_most_predicted_as"] = str(names[int(off.argmax())]) if off.any() else None
        if truly is not None:
            row["true_clean_fraction"] = round(float(truly[k] / total[k]), 6) if total[k] else None
        rows.append(row)
    return rows


def noise_matrix(selection: CleanSelection, num_classes: int) -> np.ndarray:
    """C × C counts among the flagged label issues: rows the given class, columns the predicted class."""
    issues = selection.is_label_issue
    counts = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(counts, (selection.given_label[issues], selection.predicted_label[issues]), 1)
    return counts


def noise_summary(selection: CleanSelection, counts: np.ndarray, top: int = 50) -> dict:
    """The estimated noise of the summary: what the matrix is, and its largest off-diagonal entries."""
    total = np.bincount(selection.given_label, minlength=counts.shape[0])
    off = counts.copy()
    np.fill_diagonal(off, 0)
    flat = np.argsort(-off, axis=None, kind="stable")[: int(top)]
    names = selection.class_name(np.arange(counts.shape[0]))
    pairs = []
    for given, predicted in zip(*np.unravel_index(flat, off.shape)):
        if off[given, predicted] == 0:
            break
        pairs.append({"given": str(names[given]), "predicted": str(names[predicted]),
                      "count": int(off[given, predicted]),
                      "fraction_of_given": round(float(off[given, predicted] / total[given]), 6)})
    n = max(len(selection), 1)
    return {"definition": NOISE_MATRIX, "file": "noise_matrix.npy",
            "flagged_but_predicted_as_given": int(np.trace(counts)),
            "estimated_noise_rate": round(float(selection.is_label_issue.sum() / n), 6),
            "top_pairs": pairs}


def suspect_order(selection: CleanSelection) -> np.ndarray:
    """Positions of the label issues, most likely first: by rank (label_quality) where known, else by
    lowest p_clean; ties by index."""
    issues = np.flatnonzero(selection.is_label_issue)
    key = selection.label_quality if selection.label_quality is not None else selection.p_clean
    return issues[np.lexsort((selection.index[issues], key[issues]))]


def write_parquet(selection: CleanSelection, path: Path) -> bool:
    """The selection as Parquet when pyarrow is importable; False (and nothing written) otherwise."""
    if importlib.util.find_spec("pyarrow") is None:
        return False
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({name: pa.array(values.tolist() if values.dtype == object else values)
                      for name, values in selection.to_columns().items()})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    return True


def train_image(split: Split, index: int):
    """A training image as PIL, from memory or disk; None when the file cannot be read."""
    from PIL import Image

    if split.images is not None:
        return Image.fromarray(split.images[index])
    from deft_lightning.data.image_io import load_rgb

    try:
        return load_rgb(split.paths[index], decode_size=128)
    except DatasetError:
        return None


def write_report(
    out_dir: str | Path,
    selection: CleanSelection,
    summary: dict,
    split: Split | None,
    num_classes: int,
    num_suspects: int = 36,
    parquet: bool = True,
    title: str | None = None,
) -> dict:
    """Write parquet, suspects.png, report.md and finally summary.json; return the completed summary.

    ``summary`` holds what the pipeline measured (``detector``, ``inference``, ``online_last_epoch``,
    ``detector_test_accuracy``, ``noise``); counts and the per-class table are added here.
    """
    out_dir = Path(out_dir)
    summary = dict(summary)
    summary["counts"] = {"num_samples": len(selection), "num_clean": int(selection.is_clean.sum()),
                         "num_label_issues": int(selection.is_label_issue.sum())}
    if "p_clean" not in summary:  # what the detector's registry entry says its p_clean means
        from deft_lightning.modules.registry import find_rule

        rule = find_rule(str(summary.get("detector_rule") or summary.get("detector")))
        summary["p_clean"] = rule.p_clean if rule is not None else ""
    summary.setdefault("true_labels_known", selection.true_label is not None)
    counts = noise_matrix(selection, num_classes)
    summary["per_class"] = per_class_summary(selection, num_classes, counts)
    summary["estimated_noise"] = noise_summary(selection, counts)
    summary["label_health"] = round(float(selection.is_clean.mean()), 6) if len(selection) else None
    if selection.label_quality is not None:
        summary["label_quality"] = LABEL_QUALITY
    summary["pred_probs"] = IN_SAMPLE
    with atomic_path(out_dir / "noise_matrix.npy") as tmp:
        with open(tmp, "wb") as handle:
            np.save(handle, counts)
    write_histogram(selection, out_dir / "p_clean_hist.png")

    if parquet:
        write_parquet(selection, out_dir / "selection.parquet")
    suspects = suspect_order(selection)
    shown = suspects[: max(0, int(num_suspects))]
    tiles = [
        SuspectTile(
            image=None if split is None else train_image(split, int(selection.index[i])),
            index=int(selection.index[i]),
            given_class=str(selection.class_name(selection.given_label[i : i + 1])[0]),
            predicted_class=str(selection.class_name(selection.predicted_label[i : i + 1])[0]),
            p_clean=float(selection.p_clean[i]),
            true_class=None if selection.true_label is None
            else str(selection.class_name(selection.true_label[i : i + 1])[0]),
        )
        for i in shown
    ]
    save_suspects_grid(out_dir / "suspects.png", tiles,
                       title=f"{title + ': ' if title else ''}{len(shown)} most likely label issues")
    summary["files"] = sorted(name for name in FILE_NOTES if (out_dir / name).is_file()) + ["summary.json"]
    write_text(out_dir / "report.md", render_markdown(summary, selection, suspects, title))
    summary["files"] = sorted(set(summary["files"]) | {"report.md"})
    write_json(out_dir / "summary.json", summary)
    return summary


def write_histogram(selection: CleanSelection, path: Path) -> None:
    """``p_clean_hist.png``: truly clean vs truly noisy when the true labels are known, all samples otherwise."""
    from deft_lightning.reporting.plots import p_clean_histogram

    figure = p_clean_histogram(selection.p_clean, selection.given_label, selection.true_label)
    try:
        with atomic_path(path) as tmp:
            figure.savefig(tmp, format="png")
    finally:
        import matplotlib.pyplot as plt

        plt.close(figure)


def render_markdown(summary: dict, selection: CleanSelection, suspects: np.ndarray, title: str | None = None,
                    rows: int = 20) -> str:
    counts = summary["counts"]
    n = max(counts["num_samples"], 1)
    lines = [f"# Label-issue report{': ' + title if title else ''}", ""]
    label = f" ({summary['detector_label']})" if summary.get("detector_label") else ""
    lines += [f"- detector: `{summary.get('detector', '?')}`{label}; p_clean = {summary.get('p_clean', '')}",
              f"- samples: {counts['num_samples']}; label issues: {counts['num_label_issues']} "
              f"({100.0 * counts['num_label_issues'] / n:.2f} %); clean: {counts['num_clean']}"]
    inference = summary.get("inference", {})
    if not summary.get("true_labels_known", "precision" in inference):
        noise = summary.get("noise") or {}
        why = f"noise={noise['mode']}" if noise.get("mode") else "no clean labels were given"
        if noise.get("mode") == "real":
            why += " without a clean label list"
        lines.append(f"- true labels: unknown ({why}), so no precision or recall can be computed. What this "
                     "report shows is the detector's own view: the ranking of suspected label issues and the "
                     "clean fraction per class below; check the top of the ranking by eye.")
    elif "precision" in inference:
        lines.append(f"- against the true labels (actual noise rate {100 * inference['actual_noise_rate']:.2f} %): "
                     f"clean set precision {100 * inference['precision']:.2f}, recall {100 * inference['recall']:.2f}, "
                     f"F1 {100 * inference['f1']:.2f}")
        if "issue_precision" in inference:
            lines.append(f"- issue set (is_label_issue against given ≠ true): precision "
                         f"{100 * inference['issue_precision']:.2f}, recall {100 * inference['issue_recall']:.2f}, "
                         f"F1 {100 * inference['issue_f1']:.2f}")
    online = summary.get("online_last_epoch")
    if online and "precision" in online:
        lines.append(f"- last training epoch's online decisions (reference): precision {100 * online['precision']:.2f}, "
                     f"recall {100 * online['recall']:.2f}")
    for name, value in (summary.get("detector_test_accuracy") or {}).items():
        lines.append(f"- detector classifier {name.split('/')[-1]}: {100 * value:.2f} %")
    noise = summary.get("noise") or {}
    if noise:
        synthetic = noise.get("mode") in ("sym", "asym", "idn")  # only these have a ratio and a seed
        lines.append(f"- noise: {noise.get('mode')}" + (f" (ratio {noise.get('ratio')}, seed {noise.get('seed')})" if synthetic else ""))

    ranked = selection.label_quality is not None
    if ranked:
        lines.append(f"- {LABEL_QUALITY}")
    lines.append(f"- {IN_SAMPLE}")
    by = "by rank: lowest label_quality" if ranked else "lowest p_clean"
    lines += ["", f"## Most likely label issues ({by}, {min(rows, len(suspects))} of {len(suspects)} flagged)", ""]
    if len(suspects):
        has_truth = selection.true_label is not None
        header = (["rank", "index", "sample_id", "given", "predicted", "p_clean"]
                  + (["label_quality"] if ranked else []) + (["true"] if has_truth else []))
        lines += ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
        given = selection.class_name(selection.given_label[suspects[:rows]])
        predicted = selection.class_name(selection.predicted_label[suspects[:rows]])
        ranks = selection.rank if ranked else None
        for position, (i, g, p) in enumerate(zip(suspects[:rows], given, predicted), start=1):
            sample_id = selection.sample_id[i] if selection.sample_id is not None else str(selection.index[i])
            rank = int(ranks[i]) if ranked else position
            row = f"| {rank} | {selection.index[i]} | `{sample_id}` | {g} | {p} | {selection.p_clean[i]:.4f} |"
            if ranked:
                row += f" {selection.label_quality[i]:.4f} |"
            if has_truth:
                row += f" {selection.class_name(selection.true_label[i : i + 1])[0]} |"
            lines.append(row)
        lines += ["", "![most likely label issues](suspects.png)"]
    else:
        lines.append("No label issues found.")
    if "p_clean_hist.png" in summary.get("files", []):
        split = ("truly clean vs truly noisy samples" if selection.true_label is not None
                 else "all samples (truth unknown)")
        lines += ["", f"## p_clean histogram ({split})", "", "![p_clean histogram](p_clean_hist.png)"]

    per_class = [c for c in summary.get("per_class", []) if c["num_samples"]]
    shown = 50 if not summary.get("true_labels_known", True) else 10
    worst = sorted(per_class, key=lambda c: (c["clean_fraction"], c["label"]))[:shown]
    of = f", {len(worst)} of {len(per_class)}" if len(worst) < len(per_class) else ""
    truth = any("true_clean_fraction" in c for c in worst)
    lines += ["", f"## Class health: estimated clean fraction per given class (lowest first{of})", "",
              "| class | samples | clean | clean fraction | issues most predicted as |"
              + (" true clean fraction |" if truth else ""),
              "|---|---|---|---|---|" + ("---|" if truth else "")]
    for c in worst:
        row = (f"| {c['class']} | {c['num_samples']} | {c['num_clean']} | {100 * c['clean_fraction']:.1f} % | "
               f"{c.get('issues_most_predicted_as') or '–'} |")
        if truth:
            row += f" {100 * c['true_clean_fraction']:.1f} % |"
        lines.append(row)
    noise = summary.get("estimated_noise") or {}
    if noise.get("top_pairs"):
        pairs = noise["top_pairs"][:20]
        lines += ["", f"## Estimated noise: the most frequent given → predicted pairs among the issues "
                  f"({len(pairs)} shown)", "", f"{noise['definition']}; the full matrix is `noise_matrix.npy`.", "",
                  "| given | predicted | issues | of the given class |", "|---|---|---|---|"]
        lines += [f"| {p['given']} | {p['predicted']} | {p['count']} | {100 * p['fraction_of_given']:.1f} % |"
                  for p in pairs]
    export = summary.get("export") or {}
    if export.get("file"):
        lines += ["", "## Cleaned dataset", "",
                  f"`{Path(export['file']).name}`: {export['kept']} kept samples ({export['relabelled']} relabelled), "
                  f"{export['dropped']} dropped; train on it with `dataset=csv dataset.root={export['file']}`."]
    elif export.get("skipped"):
        lines += ["", "## Cleaned dataset", "", f"Not exported: {export['skipped']}"]

    lines += ["", "## Files", "", "| file | content |", "|---|---|"]
    notes = dict(FILE_NOTES, **{"report.md": "this report"})
    if not summary.get("true_labels_known", True):
        notes["summary.json"] = "counts, clean fraction per class, the fingerprint (true labels unknown: no scores against them)"
    lines += [f"| `{name}` | {notes.get(name, '')} |" for name in sorted(set(summary.get("files", [])) | {"report.md"})]
    lines += ["", "## Using them", "", "```python",
              "import numpy as np, pandas as pd",
              "table = pd.read_csv('selection.csv')",
              "issues = table[table.is_label_issue == 1].sort_values('rank')      # most likely first",
              "pred_probs = np.load('pred_probs.npy')                              # rows follow `index`",
              "classes = open('classes.txt').read().splitlines()                  # column order of pred_probs",
              "```", ""]
    return "\n".join(lines)
