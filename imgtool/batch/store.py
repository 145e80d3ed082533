"""The batch output folder: atomic pair folders, fingerprints for resume, results.csv.

Layout of ``OUT``::

    OUT/<pair_id>/      one pair's contract files (see imgtool.report) and batch.json
    OUT/results.csv     one row per manifest pair, rebuilt from the pair folders
    OUT/.partial/       pair folders being built (each renamed into place when complete)

A pair folder is built under ``.partial`` and renamed into place, so it is either
absent or complete; ``batch.json``, written last, records the pair's status, error,
fingerprint and flat metrics row. ``results.csv`` is always rebuilt from the
``batch.json`` files, never appended to, so a killed batch never leaves a corrupt table.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import socket
import tempfile
import uuid
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from ..errors import OutputError, UsageError
from ..io import file_sha256, write_csv, write_json
from .manifest import Manifest

logger = logging.getLogger(__name__)

BATCH_JSON = "batch.json"
RESULTS_CSV = "results.csv"
PARTIAL_DIR = ".partial"
#: Status values of a pair in batch.json and results.csv ("pending": not run yet).
STATUSES: tuple[str, ...] = ("done", "failed", "pending")


def fingerprint(inputs: Mapping[str, str | None], settings: Mapping[str, Any], model: Mapping[str, Any] | None, version: str) -> dict[str, Any]:
    """What a pair's result depends on, and its digest.

    Parameters
    ----------
    inputs : mapping of role to path or None
        ``before``, ``after``, ``roi`` files; each is hashed (sha256).
    settings : mapping
        The analysis settings of this pair (``AnalysisOptions.to_dict()``).
    model : mapping or None
        result.json's model entry (name, sha256, device).
    version : str
        imgtool's version.

    Returns
    -------
    dict
        ``{"inputs": {role: sha256 or None}, "settings", "model", "imgtool_version", "digest"}``.

    Raises
    ------
    OSError
        An input cannot be read.
    """
    doc = {
        "inputs": {k: (None if v is None else file_sha256(v)) for k, v in inputs.items()},
        "settings": dict(settings),
        "model": None if model is None else dict(model),
        "imgtool_version": version,
    }
    doc["digest"] = hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()
    return doc


def pair_dir(out: Path, pair_id: str) -> Path:
    """``out/pair_id``, checked to resolve to a direct child of ``out``.

    Raises
    ------
    UsageError
        The folder would lie outside ``out`` (a pair_id that escapes it).
    """
    root = out.resolve()
    target = (root / pair_id).resolve()
    if target.parent != root or target.name != pair_id:
        raise UsageError(f"pair_id {pair_id!r} does not name a folder directly inside {out}")
    return root / pair_id


def read_record(out: Path, pair_id: str) -> dict[str, Any] | None:
    """The pair's batch.json, or None when the folder or the file is missing or unreadable."""
    path = pair_dir(out, pair_id) / BATCH_JSON
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def is_complete(out: Path, pair_id: str, digest: str) -> bool:
    """Whether the pair's folder holds a finished, successful result made with ``digest``.

    Complete means: batch.json says ``done`` with the same fingerprint digest, and
    every file it lists is present.
    """
    rec = read_record(out, pair_id)
    if rec is None or rec.get("status") != "done" or rec.get("fingerprint", {}).get("digest") != digest:
        return False
    folder = pair_dir(out, pair_id)
    return all((folder / name).is_file() for name in rec.get("files", []))


def commit_pair(out: Path, pair_id: str, record: Mapping[str, Any], write: Callable[[Path], Sequence[str]] | None = None) -> Path:
    """Build a pair's folder under ``.partial`` and rename it into place.

    Parameters
    ----------
    out : Path
        The batch output folder.
    pair_id : str
        The pair.
    record : mapping
        batch.json's content; ``files`` is added (the names ``write`` made).
    write : callable, optional
        ``write(folder) -> file names``: writes the pair's contract files (none for a failed pair).

    Returns
    -------
    Path
        The pair's folder.

    Raises
    ------
    OutputError
        The folder cannot be written or renamed.
    """
    final = pair_dir(out, pair_id)
    partial = out.resolve() / PARTIAL_DIR / pair_id
    try:
        partial.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f"{_owner()}.", dir=partial))
    except OSError as exc:
        raise OutputError(f"{partial}: cannot create a working folder ({exc.strerror})") from None
    try:
        files = list(write(tmp)) if write is not None else []
        write_json(tmp / BATCH_JSON, {**record, "files": files})
        os.chmod(tmp, 0o755)
        if final.exists():
            # Replace an older result: move it aside, move the new one in, delete the old one.
            # A kill in between leaves no folder (the pair is recomputed), never a mixed one.
            old = partial / f"{_owner()}.old.{uuid.uuid4().hex[:8]}"
            os.rename(final, old)
            os.rename(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, final)
        with contextlib.suppress(OSError):
            partial.rmdir()
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise OutputError(f"{final}: cannot write the pair's folder ({exc.strerror or exc})") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def _owner() -> str:
    """host-pid: whose working folder this is (shards on several machines share OUT)."""
    return f"{socket.gethostname()}-{os.getpid()}"


def clean_partial(out: Path, pair_ids: Sequence[str]) -> int:
    """Remove working folders that a killed run left for these pairs; return how many.

    Only the given pairs' leftovers (``.partial/<pair_id>/``) are removed, so shards of
    one manifest that share ``out`` never delete each other's folders in flight.
    """
    partial = out.resolve() / PARTIAL_DIR
    n = 0
    for pair_id in pair_ids:
        folder = partial / pair_id
        if folder.is_dir():
            shutil.rmtree(folder, ignore_errors=True)
            n += 1
    return n


def results_rows(out: Path, manifest: Manifest) -> list[dict[str, Any]]:
    """One row per manifest pair from its folder's batch.json (``pending`` when there is none).

    Columns: the manifest's (pass-through included), ``status``, ``error``, ``seconds``,
    then the flat metric columns of result.json (as in each pair's metrics.csv).
    """
    rows = []
    for job in manifest.jobs:
        rec = read_record(out, job.pair_id)
        row: dict[str, Any] = {c: job.columns.get(c, "") for c in manifest.columns}
        if rec is None:
            row.update(status="pending", error=None, seconds=None)
        else:
            row.update(status=rec.get("status"), error=rec.get("error"), seconds=rec.get("seconds"))
            for k, v in (rec.get("metrics") or {}).items():
                row.setdefault(k, v)
        rows.append(row)
    return rows


def write_results(out: Path, manifest: Manifest) -> Path:
    """Rebuild ``out/results.csv`` from the pair folders (atomically); return its path."""
    rows = results_rows(out, manifest)
    lead = [*manifest.columns, "status", "error", "seconds"]
    seen: dict[str, None] = dict.fromkeys(lead)
    for row in rows:
        for k in row:
            seen.setdefault(k, None)
    path = out.resolve() / RESULTS_CSV
    write_csv(path, rows, fieldnames=list(seen))
    return path
