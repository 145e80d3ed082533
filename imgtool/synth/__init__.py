"""Phantom generator: realistic procedural photos and before/after pairs with exact truth.

See :mod:`imgtool.synth.core` for how phantoms are drawn and ``docs/phantoms.md`` for
what they look like and how close they are to real photos.
"""

from ._scene import BACKGROUNDS, VIEWS
from .core import (
    GENERATOR_VERSION,
    DiseaseChange,
    PhantomPair,
    SynthOptions,
    align_to_before,
    before_to_after_maps,
    map_after_to_before,
    render_pair,
    render_photo,
    true_metrics,
)
from .store import read_pair, synthesize, write_pair
from .textures import TextureBank, load_texture_bank, texture_files

__all__ = [
    "BACKGROUNDS",
    "GENERATOR_VERSION",
    "VIEWS",
    "DiseaseChange",
    "PhantomPair",
    "SynthOptions",
    "TextureBank",
    "align_to_before",
    "before_to_after_maps",
    "load_texture_bank",
    "map_after_to_before",
    "read_pair",
    "render_pair",
    "render_photo",
    "synthesize",
    "texture_files",
    "true_metrics",
    "write_pair",
]
