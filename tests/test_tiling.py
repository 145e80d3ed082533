"""Tiling as pure functions: coverage, identity round trip, seams with a real network."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from imgtool.segmentation.network import NetworkConfig, SmallUNet
from imgtool.segmentation.tiling import blend_tiles, extract_tiles, make_tiles, tile_starts, tile_weight


@pytest.mark.parametrize("length,tile,overlap", [(100, 100, 10), (101, 100, 10), (1000, 256, 32), (777, 128, 0), (50, 64, 8)])
def test_tile_starts_cover_with_overlap(length: int, tile: int, overlap: int) -> None:
    starts = tile_starts(length, tile, overlap)
    side = min(tile, length)
    assert starts[0] == 0 and starts[-1] + side == length
    gaps = np.diff(starts)
    assert np.all(gaps > 0)
    assert np.all(side - gaps >= overlap)  # neighbours share at least `overlap` pixels


def test_tile_starts_rejects_bad_overlap() -> None:
    with pytest.raises(ValueError, match="overlap"):
        tile_starts(100, 32, 32)


def test_identity_model_round_trip_numpy_and_torch(rng: np.random.Generator) -> None:
    image = rng.normal(size=(3, 301, 517)).astype(np.float32)
    tiles = make_tiles(image.shape[1:], 128, 24)
    assert len(tiles) == 3 * 5
    out = blend_tiles(extract_tiles(image, tiles), tiles, image.shape[1:], taper=24)
    np.testing.assert_allclose(out, image, rtol=1e-6, atol=1e-6)
    timg = torch.from_numpy(image)
    tout = blend_tiles(extract_tiles(timg, tiles), tiles, image.shape[1:], taper=24)
    np.testing.assert_allclose(tout.numpy(), image, rtol=1e-6, atol=1e-6)


def test_weights_taper_only_inner_edges() -> None:
    tiles = make_tiles((200, 200), 128, 32)
    w = tile_weight(tiles[0], 32)  # top-left tile: border on top and left, inner edges right and bottom
    assert w[0, 0] == pytest.approx(1.0) and w[64, 0] == pytest.approx(1.0)
    assert 0 < w[-1, -1] < 0.01 and 0 < w[64, -1] < 0.05
    assert np.all(w > 0)


def test_single_tile_is_network_output_unchanged() -> None:
    torch.manual_seed(0)
    net = SmallUNet(NetworkConfig(widths=(4, 8, 8))).eval()
    x = torch.randn(3, 90, 120)
    tiles = make_tiles(x.shape[1:], 128, 16)
    assert len(tiles) == 1
    with torch.inference_mode():
        whole = net(x[None])[0]
        tiled = blend_tiles([net(t[None])[0] for t in extract_tiles(x, tiles)], tiles, x.shape[1:], taper=16)
    assert torch.equal(tiled, whole)


def test_seams_stay_small_with_a_real_network() -> None:
    torch.manual_seed(0)
    net = SmallUNet(NetworkConfig(widths=(4, 8, 8))).eval()
    # A smooth image with structure, so the network's output varies in space.
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 256), torch.linspace(-1, 1, 320), indexing="ij")
    x = torch.stack([torch.sin(5 * xx), torch.cos(4 * yy), xx * yy])
    tiles = make_tiles(x.shape[1:], 128, 48)
    with torch.inference_mode():
        whole = net(x[None])[0]
        outs = [net(t[None])[0] for t in extract_tiles(x, tiles)]
    tapered = blend_tiles(outs, tiles, x.shape[1:], taper=48)
    flat = blend_tiles(outs, tiles, x.shape[1:], taper=0)  # plain averaging of overlaps
    spread = float(whole.max() - whole.min())
    err = float((tapered - whole).abs().max())
    # Where tiles meet, the tapered blend stays within 0.1 % of the output's range of
    # the untiled output, and well below the error of a plain average.
    assert err < 1e-3 * spread
    assert err < 0.1 * float((flat - whole).abs().max())
