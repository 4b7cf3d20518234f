"""The label-issue report of phase 1: the files a user opens to see which labels look wrong.

``detection/`` holds ``selection.csv`` (and ``selection.parquet`` when pyarrow is installed),
``pred_probs.npy`` (written with the CSV by the ``SelectionWriter``), ``suspects.png``, ``report.md``
and ``summary.json`` — written last, because its presence marks phase 1 as complete.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from deft_lightning.data.base import DatasetError, Split
from deft_lightning.io import atomic_path, write_json, write_text
from deft_lightning.reporting.gallery import SuspectTile, save_suspects_grid
from deft_lightning.selection.clean_selection import CleanSelection

# What p_clean means for each detector: only DEFT's (and a GMM posterior) is thresholded at 0.5.
P_CLEAN_MEANING = {
    "deft": "σ(s⁺ − s⁻) at the given label; is_clean = p_clean > 0.5 (+ argmax rule for real noise)",
    "label_match": "zero-shot probability of the given label; is_clean = (zero-shot prediction == given label)",
    "small_loss": "head probability of the given label, exp(−CE); is_clean = the (1 − r) fraction with the smallest loss",
    "small_loss_gmm": "GMM posterior of the low-loss component; is_clean = p_clean > 0.5",
}
FILE_NOTES = {
    "selection.csv": "one row per training sample (index, sample_id, labels and class names, p_clean, is_clean, "
                     "is_label_issue; true_label when known; fingerprint: what the selection was made from)",
    "selection.parquet": "the same table as Parquet",
    "pred_probs.npy": "N × C class probabilities of the detector's classifier (cleanlab's pred_probs)",
    "suspects.png": "the most confident label issues (lowest p_clean) with their given and predicted class",
    "summary.json": "counts, clean fraction per class, the fingerprint, precision / recall / F1 when the true labels are known",
    "detector_weights.pt": "the trained detector parameters and their config (detector.weights=PATH reuses them)",
    "online_mask.npy": "the decisions made during the last training epoch (the reference's mask; -1 = unseen)",
}


def per_class_summary(selection: CleanSelection, num_classes: int) -> list[dict]:
    """Samples, clean count and clean fraction per *given* class (where a user would start cleaning)."""
    total = np.bincount(selection.given_label, minlength=num_classes)
    clean = np.bincount(selection.given_label[selection.is_clean], minlength=num_classes)
    names = selection.class_name(np.arange(num_classes))
    return [
        {"label": k, "class": str(names[k]), "num_samples": int(total[k]), "num_clean": int(clean[k]),
         "clean_fraction": round(float(clean[k] / total[k]), 6) if total[k] else None}
        for k in range(num_classes)
    ]


def suspect_order(selection: CleanSelection) -> np.ndarray:
    """Positions of the label issues, most confident first (lowest p_clean; ties by index)."""
    issues = np.flatnonzero(selection.is_label_issue)
    return issues[np.lexsort((selection.index[issues], selection.p_clean[issues]))]


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
    summary.setdefault("p_clean", P_CLEAN_MEANING.get(str(summary.get("detector")), ""))
    summary.setdefault("true_labels_known", selection.true_label is not None)
    summary["per_class"] = per_class_summary(selection, num_classes)

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
        )
        for i in shown
    ]
    save_suspects_grid(out_dir / "suspects.png", tiles,
                       title=f"{title + ': ' if title else ''}{len(shown)} most confident label issues")
    summary["files"] = sorted(name for name in FILE_NOTES if (out_dir / name).is_file()) + ["summary.json"]
    write_text(out_dir / "report.md", render_markdown(summary, selection, suspects, title))
    summary["files"] = sorted(set(summary["files"]) | {"report.md"})
    write_json(out_dir / "summary.json", summary)
    return summary


def render_markdown(summary: dict, selection: CleanSelection, suspects: np.ndarray, title: str | None = None,
                    rows: int = 20) -> str:
    counts = summary["counts"]
    n = max(counts["num_samples"], 1)
    lines = [f"# Label-issue report{': ' + title if title else ''}", ""]
    lines += [f"- detector: `{summary.get('detector', '?')}`; p_clean = {summary.get('p_clean', '')}",
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
                     f"precision {100 * inference['precision']:.2f}, recall {100 * inference['recall']:.2f}, "
                     f"F1 {100 * inference['f1']:.2f} (of the clean set)")
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

    lines += ["", f"## Most confident label issues (lowest p_clean, {min(rows, len(suspects))} of {len(suspects)})", ""]
    if len(suspects):
        has_truth = selection.true_label is not None
        header = ["rank", "index", "sample_id", "given", "predicted", "p_clean"] + (["true"] if has_truth else [])
        lines += ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
        given = selection.class_name(selection.given_label[suspects[:rows]])
        predicted = selection.class_name(selection.predicted_label[suspects[:rows]])
        for rank, (i, g, p) in enumerate(zip(suspects[:rows], given, predicted), start=1):
            sample_id = selection.sample_id[i] if selection.sample_id is not None else str(selection.index[i])
            row = f"| {rank} | {selection.index[i]} | `{sample_id}` | {g} | {p} | {selection.p_clean[i]:.4f} |"
            if has_truth:
                row += f" {selection.class_name(selection.true_label[i : i + 1])[0]} |"
            lines.append(row)
        lines += ["", "![most confident label issues](suspects.png)"]
    else:
        lines.append("No label issues found.")

    per_class = [c for c in summary.get("per_class", []) if c["num_samples"]]
    shown = 50 if not summary.get("true_labels_known", True) else 10
    worst = sorted(per_class, key=lambda c: (c["clean_fraction"], c["label"]))[:shown]
    of = f", {len(worst)} of {len(per_class)}" if len(worst) < len(per_class) else ""
    lines += ["", f"## Clean fraction per class (lowest first{of})", "", "| class | samples | clean | clean fraction |",
              "|---|---|---|---|"]
    lines += [f"| {c['class']} | {c['num_samples']} | {c['num_clean']} | {100 * c['clean_fraction']:.1f} % |" for c in worst]

    lines += ["", "## Files", "", "| file | content |", "|---|---|"]
    notes = dict(FILE_NOTES, **{"report.md": "this report"})
    if not summary.get("true_labels_known", True):
        notes["summary.json"] = "counts, clean fraction per class, the fingerprint (true labels unknown: no scores against them)"
    lines += [f"| `{name}` | {notes.get(name, '')} |" for name in sorted(set(summary.get("files", [])) | {"report.md"})]
    lines += ["", "## Using them", "", "```python",
              "import numpy as np, pandas as pd",
              "table = pd.read_csv('selection.csv')",
              "issues = table[table.is_label_issue == 1].sort_values('p_clean')   # most confident first",
              "pred_probs = np.load('pred_probs.npy')                              # rows follow `index`",
              "```", ""]
    return "\n".join(lines)
