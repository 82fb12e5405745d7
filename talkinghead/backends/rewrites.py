"""Export-time rewrites of a torch module, for a backend's sake. The torch module itself is never changed.
Each rewrite computes the same function (up to float32 rounding: ~1e-5 on the networks' outputs, tested in
float64 to ~1e-12); it only changes the ops the exported graph is made of. Gains below: OpenVINO 2026.4,
process CPU time of one network at 1 thread on a Zen 4 EPYC, real weights and inputs, each against the
rewrites before it (a shared machine: +-3 %). Whole frames: bench/bench_backends.py.

two_pass_instance_norm, for OpenVINO: OpenVINO's CPU kernel for InstanceNormalization (its MVN op) loses
precision on THA3's activations: ~1e-4 relative error per norm layer, where torch and ONNX Runtime stay
near 1e-6 (measured on the rotator's first norm with the real weights and character). The rotator's
appearance flow turns that into up to ~6e-3 on alpha edges of the final frame. Spelled out as mean ->
mean of squared centred values -> per-channel scale and shift -> one multiply-add on x, OpenVINO keeps the
ops as they are (it does not fuse them back into MVN) and matches torch to ~5e-5. The multiply-add on x
(rather than normalising the centred values) saves one full-size op per norm: editor -5 %.
Tried and dropped: the variance as E[x^2] - mean^2 (as fast, 3x the error); via ReduceL2 (OpenVINO's
ReduceL2 is as imprecise as its MVN: up to 8e-3 on the rotator); MVN on pre-centred values (its variance stays
imprecise); MVN for the layers of at most 128x128 (small sums are precise enough) and two passes above:
frames -5 %, but 10x the error (7.8e-4 max on a frame): not worth the margin.

resize_conv_as_transposed: the editor's U-Net and the rotator's decoder upsample by nearest x2 and then
apply a 3x3 conv (depthwise in the separable variants), the editor's after concatenating a skip feature.
conv3x3(up2(x)) is exactly a 4x4 stride-2 transposed conv on x, whose taps are sums of the 3x3 taps; and a
conv over cat([a, b]) is conv_a(a) + conv_b(b). So the upsampled and the concatenated full-size tensors
are never built: editor -11 %, rotator -12 %.

merged_heads: the output heads (3x3 convs with 1-4 output channels each, over the same 512x512, 192x192 or
128x128 feature) run slowly in OpenVINO, a few output channels use the vector units poorly; as one conv
with all the heads' output channels they cost about what one head did: editor -14 %, face morpher -24 %,
eyebrow combiner -20 %.
"""
from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from ..tha3.blocks import ConvNormAct, PoseEncoderDecoder, blend, tile_pose, warp
from ..tha3.body_rotator import ResizeConvEncoderDecoder
from ..tha3.editor import EditorChanges, ResizeConvUNet
from ..tha3.eyebrow_morphing_combiner import EyebrowMorphingCombiner
from ..tha3.face_morpher import FaceMorpher


# ---- two_pass_instance_norm -----------------------------------------------------------------------------

class TwoPassInstanceNorm(nn.Module):
    """nn.InstanceNorm2d (eval, no running stats) as explicit ops: variance from centred values, then one
    per-channel multiply-add on the input."""

    def __init__(self, norm: nn.InstanceNorm2d):
        super().__init__()
        if norm.track_running_stats:
            raise ValueError("TwoPassInstanceNorm replaces instance norms without running statistics only")
        self.eps = norm.eps
        self.weight = norm.weight if norm.affine else None
        self.bias = norm.bias if norm.affine else None

    def forward(self, x: Tensor) -> Tensor:
        mean = x.mean(dim=(2, 3), keepdim=True)
        centred = x - mean
        scale = torch.rsqrt((centred * centred).mean(dim=(2, 3), keepdim=True) + self.eps)
        if self.weight is not None:
            scale = scale * self.weight[:, None, None]
        shift = -mean * scale
        if self.bias is not None:
            shift = shift + self.bias[:, None, None]
        return x * scale + shift


def with_two_pass_instance_norm(module: nn.Module) -> nn.Module:
    """A copy of `module` whose nn.InstanceNorm2d layers are TwoPassInstanceNorm (same parameters)."""
    module = copy.deepcopy(module)
    for parent in list(module.modules()):
        for child_name, child in list(parent.named_children()):
            if isinstance(child, nn.InstanceNorm2d):
                setattr(parent, child_name, TwoPassInstanceNorm(child))
    return module


# ---- resize_conv_as_transposed --------------------------------------------------------------------------

# Row k of the 4x4 transposed-conv kernel sums these taps of the 3x3 kernel: output pixel 2i (2i + 1) of
# conv3x3(up2(x)) reads x rows i-1, i, i (i, i, i+1); conv_transpose(stride 2, padding 1) maps kernel row k
# to input row (o + 1 - k) / 2.
_TAPS = torch.tensor([[0.0, 0.0, 1.0], [0.0, 1.0, 1.0], [1.0, 1.0, 0.0], [1.0, 0.0, 0.0]], dtype=torch.float64)


def _is_3x3_same(conv: nn.Module) -> bool:
    return (type(conv) is nn.Conv2d and conv.kernel_size == (3, 3) and conv.stride == (1, 1)
            and conv.padding == (1, 1) and conv.dilation == (1, 1) and conv.padding_mode == "zeros")


def _is_depthwise(conv: nn.Conv2d) -> bool:
    return conv.groups > 1 and conv.groups == conv.in_channels == conv.out_channels


def _upsampled_conv_as_transposed(conv: nn.Conv2d, channels: slice) -> nn.ConvTranspose2d:
    """conv(up2(x)) for x = the input channels `channels` of conv (no bias): a 4x4 stride-2 transposed conv."""
    w = conv.weight.detach().double()
    if _is_depthwise(conv):
        w = w[channels]  # (C, 1, 3, 3)
        kernel = torch.einsum("ky,oiyx,lx->oikl", _TAPS, w, _TAPS)  # (C, 1, 4, 4)
        out = nn.ConvTranspose2d(w.shape[0], w.shape[0], 4, 2, 1, groups=w.shape[0], bias=False)
    else:
        w = w[:, channels]  # (O, I, 3, 3)
        kernel = torch.einsum("ky,oiyx,lx->iokl", _TAPS, w, _TAPS)  # (I, O, 4, 4): transposed convs are (in, out)
        out = nn.ConvTranspose2d(w.shape[1], w.shape[0], 4, 2, 1, bias=False)
    out.weight = nn.Parameter(kernel.to(conv.weight.dtype), requires_grad=False)
    return out


def _channel_part(conv: nn.Conv2d, channels: slice) -> nn.Conv2d:
    """The part of conv (no bias) that reads its input channels `channels`."""
    if _is_depthwise(conv):
        w = conv.weight.detach()[channels]
        out = nn.Conv2d(w.shape[0], w.shape[0], conv.kernel_size, conv.stride, conv.padding,
                        groups=w.shape[0], bias=False)
    else:
        w = conv.weight.detach()[:, channels]
        out = nn.Conv2d(w.shape[1], w.shape[0], conv.kernel_size, conv.stride, conv.padding, bias=False)
    out.weight = nn.Parameter(w.clone(), requires_grad=False)
    return out


class UpsampledConvNormAct(nn.Module):
    """ConvNormAct(cat([up2(x), skip])) (or of up2(x) alone) computed without building either tensor."""

    def __init__(self, block: ConvNormAct, deep_channels: int):
        super().__init__()
        layers = list(block)
        first = layers[0]
        separable = _is_depthwise(first)
        convs = 2 if separable else 1
        if convs == 2 and not (type(layers[1]) is nn.Conv2d and layers[1].kernel_size == (1, 1)
                               and layers[1].bias is None):
            raise ValueError("not a depthwise + bias-free pointwise pair")
        if first.bias is not None:
            raise ValueError("conv with bias")
        deep, skip = slice(0, deep_channels), slice(deep_channels, first.in_channels)
        self.has_skip = deep_channels < first.in_channels
        self.deep = _upsampled_conv_as_transposed(first, deep)
        self.skip = _channel_part(first, skip) if self.has_skip else None
        self.pointwise_deep = self.pointwise_skip = None
        if separable:  # depthwise is per channel, so split the pointwise conv by input channels too
            self.pointwise_deep = _channel_part(layers[1], deep)
            self.pointwise_skip = _channel_part(layers[1], skip) if self.has_skip else None
        self.tail = nn.Sequential(*layers[convs:])  # norm, activation

    def forward(self, x: Tensor, skip: Tensor | None = None) -> Tensor:
        y = self.deep(x)
        if self.pointwise_deep is not None:
            y = self.pointwise_deep(y)
        if self.has_skip:
            z = self.skip(skip)
            y = y + (self.pointwise_skip(z) if self.pointwise_skip is not None else z)
        return self.tail(y)


def _last_conv_channels(block: nn.Module) -> int:
    return [m for m in block.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))][-1].out_channels


def _check_resize_conv(upsample: nn.Module, block: nn.Module) -> None:
    if not (isinstance(upsample, nn.Upsample) and upsample.mode == "nearest"
            and upsample.scale_factor in (2, 2.0, (2, 2), (2.0, 2.0)) and upsample.size is None):
        raise ValueError("not a nearest x2 upsample")
    if not (isinstance(block, ConvNormAct) and _is_3x3_same(list(block)[0])):
        raise ValueError("not a 3x3 conv block")


class TransposedUNet(ResizeConvUNet):
    """ResizeConvUNet whose up blocks are UpsampledConvNormAct: the same forward, another step up."""

    def __init__(self, unet: ResizeConvUNet):
        nn.Module.__init__(self)  # not ResizeConvUNet's: the blocks are the given network's, not new ones
        self.downsample_blocks = unet.downsample_blocks
        self.bottleneck_blocks = unet.bottleneck_blocks
        self.upsample_blocks = nn.ModuleList()
        deep = _last_conv_channels(unet.bottleneck_blocks[-1] if len(unet.bottleneck_blocks)
                                   else unet.downsample_blocks[-1])
        for block in unet.upsample_blocks:
            _check_resize_conv(unet.double_resolution, block)
            self.upsample_blocks.append(UpsampledConvNormAct(block, deep))
            deep = _last_conv_channels(block)

    def upsample(self, block: nn.Module, x: Tensor, skip: Tensor) -> Tensor:
        return block(x, skip)  # the transposed conv doubles x and takes the skip feature itself


class TransposedEncoderDecoder(nn.Module):
    """ResizeConvEncoderDecoder.forward with UpsampledConvNormAct up blocks."""

    def __init__(self, encoder_decoder: ResizeConvEncoderDecoder):
        super().__init__()
        self.blocks = nn.ModuleList([*encoder_decoder.downsample_blocks, *encoder_decoder.bottleneck_blocks])
        self.upsample_blocks = nn.ModuleList()
        for upsample, block in encoder_decoder.upsample_blocks:
            _check_resize_conv(upsample, block)
            self.upsample_blocks.append(UpsampledConvNormAct(block, list(block)[0].in_channels))

    def forward(self, x: Tensor) -> Tensor:
        for block in (*self.blocks, *self.upsample_blocks):
            x = block(x)
        return x


def with_resize_conv_as_transposed(module: nn.Module) -> nn.Module:
    """A copy of `module` whose ResizeConvUNet / ResizeConvEncoderDecoder parts (editor, rotator) upsample
    with transposed convs; other modules are returned as they are (copied)."""
    module = copy.deepcopy(module)
    if isinstance(module, (ResizeConvUNet, ResizeConvEncoderDecoder)):
        return _transposed(module)
    for parent in list(module.modules()):
        for child_name, child in list(parent.named_children()):
            if isinstance(child, (ResizeConvUNet, ResizeConvEncoderDecoder)):
                setattr(parent, child_name, _transposed(child))
    return module


def _transposed(module: nn.Module) -> nn.Module:
    try:
        return TransposedUNet(module) if isinstance(module, ResizeConvUNet) else TransposedEncoderDecoder(module)
    except ValueError:  # a layout this rewrite does not know: export it as it is
        return module


# ---- merged_heads ---------------------------------------------------------------------------------------

class MergedHeads(nn.Module):
    """Output heads over the same feature (each a conv, or Sequential(conv, activation)) as one conv; the
    call returns each head's output, in order."""

    def __init__(self, heads: list[nn.Module]):
        super().__init__()
        convs = [h[0] if isinstance(h, nn.Sequential) else h for h in heads]
        self.activations = nn.ModuleList(h[1] if isinstance(h, nn.Sequential) else nn.Identity() for h in heads)
        first = convs[0]
        if not all(type(c) is nn.Conv2d and c.groups == 1 and c.in_channels == first.in_channels
                   and (c.kernel_size, c.stride, c.padding, c.dilation) ==
                   (first.kernel_size, first.stride, first.padding, first.dilation) for c in convs):
            raise ValueError("heads of different shapes")
        self.sizes = [c.out_channels for c in convs]
        self.conv = nn.Conv2d(first.in_channels, sum(self.sizes), first.kernel_size, first.stride,
                              first.padding, first.dilation, bias=True)
        self.conv.weight = nn.Parameter(torch.cat([c.weight.detach() for c in convs]), requires_grad=False)
        self.conv.bias = nn.Parameter(torch.cat([c.bias.detach() if c.bias is not None else
                                                 torch.zeros(c.out_channels, dtype=c.weight.dtype)
                                                 for c in convs]), requires_grad=False)

    def forward(self, feature: Tensor) -> list[Tensor]:
        merged = self.conv(feature)
        outputs, start = [], 0
        for activation, size in zip(self.activations, self.sizes):
            outputs.append(activation(merged[:, start:start + size]))  # slices: OpenVINO runs them in place
            start += size
        return outputs


class MergedHeadsEditorChanges(nn.Module):
    """EditorChanges.forward (Editor.changes) with merged heads."""

    def __init__(self, changes: EditorChanges):
        super().__init__()
        editor = changes.editor
        self.body = editor.body
        self.heads = MergedHeads([editor.grid_change_creator, editor.color_change_creator, editor.alpha_creator])

    def forward(self, original_image: Tensor, warped_image: Tensor, grid_change: Tensor,
                pose: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        feature = self.body(torch.cat(
            [original_image, warped_image, grid_change, tile_pose(pose, original_image.shape[-1])], dim=1))
        grid, color, alpha = self.heads(feature)
        return grid_change + grid, color, alpha


class MergedHeadsFaceMorpher(nn.Module):
    """FaceMorpher.forward with merged heads."""

    def __init__(self, morpher: FaceMorpher):
        super().__init__()
        self.body = morpher.body if morpher.separable else morpher
        self.heads = MergedHeads([morpher.iris_mouth_grid_change, morpher.iris_mouth_alpha,
                                  morpher.iris_mouth_color_change, morpher.eye_alpha, morpher.eye_color_change])

    def forward(self, image: Tensor, pose: Tensor) -> Tensor:
        # A non-separable FaceMorpher holds the body's blocks itself; PoseEncoderDecoder.forward reads only them.
        feature = PoseEncoderDecoder.forward(self.body, image, pose)
        grid, iris_mouth_alpha, iris_mouth_color, eye_alpha, eye_color = self.heads(feature)
        iris_mouth = blend(iris_mouth_alpha, iris_mouth_color, warp(image, grid))
        return blend(eye_alpha, eye_color, iris_mouth)


class MergedHeadsCombiner(nn.Module):
    """EyebrowMorphingCombiner.forward with merged heads."""

    def __init__(self, combiner: EyebrowMorphingCombiner):
        super().__init__()
        self.body = combiner.body
        self.heads = MergedHeads([combiner.morphed_eyebrow_layer_grid_change,
                                  combiner.morphed_eyebrow_layer_alpha, combiner.morphed_eyebrow_layer_color_change])

    def forward(self, background_layer: Tensor, eyebrow_layer: Tensor, pose: Tensor) -> Tensor:
        feature = self.body(torch.cat([background_layer, eyebrow_layer], dim=1), pose)
        grid, alpha, color = self.heads(feature)
        morphed = blend(alpha, color, warp(eyebrow_layer, grid))
        alpha = (morphed[:, 3:4] + 1.0) / 2.0
        rgb = blend(alpha, morphed[:, :3], background_layer[:, :3])
        return torch.cat([rgb, background_layer[:, 3:4]], dim=1)


_MERGED_HEADS = {EditorChanges: MergedHeadsEditorChanges, FaceMorpher: MergedHeadsFaceMorpher,
                 EyebrowMorphingCombiner: MergedHeadsCombiner}


def with_merged_heads(module: nn.Module) -> nn.Module:
    """A copy of `module` computing its heads as one conv, for the networks with several heads (editor
    changes, face morpher, eyebrow combiner); other modules are returned as they are (copied)."""
    module = copy.deepcopy(module)
    wrapper = _MERGED_HEADS.get(type(module))
    if wrapper is None:
        return module
    try:
        return wrapper(module)
    except ValueError:
        return module


# name -> rewrite; the name goes into the export cache key. Rewrites compose, in the order given.
REWRITES = {"two_pass_instance_norm": with_two_pass_instance_norm,
            "resize_conv_as_transposed": with_resize_conv_as_transposed,
            "merged_heads": with_merged_heads}
