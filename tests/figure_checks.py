"""Checks on drawn matplotlib figures: what a reader would stumble on (text cut off at the edge)."""

from __future__ import annotations


def texts_outside(figure) -> list[str]:
    """What of a figure is drawn, wholly or partly, beyond its edges: titles, legends, axes with their labels.

    Uses each artist's tight bounding box, which (unlike every Text the figure holds) counts only the tick
    labels actually drawn.
    """
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    inside = figure.bbox
    cut = []
    for artist in [*figure.axes, *figure.legends, *figure.texts,
                   *([figure._suptitle] if figure._suptitle is not None else [])]:
        if not artist.get_visible():
            continue
        box = artist.get_tightbbox(renderer)
        if box is None:
            continue
        # one pixel of slack: extents are rounded to whole pixels
        if box.x0 < inside.x0 - 1 or box.y0 < inside.y0 - 1 or box.x1 > inside.x1 + 1 or box.y1 > inside.y1 + 1:
            label = artist.get_title() if hasattr(artist, "get_title") else ""
            cut.append(f"{type(artist).__name__} {label or getattr(artist, 'get_text', lambda: '')()}".strip())
    return cut
