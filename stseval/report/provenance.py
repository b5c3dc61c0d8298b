"""How a grid was produced, gathered from its rows only: the provenance JSON and the markdown footer.

`collect_provenance` records the report's settings, the grid's shape, and what the rows say about how
they were made (input files, commands, models and fingerprints, data checksums, versions, git commits,
seeds, created_at) and, with --reference, the published sources. Nothing in it comes from the clock or
the machine, so the same rows give the same provenance. `write.write_report` writes it as
`<name>.provenance.json`; `tables.grid_to_markdown` turns it into the summary line and the
"How this was produced" footer (`summary_line`, `provenance_lines`).
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from stseval.report.grids import AVG
from stseval.report.ordering import in_order, order_key
from stseval.report.references import reference_rows
from stseval.report.rows import VARIANT_OF, as_text, normalized_rows, version_parts


def collect_provenance(rows: pd.DataFrame, grid: pd.DataFrame, settings: dict | None = None,
                       reference: Sequence[str] | None = None) -> dict:
    """How a grid was produced, gathered from its rows: nothing here comes from the clock or machine.

    Args:
        rows: our rows in the grid (select_rows of the resolved frame).
        grid: from build_grid; its row and column keys are recorded.
        settings: report options to record first (metric, split, filters, duplicates, ...); metric
            and split default to those of the rows.
        reference: the --reference values used, to record the published sources and caveats.
    Returns:
        a JSON-ready dict: settings, grid shape, inputs (file: rows used), commands, models with
        fingerprints, data_sha256 per task/split, versions, stseval versions, git commits, seeds,
        created_at first/last, and the published sources.
    """
    frame = normalized_rows(rows)

    def distinct(column: str) -> list[str]:
        return sorted(v for v in set(frame[column]) if v)

    models = {model: sorted(v for v in set(frame.loc[frame["model"] == model, "model_fingerprint"]) if v)
              for model in in_order("model", distinct("model"))}
    checksums = {}
    for (task, split), group in frame.groupby(["task", "split"], sort=False):
        values = sorted(v for v in set(as_text(group["data_sha256"])) if v)
        checksums[f"{task}/{split}"] = values[0] if len(values) == 1 else values
    checksums = dict(sorted(checksums.items(), key=lambda item: tuple(
        order_key(k, v) for k, v in zip(("task", "split"), item[0].split("/", 1), strict=True))))
    created = pd.to_datetime(frame["created_at"], utc=True, errors="coerce", format="ISO8601").dropna()
    inputs = {}
    if "source_file" in frame.columns:
        inputs = {name: int(count) for name, count in frame["source_file"].value_counts().sort_index().items()}
    metrics, splits = distinct("metric"), distinct("split")
    provenance = {
        "metric": metrics[0] if len(metrics) == 1 else metrics,
        "split": splits[0] if len(splits) == 1 else "all",
        "scale": 100,
        **(settings or {}),
        "row_keys": list(grid.index.names),
        "columns": list(grid.columns),
        "n_grid_rows": int(len(grid)),
        "n_result_rows": int(len(frame)),
        "inputs": inputs,
        "commands": distinct("command"),
        "models": models,
        "data_sha256": checksums,
        "versions": distinct("versions"),
        "stseval_versions": distinct("stseval_version"),
        "git_commits": distinct("git_commit"),
        "seeds": distinct("seed"),
        **_training_samples(frame),
        **_differences(frame),
        "created_at": {"first": created.min().isoformat(), "last": created.max().isoformat()} if len(created) else {},
    }
    if reference:
        published = reference_rows(reference, frame, settings.get("split", "test") if settings else "test")
        shown = set(as_text(pd.Series(grid.index.get_level_values("model")))) if "model" in grid.index.names else None
        if shown is not None:
            published = published[published["model"].isin(shown)]
        provenance["reference"] = {
            "tables": list(reference),
            "files": sorted(set(published["source_file"])),
            "sources": {label: sorted(set(group["reference_source"]))
                        for label, group in published.groupby(published["model"].str.split(":").str[0], sort=True)},
            "notes": sorted(set(published["reference_note"])),
            "caveats": "stseval/data/reference/README.md",
        }
    return provenance


def _training_samples(frame: pd.DataFrame) -> dict:
    """{"trained_on": {task: [train_on, ...]}} where rows were trained (the grid shows the setting, not these)."""
    trained = frame[frame["train_on"] != ""]
    if trained.empty:
        return {}
    per_task = {task: sorted(set(group["train_on"]))
                for task, group in trained.groupby("task", sort=False)}
    return {"trained_on": {task: per_task[task] for task in in_order("task", per_task)}}


def _differences(frame: pd.DataFrame) -> dict:
    """What differs between the rows' libraries ("versions_differ": {library: [versions]}) and, for a model
    name shown as several variants (separate_variants), each variant's fingerprint, versions and inputs."""
    out: dict = {}
    parsed = [version_parts(text) for text in sorted(set(frame["versions"])) if text]
    libraries = dict.fromkeys(lib for parts in parsed for lib in parts)
    differ = {lib: sorted({parts.get(lib, "?") for parts in parsed}) for lib in libraries}
    differ = {lib: values for lib, values in differ.items() if len(values) > 1}
    if differ:
        out["versions_differ"] = differ
    if VARIANT_OF in frame.columns:
        relabelled = frame[as_text(frame[VARIANT_OF]) != frame["model"]]
        variants: dict = {}
        for (recorded, label), group in relabelled.groupby([as_text(relabelled[VARIANT_OF]), "model"], sort=True):
            variants.setdefault(recorded, {})[label] = {
                "fingerprint": sorted(set(group["model_fingerprint"]))[0],
                "versions": sorted(set(group["versions"]))[0],
                "inputs": sorted(set(as_text(group["source_file"]))) if "source_file" in group.columns else [],
            }
        if variants:
            out["variants"] = variants
    return out


def summary_line(provenance: dict, titled: bool = False) -> str:
    """One line under the title: what the numbers are (metric and split only when no title says them)."""
    parts = [] if titled else [f"`{provenance.get('metric', '?')}` x {provenance.get('scale', 100):g}",
                               f"split `{provenance.get('split', '?')}`"]
    parts.append(f"{provenance['n_result_rows']} result rows"
                 + (f" from {len(provenance['inputs'])} file(s)" if provenance["inputs"] else ""))
    if provenance.get("columns") and AVG in provenance["columns"]:
        parts.append("`avg` = mean over tasks, `w-avg` = mean weighted by pairs")
    return "; ".join(parts) + "."


def provenance_lines(provenance: dict) -> list[str]:
    """The markdown footer: how the grid was produced."""
    def code(values) -> str:
        return ", ".join(f"`{v}`" for v in values) if values else "not recorded"

    lines = ["**How this was produced**", ""]
    settings = [f"{k}={' '.join(map(str, v)) if isinstance(v, list) else v}"
                for k, v in provenance.items()
                if k in ("metric", "split", "filters", "duplicates", "reference_tables") and v not in ([], "")]
    lines.append(f"- report: {code(settings)}; rows by {', '.join(provenance['row_keys'])}")
    if provenance.get("dropped_duplicates"):
        lines.append(f"- duplicates: {provenance['dropped_duplicates']} older re-run row(s) dropped, "
                     "latest created_at kept")
    if provenance["inputs"]:
        lines.append("- inputs: " + ", ".join(
            f"`{name}` ({count} rows)" for name, count in provenance["inputs"].items()))
    for note in provenance.get("left_out", []):
        lines.append(f"- left out: {note}")
    lines.append("- commands:" + ("" if provenance["commands"] else " not recorded"))
    lines += [f"  - `{command}`" for command in provenance["commands"]]
    lines.append("- models: " + ", ".join(
        f"`{model}`" + (f" (fingerprint {code(prints)})" if prints else "")
        for model, prints in provenance["models"].items()))
    lines.append("- data sha256: " + (", ".join(
        f"{key} {code(value if isinstance(value, list) else [value])}"
        for key, value in provenance["data_sha256"].items())
        or "not recorded"))
    lines.append(f"- versions: {code(provenance['versions'])}")
    if provenance.get("versions_differ"):
        lines.append("- library versions differ between rows: " + "; ".join(
            f"{lib} {' vs '.join(values)}" for lib, values in provenance["versions_differ"].items()))
    for recorded, variants in provenance.get("variants", {}).items():
        lines.append(f"- `{recorded}` was recorded with different fingerprints or library versions; each is a "
                     "model of its own here: " + "; ".join(
                         f"`{label}` = fingerprint `{variant['fingerprint'] or 'not recorded'}`, "
                         f"from {', '.join(variant['inputs']) or 'rows'}"
                         for label, variant in variants.items()))
    lines.append(f"- stseval: {code(provenance['stseval_versions'])}; git commits: {code(provenance['git_commits'])}; "
                 f"seeds: {code(provenance['seeds'])}")
    if provenance.get("trained_on"):
        lines.append("- trained on, per task: " + "; ".join(
            f"{task} {code(values)}" for task, values in provenance["trained_on"].items()))
    if provenance["created_at"]:
        first, last = provenance["created_at"]["first"], provenance["created_at"]["last"]
        lines.append(f"- created: {first}" + (f" to {last}" if last != first else ""))
    if "reference" in provenance:
        reference = provenance["reference"]
        for label, sources in reference["sources"].items():
            lines.append(f"- published rows `{label}:*`: {'; '.join(sources)}")
        lines.append(f"- published caveats ({reference['caveats']}): " + "; ".join(reference["notes"]))
    return lines
