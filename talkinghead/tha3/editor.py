"""Editor (THA3 Editor07): at full resolution (512x512), refines the rotator's upsampled warp with a
U-Net: a grid-change correction, then a recolour of the re-warped original image."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from .blocks import (Act, ConvNormAct, ResnetBlock, blend, conv3, down_block, head, leaky_relu_01, relu,
                     tile_pose, warp)


class ResizeConvUNet(nn.Module):
    """conv3 block, stride-2 downsamples, resnet bottleneck, then per level: nearest x2 upsample,
    concat the skip feature of that level, conv3 block. Returns the last feature map."""

    def __init__(self, image_size: int, in_channels: int, start_channels: int, bottleneck_size: int,
                 num_bottleneck_blocks: int, max_channels: int, *, act: Act, separable: bool):
        super().__init__()
        kw = dict(act=act, separable=separable)
        # THA3 quirk: the dense (standard) downsample blocks ignore the block args and use plain ReLU.
        down_kw = kw if separable else dict(act=relu, separable=False)
        self.downsample_blocks = nn.ModuleList([ConvNormAct(in_channels, start_channels, **kw)])
        channels = [start_channels]  # per level, full resolution first
        size = image_size
        while size > bottleneck_size:
            size //= 2
            channels.append(min(max_channels, channels[-1] * 2))
            self.downsample_blocks.append(down_block(channels[-2], channels[-1], **down_kw))
        self.bottleneck_blocks = nn.ModuleList(
            ResnetBlock(channels[-1], **kw) for _ in range(num_bottleneck_blocks))
        self.upsample_blocks = nn.ModuleList(
            ConvNormAct(deep + skip, skip, **kw) for deep, skip in zip(channels[:0:-1], channels[-2::-1]))
        self.double_resolution = nn.Upsample(scale_factor=2, mode="nearest")

    def forward(self, x: Tensor) -> Tensor:
        skips = []
        for block in self.downsample_blocks:
            x = block(x)
            skips.append(x)
        for block in self.bottleneck_blocks:
            x = block(x)
        for block, skip in zip(self.upsample_blocks, reversed(skips[:-1])):
            x = self.upsample(block, x, skip)
        return x

    def upsample(self, block: nn.Module, x: Tensor, skip: Tensor) -> Tensor:
        """One level up: double x's resolution, join that level's skip feature, apply the level's block."""
        return block(torch.cat([self.double_resolution(x), skip], dim=1))


class Editor(nn.Module):
    def __init__(self, separable: bool = True, image_size: int = 512, channels: int = 4,
                 num_pose_params: int = 6, start_channels: int = 32, bottleneck_size: int = 64,
                 num_bottleneck_blocks: int = 6, max_channels: int = 512):
        super().__init__()
        # input: original image, warped image, grid change (2), tiled pose
        self.body = ResizeConvUNet(image_size, 2 * channels + 2 + num_pose_params, start_channels,
                                   bottleneck_size, num_bottleneck_blocks, max_channels,
                                   act=leaky_relu_01, separable=separable)
        self.color_change_creator = head(start_channels, channels, nn.Tanh())
        self.alpha_creator = head(start_channels, channels, nn.Sigmoid())
        self.grid_change_creator = conv3(start_channels, 2)

    def forward(self, original_image: Tensor, warped_image: Tensor, grid_change: Tensor,
                pose: Tensor) -> Tensor:
        """images (N, 4, 512, 512), grid change (N, 2, 512, 512), pose (N, 6) -> posed image (same shape)."""
        return apply_changes(original_image, *self.changes(original_image, warped_image, grid_change, pose))

    def changes(self, original_image: Tensor, warped_image: Tensor, grid_change: Tensor,
                pose: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The editor's decisions before they are applied: (grid change (N, 2, H, W), colour change
        (N, 4, H, W), colour-change alpha (N, 4, H, W)). Blending two frames' changes and applying them
        to a new face is how the smooth stream makes in-between frames."""
        feature = self.body(torch.cat(
            [original_image, warped_image, grid_change, tile_pose(pose, original_image.shape[-1])], dim=1))
        return (grid_change + self.grid_change_creator(feature), self.color_change_creator(feature),
                self.alpha_creator(feature))


def apply_changes(original_image: Tensor, grid_change: Tensor, color_change: Tensor, alpha: Tensor) -> Tensor:
    """Re-warp the original image by the grid change, then recolour it (the editor's last step)."""
    return blend(alpha, color_change, warp(original_image, grid_change))


class EditorChanges(nn.Module):
    """The editor's network part (`Editor.changes`) as a module of its own, so a backend can run it while
    the cheap warp and blend stay in torch, where the smooth stream reuses them."""

    def __init__(self, editor: Editor):
        super().__init__()
        self.editor = editor

    def forward(self, original_image: Tensor, warped_image: Tensor, grid_change: Tensor,
                pose: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        return self.editor.changes(original_image, warped_image, grid_change, pose)
