"""The short table printed at the end of a run."""

from __future__ import annotations


def format_summary(results: dict) -> str:
    rows: list[tuple[str, str]] = [("run directory", results.get("run_dir", "?"))]
    detection = results.get("detection")
    if detection:
        inference = detection.get("inference", {})
        rows.append(("clean samples", f"{inference.get('num_clean', '?')} / {inference.get('num_samples', '?')}"
                     f" ({100.0 * inference.get('clean_fraction', 0.0):.1f}%)"))
        if detection.get("true_labels_known") is False:
            rows.append(("true labels", "unknown: no precision / recall (see the report's ranking)"))
        elif "precision" in inference:
            rows.append(("clean set precision / recall / F1",
                         f"{100 * inference['precision']:.2f} / {100 * inference['recall']:.2f} / {100 * inference['f1']:.2f}"))
            if "issue_precision" in inference:
                rows.append(("issue set precision / recall / F1",
                             f"{100 * inference['issue_precision']:.2f} / {100 * inference['issue_recall']:.2f}"
                             f" / {100 * inference['issue_f1']:.2f}"))
        export = detection.get("export") or {}
        if export.get("file"):
            rows.append(("cleaned dataset (dataset=csv)", str(export["file"])))
        for name, value in detection.get("detector_test_accuracy", {}).items():
            rows.append((f"phase-1 detector {name.split('/')[-1]}", f"{100 * value:.2f}%"))
    adaptation = results.get("adaptation")
    if adaptation:
        for name, value in adaptation.items():
            if isinstance(value, dict) and "best" in value:
                rows.append((f"phase-2 {name} accuracy best / last", f"{100 * value['best']:.2f} / {100 * value['last']:.2f}"))
    width = max(len(key) for key, _ in rows)
    line = "-" * (width + 3 + max(len(v) for _, v in rows))
    body = "\n".join(f"{key.ljust(width)} | {value}" for key, value in rows)
    return f"\nDEFT summary\n{line}\n{body}\n{line}"
