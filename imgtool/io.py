"""Image reading and atomic output writing.

Reading turns any supported photo (JPEG, PNG, TIFF; 8 or 16 bit; grayscale, RGB,
RGBA, palette, CMYK) into an upright ``(H, W, 3) uint8`` RGB array, applying the EXIF
orientation so that a phone photo stored sideways is analysed as the patient was
photographed. The pixel count is checked from the header before any decoding.

Writing never leaves a half-written file: every output goes to a temporary file in
the destination folder and is renamed over the target in one step. Written images
carry no metadata (no EXIF, no GPS, no text chunks) whatever the input had.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io as _io
import json
import logging
import os
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Iterator, Mapping, Sequence, Union

import numpy as np

from .errors import InputError, OutputError
from .labels import check_labels

logger = logging.getLogger(__name__)

#: Images with more pixels than this are refused from their header (100 megapixels).
DEFAULT_MAX_PIXELS: int = 100_000_000
#: Images smaller than this on either side are refused: nothing can be measured on them.
MIN_SIDE: int = 64

PathLike = Union[str, os.PathLike]
ImageSource = Union[PathLike, np.ndarray]

# PIL's own decompression-bomb guard is a module global; raising it must not race
# between threads that read with different limits.
_PIL_LIMIT_LOCK = threading.Lock()

_EXIF_ORIENTATION_TAG = 274


@dataclass(frozen=True)
class ImageInfo:
    """Where an image came from and what it is, as recorded in results.

    Attributes
    ----------
    path : str or None
        The path it was read from, or None for an array given in memory.
    width, height : int
        Size in pixels after the EXIF orientation was applied.
    sha256 : str
        SHA-256 of the file's bytes, or of the array's bytes for an in-memory array.
    orientation : int
        The EXIF orientation tag that was applied (1 = upright, as stored).
    """

    path: str | None
    width: int
    height: int
    sha256: str
    orientation: int = 1

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "width": self.width, "height": self.height, "sha256": self.sha256}


# --------------------------------------------------------------------------- reading


def file_sha256(path: PathLike, chunk: int = 1 << 20) -> str:
    """SHA-256 hex digest of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            block = f.read(chunk)
            if not block:
                break
            h.update(block)
    return h.hexdigest()


def array_sha256(array: np.ndarray) -> str:
    """SHA-256 of an array's shape, dtype and bytes (for images given in memory)."""
    h = hashlib.sha256()
    h.update(f"{array.shape}|{array.dtype.str}|".encode())
    h.update(np.ascontiguousarray(array).tobytes())
    return h.hexdigest()


def _apply_orientation(array: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation tag (1..8) to an ``(H, W, ...)`` array."""
    # The tag says how the stored pixels must be transformed to be upright.
    if orientation == 2:
        out = array[:, ::-1]
    elif orientation == 3:
        out = array[::-1, ::-1]
    elif orientation == 4:
        out = array[::-1, :]
    elif orientation == 5:
        out = np.swapaxes(array, 0, 1)
    elif orientation == 6:
        out = np.rot90(array, k=-1)
    elif orientation == 7:
        out = np.swapaxes(array[::-1, ::-1], 0, 1)  # transverse: its own inverse
    elif orientation == 8:
        out = np.rot90(array, k=1)
    else:
        out = array
    return np.ascontiguousarray(out)


def _to_uint8(array: np.ndarray) -> np.ndarray:
    """Scale an integer or float array to uint8 over its dtype's full range."""
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.bool_:
        return array.astype(np.uint8) * 255
    if np.issubdtype(array.dtype, np.integer):
        info = np.iinfo(array.dtype)
        if info.min < 0:
            array = array.astype(np.float64) - info.min
            top = float(info.max) - float(info.min)
        else:
            top = float(info.max)
        # uint16: 65535 / 257 = 255 exactly, so full range maps to full range.
        return np.clip(np.round(array.astype(np.float64) * (255.0 / top)), 0, 255).astype(np.uint8)
    if np.issubdtype(array.dtype, np.floating):
        finite = np.nan_to_num(array.astype(np.float64), nan=0.0, posinf=1.0, neginf=0.0)
        # Float images are taken as [0, 1] unless their values say otherwise.
        top = 1.0 if finite.size == 0 or float(finite.max()) <= 1.0 else 255.0
        return np.clip(np.round(finite * (255.0 / top)), 0, 255).astype(np.uint8)
    raise InputError(f"unsupported pixel type {array.dtype}")


def _channels_to_rgb(array: np.ndarray) -> np.ndarray:
    """Any of (H, W), (H, W, 1), (H, W, 2), (H, W, 3), (H, W, 4) -> (H, W, 3)."""
    if array.ndim == 2:
        return np.repeat(array[:, :, None], 3, axis=2)
    if array.ndim != 3:
        raise InputError(f"unsupported image shape {array.shape}")
    c = array.shape[2]
    if c == 1:
        return np.repeat(array, 3, axis=2)
    if c == 2:  # grey + alpha
        return np.repeat(array[:, :, :1], 3, axis=2)
    if c >= 3:
        # Alpha is dropped: a clinical photo's colour is in the RGB channels.
        return np.ascontiguousarray(array[:, :, :3])
    raise InputError(f"unsupported image shape {array.shape}")


@contextlib.contextmanager
def _pil_header_only_limit() -> Iterator[None]:
    """Switch off PIL's own decompression-bomb guard: callers check the size themselves,
    from the header, right after opening and before decoding."""
    from PIL import Image

    # Held only while PIL parses a header: decoding runs outside the lock.
    with _PIL_LIMIT_LOCK:
        old = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = old


def _decode_pil(img: Any) -> np.ndarray:
    """Decode an opened PIL image to an (H, W, 3) uint8 array, as stored (no orientation)."""
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        arr = np.asarray(img).astype(np.uint16)
        return _channels_to_rgb(_to_uint8(arr))
    if mode == "I":
        arr = np.asarray(img)
        # 'I' holds 32-bit ints; 16-bit PNGs often arrive this way with values <= 65535.
        top = 65535 if arr.size and int(arr.max()) <= 65535 and int(arr.min()) >= 0 else None
        if top is not None:
            return _channels_to_rgb(_to_uint8(arr.astype(np.uint16)))
        return _channels_to_rgb(_to_uint8(arr))
    if mode == "F":
        return _channels_to_rgb(_to_uint8(np.asarray(img)))
    if mode in ("P", "PA") and "transparency" in img.info:
        img = img.convert("RGBA")
    if mode != "RGB":
        img = img.convert("RGB")
    return np.ascontiguousarray(np.asarray(img, dtype=np.uint8))


def _decode_fallback(data: bytes, path: str) -> np.ndarray:
    """Decode what PIL cannot (16-bit colour TIFF, 16-bit colour PNG) with tifffile/OpenCV."""
    import cv2

    arr = None
    if data[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        try:
            import tifffile

            arr = tifffile.imread(_io.BytesIO(data))
            if arr.ndim == 3 and arr.shape[0] in (3, 4) and arr.shape[2] not in (3, 4):
                arr = np.moveaxis(arr, 0, -1)  # planar configuration
        except Exception:  # noqa: BLE001 - any tifffile failure means "try OpenCV"
            arr = None
    if arr is None:
        buf = np.frombuffer(data, dtype=np.uint8)
        arr = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED | cv2.IMREAD_IGNORE_ORIENTATION)
        if arr is None:
            raise InputError(f"{path}: not a readable image")
        if arr.ndim == 3 and arr.shape[2] >= 3:
            arr = arr[:, :, [2, 1, 0] + list(range(3, arr.shape[2]))]  # BGR(A) -> RGB(A)
    return _channels_to_rgb(_to_uint8(arr))


def read_image_header(path: PathLike) -> tuple[int, int, int]:
    """Size and orientation of an image from its header, without decoding pixels.

    Parameters
    ----------
    path : path-like
        Image file.

    Returns
    -------
    width, height, orientation : int
        Stored width and height in pixels and the EXIF orientation tag (1 if none).

    Raises
    ------
    InputError
        If the file is missing, empty or not an image.
    """
    from PIL import Image, UnidentifiedImageError

    p = Path(path)
    _check_file(p)
    try:
        with _pil_header_only_limit():
            img = Image.open(p)  # parses the header only
        with img:
            w, h = img.size
            orientation = _orientation_of(img)
    except UnidentifiedImageError:
        raise InputError(f"{p}: not a recognised image file (JPEG, PNG or TIFF)") from None
    except OSError as exc:
        raise InputError(f"{p}: cannot read image header ({exc})") from None
    return int(w), int(h), orientation


def _check_file(p: Path) -> None:
    if not p.exists():
        raise InputError(f"{p}: file not found")
    if p.is_dir():
        raise InputError(f"{p}: is a folder, not an image file")
    try:
        size = p.stat().st_size
    except OSError as exc:
        raise InputError(f"{p}: cannot access file ({exc.strerror})") from None
    if size == 0:
        raise InputError(f"{p}: file is empty")


def _orientation_of(img: Any) -> int:
    try:
        value = int(img.getexif().get(_EXIF_ORIENTATION_TAG, 1))
    except Exception:  # noqa: BLE001 - a corrupt EXIF block must not stop the analysis
        logger.warning("unreadable EXIF block; assuming upright orientation")
        value = 1
    return value if 1 <= value <= 8 else 1


def read_image(
    path: PathLike,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    min_side: int = MIN_SIDE,
) -> tuple[np.ndarray, ImageInfo]:
    """Read a photo as an upright RGB uint8 array.

    Parameters
    ----------
    path : path-like
        A JPEG, PNG or TIFF file (8 or 16 bit; grayscale, RGB, RGBA, palette, CMYK).
    max_pixels : int, optional
        Refuse images with more pixels than this, checked from the header before
        decoding. Default 100 megapixels.
    min_side : int, optional
        Refuse images whose shorter side is below this. Default 64.

    Returns
    -------
    image : (H, W, 3) uint8 ndarray
        RGB pixels, EXIF orientation applied.
    info : ImageInfo
        Path, oriented size, file hash and the orientation that was applied.

    Raises
    ------
    InputError
        Missing, empty, non-image, truncated or corrupt file; too many pixels; too small.
    """
    from PIL import Image, UnidentifiedImageError

    p = Path(path)
    _check_file(p)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise InputError(f"{p}: cannot read file ({exc.strerror})") from None
    digest = hashlib.sha256(data).hexdigest()

    try:
        with _pil_header_only_limit():
            img = Image.open(_io.BytesIO(data))  # parses the header only
        with img:
            w, h = img.size
            if w * h > max_pixels:
                raise InputError(
                    f"{p}: image has {w * h / 1e6:.1f} megapixels, over the limit of "
                    f"{max_pixels / 1e6:.1f} (raise it with --max-pixels)"
                )
            orientation = _orientation_of(img)
            try:
                img.load()
                arr = _decode_pil(img)
            except (OSError, ValueError, SyntaxError) as exc:
                if "truncated" in str(exc).lower() or "broken data stream" in str(exc).lower():
                    raise InputError(f"{p}: image file is truncated or corrupt") from None
                logger.debug("PIL could not decode %s (%s); trying fallback decoder", p, exc)
                arr = _decode_fallback(data, str(p))
    except UnidentifiedImageError:
        raise InputError(f"{p}: not a recognised image file (JPEG, PNG or TIFF)") from None
    except InputError:
        raise
    except (OSError, ValueError, SyntaxError) as exc:
        raise InputError(f"{p}: cannot decode image ({exc})") from None

    arr = _apply_orientation(arr, orientation)
    hh, ww = arr.shape[:2]
    if min(hh, ww) < min_side:
        raise InputError(f"{p}: image is {ww}x{hh} pixels, below the minimum of {min_side} px on a side")
    return arr, ImageInfo(path=str(p), width=int(ww), height=int(hh), sha256=digest, orientation=orientation)


def as_image(
    source: ImageSource,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    min_side: int = MIN_SIDE,
) -> tuple[np.ndarray, ImageInfo]:
    """Accept a path or an array and return ``(image, info)`` as :func:`read_image` does.

    Arrays are taken as already upright; grayscale, RGBA and 16-bit arrays are
    converted to ``(H, W, 3) uint8`` like files are.
    """
    if isinstance(source, np.ndarray):
        arr = _channels_to_rgb(_to_uint8(source))
        h, w = arr.shape[:2]
        if h * w > max_pixels:
            raise InputError(f"array has {h * w / 1e6:.1f} megapixels, over the limit of {max_pixels / 1e6:.1f}")
        if min(h, w) < min_side:
            raise InputError(f"array is {w}x{h} pixels, below the minimum of {min_side} px on a side")
        return arr, ImageInfo(path=None, width=int(w), height=int(h), sha256=array_sha256(source))
    if isinstance(source, (str, os.PathLike)):
        return read_image(source, max_pixels=max_pixels, min_side=min_side)
    raise TypeError(f"expected a path or a numpy array, got {type(source).__name__}")


def read_mask(source: ImageSource, *, shape: tuple[int, int] | None = None, name: str = "mask") -> np.ndarray:
    """Read a binary mask: any pixel that is not zero (in any channel) is inside.

    Parameters
    ----------
    source : path-like or ndarray
        Mask image or array.
    shape : (H, W), optional
        If given, the mask must have this size.
    name : str
        What the mask is, for error messages.

    Returns
    -------
    (H, W) bool ndarray

    Raises
    ------
    InputError
        Unreadable file or a size that differs from ``shape``.
    """
    if isinstance(source, np.ndarray):
        arr = source
        label = name
    else:
        arr, info = read_image(source, max_pixels=DEFAULT_MAX_PIXELS, min_side=1)
        label = f"{source}"
    mask = arr.any(axis=2) if arr.ndim == 3 else arr != 0
    if shape is not None and mask.shape != tuple(shape):
        raise InputError(
            f"{label}: {name} is {mask.shape[1]}x{mask.shape[0]} pixels but the image is {shape[1]}x{shape[0]}"
        )
    return np.ascontiguousarray(mask, dtype=bool)


# --------------------------------------------------------------------------- writing



def read_labels(source: ImageSource, *, name: str = "label map") -> tuple[np.ndarray, ImageInfo]:
    """Read a label map (single-channel PNG of values 0..3, see :mod:`imgtool.labels`).

    Parameters
    ----------
    source : path-like or (H, W) integer ndarray
        Label map file or array.
    name : str
        What it is, for error messages.

    Returns
    -------
    labels : (H, W) uint8 ndarray
    info : ImageInfo

    Raises
    ------
    InputError
        Unreadable file, or values outside 0..3 or differing channels (not a label map).
    """
    if isinstance(source, np.ndarray):
        arr, path, digest = source, None, array_sha256(source)
        info = None
    else:
        rgb, info = read_image(source, max_pixels=DEFAULT_MAX_PIXELS, min_side=1)
        if not (np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2])):
            raise InputError(f"{source}: {name} must be a single-channel image of values 0..3, got a colour image")
        arr, path, digest = rgb[..., 0], str(source), info.sha256
    try:
        labels = check_labels(arr, name)
    except ValueError as exc:
        raise InputError(f"{path or 'array'}: {exc}") from None
    if info is None:
        info = ImageInfo(path=path, width=int(labels.shape[1]), height=int(labels.shape[0]), sha256=digest)
    return labels, info


@contextlib.contextmanager
def atomic_write(path: PathLike, mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path``; rename it over ``path`` only on success.

    A crash or exception inside the block leaves ``path`` as it was (absent or old)
    and removes the temporary file.
    """
    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise OutputError(f"{folder}: cannot write here ({exc.strerror})") from None
    try:
        with os.fdopen(fd, mode, **({"newline": ""} if "b" not in mode else {})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        # mkstemp makes 0600 files; outputs are ordinary files.
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def encode_png(array: np.ndarray) -> bytes:
    """Encode a uint8 ``(H, W)`` or ``(H, W, 3)`` RGB array as PNG bytes with no metadata."""
    import cv2

    arr = np.ascontiguousarray(array)
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8) * 255
    if arr.dtype != np.uint8:
        raise ValueError(f"PNG output must be uint8, got {arr.dtype}")
    if arr.ndim == 3 and arr.shape[2] == 3:
        arr = arr[:, :, ::-1]  # OpenCV writes BGR
    elif arr.ndim == 3 and arr.shape[2] == 4:
        arr = arr[:, :, [2, 1, 0, 3]]
    elif arr.ndim != 2:
        raise ValueError(f"PNG output must be (H, W), (H, W, 3) or (H, W, 4), got {arr.shape}")
    # OpenCV writes only the pixel chunks: no EXIF, no text, no timestamps.
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(arr), [cv2.IMWRITE_PNG_COMPRESSION, 3])
    if not ok:
        raise OutputError("PNG encoding failed")
    return buf.tobytes()


def write_png(path: PathLike, array: np.ndarray) -> None:
    """Atomically write a uint8 image (label map, mask or RGB) as a metadata-free PNG.

    Parameters
    ----------
    path : path-like
        Destination file.
    array : (H, W) or (H, W, 3) uint8 ndarray
        Single-channel (label map, mask) or RGB image.
    """
    data = encode_png(array)
    write_bytes(path, data)


def write_bytes(path: PathLike, data: bytes) -> None:
    """Atomically write bytes to ``path``."""
    try:
        with atomic_write(path, "wb") as f:
            f.write(data)
    except OSError as exc:
        raise OutputError(f"{path}: cannot write ({exc.strerror or exc})") from None


def write_text(path: PathLike, text: str) -> None:
    """Atomically write UTF-8 text to ``path``."""
    write_bytes(path, text.encode("utf-8"))


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def to_json(obj: Any) -> str:
    """Serialise results to JSON text (NaN becomes null; numpy values become numbers)."""
    return json.dumps(_nan_to_none(obj), indent=2, default=_json_default, allow_nan=False) + "\n"


def _nan_to_none(obj: Any) -> Any:
    if isinstance(obj, float):
        return None if not np.isfinite(obj) else obj
    if isinstance(obj, np.floating):
        return None if not np.isfinite(obj) else float(obj)
    if isinstance(obj, Mapping):
        return {k: _nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_nan_to_none(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _nan_to_none(obj.tolist())
    return obj


def write_json(path: PathLike, obj: Any) -> None:
    """Atomically write ``obj`` as indented JSON."""
    write_text(path, to_json(obj))


def write_csv(path: PathLike, rows: Sequence[Mapping[str, Any]], fieldnames: Sequence[str] | None = None) -> None:
    """Atomically write rows of flat dicts as CSV (missing values are empty cells).

    Parameters
    ----------
    path : path-like
        Destination file.
    rows : sequence of mappings
        One mapping per row.
    fieldnames : sequence of str, optional
        Column order; by default the keys in order of first appearance.
    """
    if fieldnames is None:
        seen: dict[str, None] = {}
        for row in rows:
            for k in row:
                seen.setdefault(k, None)
        fieldnames = list(seen)
    buf = _io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(fieldnames), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _csv_cell(row.get(k)) for k in fieldnames})
    write_text(path, buf.getvalue())


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, (float, np.floating)):
        return "" if not np.isfinite(value) else repr(float(value))
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


def ensure_output_dir(path: PathLike) -> Path:
    """Create the output folder if needed and check that it is writable.

    Raises
    ------
    OutputError
        If the folder cannot be created or written.
    """
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out}: exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{out}: cannot create output folder ({exc.strerror})") from None
    try:
        fd, probe = tempfile.mkstemp(prefix=".imgtool-probe.", dir=out)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise OutputError(f"{out}: output folder is not writable ({exc.strerror})") from None
    return out
