"""Face morpher (THA3 FaceMorpher08 / 09): morphs the 192x192 face crop for the 27 eye, iris and
mouth parameters: a warp + recolour for iris and mouth, then a recolour for the eyes."""
from __future__ import annotations

from torch import Tensor, nn

from .blocks import PoseEncoderDecoder, blend, conv3, head, relu, warp


class FaceMorpher(nn.Module):
    def __init__(self, separable: bool = True, image_size: int = 192, channels: int = 4,
                 num_pose_params: int = 27, start_channels: int = 64, bottleneck_size: int = 24,
                 num_bottleneck_blocks: int = 6, max_channels: int = 512):
        super().__init__()
        self.separable = separable
        body = PoseEncoderDecoder(image_size, channels, start_channels, num_pose_params, bottleneck_size,
                                  num_bottleneck_blocks, max_channels, act=relu, separable=separable)
        if separable:
            self.body = body
        else:
            # FaceMorpher08 (standard) has the body's blocks at its top level: adopt them so the
            # state-dict names match, and run PoseEncoderDecoder.forward on self.
            self.downsample_blocks = body.downsample_blocks
            self.bottleneck_blocks = body.bottleneck_blocks
            self.upsample_blocks = body.upsample_blocks
        self.iris_mouth_grid_change = conv3(start_channels, 2)
        self.iris_mouth_color_change = head(start_channels, channels, nn.Tanh())
        self.iris_mouth_alpha = head(start_channels, 1, nn.Sigmoid())
        self.eye_color_change = head(start_channels, channels, nn.Tanh())
        self.eye_alpha = head(start_channels, 1, nn.Sigmoid())

    def forward(self, image: Tensor, pose: Tensor) -> Tensor:
        """image (N, 4, 192, 192), pose (N, 27) -> morphed face (N, 4, 192, 192)."""
        body = self.body if self.separable else self
        feature = PoseEncoderDecoder.forward(body, image, pose)
        iris_mouth = warp(image, self.iris_mouth_grid_change(feature))
        iris_mouth = blend(self.iris_mouth_alpha(feature), self.iris_mouth_color_change(feature), iris_mouth)
        return blend(self.eye_alpha(feature), self.eye_color_change(feature), iris_mouth)
