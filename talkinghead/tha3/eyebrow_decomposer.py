"""Eyebrow decomposer (THA3 EyebrowDecomposer00 / 03): splits the 128x128 eyebrow crop into an
eyebrow layer and a background layer (the face with the eyebrows removed)."""
from __future__ import annotations

from torch import Tensor, nn

from .blocks import PoseEncoderDecoder, blend, head, relu


class EyebrowDecomposer(nn.Module):
    def __init__(self, separable: bool = True, image_size: int = 128, channels: int = 4,
                 start_channels: int = 64, bottleneck_size: int = 16, num_bottleneck_blocks: int = 6,
                 max_channels: int = 512):
        super().__init__()
        self.body = PoseEncoderDecoder(image_size, channels, start_channels, 0, bottleneck_size,
                                       num_bottleneck_blocks, max_channels, act=relu, separable=separable)
        self.background_layer_alpha = head(start_channels, 1, nn.Sigmoid())
        self.background_layer_color_change = head(start_channels, channels, nn.Tanh())
        self.eyebrow_layer_alpha = head(start_channels, 1, nn.Sigmoid())
        self.eyebrow_layer_color_change = head(start_channels, channels, nn.Tanh())

    def forward(self, image: Tensor) -> tuple[Tensor, Tensor]:
        """image (N, 4, 128, 128) -> (eyebrow_layer, background_layer), both (N, 4, 128, 128)."""
        feature = self.body(image)
        background = blend(self.background_layer_alpha(feature),
                           self.background_layer_color_change(feature), image)
        # The eyebrow layer keeps the image where alpha is high (argument order as in THA3).
        eyebrow = blend(self.eyebrow_layer_alpha(feature), image,
                        self.eyebrow_layer_color_change(feature))
        return eyebrow, background
