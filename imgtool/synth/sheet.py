"""Contact sheet of phantom pairs, so that anyone can judge their realism.

Each cell shows a pair's month-0 and month-10 photos and, under them, their exact
label maps at half size, with a caption (view, skin type, framing, change). The pairs
cycle through every body view and every Fitzpatrick type, whole-region shots and
close-ups, so one sheet shows the generator's range.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from ..io import PathLike, write_png
from ..labels import colourise
from ._scene import VIEWS
from .core import SynthOptions, render_pair

_FITZ_ORDER = (2, 5, 1, 4, 6, 3)


def sheet_options(index: int) -> SynthOptions:
    """The options of the ``index``-th cell: cycles views, skin types and framing."""
    return SynthOptions(
        views=(VIEWS[index % len(VIEWS)],),
        fitzpatrick=(_FITZ_ORDER[index % len(_FITZ_ORDER)],),
        close_up=1.0 if (index // len(VIEWS)) % 2 == 1 else 0.0,
        lesions=(1, 6),
    )


def _caption(truth: dict[str, Any]) -> str:
    sc = truth["scene"]
    framing = "close-up" if sc["close_up"] else "whole"
    m = truth["metrics"]
    parts = [f"{sc['view']} {framing} F{sc['fitzpatrick']}"]
    if truth["change"] == "none":
        parts.append("no change")
    lf = (m["before"]["lesion_fraction"], m["after"]["lesion_fraction"])
    if None not in lf and max(lf) > 0:
        parts.append(f"lesion {lf[0]:.0%}->{lf[1]:.0%} of skin")
    hc = (m["before"]["hair_coverage"], m["after"]["hair_coverage"])
    if None not in hc and max(hc) > 0:
        parts.append(f"hair {hc[0]:.0%}->{hc[1]:.0%}")
    return ", ".join(parts)


def contact_sheet(*, seed: int = 0, pairs: int = 10, tile: int = 200, size: tuple[int, int] = (768, 768), per_row: int = 2) -> np.ndarray:
    """Render a contact sheet of phantom pairs.

    Parameters
    ----------
    seed : int
        Seed of the first pair (pair ``i`` uses ``seed + i``).
    pairs : int
        Number of pairs.
    tile : int
        Side of each photo on the sheet, px.
    size : (width, height)
        Size the pairs are drawn at (then reduced to ``tile``).
    per_row : int
        Pairs per row.

    Returns
    -------
    (H, W, 3) uint8 ndarray
    """
    gap, text_h = 8, 18
    half = tile // 2
    cell_w = 2 * tile + gap
    cell_h = text_h + tile + half + gap
    rows = (pairs + per_row - 1) // per_row
    sheet = np.full((rows * cell_h + gap, per_row * (cell_w + gap) + gap, 3), 255, dtype=np.uint8)
    for i in range(pairs):
        p = render_pair(seed + i, size=size, options=sheet_options(i))
        r, c = divmod(i, per_row)
        y0 = gap + r * cell_h
        x0 = gap + c * (cell_w + gap)
        cv2.putText(sheet, _caption(p.truth), (x0, y0 + 13), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (20, 20, 20), 1, cv2.LINE_AA)
        for j, (img, lab) in enumerate(((p.before, p.before_labels), (p.after, p.after_labels))):
            x = x0 + j * (tile + gap)
            small = cv2.resize(img, (tile, tile), interpolation=cv2.INTER_AREA)
            sheet[y0 + text_h : y0 + text_h + tile, x : x + tile] = small
            lab_small = cv2.resize(colourise(lab), (half, half), interpolation=cv2.INTER_NEAREST)
            ly = y0 + text_h + tile + 2
            sheet[ly : ly + half, x + half // 2 : x + half // 2 + half] = lab_small[: sheet.shape[0] - ly]
    return sheet


def write_contact_sheet(path: PathLike, **kwargs: Any) -> None:
    """Render :func:`contact_sheet` and write it as a PNG (keyword arguments as there)."""
    write_png(path, contact_sheet(**kwargs))
