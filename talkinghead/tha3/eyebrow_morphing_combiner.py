"""Eyebrow morphing combiner (THA3 EyebrowMorphingCombiner00 / 03): warps and recolours the eyebrow
layer for the 12 eyebrow parameters and composites it over the background layer."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from .blocks import PoseEncoderDecoder, blend, conv3, head, relu, warp


class EyebrowMorphingCombiner(nn.Module):
    def __init__(self, separable: bool = True, image_size: int = 128, channels: int = 4,
                 num_pose_params: int = 12, start_channels: int = 64, bottleneck_size: int = 16,
                 num_bottleneck_blocks: int = 6, max_channels: int = 512):
        super().__init__()
        self.body = PoseEncoderDecoder(image_size, 2 * channels, start_channels, num_pose_params,
                                       bottleneck_size, num_bottleneck_blocks, max_channels,
                                       act=relu, separable=separable)
        self.morphed_eyebrow_layer_grid_change = conv3(start_channels, 2)
        self.morphed_eyebrow_layer_alpha = head(start_channels, 1, nn.Sigmoid())
        self.morphed_eyebrow_layer_color_change = head(start_channels, channels, nn.Tanh())
        # Trained but unused by the poser (it takes the "no combine alpha" image); kept for the state dict.
        self.combine_alpha = head(start_channels, 1, nn.Sigmoid())

    def forward(self, background_layer: Tensor, eyebrow_layer: Tensor, pose: Tensor) -> Tensor:
        """layers (N, 4, 128, 128), pose (N, 12) -> eyebrow image (N, 4, 128, 128)."""
        feature = self.body(torch.cat([background_layer, eyebrow_layer], dim=1), pose)
        warped = warp(eyebrow_layer, self.morphed_eyebrow_layer_grid_change(feature))
        morphed = blend(self.morphed_eyebrow_layer_alpha(feature),
                        self.morphed_eyebrow_layer_color_change(feature), warped)
        # Composite RGB using the morphed layer's own alpha (mapped -1..1 -> 0..1); keep the background alpha.
        alpha = (morphed[:, 3:4] + 1.0) / 2.0
        rgb = blend(alpha, morphed[:, :3], background_layer[:, :3])
        return torch.cat([rgb, background_layer[:, 3:4]], dim=1)
