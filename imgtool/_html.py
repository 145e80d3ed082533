"""report.html: one self-contained page for a pair analysis.

The page needs nothing but itself: images are inlined as ``data:`` URIs, the style is
inline, there is no script and no font or other file to fetch, and a Content Security
Policy forbids the browser to fetch anything else even if some text slipped through.
Every string that comes from a file name, an option or another program is HTML-escaped.
"""

from __future__ import annotations

import base64
import html
import platform
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import cv2
import numpy as np

from ._version import __version__
from .figure import (
    HAIR_CHANGE_LEGEND,
    LESION_CHANGE_LEGEND,
    OVERLAY_LEGEND,
    ReportPictures,
    headline,
)
from .quantify import FATE_NEW, FATE_PERSISTENT, FATE_RESOLVED

if TYPE_CHECKING:  # pragma: no cover
    from .pipeline import PairAnalysis

_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"

_CSS = """
:root { color-scheme: light; }
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       margin: 0 auto; max-width: 1280px; padding: 16px 24px 48px; color: #111; background: #fff; line-height: 1.4; }
h1 { font-size: 1.6em; margin: 0.2em 0 0.1em; }
h2 { font-size: 1.25em; border-bottom: 2px solid #0072B2; padding-bottom: 2px; margin-top: 1.6em; }
.sub { color: #444; margin: 0 0 1em; }
.findings { background: #f2f7fb; border-left: 6px solid #0072B2; padding: 10px 16px; margin: 12px 0; }
.findings li { margin: 2px 0; font-size: 1.05em; }
.row { display: grid; grid-template-columns: repeat(auto-fit, minmax(300px, 1fr)); gap: 12px; }
.row.single { grid-template-columns: minmax(300px, 640px); }
figure { margin: 0; min-width: 0; break-inside: avoid; page-break-inside: avoid; }
figure img { width: 100%; height: auto; display: block; border: 1px solid #ccc; }
figcaption { font-size: 0.9em; color: #333; margin-top: 4px; }
.legend { list-style: none; padding: 0; margin: 6px 0 0; display: flex; flex-wrap: wrap; gap: 4px 16px; font-size: 0.9em; }
.swatch { display: inline-block; width: 14px; height: 14px; border: 1px solid #000; vertical-align: -2px; margin-right: 5px;
          print-color-adjust: exact; -webkit-print-color-adjust: exact; }
table { border-collapse: collapse; margin: 8px 0; font-size: 0.92em; break-inside: auto; }
th, td { border: 1px solid #bbb; padding: 3px 8px; text-align: right; vertical-align: top; }
th:first-child, td:first-child, th:last-child { text-align: left; }
thead th { background: #eef2f5; }
td.note { text-align: left; color: #444; font-size: 0.9em; }
td.t { text-align: left; }
.status { font-weight: bold; padding: 1px 8px; border-radius: 3px; color: #fff; }
.status-ok { background: #009E73; } .status-low_confidence { background: #E69F00; color: #000; }
.status-failed { background: #D55E00; }
.warn { background: #fff4e0; border-left: 6px solid #E69F00; padding: 6px 12px; }
code, .hash { font-family: ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 0.85em; word-break: break-all; }
dl.prov { display: grid; grid-template-columns: max-content 1fr; gap: 2px 16px; }
dl.prov dt { font-weight: bold; } dl.prov dd { margin: 0; }
@media print {
  body { max-width: none; padding: 0; font-size: 10pt; }
  h2 { break-after: avoid; page-break-after: avoid; }
  .findings, .warn { break-inside: avoid; }
  @page { margin: 12mm; }
}
"""


def e(value: Any) -> str:
    """HTML-escape any value's text (quotes included), for element content and attributes."""
    return html.escape("" if value is None else str(value), quote=True)


def data_uri(image: np.ndarray, *, fmt: str = "jpeg", quality: int = 88) -> str:
    """An RGB image as a ``data:`` URI (JPEG or PNG, no metadata).

    Parameters
    ----------
    image : (H, W, 3) uint8 ndarray
        RGB picture.
    fmt : str
        ``"jpeg"`` or ``"png"``.
    quality : int
        JPEG quality.

    Returns
    -------
    str
    """
    bgr = np.ascontiguousarray(image[:, :, ::-1])
    if fmt == "png":
        ok, buf = cv2.imencode(".png", bgr, [cv2.IMWRITE_PNG_COMPRESSION, 6])
    elif fmt == "jpeg":
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    else:
        raise ValueError(f"unknown image format {fmt!r}")
    if not ok:
        raise ValueError("image encoding failed")
    return f"data:image/{fmt};base64,{base64.b64encode(buf.tobytes()).decode('ascii')}"


def _img(image: np.ndarray, alt: str, caption: str, legend: Sequence[tuple[tuple[int, int, int], str]] | None = None) -> str:
    parts = [f'<figure><img src="{data_uri(image)}" alt="{e(alt)}" width="{image.shape[1]}" height="{image.shape[0]}">']
    parts.append(f"<figcaption>{e(caption)}</figcaption>")
    if legend:
        parts.append(_legend(legend))
    parts.append("</figure>")
    return "".join(parts)


def _legend(entries: Iterable[tuple[tuple[int, int, int], str]]) -> str:
    items = "".join(
        f'<li><span class="swatch" style="background:rgb({c[0]},{c[1]},{c[2]})"></span>{e(text)}</li>' for c, text in entries
    )
    return f'<ul class="legend" aria-label="legend">{items}</ul>'


def _num(v: Any, digits: int = 0, *, pct: bool = False, signed: bool = False) -> str:
    if v is None:
        return "–"
    if isinstance(v, (int, np.integer)) and not pct:
        return f"{int(v):+,}" if signed else f"{int(v):,}"
    x = 100 * float(v) if pct else float(v)
    if round(x, digits) == 0:
        x = 0.0  # no "-0.0"
    text = f"{x:+,.{digits}f}" if signed else f"{x:,.{digits}f}"
    return text + (" %" if pct else "")


def _area(px: Any, pixel_size_mm: float | None) -> str:
    if px is None:
        return "–"
    text = f"{float(px):,.0f} px"
    if pixel_size_mm is not None:
        text += f"<br>{float(px) * pixel_size_mm**2 / 100:,.2f} cm²"
    return text


def _diff(a: Any, b: Any) -> Any:
    return None if a is None or b is None else b - a


def _before_after(name: str, before: float | None, after: float | None, note: str) -> tuple[str, str, str, str, str]:
    """A table row of a signed quantity before, after and its change (one decimal)."""
    return (name, _num(before, 1, signed=True), _num(after, 1, signed=True), _num(_diff(before, after), 1, signed=True), note)


def _numbers_table(result: PairAnalysis) -> str:
    mb, ma, ch = result.metrics_before, result.metrics_after, result.change
    px_b, px_a = mb.pixel_size_mm, ma.pixel_size_mm
    les = result.lesions
    red = result.redness
    rows: list[tuple[str, str, str, str, str]] = [
        ("Skin in view (skin + lesion + hair)", _area(mb.body_area_px, px_b), _area(ma.body_area_px, px_a), "", "each photo, in its ROI"),
        ("Lesion area", _area(mb.lesion_area_px, px_b), _area(ma.lesion_area_px, px_a), "", "each photo, inside its ROI"),
        (
            "Lesion area where both photos overlap",
            _area(ch.lesion_area_before_common_px, px_b),
            _area(ch.lesion_area_after_common_px, px_b),
            _num(ch.lesion_area_change_rel, 1, pct=True, signed=True),
            "BEFORE's frame; the change of disease, not of framing",
        ),
        (
            "Lesion share of the skin in view",
            _num(mb.lesion_share_of_body, 1, pct=True),
            _num(ma.lesion_share_of_body, 1, pct=True),
            _num(_diff(mb.lesion_share_of_body, ma.lesion_share_of_body), 1, pct=True, signed=True) + " pts",
            "lesion / (skin + lesion + hair)",
        ),
        (
            "EASI area score (0–6)",
            _num(mb.easi_area_score),
            _num(ma.easi_area_score),
            _num(_diff(mb.easi_area_score, ma.easi_area_score), signed=True),
            "0 none, 1 &lt;10 %, 2 10–29 %, 3 30–49 %, 4 50–69 %, 5 70–89 %, 6 ≥90 %",
        ),
    ]
    if les is not None:
        rows.append(
            (
                "Lesions (count)",
                _num(les.before.count),
                _num(les.after.count),
                _num(les.after.count - les.before.count, signed=True),
                f"components of at least {les.min_area_px:,} px (BEFORE's pixels)",
            )
        )
        if les.fates is not None:
            f = les.fates
            rows.append(
                (
                    "Lesion fates (in the overlap)",
                    f"{f.before.count} at month 0",
                    f"{f.after.count} at follow-up",
                    f"{f.count(FATE_RESOLVED)} resolved, {f.count(FATE_PERSISTENT)} persistent, {f.count(FATE_NEW)} new",
                    "lesion by lesion, see the lesion table",
                )
            )
    rows += [
        ("Resolved lesion area", "", "", _area(ch.resolved_lesion_px, px_b), "lesion at month 0 only (pixels)"),
        ("Persistent lesion area", "", "", _area(ch.persistent_lesion_px, px_b), "lesion in both photos"),
        ("New lesion area", "", "", _area(ch.new_lesion_px, px_b), "lesion at follow-up only"),
    ]
    rec = result.reconciliation
    if rec is not None:
        rows.append(
            (
                "Label changes without a colour change (made to agree)",
                "",
                "",
                f"{_area(rec.new_reverted_px, px_b)} new, {_area(rec.resolved_reverted_px, px_b)} resolved; "
                f"now {_area(rec.agreed_lesion_px, px_b)} lesion in both, {_area(rec.agreed_other_px, px_b)} in neither",
                "segmentation noise, not counted as change; "
                + ("labelled by both photos' evidence" if rec.evidence else "AFTER reset to BEFORE")
                + " (colour residual "
                + (f"{rec.residual_delta_e:.1f} ΔE" if rec.residual_delta_e is not None else "unknown")
                + ("; colour change also judged net of the nearby skin's, for local light" if rec.local_light else "")
                + ")",
            )
        )
    rows += [
        (
            "Hair coverage of the region",
            _num(mb.hair_coverage, 1, pct=True),
            _num(ma.hair_coverage, 1, pct=True),
            _num(ch.hair_coverage_change, 1, pct=True, signed=True) + " pts",
            "hair-bearing area / ROI",
        ),
        (
            "Hair coverage of the area both photos show",
            _num(ch.hair_coverage_before_common, 1, pct=True),
            _num(ch.hair_coverage_after_common, 1, pct=True),
            _num(ch.hair_coverage_change_common, 1, pct=True, signed=True) + " pts",
            "same pixels in both photos: framing does not move it",
        ),
        (
            "Hair loss (SALT style)",
            _num(mb.hair_loss_percent, 1) + " %",
            _num(ma.hair_loss_percent, 1) + " %",
            _num(_diff(mb.hair_loss_percent, ma.hair_loss_percent), 1, signed=True) + " pts",
            "share of the ROI without hair; give the scalp as ROI",
        ),
        ("Regrown hair area", "", "", _area(ch.regrown_hair_px, px_b), "hair at follow-up only"),
        ("Lost hair area", "", "", _area(ch.lost_hair_px, px_b), "hair at month 0 only"),
    ]
    hrec = result.hair_reconciliation
    if hrec is not None:
        rows.append(
            (
                "Hair label changes without a colour change (made to agree)",
                "",
                "",
                f"{_area(hrec.regrown_reverted_px, px_b)} regrown, {_area(hrec.lost_reverted_px, px_b)} lost; "
                f"now {_area(hrec.agreed_hair_px, px_b)} hair in both, {_area(hrec.agreed_other_px, px_b)} in neither",
                "segmentation noise, not counted as change; "
                + ("labelled by both photos' evidence" if hrec.evidence else "AFTER reset to BEFORE")
                + "; the per-photo hair coverage above is not reconciled",
            )
        )
    if red is not None:
        note = "each photo's own lesions (CIELAB a*)"
        rows.append(_before_after("Lesion redness Δa* vs nearby skin", red.before.delta_a, red.after.delta_a, note))
        if red.sites_before is not None and red.sites_after is not None:
            note = f"same sites in both photos; follow-up colours {e(red.after_colour)}"
            rows.append(_before_after("Redness at month-0 lesion sites Δa*", red.sites_before.delta_a, red.sites_after.delta_a, note))
            note = "100·log10(R/G) of linear sRGB, vs nearby skin"
            s_b, s_a = red.sites_before.delta_ei, red.sites_after.delta_ei
            rows.append(_before_after("Erythema index at month-0 lesion sites Δ", s_b, s_a, note))
    body = "".join(
        f'<tr><th scope="row">{e(name)}</th><td>{b}</td><td>{a}</td><td>{c}</td><td class="note">{note}</td></tr>'
        for name, b, a, c, note in rows
    )
    return (
        '<table class="numbers"><thead><tr><th>Measure</th><th>Month 0 / before</th><th>Follow-up / after</th>'
        f"<th>Change</th><th>Note</th></tr></thead><tbody>{body}</tbody></table>"
    )


def _lesion_table(result: PairAnalysis) -> str:
    les = result.lesions
    if les is None or les.fates is None:
        return "<p>No lesion-by-lesion comparison: the pair could not be aligned.</p>"
    px = result.metrics_before.pixel_size_mm
    rows = []
    n_new = 0
    for f in les.fates.items:
        if f.fate == FATE_NEW:
            n_new += 1
            name = f"new {n_new}"
        else:
            name = str(f.before_id)
        rows.append(
            f'<tr><td>{e(name)}</td><td class="t">{e(f.fate)}</td><td>{_area(f.area_before_px, px)}</td>'
            f"<td>{_area(round(f.area_after_px), px)}</td><td>{_num(f.area_change_rel, 0, pct=True, signed=True)}</td>"
            f"<td>{f.centroid_x:,.0f}, {f.centroid_y:,.0f}</td></tr>"
        )
    if not rows:
        return "<p>No lesion of at least the minimum size in either photo.</p>"
    return (
        "<table><thead><tr><th>Lesion</th><th>Fate</th><th>Area, month 0</th><th>Area, follow-up</th>"
        "<th>Change</th><th>Centre x, y (px)</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>"
    )


def _registration(result: PairAnalysis, pics: ReportPictures) -> str:
    reg = result.registration
    q = reg.quality
    quality = ", ".join(f"{e(k)} {e(v)}" for k, v in q.items())
    parts = [
        f'<p>Status <span class="status status-{e(reg.status)}">{e(reg.status)}</span> — {e(reg.reason)}.</p>',
        f"<p>Method {e(reg.method)}; {reg.inlier_count:,} inlier matches; {quality}.</p>",
    ]
    if reg.homography is not None:
        mat = "<br>".join(" ".join(f"{v: .5g}" for v in row) for row in np.asarray(reg.homography))
        parts.append(f"<p>Homography (follow-up → month-0 pixels):<br><code>{mat}</code></p>")
    if pics.checkerboard is not None:
        parts.append(
            '<div class="row single">'
            + _img(
                pics.checkerboard,
                "checkerboard of month-0 and aligned follow-up tiles",
                "Checkerboard: tiles alternate between month 0 and the aligned follow-up; where the alignment is "
                "right, body outlines and marks run on across tile borders.",
            )
            + "</div>"
        )
    else:
        parts.append('<p class="warn">The pair could not be aligned: no change maps and no lesion fates.</p>')
    return "".join(parts)


def _provenance(result: PairAnalysis, generated: datetime) -> str:
    model = result.model or {}
    items = [
        ("Generated", generated.strftime("%Y-%m-%d %H:%M:%S UTC")),
        ("imgtool", __version__),
        ("Segmentation", result.options.method),
        ("Model", model.get("name")),
        ("Model SHA-256", model.get("sha256") or "none (no weights)"),
        ("Month-0 photo", result.before.path or "(array in memory)"),
        ("Month-0 SHA-256", result.before.sha256),
        ("Month-0 size", f"{result.before.width} × {result.before.height} px"),
        ("Follow-up photo", result.after.path or "(array in memory)"),
        ("Follow-up SHA-256", result.after.sha256),
        ("Follow-up size", f"{result.after.width} × {result.after.height} px"),
        ("Region of interest", result.roi_path or "whole body in view (non-background)"),
        ("Pixel size", "not given" if result.options.pixel_size_mm is None else f"{result.options.pixel_size_mm} mm"),
        ("Python", platform.python_version()),
    ]
    dl = "".join(f"<dt>{e(k)}</dt><dd class=\"{'hash' if 'SHA' in k else ''}\">{e(v)}</dd>" for k, v in items)
    return f'<dl class="prov">{dl}</dl>'


def render_html(result: PairAnalysis, pics: ReportPictures, *, generated: datetime | None = None) -> str:
    """The report page of one pair analysis.

    Parameters
    ----------
    result : PairAnalysis
        What :func:`imgtool.analyze_pair` returned.
    pics : ReportPictures
        Its pictures (:func:`imgtool.figure.render_pictures`).
    generated : datetime, optional
        Time stamp shown in the provenance; default now (UTC).

    Returns
    -------
    str
        A complete HTML5 document.
    """
    when = generated or datetime.now(timezone.utc)
    cap = pics.caption
    title = f"{cap.view + ': ' if cap.view else ''}{cap.before} to {cap.after}"
    findings = "".join(f"<li>{e(line)}</li>" for line in headline(result, arrow="→")) or "<li>No finding could be measured.</li>"
    warnings = "".join(f"<li>{e(w)}</li>" for w in result.warnings)
    aligned_note = " (aligned onto month 0)" if result.after_aligned is not None else " (not aligned)"
    sections = [
        f"<h1>imgtool report — {e(title)}</h1>",
        f'<p class="sub">{e(result.before.path or "month-0 photo")} → {e(result.after.path or "follow-up photo")}; '
        f"generated {e(when.strftime('%Y-%m-%d %H:%M UTC'))} by imgtool {e(__version__)}, "
        f"segmentation {e(result.options.method)}, registration {e(result.registration.status)}</p>",
        f'<div class="findings"><strong>Findings</strong><ul>{findings}</ul></div>',
    ]
    if warnings:
        sections.append(f'<div class="warn"><strong>Warnings</strong><ul>{warnings}</ul></div>')
    sections += [
        "<h2>Case figure</h2>",
        '<div class="row">'
        + _img(
            pics.case_before,
            f"{cap.title('before')} photo with arrows at lesions",
            f"{cap.title('before')}: arrows at the main lesions, numbered by size (all are in the lesion table).",
        )
        + _img(
            pics.case_after,
            f"{cap.title('after')} photo with arrows at lesions",
            f"{cap.title('after')}{aligned_note}: arrows tagged with the month-0 lesion they continue; new lesions in purple.",
        )
        + "</div>",
        "<h2>The pair side by side</h2>",
        '<div class="row">'
        + _img(pics.pair_before, f"{cap.title('before')} photo", cap.title("before"))
        + _img(pics.pair_after, f"{cap.title('after')} photo{aligned_note}", cap.title("after") + aligned_note)
        + "</div>",
        "<h2>Segmentation</h2>",
        '<div class="row">'
        + _img(pics.overlay_before, f"{cap.title('before')} with lesion outlines and hair area", cap.title("before"), OVERLAY_LEGEND)
        + _img(
            pics.overlay_after,
            f"{cap.title('after')} with lesion outlines and hair area",
            f"{cap.title('after')} (own frame)",
            OVERLAY_LEGEND,
        )
        + "</div>",
        "<h2>Change maps</h2>",
    ]
    if pics.lesion_change is not None and pics.hair_change is not None:
        sections.append(
            '<div class="row">'
            + _img(pics.lesion_change, "lesion change map on the month-0 photo", "Lesion change on month 0.", LESION_CHANGE_LEGEND)
            + _img(pics.hair_change, "hair change map on the month-0 photo", "Hair change, on month 0 in grey.", HAIR_CHANGE_LEGEND)
            + "</div>"
        )
    else:
        sections.append('<p class="warn">No change maps: the pair could not be aligned.</p>')
    sections += [
        "<h2>Numbers</h2>",
        _numbers_table(result),
        "<h2>Lesion by lesion</h2>",
        _lesion_table(result),
        "<h2>Registration quality</h2>",
        _registration(result, pics),
        "<h2>Provenance</h2>",
        _provenance(result, when),
        "<p>figure.png beside this page is the same analysis as one figure for papers; result.json and "
        "metrics.csv hold every number (docs/metrics.md defines each one).</p>",
    ]
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>imgtool report — {e(title)}</title><style>{_CSS}</style></head>\n<body>\n"
        + "\n".join(sections)
        + "\n</body></html>\n"
    )
