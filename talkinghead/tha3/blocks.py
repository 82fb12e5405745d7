"""Building blocks shared by the five THA3 networks.

Every block is an `nn.Sequential` laid out in the original order, so that parameter names
(`0.weight`, `2.bias`, `resnet_path.3.1.weight`, ...) line up with the published state dicts.
`separable=True` swaps a dense KxK convolution for a depthwise KxK + pointwise 1x1 pair.
Activations are passed as constructors (`act()` makes one), torchvision style.
"""
from __future__ import annotations

from functools import partial
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Act = Callable[[], nn.Module]

relu: Act = partial(nn.ReLU, inplace=True)
leaky_relu_01: Act = partial(nn.LeakyReLU, 0.1, inplace=True)


def conv3(in_ch: int, out_ch: int, bias: bool = False) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=bias)


class SeparableConv(nn.Sequential):
    """Depthwise KxK (or transposed, for upsampling) followed by a pointwise 1x1."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int = 3, stride: int = 1,
                 padding: int | None = None, transposed: bool = False, bias: bool = False):
        padding = kernel_size // 2 if padding is None else padding
        conv = nn.ConvTranspose2d if transposed else nn.Conv2d
        super().__init__(
            conv(in_ch, in_ch, kernel_size, stride, padding, groups=in_ch, bias=False),
            nn.Conv2d(in_ch, out_ch, 1, bias=bias))


class ConvNormAct(nn.Sequential):
    """conv -> InstanceNorm(affine) -> act. Separable convs are inlined (dw, pw, norm, act) as in THA3."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int = 3, stride: int = 1,
                 padding: int | None = None, *, act: Act, separable: bool = False,
                 transposed: bool = False):
        padding = kernel_size // 2 if padding is None else padding
        if separable:
            convs = list(SeparableConv(in_ch, out_ch, kernel_size, stride, padding, transposed))
        else:
            conv = nn.ConvTranspose2d if transposed else nn.Conv2d
            convs = [conv(in_ch, out_ch, kernel_size, stride, padding, bias=False)]
        super().__init__(*convs, nn.InstanceNorm2d(out_ch, affine=True), act())


def down_block(in_ch: int, out_ch: int, *, act: Act, separable: bool) -> ConvNormAct:
    """Halves the resolution: 4x4 stride-2 conv."""
    return ConvNormAct(in_ch, out_ch, 4, 2, 1, act=act, separable=separable)


def up_block(in_ch: int, out_ch: int, *, act: Act, separable: bool) -> ConvNormAct:
    """Doubles the resolution: 4x4 stride-2 transposed conv."""
    return ConvNormAct(in_ch, out_ch, 4, 2, 1, act=act, separable=separable, transposed=True)


class ResnetBlock(nn.Module):
    """x + (conv3 -> norm -> act -> conv3 -> norm)(x)."""

    def __init__(self, channels: int, *, act: Act, separable: bool):
        super().__init__()
        conv = SeparableConv if separable else conv3
        self.resnet_path = nn.Sequential(
            conv(channels, channels), nn.InstanceNorm2d(channels, affine=True), act(),
            conv(channels, channels), nn.InstanceNorm2d(channels, affine=True))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.resnet_path(x)


def head(in_ch: int, out_ch: int, out_act: nn.Module) -> nn.Sequential:
    """Output head: dense conv3 with bias, then tanh (color change) or sigmoid (alpha)."""
    return nn.Sequential(conv3(in_ch, out_ch, bias=True), out_act)


def tile_pose(pose: Tensor, size: int) -> Tensor:
    """(N, C) -> (N, C, size, size)."""
    return pose[:, :, None, None].expand(-1, -1, size, size)


def num_channels(start: int, image_size: int, size: int, max_channels: int) -> int:
    """Channels double each time the resolution halves, capped at max_channels."""
    return min(start * (image_size // size), max_channels)


def encoder_blocks(in_channels: int, start_channels: int, image_size: int, bottleneck_size: int,
                   max_channels: int, *, block_kw: dict, down_kw: dict, kernel_size: int = 3) -> nn.ModuleList:
    """An encoder's way down: a conv block at full size, then stride-2 downsamples to bottleneck_size, the
    channels doubling at each (num_channels)."""
    blocks = nn.ModuleList([ConvNormAct(in_channels, start_channels, kernel_size, **block_kw)])
    size, ch = image_size, start_channels
    while size > bottleneck_size:
        size //= 2
        nxt = num_channels(start_channels, image_size, size, max_channels)
        blocks.append(down_block(ch, nxt, **down_kw))
        ch = nxt
    return blocks


class PoseEncoderDecoder(nn.Module):
    """THA3 'PoserEncoderDecoder00': conv3 block, stride-2 downsamples to the bottleneck, pose tiled
    and concatenated there, conv3 block + (num_bottleneck_blocks - 1) resnet blocks, transposed-conv
    upsamples back to full size. Returns the last feature map (start_channels, image_size, image_size).
    """

    def __init__(self, image_size: int, in_channels: int, start_channels: int, num_pose_params: int,
                 bottleneck_size: int, num_bottleneck_blocks: int, max_channels: int, *,
                 act: Act, separable: bool):
        super().__init__()
        kw = dict(act=act, separable=separable)
        self.downsample_blocks = encoder_blocks(in_channels, start_channels, image_size, bottleneck_size,
                                                max_channels, block_kw=kw, down_kw=kw)
        size, ch = bottleneck_size, num_channels(start_channels, image_size, bottleneck_size, max_channels)
        self.bottleneck_blocks = nn.ModuleList([ConvNormAct(ch + num_pose_params, ch, **kw)])
        self.bottleneck_blocks.extend(ResnetBlock(ch, **kw) for _ in range(num_bottleneck_blocks - 1))
        self.upsample_blocks = nn.ModuleList()
        while size < image_size:
            size *= 2
            nxt = num_channels(start_channels, image_size, size, max_channels)
            self.upsample_blocks.append(up_block(ch, nxt, **kw))
            ch = nxt

    def forward(self, image: Tensor, pose: Tensor | None = None) -> Tensor:
        x = image
        for block in self.downsample_blocks:
            x = block(x)
        if pose is not None:
            x = torch.cat([x, tile_pose(pose, x.shape[-1])], dim=1)
        for block in self.bottleneck_blocks:
            x = block(x)
        for block in self.upsample_blocks:
            x = block(x)
        return x


def blend(alpha: Tensor, top: Tensor, bottom: Tensor) -> Tensor:
    """THA3 'apply_color_change': alpha-blend top over bottom (same op order as the original)."""
    return top * alpha + bottom * (1 - alpha)


def warp(image: Tensor, grid_change: Tensor) -> Tensor:
    """Resample image at identity grid + grid_change (N, 2, H, W), bilinear, border padding."""
    n, c, h, w = image.shape
    identity = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype=grid_change.dtype,
                            device=grid_change.device).expand(n, 2, 3)
    base = F.affine_grid(identity, [n, c, h, w], align_corners=False)
    grid = base + grid_change.permute(0, 2, 3, 1)
    return F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=False)
