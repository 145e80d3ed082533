"""The small segmentation network: a U-Net with a strided stem and a light decoder.

Layout (``widths = (c0, c1, c2, c3, c4)``, strides relative to the input)::

    stem    3x3/2  3 -> c0, 3x3 c0 -> c0                       1/2
    enc k   3x3/2  c(k-1) -> ck, 3x3 ck -> ck   (k = 1..4)     1/4 .. 1/32
    dec k   upsample x2, concat skip, 1x1 -> ck, 3x3 ck -> ck   1/16 .. 1/2
    head    1x1 c0 -> classes, bilinear upsample x2             1/1

Every convolution is followed by batch normalisation and ReLU. The decoder fuses
the upsampled deeper features and the skip with a 1x1 convolution before its one
3x3 convolution, which keeps the cost of the high-resolution levels low: the budget
is at most 3 M parameters and 10 GFLOP per input megapixel (see :func:`count_flops`).
Input sides need not be multiples of 32: the decoder resizes to each skip's size.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..labels import NUM_CLASSES


@dataclass(frozen=True)
class NetworkConfig:
    """Architecture arguments of :class:`SmallUNet` (stored in the model card).

    Attributes
    ----------
    widths : tuple of int
        Channels at strides 2, 4, 8, 16, 32 (the number of levels is its length).
    in_channels : int
        Input channels (3: RGB).
    num_classes : int
        Output classes (4: the label contract).
    """

    widths: tuple[int, ...] = (16, 24, 48, 96, 160)
    in_channels: int = 3
    num_classes: int = NUM_CLASSES

    def __post_init__(self) -> None:
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))
        if len(self.widths) < 2 or min(self.widths) < 1:
            raise ValueError(f"widths must hold at least two positive channel counts, got {self.widths}")
        if self.in_channels < 1 or self.num_classes < 2:
            raise ValueError(f"need in_channels >= 1 and num_classes >= 2, got {self.in_channels}, {self.num_classes}")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "widths": list(self.widths)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> NetworkConfig:
        """Build from :meth:`to_dict`'s output; unknown keys raise ValueError."""
        unknown = set(d) - {"widths", "in_channels", "num_classes"}
        if unknown:
            raise ValueError(f"unknown architecture arguments: {', '.join(sorted(unknown))}")
        return cls(**{k: (tuple(v) if k == "widths" else int(v)) for k, v in d.items()})


class ConvBNReLU(nn.Sequential):
    """Convolution (no bias), batch normalisation, ReLU."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1) -> None:
        super().__init__(
            nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
        )


class _Down(nn.Sequential):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(ConvBNReLU(cin, cout, 3, stride=2), ConvBNReLU(cout, cout, 3))


class _Up(nn.Module):
    def __init__(self, cdeep: int, cskip: int) -> None:
        super().__init__()
        self.fuse = ConvBNReLU(cdeep + cskip, cskip, 1)
        self.conv = ConvBNReLU(cskip, cskip, 3)

    def forward(self, deep: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        up = F.interpolate(deep, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.conv(self.fuse(torch.cat([up, skip], dim=1)))


class SmallUNet(nn.Module):
    """The segmentation network; see the module docstring for the layout.

    Parameters
    ----------
    config : NetworkConfig
        Architecture arguments.

    Notes
    -----
    ``forward`` maps a ``(B, in_channels, H, W)`` float tensor (normalised as the
    model card says) to ``(B, num_classes, H, W)`` logits.
    """

    def __init__(self, config: NetworkConfig | None = None) -> None:
        super().__init__()
        self.config = config or NetworkConfig()
        w = self.config.widths
        self.downs = nn.ModuleList([_Down(self.config.in_channels, w[0])] + [_Down(w[i - 1], w[i]) for i in range(1, len(w))])
        self.ups = nn.ModuleList([_Up(w[i + 1], w[i]) for i in reversed(range(len(w) - 1))])
        self.head = nn.Conv2d(w[0], self.config.num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.config.in_channels:
            raise ValueError(f"expected input of shape (B, {self.config.in_channels}, H, W), got {tuple(x.shape)}")
        size = x.shape[-2:]
        skips = []
        for down in self.downs:
            x = down(x)
            skips.append(x)
        x = skips.pop()
        for up in self.ups:
            x = up(x, skips.pop())
        return F.interpolate(self.head(x), size=size, mode="bilinear", align_corners=False)


def count_parameters(net: nn.Module) -> int:
    """Number of trainable parameters of ``net``."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad)


def count_flops(net: nn.Module, height: int = 1024, width: int = 1024) -> int:
    """Floating-point operations of one forward pass on a ``(1, C, height, width)`` input.

    Counts 2 FLOP per multiply-accumulate of every convolution (weights times
    input window, over every output element), plus one per output element for a
    bias; normalisation, activations and resizing are not counted (they are
    memory-bound and, after folding batch norm, a few FLOP per element).

    Parameters
    ----------
    net : nn.Module
        The network (its ``config.in_channels`` gives C; default 3).
    height, width : int
        Input size.

    Returns
    -------
    int
        FLOP count. Divide by ``height * width / 1e6`` for FLOP per megapixel.
    """
    total = 0

    def hook(mod: nn.Conv2d, _inp: Any, out: torch.Tensor) -> None:
        nonlocal total
        macs_per_out = (mod.in_channels // mod.groups) * mod.kernel_size[0] * mod.kernel_size[1]
        total += out.numel() * (2 * macs_per_out + (1 if mod.bias is not None else 0))

    handles = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, nn.Conv2d)]
    cin = getattr(getattr(net, "config", None), "in_channels", 3)
    was_training = net.training
    try:
        net.eval()
        with torch.inference_mode():
            net(torch.zeros(1, cin, height, width, device=next(net.parameters()).device))
    finally:
        for h in handles:
            h.remove()
        net.train(was_training)
    return int(total)


def fold_batchnorm(net: nn.Module) -> nn.Module:
    """Fold every eval-mode BatchNorm that follows a convolution into that convolution.

    The result computes the same function in eval mode with one memory pass less per
    layer; use it for inference only (it modifies ``net`` in place and returns it).
    """
    for mod in net.modules():
        if isinstance(mod, ConvBNReLU) and isinstance(mod[1], nn.BatchNorm2d):
            conv, bn = mod[0], mod[1]
            scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
            fused = nn.Conv2d(
                conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride, padding=conv.padding, bias=True
            ).to(conv.weight.device, conv.weight.dtype)
            with torch.no_grad():
                fused.weight.copy_(conv.weight * scale.reshape(-1, 1, 1, 1))
                bias = conv.bias.detach() if conv.bias is not None else torch.zeros_like(bn.running_mean)
                fused.bias.copy_((bias - bn.running_mean) * scale + bn.bias.detach())
            mod[0] = fused
            mod[1] = nn.Identity()
    return net


__all__ = ["NetworkConfig", "SmallUNet", "count_flops", "count_parameters", "fold_batchnorm"]
