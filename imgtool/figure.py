"""Pictures of a pair analysis: overlays, change maps, a case-report panel and figure.png.

Everything here draws with OpenCV and Pillow (no plotting library) on ``(H, W, 3)
uint8`` RGB arrays and returns arrays; :mod:`imgtool.report` encodes and writes them.
Colours are the Okabe-Ito palette, which readers with any common colour-vision
deficiency can tell apart; every colour-coded picture has a legend in words.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePath
from typing import TYPE_CHECKING, Sequence

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .labels import HAIR, LESION, check_labels
from .quantify import FATE_NEW, FATE_PERSISTENT, FATE_RESOLVED, LesionMetrics, Lesions

if TYPE_CHECKING:  # pragma: no cover
    from .pipeline import PairAnalysis

# Okabe-Ito colours (RGB).
BLACK = (0, 0, 0)
WHITE = (255, 255, 255)
ORANGE = (230, 159, 0)
SKY_BLUE = (86, 180, 233)
BLUISH_GREEN = (0, 158, 115)
YELLOW = (240, 228, 66)
BLUE = (0, 114, 178)
VERMILLION = (213, 94, 0)
REDDISH_PURPLE = (204, 121, 167)
OUTSIDE = (60, 60, 60)

#: Legend of the lesion change map: colour and meaning.
LESION_CHANGE_LEGEND: tuple[tuple[tuple[int, int, int], str], ...] = (
    (VERMILLION, "persistent lesion (in both photos)"),
    (SKY_BLUE, "resolved lesion (month-0 only)"),
    (REDDISH_PURPLE, "new lesion (follow-up only)"),
    (OUTSIDE, "not in both photos"),
)
#: Legend of the hair change map.
HAIR_CHANGE_LEGEND: tuple[tuple[tuple[int, int, int], str], ...] = (
    (BLUE, "hair in both photos"),
    (BLUISH_GREEN, "regrown hair (follow-up only)"),
    (ORANGE, "lost hair (month-0 only)"),
    (OUTSIDE, "not in both photos"),
)
#: Legend of the segmentation overlays.
OVERLAY_LEGEND: tuple[tuple[tuple[int, int, int], str], ...] = (
    (YELLOW, "lesion outline"),
    (BLUE, "hair-bearing area"),
)

#: Most lesions marked with an arrow in a case panel (the largest ones).
MAX_ARROWS = 12
#: Lesions smaller than this share of the largest one get no arrow (specks would crowd
#: the picture); the lesion table lists them all.
MIN_ARROW_SHARE = 0.02

_BODY_SITES = (
    "scalp",
    "face",
    "neck",
    "chest",
    "abdomen",
    "trunk",
    "back",
    "arm",
    "arms",
    "forearm",
    "hand",
    "hands",
    "leg",
    "legs",
    "thigh",
    "foot",
    "feet",
    "axilla",
    "groin",
    "buttocks",
)
_TIME_RE = re.compile(r"(?i)(?:^|[^a-z])(month|mo|m|week|wk|w|day|d)[ _-]?(\d{1,4})(?!\d)")
_TIME_UNITS = {"month": "month", "mo": "month", "m": "month", "week": "week", "wk": "week", "w": "week", "day": "day", "d": "day"}


@dataclass(frozen=True)
class PairCaption:
    """Words that name a pair in pictures and the report.

    Attributes
    ----------
    view : str
        Body view ("Back"), or "" when unknown.
    before, after : str
        When each photo was taken ("month 0", "month 10"), or "before"/"after".
    """

    view: str
    before: str
    after: str

    def title(self, which: str) -> str:
        """``"Back · month 0"`` for ``which`` = ``"before"`` or ``"after"``."""
        when = self.before if which == "before" else self.after
        return f"{self.view} · {when}" if self.view else when


def _time_of(stem: str) -> str | None:
    m = _TIME_RE.search(stem)
    if m is None:
        return None
    return f"{_TIME_UNITS[m.group(1).lower()]} {int(m.group(2))}"


def _site_of(stem: str) -> str | None:
    for token in re.split(r"[^a-z]+", stem.lower()):
        if token in _BODY_SITES:
            return token
    return None


def describe_pair(before_path: str | None, after_path: str | None, view: str | None = None) -> PairCaption:
    """Name a pair from its file names: body view and time points.

    Parameters
    ----------
    before_path, after_path : str or None
        The photos' paths (None for arrays given in memory).
    view : str, optional
        The body view; by default a body-site word in BEFORE's file name.

    Returns
    -------
    PairCaption

    Examples
    --------
    >>> describe_pair("back_month00.jpg", "back_month10.jpg")
    PairCaption(view='Back', before='month 0', after='month 10')
    """
    stem_b = PurePath(before_path).stem if before_path else ""
    stem_a = PurePath(after_path).stem if after_path else ""
    site = view if view else _site_of(stem_b)
    t_b, t_a = _time_of(stem_b), _time_of(stem_a)
    if t_b is None or t_a is None or t_b == t_a:
        t_b, t_a = "before", "after"
    site_text = " ".join(str(site).split())[:40] if site else ""
    return PairCaption(view=site_text[:1].upper() + site_text[1:], before=t_b, after=t_a)


# --------------------------------------------------------------------------- drawing primitives


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Pillow's built-in font (no font files needed); bitmap fallback without FreeType."""
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ValueError, OSError):  # pragma: no cover - Pillow without FreeType
        return ImageFont.load_default()


def draw_text(
    image: np.ndarray,
    text: str,
    xy: tuple[int, int],
    *,
    size: int = 20,
    colour: tuple[int, int, int] = WHITE,
    box: tuple[int, int, int] | None = None,
    pad: int = 4,
) -> np.ndarray:
    """Draw ``text`` with its top-left at ``xy``, optionally on a filled box.

    Parameters
    ----------
    image : (H, W, 3) uint8 ndarray
        Picture to draw on (not modified).
    text : str
        One line of text.
    xy : (x, y)
        Top-left corner of the text (of the box when ``box`` is given).
    size : int
        Font size in pixels.
    colour : RGB tuple
        Text colour.
    box : RGB tuple, optional
        Fill colour of a box behind the text.
    pad : int
        Box padding in pixels.

    Returns
    -------
    (H, W, 3) uint8 ndarray
    """
    pil = Image.fromarray(np.ascontiguousarray(image))
    draw = ImageDraw.Draw(pil)
    font = _font(size)
    x, y = xy
    if box is not None:
        left, top, right, bottom = draw.textbbox((x + pad, y + pad), text, font=font)
        draw.rectangle((x, y, right + pad, bottom + pad), fill=box)
    draw.text((x + (pad if box is not None else 0), y + (pad if box is not None else 0)), text, fill=colour, font=font)
    return np.array(pil)


def text_size(text: str, size: int) -> tuple[int, int]:
    """Width and height in pixels of ``text`` in the built-in font at ``size``."""
    left, top, right, bottom = ImageDraw.Draw(Image.new("RGB", (1, 1))).textbbox((0, 0), text, font=_font(size))
    return int(right), int(bottom)


def fit_width(image: np.ndarray, width: int, *, nearest: bool = False) -> np.ndarray:
    """Resize an image or label map to ``width`` pixels wide, keeping its aspect ratio."""
    h, w = image.shape[:2]
    height = max(1, round(h * width / w))
    if (h, w) == (height, width):
        return image
    interp = cv2.INTER_NEAREST if nearest else (cv2.INTER_AREA if width < w else cv2.INTER_LINEAR)
    return cv2.resize(image, (width, height), interpolation=interp)


def letterbox(image: np.ndarray, width: int, height: int, fill: tuple[int, int, int] = (40, 40, 40)) -> np.ndarray:
    """Fit an RGB image inside ``width`` x ``height``, centred on ``fill``."""
    h, w = image.shape[:2]
    s = min(width / w, height / h)
    nw, nh = max(1, round(w * s)), max(1, round(h * s))
    small = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    out = np.empty((height, width, 3), np.uint8)
    out[:] = fill
    y0, x0 = (height - nh) // 2, (width - nw) // 2
    out[y0 : y0 + nh, x0 : x0 + nw] = small
    return out


def _outline(canvas: np.ndarray, mask: np.ndarray, colour: tuple[int, int, int], thickness: int) -> None:
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if contours:
        cv2.drawContours(canvas, contours, -1, BLACK, thickness + 2, cv2.LINE_AA)
        cv2.drawContours(canvas, contours, -1, colour, thickness, cv2.LINE_AA)


def _blend(canvas: np.ndarray, mask: np.ndarray, colour: tuple[int, int, int], alpha: float) -> None:
    if mask.any():
        canvas[mask] = (canvas[mask] * (1 - alpha) + np.array(colour, np.float32) * alpha).astype(np.uint8)


def _hatch(canvas: np.ndarray, mask: np.ndarray, spacing: int = 10) -> None:
    """Fill ``mask`` with dark grey and light diagonal lines (the "not measured" texture)."""
    if not mask.any():
        return
    h, w = mask.shape
    yy, xx = np.mgrid[0:h, 0:w]
    lines = ((xx + yy) % spacing) < 2
    canvas[mask] = OUTSIDE
    canvas[mask & lines] = (110, 110, 110)


# --------------------------------------------------------------------------- panels


def label_overlay(image: np.ndarray, labels: np.ndarray, *, width: int | None = None) -> np.ndarray:
    """Lesion outlines and hair-bearing area drawn over a photo.

    Parameters
    ----------
    image : (H, W, 3) uint8 ndarray
        RGB photo.
    labels : (H, W) uint8 ndarray
        Its label map.
    width : int, optional
        Output width (default the photo's).

    Returns
    -------
    (H', W', 3) uint8 ndarray
        Hair tinted and outlined in blue, lesions outlined in yellow (both with a black edge).
    """
    lab = check_labels(labels)
    if lab.shape != image.shape[:2]:
        raise ValueError(f"labels {lab.shape} must have the photo's shape {image.shape[:2]}")
    if width is not None:
        image, lab = fit_width(image, width), fit_width(lab, width, nearest=True)
    canvas = image.copy()
    t = max(1, round(max(canvas.shape[:2]) / 500))
    hair = lab == HAIR
    _blend(canvas, hair, BLUE, 0.40)
    _outline(canvas, hair, BLUE, t)
    _outline(canvas, lab == LESION, YELLOW, t + 1)
    return canvas


def _grey_base(image: np.ndarray) -> np.ndarray:
    """A light, low-contrast grey version of a photo: colour codes stand out on it."""
    g = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    g = 110 + 0.45 * g
    return np.repeat(np.clip(g, 0, 255).astype(np.uint8)[..., None], 3, axis=2)


def change_map(
    before_image: np.ndarray,
    before_labels: np.ndarray,
    after_labels_aligned: np.ndarray,
    common: np.ndarray | None = None,
    *,
    kind: str = "lesion",
    width: int | None = None,
) -> np.ndarray:
    """Lesion or hair change, colour-coded on a grey BEFORE photo.

    Parameters
    ----------
    before_image : (H, W, 3) uint8 ndarray
        BEFORE photo.
    before_labels, after_labels_aligned : (H, W) uint8 ndarray
        BEFORE's labels and AFTER's in BEFORE's frame.
    common : (H, W) bool ndarray, optional
        Pixels AFTER covers; the rest is hatched.
    kind : str
        ``"lesion"`` (persistent, resolved, new: :data:`LESION_CHANGE_LEGEND`) or
        ``"hair"`` (kept, regrown, lost: :data:`HAIR_CHANGE_LEGEND`).
    width : int, optional
        Output width.

    Returns
    -------
    (H', W', 3) uint8 ndarray

    Raises
    ------
    ValueError
        Unknown ``kind`` or shapes that disagree.
    """
    if kind not in ("lesion", "hair"):
        raise ValueError(f"kind must be 'lesion' or 'hair', got {kind!r}")
    cls, legend = (LESION, LESION_CHANGE_LEGEND) if kind == "lesion" else (HAIR, HAIR_CHANGE_LEGEND)
    return _change_map(before_image, before_labels, after_labels_aligned, common, cls, legend, width)


def _change_map(
    image: np.ndarray,
    before_labels: np.ndarray,
    after_labels: np.ndarray,
    common: np.ndarray | None,
    cls: int,
    legend: Sequence[tuple[tuple[int, int, int], str]],
    width: int | None,
) -> np.ndarray:
    b = check_labels(before_labels, "before_labels")
    a = check_labels(after_labels, "after_labels_aligned")
    if a.shape != b.shape or b.shape != image.shape[:2]:
        raise ValueError(f"photo {image.shape[:2]}, BEFORE labels {b.shape} and aligned AFTER labels {a.shape} must agree")
    inside = np.ones(b.shape, bool) if common is None else np.asarray(common, bool)
    if width is not None:
        image = fit_width(image, width)
        b, a = fit_width(b, width, nearest=True), fit_width(a, width, nearest=True)
        inside = fit_width(inside.astype(np.uint8), width, nearest=True).astype(bool)
    canvas = _grey_base(image)
    in_b, in_a = (b == cls) & inside, (a == cls) & inside
    (both_c, _), (only_b_c, _), (only_a_c, _) = legend[0], legend[2 if cls == HAIR else 1], legend[1 if cls == HAIR else 2]
    _blend(canvas, in_b & in_a, both_c, 0.80)
    _blend(canvas, in_b & ~in_a, only_b_c, 0.85)
    _blend(canvas, in_a & ~in_b, only_a_c, 0.85)
    _hatch(canvas, ~inside)
    return canvas


def checkerboard(before_image: np.ndarray, after_aligned: np.ndarray, *, tiles: int = 8, width: int | None = None) -> np.ndarray:
    """Alternate square tiles of BEFORE and aligned AFTER: edges run on across tile borders when aligned.

    Parameters
    ----------
    before_image, after_aligned : (H, W, 3) uint8 ndarray
        BEFORE and AFTER warped into its frame.
    tiles : int
        Tiles along the long side.
    width : int, optional
        Output width.

    Returns
    -------
    (H', W', 3) uint8 ndarray
    """
    if before_image.shape != after_aligned.shape:
        raise ValueError(f"images must be the same shape, got {before_image.shape} and {after_aligned.shape}")
    if width is not None:
        before_image, after_aligned = fit_width(before_image, width), fit_width(after_aligned, width)
    h, w = before_image.shape[:2]
    side = max(1, round(max(h, w) / tiles))
    yy, xx = np.mgrid[0:h, 0:w]
    use_after = ((yy // side + xx // side) % 2).astype(bool)
    out = before_image.copy()
    out[use_after] = after_aligned[use_after]
    # Thin tile borders make the pattern readable where both halves look alike.
    out[(yy % side == 0) | (xx % side == 0)] = (255, 255, 255)
    return out


def _segments_cross(p1: np.ndarray, p2: np.ndarray, q1: np.ndarray, q2: np.ndarray) -> bool:
    """Whether segments p1-p2 and q1-q2 cross (proper intersection)."""

    def side(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> float:
        return float((b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0]))

    return side(p1, p2, q1) * side(p1, p2, q2) < 0 and side(q1, q2, p1) * side(q1, q2, p2) < 0


def _arrow_placements(
    centres: np.ndarray,
    radii: np.ndarray,
    shape: tuple[int, int],
    length: float,
    avoid: Sequence[tuple[int, int, int, int]] = (),
) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """Tail and tip of an arrow for each lesion, pointing at its edge.

    Greedy, largest lesion first: each arrow takes the direction and length (8 directions,
    3 lengths) whose tail, where the tag goes, stays inside the picture, out of the
    ``avoid`` boxes (x0, y0, x1, y1; e.g. the title tag), crosses no arrow already placed,
    and is farthest from other lesions and from the tails already placed; ties prefer
    short arrows from the upper left.
    """
    h, w = shape
    dirs = np.array([(-1, -1), (1, -1), (-1, 1), (1, 1), (0, -1), (-1, 0), (1, 0), (0, 1)], np.float64)
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    tails: list[np.ndarray] = []
    shafts: list[tuple[np.ndarray, np.ndarray]] = []
    out = []
    pad = 0.02 * max(h, w)  # room for the tag around the tail
    for i, (c, r) in enumerate(zip(centres, radii)):
        others = np.delete(np.arange(len(centres)), i)
        best, best_score = None, -np.inf
        for n, scale in enumerate((1.0, 1.5, 2.1)):
            for k, d in enumerate(dirs):
                tip = c + d * (0.8 * r + 3)
                tail = tip + d * length * scale
                margin = min(tail[0] - pad, w - 1 - pad - tail[0], tail[1] - pad, h - 1 - pad - tail[1])
                covered = any(x0 - pad <= tail[0] <= x1 + pad and y0 - pad <= tail[1] <= y1 + pad for x0, y0, x1, y1 in avoid)
                lesions_clear = float((np.linalg.norm(centres[others] - tail, axis=1) - radii[others]).min()) if others.size else length
                tags_clear = min((float(np.linalg.norm(t - tail)) for t in tails), default=2 * length)
                crossings = sum(_segments_cross(tail, tip, a, b) for a, b in shafts)
                score = (
                    10 * min(margin, 0)
                    - 1000 * covered
                    + min(lesions_clear, 2 * length)
                    + 1.5 * min(tags_clear, 2 * length)
                    - 0.3 * length * n
                    - length * crossings
                    - 0.01 * k
                )
                if score > best_score:
                    best, best_score = (tail, tip), score
        tail, tip = best
        tails.append(tail)
        shafts.append((tail, tip))
        out.append(((int(round(tail[0])), int(round(tail[1]))), (int(round(tip[0])), int(round(tip[1])))))
    return out


def case_panel(
    image: np.ndarray,
    marks: Sequence[tuple[float, float, float, str, tuple[int, int, int]]],
    title: str,
    *,
    width: int | None = None,
) -> np.ndarray:
    """A photo as in a case-report figure: a title tag and arrows pointing at lesions.

    Parameters
    ----------
    image : (H, W, 3) uint8 ndarray
        RGB photo.
    marks : sequence of (x, y, area_px, tag, colour)
        Lesions to point at: centre and area in the photo's pixels, a short tag drawn
        at the arrow's tail (e.g. the lesion number) and the arrow's colour.
    title : str
        Tag in the top-left corner (e.g. ``"Back · month 0"``).
    width : int, optional
        Output width.

    Returns
    -------
    (H', W', 3) uint8 ndarray
    """
    s = 1.0 if width is None else width / image.shape[1]
    canvas = (image if width is None else fit_width(image, width)).copy()
    h, w = canvas.shape[:2]
    long_side = max(h, w)
    size = max(14, round(long_side / 26))
    tw, th = text_size(title, size)
    avoid = [(0, 0, tw + 20, th + 20), (w - 3 * size, 0, w, 2 * size)]  # title tag, panel letter
    if marks:
        centres = np.array([(m[0] * s, m[1] * s) for m in marks], np.float64)
        radii = np.array([np.sqrt(max(m[2], 1.0) / np.pi) * s for m in marks], np.float64)
        length = 0.07 * long_side
        t = max(2, round(long_side / 400))
        font = max(12, round(long_side / 36))
        for (tail, tip), mark in zip(_arrow_placements(centres, radii, (h, w), length, avoid), marks):
            tip_len = min(0.45, 2.2 * t * 4 / length)
            cv2.arrowedLine(canvas, tail, tip, BLACK, t + 3, cv2.LINE_AA, tipLength=tip_len)
            cv2.arrowedLine(canvas, tail, tip, mark[4], t, cv2.LINE_AA, tipLength=tip_len)
            if mark[3]:
                tw, th = text_size(mark[3], font)
                x = int(np.clip(tail[0] - tw / 2 - 3, 0, w - tw - 8))
                y = int(np.clip(tail[1] - th - 8 if tip[1] > tail[1] else tail[1] + 2, 0, h - th - 8))
                canvas = draw_text(canvas, mark[3], (x, y), size=font, colour=BLACK, box=mark[4], pad=3)
    return draw_text(canvas, title, (8, 8), size=size, colour=WHITE, box=(0, 0, 0), pad=6)


def lesion_marks(
    lesions: Lesions,
    *,
    fates: dict[int, str] | None = None,
    prefix: str = "",
    limit: int = MAX_ARROWS,
    min_share: float = MIN_ARROW_SHARE,
) -> list[tuple[float, float, float, str, tuple[int, int, int]]]:
    """Arrow marks (see :func:`case_panel`) for the largest ``limit`` lesions.

    Parameters
    ----------
    lesions : Lesions
        The lesions of the photo the panel shows.
    fates : dict of int to str, optional
        Tag for each lesion id (e.g. the BEFORE number a follow-up lesion continues,
        or "new"); lesions tagged "new…" get a purple arrow, lesions tagged "" none.
    prefix : str
        Put before the lesion number when ``fates`` does not tag it.
    limit : int
        Most arrows.
    min_share : float
        No arrow for lesions smaller than this share of the largest.

    Returns
    -------
    list of (x, y, area_px, tag, colour)
    """
    marks: list[tuple[float, float, float, str, tuple[int, int, int]]] = []
    smallest = min_share * lesions.items[0].area_px if lesions.items else 0
    for les in lesions.items:
        if len(marks) == limit or les.area_px < smallest:
            break
        tag = fates.get(les.id, f"{prefix}{les.id}") if fates is not None else f"{prefix}{les.id}"
        if not tag:
            continue
        colour = REDDISH_PURPLE if tag.startswith("new") else WHITE
        marks.append((les.centroid_x, les.centroid_y, float(les.area_px), tag, colour))
    return marks


def legend_strip(entries: Sequence[tuple[tuple[int, int, int], str]], width: int, *, size: int = 18) -> np.ndarray:
    """A white strip with colour swatches and their meanings, wrapped to ``width``.

    Returns
    -------
    (H, width, 3) uint8 ndarray
    """
    sw = size
    gap = size
    items = [(c, t, sw + 6 + text_size(t, size)[0]) for c, t in entries]
    rows: list[list[tuple[tuple[int, int, int], str, int]]] = [[]]
    x = 0
    for it in items:
        if rows[-1] and x + it[2] > width - 16:
            rows.append([])
            x = 0
        rows[-1].append(it)
        x += it[2] + gap
    line_h = size + 10
    strip = np.full((len(rows) * line_h + 8, width, 3), 255, np.uint8)
    for r, row in enumerate(rows):
        x = 8
        y = 6 + r * line_h
        for colour, text, iw in row:
            cv2.rectangle(strip, (x, y + 2), (x + sw, y + 2 + sw), colour, -1)
            cv2.rectangle(strip, (x, y + 2), (x + sw, y + 2 + sw), BLACK, 1)
            strip = draw_text(strip, text, (x + sw + 6, y), size=size, colour=BLACK)
            x += iw + gap
    return strip


def message_panel(text: str, width: int, height: int) -> np.ndarray:
    """A grey panel with a short message (e.g. why a change map cannot be drawn)."""
    panel = np.full((height, width, 3), 225, np.uint8)
    size = max(14, width // 34)
    words, lines, line = text.split(), [], ""
    for word in words:
        trial = f"{line} {word}".strip()
        if text_size(trial, size)[0] > width - 40 and line:
            lines.append(line)
            line = word
        else:
            line = trial
    lines.append(line)
    y = height // 2 - len(lines) * (size + 6) // 2
    for ln in lines:
        panel = draw_text(panel, ln, (20, y), size=size, colour=BLACK)
        y += size + 6
    return panel


# --------------------------------------------------------------------------- a whole analysis


@dataclass(frozen=True)
class ReportPictures:
    """Every picture of a pair analysis, as ``(H, W, 3) uint8`` RGB arrays.

    Attributes
    ----------
    caption : PairCaption
        View and time points.
    case_before, case_after : ndarray
        Case-report panels with arrows at lesions (AFTER aligned when possible).
    pair_before, pair_after : ndarray
        The plain pair side by side in BEFORE's frame (AFTER aligned when possible).
    overlay_before, overlay_after : ndarray
        Lesion outlines and hair over each photo in its own frame.
    lesion_change, hair_change : ndarray or None
        Change maps in BEFORE's frame; None when the pair is not aligned.
    checkerboard : ndarray or None
        BEFORE / aligned AFTER checkerboard; None when not aligned.
    figure : ndarray
        The multi-panel figure for papers (figure.png).
    """

    caption: PairCaption
    case_before: np.ndarray
    case_after: np.ndarray
    pair_before: np.ndarray
    pair_after: np.ndarray
    overlay_before: np.ndarray
    overlay_after: np.ndarray
    lesion_change: np.ndarray | None
    hair_change: np.ndarray | None
    checkerboard: np.ndarray | None
    figure: np.ndarray


def _after_marks(lesions: LesionMetrics, marked_before: set[int]) -> tuple[Lesions, dict[int, str] | None]:
    """AFTER's lesions (aligned) to point at, tagged with the BEFORE lesion they continue or "new N".

    Only continuations of BEFORE lesions that carry an arrow are tagged, so that every
    number in the follow-up panel is also in the month-0 panel; a lesion that broke up
    gets one arrow, at its largest piece (ids are numbered largest first).
    """
    if lesions.fates is None:
        return lesions.after, None
    tags: dict[int, str] = {les.id: "" for les in lesions.fates.after.items}
    n_new = 0
    for f in lesions.fates.items:
        if f.fate == FATE_PERSISTENT and f.before_id in marked_before:
            j = min(f.after_ids)  # one arrow per lesion, at its largest remaining piece
            tags[j] = tags[j] or str(f.before_id)
        elif f.fate == FATE_NEW:
            n_new += 1
            tags[f.after_ids[0]] = f"new {n_new}"
    return lesions.fates.after, tags


def _pct(v: float | None, digits: int = 0) -> str:
    return "n/a" if v is None else f"{100 * v:.{digits}f} %"


def _dropped_month0_px(result: PairAnalysis) -> int:
    """Month-0 lesion pixels in the common region that the pair's reconciled labels do not call lesion."""
    pair_b, common = result.before_labels_pair, result.common
    if pair_b is None or common is None:
        return 0
    return int(((result.before_labels == LESION) & (pair_b != LESION) & common).sum())


def headline(result: PairAnalysis, *, arrow: str = "->") -> list[str]:
    """The key findings of a pair analysis in a few short lines (for captions and the report).

    Parameters
    ----------
    result : PairAnalysis
    arrow : str
        Text between a before and an after value (the built-in font has no "→").

    Returns
    -------
    list of str
    """
    ch, mb, ma = result.change, result.metrics_before, result.metrics_after
    lines = []
    les = result.lesions
    min_px = les.min_area_px if les is not None else 0
    b_px, a_px = ch.lesion_area_before_common_px, ch.lesion_area_after_common_px
    if ch.lesion_area_change_rel is not None and b_px is not None and a_px is not None and b_px < min_px:
        # A share of a base smaller than one countable lesion is segmentation noise, not a
        # measurement: 6 px -> 72 px would read "rose 1100 %" (docs/report.md).
        lines.append(
            f"Lesion area {b_px:,} px -> {a_px:,} px in the region both photos show "
            f"(month 0 has less than one lesion of the minimum size, {min_px:,} px: no percentage)"
        )
    elif ch.lesion_area_change_rel is not None:
        word = "fell" if ch.lesion_area_change_rel < 0 else "rose"
        lines.append(f"Lesion area {word} {abs(100 * ch.lesion_area_change_rel):.0f} % (in the region both photos show)")
    elif ch.lesion_area_before_common_px == 0 and ch.lesion_area_after_common_px is not None:
        lines.append(f"No lesion at month 0 in the common region; {ch.lesion_area_after_common_px} lesion pixels after")
    if les is not None and les.fates is not None:
        f = les.fates
        persistent = [it for it in f.items if it.fate == FATE_PERSISTENT]
        kept = f"{len(persistent)} persistent"
        area_b = sum(it.area_before_px for it in persistent)
        if area_b > 0:
            # A lesion that shrank by 99 % is "persistent" too: say by how much, or the
            # count reads as no improvement.
            change = 100.0 * (sum(it.area_after_px for it in persistent) / area_b - 1.0)
            kept += f" (area {change:+.0f} %)"
        line = f"{f.count(FATE_RESOLVED)} of {f.before.count} lesions resolved, {kept}, {f.count(FATE_NEW)} new"
        dropped = _dropped_month0_px(result)
        if dropped:
            # Reconciliation took month-0 lesion calls out of the pair: say so, or the
            # count would not match the month-0 outlines.
            line += f" ({dropped:,} px called lesion at month 0 only, on skin that did not change, not counted)"
        lines.append(line)
    if mb.easi_area_score is not None and ma.easi_area_score is not None:
        lines.append(
            f"EASI area score {mb.easi_area_score} {arrow} {ma.easi_area_score} "
            # The share the score bins (lesions of at least the minimum size, over skin,
            # lesion and hair together), not the lesion share of the skin alone.
            f"({_pct(mb.easi_share_of_body, 1)} {arrow} {_pct(ma.easi_share_of_body, 1)} of the body surface in view)"
        )
    if ch.hair_coverage_before_common is not None and ch.hair_coverage_after_common is not None:
        hb, ha = ch.hair_coverage_before_common, ch.hair_coverage_after_common
        lines.append(f"Hair coverage {_pct(hb)} {arrow} {_pct(ha)} of the area both photos show")
    elif mb.hair_coverage is not None and ma.hair_coverage is not None:
        lines.append(f"Hair coverage {_pct(mb.hair_coverage)} {arrow} {_pct(ma.hair_coverage)} of the region")
    red = result.redness
    if red is not None and red.sites_before is not None and red.sites_after is not None:
        db, da = red.sites_before.delta_a, red.sites_after.delta_a
        if db is not None and da is not None:
            lines.append(f"Redness at month-0 lesion sites: a* {db:+.1f} {arrow} {da:+.1f} above nearby skin")
    return lines


def render_pictures(result: PairAnalysis, *, panel_width: int = 800) -> ReportPictures:
    """Draw every picture of the report and the figure for one pair analysis.

    Parameters
    ----------
    result : PairAnalysis
        What :func:`imgtool.analyze_pair` returned.
    panel_width : int
        Width in pixels of each panel (figure.png is three panels wide).

    Returns
    -------
    ReportPictures
    """
    from .quantify import lesion_metrics

    cap = describe_pair(result.before.path, result.after.path, result.options.view)
    img_b, lab_b = result.before_image, result.before_labels
    aligned = result.after_aligned is not None and result.after_labels_aligned is not None
    lesions = result.lesions
    if lesions is None:  # an analysis made without lesion objects: count them here
        lesions = lesion_metrics(lab_b, result.after_labels)
    if aligned:
        img_a_view, lab_a_view = result.after_aligned, result.after_labels_aligned
    else:
        img_a_view, lab_a_view = result.after_image, result.after_labels
    # Arrows: BEFORE's lesions by number; AFTER's tagged by the BEFORE lesion they continue.
    # Numbers as in the lesion table: the fates' (inside the common region) when aligned.
    marks_b = lesion_marks(lesions.fates.before if aligned and lesions.fates is not None else lesions.before)
    marked = {int(m[3]) for m in marks_b}
    after_les, tags = _after_marks(lesions, marked) if aligned else (lesions.after, None)
    marks_a = lesion_marks(after_les, fates=tags)
    case_b = case_panel(img_b, marks_b, cap.title("before"), width=panel_width)
    case_a_full = case_panel(img_a_view, marks_a, cap.title("after"), width=panel_width)
    ph = case_b.shape[0]
    case_a = case_a_full if case_a_full.shape[0] == ph else letterbox(case_a_full, panel_width, ph)
    pair_b = fit_width(img_b, panel_width)
    pair_a = fit_width(img_a_view, panel_width) if aligned else letterbox(result.after_image, panel_width, ph)
    overlay_b = label_overlay(img_b, lab_b, width=panel_width)
    overlay_a = label_overlay(result.after_image, result.after_labels, width=panel_width)
    les_map = hair_map = board = None
    if aligned:
        # The change maps show what the change metrics count: BEFORE's labels as reconciled for the pair.
        lab_pair = lab_b if result.before_labels_pair is None else result.before_labels_pair
        les_map = change_map(img_b, lab_pair, result.after_labels_aligned, result.common, kind="lesion", width=panel_width)
        hair_map = change_map(img_b, lab_pair, result.after_labels_aligned, result.common, kind="hair", width=panel_width)
        board = checkerboard(img_b, result.after_aligned, width=panel_width)
    overlay_a_view = label_overlay(img_a_view, lab_a_view, width=panel_width)
    figure = _compose_figure(result, cap, case_b, case_a, overlay_b, overlay_a_view, les_map, hair_map)
    return ReportPictures(cap, case_b, case_a, pair_b, pair_a, overlay_b, overlay_a, les_map, hair_map, board, figure)


def _compose_figure(
    result: PairAnalysis,
    cap: PairCaption,
    case_b: np.ndarray,
    case_a: np.ndarray,
    overlay_b: np.ndarray,
    overlay_a: np.ndarray,
    les_map: np.ndarray | None,
    hair_map: np.ndarray | None,
) -> np.ndarray:
    """figure.png: three panels by two rows, lettered, legends under the maps, findings below."""
    w, h = case_b.shape[1], case_b.shape[0]
    gap = 12
    size = max(14, w // 28)

    def same(img: np.ndarray) -> np.ndarray:
        return img if img.shape[:2] == (h, w) else letterbox(img, w, h)

    reason = f"registration {result.registration.status}: {result.registration.reason}"
    maps = les_map is not None and hair_map is not None
    panels = [
        (same(case_b), "A", None),
        (same(case_a), "B", None),
        (les_map if maps else message_panel(f"No lesion change map: {reason}", w, h), "C", LESION_CHANGE_LEGEND if maps else None),
        (same(overlay_b), "D", OVERLAY_LEGEND),
        (same(overlay_a), "E", OVERLAY_LEGEND),
        (hair_map if maps else message_panel(f"No hair change map: {reason}", w, h), "F", HAIR_CHANGE_LEGEND if maps else None),
    ]
    cells = []
    for img, letter, legend in panels:
        cell = draw_text(img, letter, (img.shape[1] - size * 2 - 8, 8), size=round(size * 1.3), colour=BLACK, box=WHITE, pad=5)
        cells.append((cell, legend_strip(legend, w, size=size) if legend else None))
    rows = []
    for r in range(2):
        row = cells[3 * r : 3 * r + 3]
        legend_h = max((lg.shape[0] for _, lg in row if lg is not None), default=0)
        cols = []
        for img, lg in row:
            col = np.full((h + legend_h, w, 3), 255, np.uint8)
            col[:h] = img
            if lg is not None:
                col[h : h + lg.shape[0]] = lg
            cols.append(col)
        sep = np.full((h + legend_h, gap, 3), 255, np.uint8)
        rows.append(np.hstack([cols[0], sep, cols[1], sep, cols[2]]))
    body = np.vstack([rows[0], np.full((gap, rows[0].shape[1], 3), 255, np.uint8), rows[1]])
    lines = headline(result)
    captions = [
        f"A, B: {cap.title('before')} and {cap.title('after')}"
        + (" (aligned to month 0)" if result.after_aligned is not None else "")
        + "; arrows at the main lesions, numbered by size at month 0. C: lesion change. D, E: segmentation. F: hair change.",
        *lines,
        f"imgtool {result.to_dict()['imgtool_version']}, method {result.options.method}, registration {result.registration.status}.",
    ]
    foot_h = 12 + len(captions) * (size + 8)
    foot = np.full((foot_h, body.shape[1], 3), 255, np.uint8)
    for i, text in enumerate(captions):
        foot = draw_text(foot, text, (gap, 8 + i * (size + 8)), size=size, colour=BLACK)
    out = np.vstack([body, foot])
    return np.pad(out, ((gap, gap), (gap, gap), (0, 0)), constant_values=255)
