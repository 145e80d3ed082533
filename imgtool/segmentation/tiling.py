"""Tiles with overlap and tapered blending, as pure functions.

An image larger than one tile is cut into overlapping tiles (:func:`make_tiles`),
each tile goes through the network, and the outputs are put back together by
:func:`blend_tiles`: each tile's output is multiplied by a weight that tapers to
almost zero at the tile's inner edges (:func:`tile_weight`), summed, and divided
by the summed weights, so no seam shows where tiles meet. Edges that lie on the
image border are not tapered. Where an image fits in one tile the output is the
network's output unchanged.

The functions work on numpy arrays and torch tensors alike (slicing and arithmetic
only); the arrays hold channels first, ``(C, H, W)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence, TypeVar

import numpy as np
import torch

ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)


@dataclass(frozen=True)
class Tile:
    """One tile's place in the image: rows ``y0:y1`` and columns ``x0:x1``.

    ``top``, ``bottom``, ``left`` and ``right`` say whether that edge lies inside the
    image (and is therefore tapered when blending) rather than on its border.
    """

    y0: int
    y1: int
    x0: int
    x1: int
    top: bool = False
    bottom: bool = False
    left: bool = False
    right: bool = False

    @property
    def slices(self) -> tuple[slice, slice]:
        """``(rows, cols)`` slices of the tile."""
        return slice(self.y0, self.y1), slice(self.x0, self.x1)

    @property
    def shape(self) -> tuple[int, int]:
        """``(height, width)`` of the tile."""
        return self.y1 - self.y0, self.x1 - self.x0


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of size ``tile`` covering ``0..length`` with at least ``overlap`` shared.

    Tiles are spread evenly; the first starts at 0 and the last ends at ``length``.

    Parameters
    ----------
    length : int
        Side of the image.
    tile : int
        Side of a tile (a single tile of size ``length`` when ``length <= tile``).
    overlap : int
        Least number of pixels shared by neighbouring tiles (``0 <= overlap < tile``).

    Returns
    -------
    list of int
    """
    if length < 1 or tile < 1:
        raise ValueError(f"length and tile must be positive, got {length}, {tile}")
    if not 0 <= overlap < tile:
        raise ValueError(f"overlap must be in [0, tile), got {overlap} for tile {tile}")
    if length <= tile:
        return [0]
    n = math.ceil((length - overlap) / (tile - overlap))
    return [round(i * (length - tile) / (n - 1)) for i in range(n)]


def make_tiles(shape: tuple[int, int], tile_size: int, overlap: int) -> list[Tile]:
    """Overlapping tiles that cover an image of ``shape``.

    Parameters
    ----------
    shape : (int, int)
        ``(height, width)`` of the image.
    tile_size : int
        Tile side; a side of the image shorter than this gives tiles of that side.
    overlap : int
        Least overlap between neighbouring tiles, in pixels.

    Returns
    -------
    list of Tile
        Row-major order.
    """
    h, w = int(shape[0]), int(shape[1])
    ys, xs = tile_starts(h, tile_size, overlap), tile_starts(w, tile_size, overlap)
    th, tw = min(tile_size, h), min(tile_size, w)
    return [
        Tile(y, y + th, x, x + tw, top=y > 0, bottom=y + th < h, left=x > 0, right=x + tw < w) for y in ys for x in xs
    ]


def _ramp(n: int, taper: int, start: bool, end: bool) -> np.ndarray:
    """A 1-D weight that rises over ``taper`` pixels at tapered ends (a raised cosine)."""
    r = np.ones(n, dtype=np.float32)
    if taper <= 0:
        return r
    t = min(taper, n // 2)
    # Weights in (0, 1): the outermost pixel keeps a small positive weight, so every
    # pixel is covered by a positive total even at a corner shared by four tiles.
    ramp = (0.5 - 0.5 * np.cos(np.pi * (np.arange(t, dtype=np.float32) + 0.5) / t)).astype(np.float32)
    if start:
        r[:t] = ramp
    if end:
        r[n - t :] = ramp[::-1]
    return r


def tile_weight(tile: Tile, taper: int) -> np.ndarray:
    """Blending weight of a tile: ``(h, w) float32``, tapering over ``taper`` pixels at inner edges."""
    h, w = tile.shape
    return np.outer(_ramp(h, taper, tile.top, tile.bottom), _ramp(w, taper, tile.left, tile.right))


def extract_tiles(image: ArrayT, tiles: Sequence[Tile]) -> list[ArrayT]:
    """Cut ``(C, H, W)`` ``image`` into the given tiles (views, not copies)."""
    return [image[..., t.y0 : t.y1, t.x0 : t.x1] for t in tiles]


def blend_tiles(outputs: Sequence[ArrayT], tiles: Sequence[Tile], shape: tuple[int, int], taper: int) -> ArrayT:
    """Put tile outputs back together into one ``(C, H, W)`` array.

    Parameters
    ----------
    outputs : sequence of (C, h, w) float ndarray or tensor
        One output per tile, of the tile's size.
    tiles : sequence of Tile
        Where each output belongs (from :func:`make_tiles`).
    shape : (int, int)
        ``(H, W)`` of the whole image.
    taper : int
        Width in pixels of the weight ramps (usually the tiles' overlap).

    Returns
    -------
    (C, H, W) float ndarray or tensor
        Same kind, dtype and device as ``outputs[0]``. With a single tile, that
        tile's output itself.
    """
    if len(outputs) != len(tiles) or not outputs:
        raise ValueError(f"need one output per tile, got {len(outputs)} outputs for {len(tiles)} tiles")
    for out, t in zip(outputs, tiles):
        if tuple(out.shape[-2:]) != t.shape:
            raise ValueError(f"tile output of shape {tuple(out.shape)} does not match tile {t.shape}")
    if len(tiles) == 1:
        return outputs[0]
    first = outputs[0]
    c = first.shape[0]
    if isinstance(first, torch.Tensor):
        acc = torch.zeros((c, *shape), dtype=first.dtype, device=first.device)
        norm = torch.zeros(shape, dtype=first.dtype, device=first.device)
        weights = [torch.as_tensor(tile_weight(t, taper), dtype=first.dtype, device=first.device) for t in tiles]
    else:
        acc = np.zeros((c, *shape), dtype=first.dtype)
        norm = np.zeros(shape, dtype=first.dtype)
        weights = [tile_weight(t, taper).astype(first.dtype) for t in tiles]
    for out, t, wt in zip(outputs, tiles, weights):
        ys, xs = t.slices
        acc[:, ys, xs] += out * wt
        norm[ys, xs] += wt
    return acc / norm
