"""Model weights and their card: saving, hash-checked strict loading, device choice.

A model is two files side by side:

* ``<name>.safetensors``: the network's state dict (floating tensors stored as
  float16 to keep the file small; they are cast back to float32 on loading);
* ``<name>.json``: the model card: architecture arguments, classes, input
  normalisation, working resolution, tiling defaults, training data and split,
  measured metrics, and the SHA-256 of the weights file.

Loading never unpickles anything: safetensors holds only tensors, the card is JSON.
The weights' hash must match the card, and the state dict must match the
architecture exactly (strict loading); anything else is a :class:`ModelError`.
The shipped models live in the top-level ``models/`` folder, installed as the
package ``imgtool._models`` and found through the import system (the repository's
``models/`` folder in a source checkout).
"""

from __future__ import annotations

import importlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from ..errors import ModelError, UsageError
from ..io import file_sha256, write_bytes, write_json
from ..labels import CLASS_NAMES
from .network import NetworkConfig, SmallUNet, count_flops, count_parameters, fold_batchnorm

logger = logging.getLogger(__name__)

#: Name of the model that ``load_model(None)`` loads from the shipped models.
DEFAULT_MODEL_NAME: str = "unet_s_v5"
CARD_FORMAT: str = "imgtool-segmentation-model"
CARD_FORMAT_VERSION: int = 1
#: Input normalisation: ``(rgb / 255 - mean) / std`` per channel.
DEFAULT_MEAN: tuple[float, float, float] = (0.5, 0.5, 0.5)
DEFAULT_STD: tuple[float, float, float] = (0.25, 0.25, 0.25)


@dataclass(frozen=True)
class InputSpec:
    """How a photo is prepared for the network (stored in the card).

    Attributes
    ----------
    working_long_side : int
        Photos whose long side is longer are downscaled (area averaging) to this
        long side before the network runs; smaller photos run at their own size.
    tile_size : int
        Tile side in working-resolution pixels.
    overlap : int
        Least overlap of neighbouring tiles, in working-resolution pixels.
    mean, std : tuple of float
        Per-channel normalisation of ``rgb / 255``.
    """

    working_long_side: int = 1024
    tile_size: int = 768
    overlap: int = 128
    mean: tuple[float, ...] = DEFAULT_MEAN
    std: tuple[float, ...] = DEFAULT_STD

    def __post_init__(self) -> None:
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))
        if self.working_long_side < 32 or self.tile_size < 32 or not 0 <= self.overlap < self.tile_size:
            raise ValueError(f"bad input spec: {self}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError(f"mean and std need 3 values each (std > 0), got {self.mean}, {self.std}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "channel_order": "RGB",
            "scale": "rgb / 255",
            "mean": list(self.mean),
            "std": list(self.std),
            "working_long_side": self.working_long_side,
            "working_rule": "downscale (area) so the long side is at most working_long_side; never upscale",
            "tile_size": self.tile_size,
            "overlap": self.overlap,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> InputSpec:
        return cls(
            working_long_side=int(d["working_long_side"]),
            tile_size=int(d["tile_size"]),
            overlap=int(d["overlap"]),
            mean=tuple(d["mean"]),
            std=tuple(d["std"]),
        )


@dataclass(frozen=True)
class SegmentationModel:
    """A loaded segmentation network, ready for :func:`imgtool.segmentation.segment_labels`.

    Load it once with :func:`load_model` and pass it around.

    Attributes
    ----------
    name : str
        Model name (the weights file's stem).
    sha256 : str
        SHA-256 of the weights file.
    card : dict
        The model card.
    device : torch.device
        Where the network lives.
    network : torch.nn.Module
        The network, in eval mode, batch norm folded, channels-last memory format.
    input_spec : InputSpec
        Normalisation, working resolution and tiling defaults.
    augment : bool
        Test-time augmentation: average the class probabilities of the tile and its
        three mirror images (left-right, up-down, both). Four times the network's
        work for label maps that depend less on the photo's orientation and noise.
    """

    name: str
    sha256: str
    card: dict[str, Any] = field(repr=False)
    device: torch.device
    network: torch.nn.Module = field(repr=False, compare=False)
    input_spec: InputSpec
    augment: bool = False

    def info(self) -> dict[str, Any]:
        """``{"name", "sha256", "device", "augment"}``: the ``model`` entry of result files."""
        return {"name": self.name, "sha256": self.sha256, "device": self.device.type, "augment": self.augment}


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """The torch device for ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.

    Parameters
    ----------
    device : str or torch.device
        ``"auto"`` picks CUDA when it is available, else the CPU.

    Returns
    -------
    torch.device

    Raises
    ------
    UsageError
        An unknown device, or CUDA asked for where there is none.
    """
    if isinstance(device, torch.device):
        dev = device
    elif device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        try:
            dev = torch.device(device)
        except (RuntimeError, TypeError):
            raise UsageError(f"unknown device {device!r}; use auto, cpu or cuda") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UsageError("device cuda was asked for, but no CUDA GPU is available here; use --device cpu or auto")
    if dev.type not in ("cpu", "cuda"):
        raise UsageError(f"unsupported device {str(dev)!r}; use auto, cpu or cuda")
    return dev


def shipped_models_dir() -> Path:
    """The folder of the shipped models.

    Installed, it is the package ``imgtool._models`` (a data-only namespace package,
    found through the import system); in a source checkout or an editable install,
    where that package does not exist, it is the repository's ``models/`` folder.
    """
    try:
        pkg = importlib.import_module("imgtool._models")
    except ModuleNotFoundError:
        return Path(__file__).resolve().parents[2] / "models"
    return Path(next(iter(pkg.__path__)))


def _model_paths(name_or_path: str | os.PathLike | None) -> tuple[Path, Path]:
    """``(weights, card)`` paths of a shipped model name or a path to either file."""
    if name_or_path is None:
        name_or_path = DEFAULT_MODEL_NAME
    text = os.fspath(name_or_path)
    p = Path(text)
    if p.suffix in (".safetensors", ".json") or os.sep in text or (os.altsep and os.altsep in text):
        base = p.with_suffix("") if p.suffix in (".safetensors", ".json") else p
    else:
        base = shipped_models_dir() / text
    return base.with_suffix(".safetensors"), base.with_suffix(".json")


def read_card(path: str | os.PathLike) -> dict[str, Any]:
    """Read and check a model card.

    Raises
    ------
    ModelError
        Missing, unreadable, not JSON, or not an imgtool model card.
    """
    p = Path(path)
    if not p.is_file():
        raise ModelError(f"model card {p} not found")
    try:
        card = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"model card {p} is not readable JSON: {exc}") from None
    if not isinstance(card, dict) or card.get("format") != CARD_FORMAT:
        raise ModelError(f"{p} is not an imgtool model card (format {CARD_FORMAT!r} expected)")
    if card.get("format_version") != CARD_FORMAT_VERSION:
        raise ModelError(f"{p}: model card format_version {card.get('format_version')!r} is not supported")
    for key in ("architecture", "architecture_args", "classes", "input", "weights"):
        if key not in card:
            raise ModelError(f"{p}: model card lacks {key!r}")
    if list(card["classes"]) != list(CLASS_NAMES):
        raise ModelError(f"{p}: model classes {card['classes']} do not match the label contract {list(CLASS_NAMES)}")
    return card


def build_network(card: Mapping[str, Any]) -> SmallUNet:
    """An untrained network with the card's architecture."""
    if card["architecture"] != "SmallUNet":
        raise ModelError(f"unknown architecture {card['architecture']!r}")
    try:
        return SmallUNet(NetworkConfig.from_dict(dict(card["architecture_args"])))
    except (TypeError, ValueError) as exc:
        raise ModelError(f"bad architecture arguments in model card: {exc}") from None


def load_network(name_or_path: str | os.PathLike | None = None) -> tuple[SmallUNet, dict[str, Any], str]:
    """The trainable network of a model (batch norm not folded), on the CPU, hash checked.

    Returns
    -------
    (SmallUNet, dict, str)
        The network in train mode, its card and the weights' sha256.

    Raises
    ------
    ModelError
        As :func:`load_model`.
    """
    weights_path, card_path = _model_paths(name_or_path)
    card = read_card(card_path)
    if not weights_path.is_file():
        raise ModelError(f"model weights {weights_path} not found")
    digest = file_sha256(weights_path)
    expected = card["weights"].get("sha256")
    if digest != expected:
        raise ModelError(f"model weights {weights_path} are corrupt or changed: sha256 {digest[:12]}... does not match the card's {str(expected)[:12]}...")
    try:
        state = load_file(str(weights_path), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelError(f"model weights {weights_path} cannot be read: {exc}") from None
    net = build_network(card)
    reference = net.state_dict()
    state = {k: (v.to(reference[k].dtype) if k in reference else v) for k, v in state.items()}
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise ModelError(f"model weights {weights_path} do not fit the card's architecture: {first}") from None
    return net, card, digest


def load_model(name_or_path: str | os.PathLike | None = None, *, device: str | torch.device = "auto", augment: bool = False) -> SegmentationModel:
    """Load a segmentation model, checking its hash and loading its weights strictly.

    Parameters
    ----------
    name_or_path : str or path-like, optional
        A shipped model's name (see ``models/``), or the path of a model's
        ``.safetensors`` or ``.json`` file (the other must lie beside it).
        Default: the shipped default model.
    device : str or torch.device
        ``"auto"`` (CUDA when present), ``"cpu"`` or ``"cuda"``.
    augment : bool
        Test-time augmentation with mirror images (see :class:`SegmentationModel`).

    Returns
    -------
    SegmentationModel

    Raises
    ------
    ModelError
        A file is missing or corrupt, the hash does not match the card, or the
        weights do not fit the architecture.
    UsageError
        A bad device, or CUDA asked for without one.
    """
    dev = resolve_device(device)
    net, card, digest = load_network(name_or_path)
    weights_path, card_path = _model_paths(name_or_path)
    net.eval()
    fold_batchnorm(net)
    net = net.to(dev, memory_format=torch.channels_last)
    try:
        spec = InputSpec.from_dict(card["input"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"{card_path}: bad input section in model card: {exc}") from None
    logger.info("loaded model %s (sha256 %s...) on %s", weights_path.stem, digest[:12], dev)
    return SegmentationModel(name=weights_path.stem, sha256=digest, card=card, device=dev, network=net, input_spec=spec, augment=bool(augment))


def save_model(
    net: SmallUNet,
    path: str | os.PathLike,
    *,
    input_spec: InputSpec | None = None,
    extra: Mapping[str, Any] | None = None,
    half: bool = True,
) -> dict[str, Any]:
    """Write ``<path>.safetensors`` and its card ``<path>.json``.

    Parameters
    ----------
    net : SmallUNet
        The trained network (batch norm not folded).
    path : path-like
        Destination without suffix (a suffix is replaced); the stem is the model name.
    input_spec : InputSpec, optional
        Normalisation and working resolution; default :class:`InputSpec()`.
    extra : mapping, optional
        More card fields (training data and split, metrics, ...).
    half : bool
        Store floating tensors as float16.

    Returns
    -------
    dict
        The card that was written.
    """
    base = Path(path).with_suffix("")
    base.parent.mkdir(parents=True, exist_ok=True)
    state = {
        k: (v.detach().to("cpu", torch.float16 if half else v.dtype) if v.is_floating_point() else v.detach().cpu()).contiguous()
        for k, v in net.state_dict().items()
    }
    weights = base.with_suffix(".safetensors")
    write_bytes(weights, save(state, metadata={"format": CARD_FORMAT}))
    spec = input_spec or InputSpec()
    card: dict[str, Any] = {
        "format": CARD_FORMAT,
        "format_version": CARD_FORMAT_VERSION,
        "name": base.name,
        "architecture": "SmallUNet",
        "architecture_args": net.config.to_dict(),
        "classes": list(CLASS_NAMES),
        "input": spec.to_dict(),
        "parameters": count_parameters(net),
        "gflop_per_megapixel": round(count_flops(net, 1024, 1024) / (1024 * 1024 / 1e6) / 1e9, 3),
        "flop_counting": "2 FLOP per multiply-accumulate of every convolution at the working resolution, measured on a 1024x1024 input",
        **dict(extra or {}),
        "weights": {"file": weights.name, "sha256": file_sha256(weights), "dtype": "float16" if half else "float32"},
    }
    write_json(base.with_suffix(".json"), card)
    return card
