"""`report` options parsed once into a frozen spec, before pandas or matplotlib load.

Example:
    >>> spec = parse_report(paths=[Path("results/whitening")], rows="model, pooling", plot=None)
    >>> spec.rows, spec.cols
    (('model', 'pooling'), ('task',))
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from stseval import options
from stseval.common.errors import StsevalError
from stseval.common.lists import comma_parts

REPORT_FORMATS = ("grid", "mteb")


@dataclass(frozen=True)
class ReportSpec:
    """`stseval report`: which results to read, which grid or plot to draw of them, and where."""

    paths: tuple[Path, ...]  # results CSVs or folders holding them
    out: Path = Path("runs/report")
    rows: tuple[str, ...] | None = None  # None: stseval.report's default row keys
    cols: tuple[str, ...] = ("task",)
    metrics: tuple[str, ...] = ()  # (): one grid per metric in the rows
    split: str = "test"
    best: bool = False
    ci: bool = False
    filters: tuple[str, ...] = ()
    reference: tuple[str, ...] = ()
    strict: bool = False
    name: str | None = None
    over_seeds: bool = False
    output_format: str = "grid"  # REPORT_FORMATS
    plot: str | None = None  # options.PLOTS: a study plot instead of a grid


def parse_report(*, paths: Sequence[Path], out: Path = Path("runs/report"), force: bool = False,
                 rows: str | None = None, cols: str = "task", metrics: Sequence[str] = (), split: str = "test",
                 best: bool = False, ci: bool = False, filters: Sequence[str] = (), reference: Sequence[str] = (),
                 strict: bool = False, name: str | None = None, over_seeds: bool = False,
                 output_format: str = "grid", plot: str | None = None) -> ReportSpec:
    """The `report` options as a ReportSpec, checked before any results file is read.

    Raises:
        StsevalError naming --out (inside results/ without --force), the first missing PATH, --plot (unknown,
        or given with a grid-only option) or --format.
    """
    options.check_out_dir(out, force)
    missing = [path for path in paths if not Path(path).exists()]
    if missing:
        raise StsevalError(f"{missing[0]}: no such results file or folder")
    options.check_plot(plot, {"--rows": rows is not None, "--cols": cols != "task", "--best": best, "--ci": ci,
                              "--reference": bool(reference), "--over-seeds": over_seeds,
                              "--metric": any(metric != "spearman_cosine" for metric in metrics)})
    if output_format not in REPORT_FORMATS:
        raise StsevalError(f"--format {output_format}: choose {' or '.join(REPORT_FORMATS)}")
    return ReportSpec(paths=tuple(Path(path) for path in paths), out=Path(out),
                      rows=tuple(comma_parts(rows)) or None, cols=tuple(comma_parts(cols)) or ("task",),
                      metrics=tuple(metrics), split=split, best=best, ci=ci, filters=tuple(filters),
                      reference=tuple(reference), strict=strict, name=name, over_seeds=over_seeds,
                      output_format=output_format, plot=plot)
