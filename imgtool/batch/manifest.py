"""Batch manifests: which pairs to analyse, checked before anything is written.

Two layouts of one CSV file (UTF-8, header row):

* **pairs**: ``pair_id, before, after`` and optionally ``patient_id, view, timepoint,
  pixel_size_mm, roi``; one pair per row;
* **longitudinal**: ``patient_id, view, timepoint, image`` (optionally ``pixel_size_mm,
  roi``); one photo per row. Every later timepoint of a patient's view is compared
  with the first one (and, with ``consecutive``, with the previous one).

Any other column passes through unchanged into results.csv. Relative paths resolve
against the manifest's folder. Every problem with the manifest itself is a
:class:`~imgtool.errors.UsageError` naming the line, raised before any output exists;
a missing photo is not: that pair fails at run time and the batch goes on.
"""

from __future__ import annotations

import csv
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ..errors import UsageError
from ..io import PathLike

PAIR_COLUMNS: tuple[str, ...] = ("pair_id", "before", "after")
LONGITUDINAL_COLUMNS: tuple[str, ...] = ("patient_id", "view", "timepoint", "image")
#: Columns that results.csv adds; a manifest may not use them.
RESERVED_COLUMNS: tuple[str, ...] = ("status", "error", "seconds")
#: Names inside an output folder that a pair folder may not take.
RESERVED_NAMES: frozenset[str] = frozenset({"results.csv"})
MAX_PAIR_ID_LENGTH: int = 128


@dataclass(frozen=True)
class PairJob:
    """One pair of a batch.

    Attributes
    ----------
    pair_id : str
        The pair's folder name inside the output folder (checked by :func:`check_pair_id`).
    line : int
        The manifest line it came from (the header is line 1).
    before, after : str
        Paths of the photos, resolved against the manifest's folder.
    roi : str or None
        Path of the ROI mask (BEFORE's frame).
    pixel_size_mm : float or None
        BEFORE's pixel side, overriding the batch setting.
    view : str or None
        Body view for the report.
    columns : dict of str to str
        The row as results.csv shows it (manifest columns, in order).
    """

    pair_id: str
    line: int
    before: str
    after: str
    roi: str | None = None
    pixel_size_mm: float | None = None
    view: str | None = None
    columns: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Manifest:
    """A checked manifest.

    Attributes
    ----------
    path : Path
        The CSV file.
    jobs : tuple of PairJob
        The pairs, in manifest order (longitudinal: by patient, view, then time).
    columns : tuple of str
        results.csv's leading columns (manifest columns, pass-through included).
    longitudinal : bool
        Whether the manifest gave one photo per row.
    """

    path: Path
    jobs: tuple[PairJob, ...]
    columns: tuple[str, ...]
    longitudinal: bool

    def shard(self, index: int, count: int) -> Manifest:
        """The pairs of shard ``index`` of ``count`` (1-based), dealt round-robin.

        Raises
        ------
        UsageError
            ``index`` not in 1..count.
        """
        if count < 1 or not 1 <= index <= count:
            raise UsageError(f"shard must be I/N with 1 <= I <= N, got {index}/{count}")
        return Manifest(self.path, self.jobs[index - 1 :: count], self.columns, self.longitudinal)


def check_pair_id(pair_id: str, line: int) -> str:
    """Return ``pair_id`` if it is a safe folder name, else raise UsageError naming ``line``.

    A pair_id is refused when it is empty, longer than :data:`MAX_PAIR_ID_LENGTH`,
    contains a path separator or a control character, starts with a dot, contains
    ``..``, or is a name the output folder uses itself (``results.csv``).
    """
    why = None
    if not pair_id:
        why = "is empty"
    elif len(pair_id) > MAX_PAIR_ID_LENGTH:
        why = f"is longer than {MAX_PAIR_ID_LENGTH} characters"
    elif "/" in pair_id or "\\" in pair_id:
        why = "contains a path separator"
    elif ".." in pair_id:
        why = "contains '..'"
    elif pair_id.startswith("."):
        why = "starts with a dot"
    elif any(unicodedata.category(c).startswith("C") for c in pair_id):
        why = "contains a control character"
    elif pair_id != pair_id.strip():
        why = "starts or ends with white space"
    elif pair_id.lower() in RESERVED_NAMES or ":" in pair_id:
        why = "is a reserved name" if ":" not in pair_id else "contains ':'"
    if why is not None:
        raise UsageError(f"line {line}: pair_id {pair_id!r} {why}; it names a folder, so use letters, digits, '-', '_' and '.'")
    return pair_id


def _parse_pixel_size(text: str, line: int) -> float | None:
    text = text.strip()
    if not text:
        return None
    try:
        v = float(text)
    except ValueError:
        raise UsageError(f"line {line}: pixel_size_mm {text!r} is not a number") from None
    if not (np.isfinite(v) and v > 0):
        raise UsageError(f"line {line}: pixel_size_mm must be a positive number, got {text!r}")
    return v


def _resolve(base: Path, text: str) -> str:
    p = Path(text.strip())
    return str(p if p.is_absolute() else base / p)


def _read_rows(path: Path) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            rows = [(reader.line_num, r) for r in reader]
    except FileNotFoundError:
        raise UsageError(f"{path}: manifest not found") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise UsageError(f"{path}: cannot read the manifest as UTF-8 CSV ({exc})") from None
    rows = [(n, r) for n, r in rows if any(c.strip() for c in r)]
    if not rows:
        raise UsageError(f"{path}: the manifest is empty (it needs a header row and at least one row)")
    header = [c.strip() for c in rows[0][1]]
    if len(set(header)) != len(header) or "" in header:
        raise UsageError(f"{path}: line 1: column names must be non-empty and distinct, got {header}")
    for name in RESERVED_COLUMNS:
        if name in header:
            raise UsageError(f"{path}: line 1: column {name!r} is reserved for results.csv; rename it")
    out = []
    for n, r in rows[1:]:
        if len(r) > len(header):
            raise UsageError(f"{path}: line {n}: {len(r)} cells but the header has {len(header)} columns")
        out.append((n, {h: (r[i] if i < len(r) else "") for i, h in enumerate(header)}))
    if not out:
        raise UsageError(f"{path}: the manifest has a header but no rows")
    return header, out


def read_manifest(path: PathLike, *, consecutive: bool = False) -> Manifest:
    """Read and check a batch manifest.

    Parameters
    ----------
    path : path-like
        The CSV file (pairs or longitudinal layout, see the module docstring).
    consecutive : bool
        Longitudinal layout: also compare each timepoint with the previous one.

    Returns
    -------
    Manifest

    Raises
    ------
    UsageError
        Unreadable or empty CSV, a missing required column, an empty cell in a required
        column, a bad or duplicate pair_id, a bad pixel size, a duplicate timepoint.
    """
    p = Path(path)
    header, rows = _read_rows(p)
    base = p.resolve().parent
    if all(c in header for c in PAIR_COLUMNS):
        jobs = _pair_jobs(p, base, rows)
        columns = tuple(header)
        longitudinal = False
    elif all(c in header for c in LONGITUDINAL_COLUMNS):
        jobs = _longitudinal_jobs(p, base, header, rows, consecutive)
        extra = [c for c in header if c not in LONGITUDINAL_COLUMNS and c not in ("pixel_size_mm", "roi")]
        columns = ("pair_id", "patient_id", "view", "baseline", "timepoint", "comparison", "before", "after", "pixel_size_mm", "roi", *extra)
        longitudinal = True
    else:
        missing = [c for c in PAIR_COLUMNS if c not in header]
        raise UsageError(
            f"{p}: line 1: missing required column(s) {', '.join(missing)} "
            f"(give pair_id, before, after; or patient_id, view, timepoint, image for one photo per row)"
        )
    seen: dict[str, int] = {}
    for job in jobs:
        key = job.pair_id.casefold()
        if key in seen:
            raise UsageError(f"{p}: line {job.line}: pair_id {job.pair_id!r} repeats line {seen[key]} (pair_ids name folders and must be unique)")
        seen[key] = job.line
    return Manifest(p, tuple(jobs), columns, longitudinal)


def _required(p: Path, n: int, row: Mapping[str, str], names: Sequence[str]) -> None:
    for name in names:
        if not row[name].strip():
            raise UsageError(f"{p}: line {n}: {name} is empty")


def _pair_jobs(p: Path, base: Path, rows: list[tuple[int, dict[str, str]]]) -> list[PairJob]:
    jobs = []
    for n, row in rows:
        _required(p, n, row, PAIR_COLUMNS)
        try:
            pair_id = check_pair_id(row["pair_id"], n)
            px = _parse_pixel_size(row.get("pixel_size_mm", ""), n)
        except UsageError as exc:
            raise UsageError(f"{p}: {exc}") from None
        roi = row.get("roi", "").strip()
        jobs.append(
            PairJob(
                pair_id=pair_id,
                line=n,
                before=_resolve(base, row["before"]),
                after=_resolve(base, row["after"]),
                roi=_resolve(base, roi) if roi else None,
                pixel_size_mm=px,
                view=row.get("view", "").strip() or None,
                columns=dict(row),
            )
        )
    return jobs


def _natural_key(text: str) -> tuple[tuple[int, object], ...]:
    """Sort key that puts "m2" before "m10" and "2" before "10"."""
    parts = re.split(r"(\d+(?:\.\d+)?)", text.strip())
    return tuple((0, float(s)) if i % 2 else (1, s) for i, s in enumerate(parts) if s)


def _safe_id(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]+", "-", text.strip()).strip("-.") or "x"


def _longitudinal_jobs(
    p: Path, base: Path, header: Sequence[str], rows: list[tuple[int, dict[str, str]]], consecutive: bool
) -> list[PairJob]:
    groups: dict[tuple[str, str], list[tuple[int, dict[str, str]]]] = {}
    for n, row in rows:
        _required(p, n, row, LONGITUDINAL_COLUMNS)
        try:
            _parse_pixel_size(row.get("pixel_size_mm", ""), n)
        except UsageError as exc:
            raise UsageError(f"{p}: {exc}") from None
        groups.setdefault((row["patient_id"].strip(), row["view"].strip()), []).append((n, row))
    extra = [c for c in header if c not in LONGITUDINAL_COLUMNS and c not in ("pixel_size_mm", "roi")]
    jobs = []
    for (patient, view), visits in groups.items():
        visits.sort(key=lambda nr: _natural_key(nr[1]["timepoint"]))
        for (n0, r0), (n1, r1) in zip(visits, visits[1:]):
            if _natural_key(r0["timepoint"]) == _natural_key(r1["timepoint"]):
                raise UsageError(f"{p}: line {n1}: patient {patient!r}, view {view!r} has timepoint {r1['timepoint']!r} twice (line {n0})")
        comparisons = [(visits[0], v, "baseline") for v in visits[1:]]
        if consecutive:
            comparisons += [(a, b, "previous") for a, b in zip(visits[1:], visits[2:])]
        for (nb, rb), (na, ra), kind in comparisons:
            tb, ta = rb["timepoint"].strip(), ra["timepoint"].strip()
            pair_id = "_".join(_safe_id(s) for s in (patient, view, tb, "to", ta))
            try:
                check_pair_id(pair_id[:MAX_PAIR_ID_LENGTH], na)
            except UsageError as exc:
                raise UsageError(f"{p}: {exc}") from None
            roi = rb.get("roi", "").strip()
            cols = {
                "pair_id": pair_id,
                "patient_id": patient,
                "view": view,
                "baseline": tb,
                "timepoint": ta,
                "comparison": kind,
                "before": rb["image"],
                "after": ra["image"],
                "pixel_size_mm": rb.get("pixel_size_mm", ""),
                "roi": rb.get("roi", ""),
                **{c: ra[c] for c in extra},
            }
            jobs.append(
                PairJob(
                    pair_id=pair_id[:MAX_PAIR_ID_LENGTH],
                    line=na,
                    before=_resolve(base, rb["image"]),
                    after=_resolve(base, ra["image"]),
                    roi=_resolve(base, roi) if roi else None,
                    pixel_size_mm=_parse_pixel_size(rb.get("pixel_size_mm", ""), nb),
                    view=view,
                    columns=cols,
                )
            )
    return jobs
