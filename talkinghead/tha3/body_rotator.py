"""Two-algorithm face/body rotator (THA3 TwoAlgoFaceBodyRotator05): at half resolution (256x256),
predicts an appearance flow (grid change) for the 6 rotation parameters and warps the image with it."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from .blocks import (Act, ConvNormAct, ResnetBlock, conv3, encoder_blocks, head, leaky_relu_01, num_channels,
                     relu, tile_pose, warp)


class ResizeConvEncoderDecoder(nn.Module):
    """conv7 block, stride-2 downsamples, resnet bottleneck, then (nearest x2 upsample + conv3 block)
    back to full size. Returns the last feature map (start_channels, image_size, image_size)."""

    def __init__(self, image_size: int, in_channels: int, start_channels: int, bottleneck_size: int,
                 num_bottleneck_blocks: int, max_channels: int, *, act: Act, separable: bool):
        super().__init__()
        kw = dict(act=act, separable=separable)
        # THA3 quirk: the dense (standard) downsample blocks ignore the block args and use plain ReLU.
        down_kw = kw if separable else dict(act=relu, separable=False)
        self.downsample_blocks = encoder_blocks(in_channels, start_channels, image_size, bottleneck_size,
                                                max_channels, block_kw=kw, down_kw=down_kw, kernel_size=7)
        size, ch = bottleneck_size, num_channels(start_channels, image_size, bottleneck_size, max_channels)
        self.bottleneck_blocks = nn.ModuleList(ResnetBlock(ch, **kw) for _ in range(num_bottleneck_blocks))
        self.upsample_blocks = nn.ModuleList()
        while size < image_size:
            size *= 2
            nxt = num_channels(start_channels, image_size, size, max_channels)
            self.upsample_blocks.append(nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                                                      ConvNormAct(ch, nxt, **kw)))
            ch = nxt

    def forward(self, x: Tensor) -> Tensor:
        for block in (*self.downsample_blocks, *self.bottleneck_blocks, *self.upsample_blocks):
            x = block(x)
        return x


class BodyRotator(nn.Module):
    def __init__(self, separable: bool = True, image_size: int = 256, channels: int = 4,
                 num_pose_params: int = 6, start_channels: int = 64, bottleneck_size: int = 32,
                 num_bottleneck_blocks: int = 6, max_channels: int = 512):
        super().__init__()
        self.encoder_decoder = ResizeConvEncoderDecoder(
            image_size, channels + num_pose_params, start_channels, bottleneck_size,
            num_bottleneck_blocks, max_channels, act=leaky_relu_01, separable=separable)
        # The "direct" algorithm's output is not used by the poser; kept for the state dict.
        self.direct_creator = head(start_channels, channels, nn.Tanh())
        self.grid_change_creator = conv3(start_channels, 2)

    def forward(self, image: Tensor, pose: Tensor) -> tuple[Tensor, Tensor]:
        """image (N, 4, 256, 256), pose (N, 6) -> (warped image, grid change (N, 2, 256, 256))."""
        feature = self.encoder_decoder(torch.cat([image, tile_pose(pose, image.shape[-1])], dim=1))
        grid_change = self.grid_change_creator(feature)
        return warp(image, grid_change), grid_change
