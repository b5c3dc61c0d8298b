"""report/provenance.py: how a grid was produced, from its rows only (no clock, no machine), and its footer."""

from __future__ import annotations

import math

import pandas as pd

from stseval.data.tasks import TASKS
from stseval.report.grids import build_grid
from stseval.report.provenance import collect_provenance, provenance_lines, summary_line
from stseval.report.rows import select_rows, separate_variants
from stseval.runs.results import ResultRow, rows_to_frame

MODEL = "intfloat/multilingual-e5-small"


def rows(model: str = MODEL, created_at: str = "2026-01-01T00:00:00+00:00", source: str = "a.csv",
         tasks=("STS-B", "ATEC"), **fields) -> pd.DataFrame:
    """One cls/raw row per task, as load_results returns them (with source_file)."""
    defaults = dict(versions="python=3.11.7;numpy=2.4.6", command="stseval whiten",
                    git_commit="abc123", model_fingerprint="fp-1", seed=0)
    records = [ResultRow(model=model, pooling="cls", method="raw", task=task, split="test", metric="spearman_cosine",
                         value=0.5, status="ok", ci_low=math.nan, ci_high=math.nan, n_pairs=10,
                         created_at=created_at, **{"data_sha256": f"sha-{task}", **{**defaults, **fields}})
               for task in tasks]
    return rows_to_frame(records).assign(source_file=source, source_line=range(2, 2 + len(tasks)))


def provenance_of(frame: pd.DataFrame, **kwargs) -> dict:
    frame = separate_variants(frame)
    return collect_provenance(select_rows(frame), build_grid(frame), **kwargs)


def test_provenance_records_what_the_rows_say_in_registry_order():
    frame = pd.concat([rows(), rows(created_at="2026-02-03T04:05:06+00:00", source="b.csv", tasks=("BQ",),
                                    command="stseval simcse-train", seed=1)], ignore_index=True)
    provenance = provenance_of(frame, settings={"filters": ["pooling=cls"]})

    assert (provenance["metric"], provenance["split"], provenance["scale"]) == ("spearman_cosine", "test", 100)
    assert provenance["filters"] == ["pooling=cls"]
    assert provenance["row_keys"] == ["model", "pooling", "method", "dims", "seed"]  # two seeds: a seed column
    assert provenance["columns"] == ["ATEC", "BQ", "STS-B", "avg", "w-avg"]
    assert (provenance["n_grid_rows"], provenance["n_result_rows"]) == (2, 3)
    assert provenance["inputs"] == {"a.csv": 2, "b.csv": 1}
    assert provenance["commands"] == ["stseval simcse-train", "stseval whiten"]
    assert provenance["models"] == {MODEL: ["fp-1"]}
    assert list(provenance["data_sha256"].items()) == [("ATEC/test", "sha-ATEC"), ("BQ/test", "sha-BQ"),
                                                       ("STS-B/test", "sha-STS-B")]  # TASKS order, not file order
    assert provenance["seeds"] == ["0", "1"] and provenance["git_commits"] == ["abc123"]
    assert provenance["created_at"] == {"first": "2026-01-01T00:00:00+00:00", "last": "2026-02-03T04:05:06+00:00"}
    assert "versions_differ" not in provenance and "variants" not in provenance and "reference" not in provenance


def test_the_same_rows_give_the_same_provenance_in_any_order():
    frame = pd.concat([rows(), rows(source="b.csv", tasks=("BQ", "LCQMC"))], ignore_index=True)
    assert provenance_of(frame) == provenance_of(frame.iloc[::-1].reset_index(drop=True))


def test_variants_and_differing_library_versions_are_recorded():
    frame = pd.concat([rows(), rows(source="b.csv", model_fingerprint="fp-2",
                                    versions="python=3.11.7;numpy=2.5.0")], ignore_index=True)
    provenance = provenance_of(frame)
    assert provenance["versions_differ"] == {"numpy": ["2.4.6", "2.5.0"]}
    assert set(provenance["variants"]) == {MODEL}
    variants = provenance["variants"][MODEL]
    assert sorted(variant["fingerprint"] for variant in variants.values()) == ["fp-1", "fp-2"]
    footer = "\n".join(provenance_lines(provenance))
    assert "- library versions differ between rows: numpy 2.4.6 vs 2.5.0" in footer
    assert f"- `{MODEL}` was recorded with different fingerprints or library versions" in footer


def test_published_sources_are_recorded_for_the_reference_rows_shown():
    frame = rows(tasks=tuple(TASKS))
    grid = build_grid(frame, reference=["su2021:BERT"])
    provenance = collect_provenance(select_rows(frame), grid, reference=["su2021:BERT"])
    reference = provenance["reference"]
    assert reference["tables"] == ["su2021:BERT"]
    assert reference["files"] == ["stseval/data/reference/su2021.csv"]
    assert list(reference["sources"]) == ["Su2021"] and reference["caveats"] == "stseval/data/reference/README.md"
    assert "- published rows `Su2021:*`: Su 2021, kexue.fm/archives/8348" in provenance_lines(provenance)


def test_summary_line_and_footer():
    provenance = provenance_of(rows(command=""))
    assert summary_line(provenance) == ("`spearman_cosine` x 100; split `test`; 2 result rows from 1 file(s); "
                                        "`avg` = mean over tasks, `w-avg` = mean weighted by pairs.")
    assert summary_line(provenance, titled=True).startswith("2 result rows from 1 file(s);")
    lines = provenance_lines(provenance)
    assert lines[:3] == ["**How this was produced**", "",
                         "- report: `metric=spearman_cosine`, `split=test`; rows by model, pooling, method, dims"]
    assert "- inputs: `a.csv` (2 rows)" in lines
    assert "- commands: not recorded" in lines  # no command in the rows
    assert f"- models: `{MODEL}` (fingerprint `fp-1`)" in lines
    assert "- data sha256: ATEC/test `sha-ATEC`, STS-B/test `sha-STS-B`" in lines
    assert lines[-1] == "- created: 2026-01-01T00:00:00+00:00"  # one time: no "to ..."
