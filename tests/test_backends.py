"""Inference backends (talkinghead.backends): backend choice, the ONNX export cache, and equivalence of the
OpenVINO / ONNX Runtime networks with torch on the real weights, per network and for whole frames.

Exports go to one temporary cache shared by the whole module, so each network is exported once per
backend flavour (2-5 s each on 2 cores; the module takes ~1 min on a quiet machine, ~2 min on a busy one).
The tests on the real networks are marked slow (still part of the default run).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from talkinghead import backends, weights
from talkinghead.backends import export, rewrites

# Tolerances on -1..1 images: max and mean absolute difference from torch.
MAX_ABS, MEAN_ABS = 5e-3, 1e-4
EXTERNAL = [b for b in backends.BACKENDS if b != "torch"]
PER_FRAME_NETWORKS = [n for n in backends.INPUT_SHAPES if n not in backends.KEEP_IN_TORCH]


def installed(backend: str):
    return pytest.mark.skipif(backend not in backends.available_backends(),
                              reason=f"{backend} not installed ({backends.PIP_HINT[backend]})")


needs_exporter = pytest.mark.skipif(not all(backends._importable(m) for m in ("onnx", "onnxscript")),
                                    reason="the ONNX exporter needs onnx and onnxscript (pip install onnx onnxscript)")
external_backends = pytest.mark.parametrize("backend", [pytest.param(b, marks=installed(b)) for b in EXTERNAL])


def random_poses(count: int, seed: int) -> list[np.ndarray]:
    """Poses over the whole parameter ranges, rotations included (they exercise the warps)."""
    from talkinghead import pose

    rng = np.random.default_rng(seed)
    return [rng.uniform(pose.LOW, pose.HIGH).astype(np.float32) for _ in range(count)]


def assert_close(actual: torch.Tensor, expected: torch.Tensor, what: str) -> None:
    assert actual.shape == expected.shape, what
    diff = (actual.float() - expected.float()).abs()
    assert diff.max() <= MAX_ABS and diff.mean() <= MEAN_ABS, \
        f"{what}: max abs diff {diff.max():.2e} (limit {MAX_ABS}), mean {diff.mean():.2e} (limit {MEAN_ABS})"


# ---- backend choice (no weights needed) ---------------------------------------------------------------

def test_torch_is_always_available():
    assert backends.available_backends()[0] == "torch"


def test_auto_on_cpu_takes_the_fastest_installed(monkeypatch):
    assert backends.resolve("auto", "cpu") == next(
        b for b in backends.AUTO_CPU_ORDER if b in backends.available_backends())
    monkeypatch.setattr(backends, "available_backends", lambda: ["torch", "onnxruntime"])
    assert backends.resolve("auto", "cpu") == "onnxruntime"
    monkeypatch.setattr(backends, "available_backends", lambda: ["torch"])
    assert backends.resolve("auto", "cpu") == "torch"


def test_cuda_runs_torch():
    assert backends.resolve("auto", "cuda") == "torch"
    assert backends.resolve("torch", torch.device("cuda:0")) == "torch"
    with pytest.raises(backends.BackendError, match="runs on the CPU"):
        backends.resolve("openvino", "cuda")


def test_unknown_or_missing_backend_is_a_clear_error(monkeypatch):
    with pytest.raises(backends.BackendError, match="unknown talkinghead backend 'tensorrt'"):
        backends.resolve("tensorrt", "cpu")
    monkeypatch.setattr(backends, "available_backends", lambda: ["torch"])
    with pytest.raises(backends.BackendError, match="pip install openvino"):
        backends.resolve("openvino", "cpu")


def test_backends_use_torchs_thread_count():
    assert backends.default_threads() == torch.get_num_threads()


@pytest.mark.parametrize("backend", ["openvino", "onnxruntime"])
def test_failed_setup_falls_back_to_torch_only_for_auto(backend, monkeypatch):
    from types import SimpleNamespace

    monkeypatch.setattr(backends, "available_backends", lambda: ["torch", backend])

    def broken(*args, **kwargs):
        raise PermissionError("cache folder is read-only")

    monkeypatch.setattr(backends, "wrap_network", broken)
    networks = {name: nn.Identity() for name in backends.INPUT_SHAPES}
    poser = SimpleNamespace(networks=dict(networks), device=torch.device("cpu"), variant="separable_float")
    assert backends.apply_backend(poser, "auto") is poser
    assert poser.networks == networks and backends.active_backend(poser) == "torch"
    with pytest.raises(backends.BackendError, match=f"could not set up the {backend} backend.*read-only"):
        backends.apply_backend(poser, backend)


# ---- export cache and output structure, on small stand-in modules --------------------------------------

class TwoHeads(nn.Module):
    """Returns a tuple, like the eyebrow decomposer and the rotator."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 8, 3, padding=1)
        self.norm = nn.InstanceNorm2d(8, affine=True)

    def forward(self, image, pose):
        feature = self.norm(self.conv(image)) + pose[:, :, None, None].sum(1, keepdim=True)
        return torch.tanh(feature[:, :4]), torch.sigmoid(feature[:, 4:])


class OneHead(TwoHeads):
    """Returns a single tensor, like the combiner, the face morpher and the editor."""

    def forward(self, image, pose):
        return super().forward(image, pose)[0]


TOY_INPUTS = (torch.rand(1, 4, 16, 16) * 2 - 1, torch.rand(1, 6))


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("backend-cache")


@external_backends
@pytest.mark.parametrize("module_type", [OneHead, TwoHeads])
def test_wrapped_module_has_the_same_call_and_outputs(backend, module_type, cache_dir):
    torch.manual_seed(0)
    module = module_type().eval()
    wrapped = backends.wrap_network(module, TOY_INPUTS, backend, name=f"toy_{module_type.__name__}",
                                    cache_dir=cache_dir)
    assert isinstance(wrapped, nn.Module)
    inputs = (torch.rand(1, 4, 16, 16) * 2 - 1, torch.rand(1, 6))  # new values, same shapes
    with torch.inference_mode():
        expected, actual = module(*inputs), wrapped(*inputs)
    assert type(actual) is type(expected)
    for a, e in zip(*(x if isinstance(x, tuple) else (x,) for x in (actual, expected))):
        assert a.dtype == torch.float32
        assert_close(a, e, backend)


class Slow(nn.Module):
    """Many layers: a run long enough (0.2-0.5 s on 2 cores) to be cancelled part-way."""

    def __init__(self):
        super().__init__()
        self.layers = nn.Sequential(nn.Conv2d(4, 32, 3, padding=1),
                                    *[nn.Conv2d(32, 32, 3, padding=1) for _ in range(16)],
                                    nn.Conv2d(32, 4, 3, padding=1))

    def forward(self, image):
        return self.layers(image)


@pytest.mark.parametrize("backend", [pytest.param("openvino", marks=installed("openvino"))])
def test_a_run_can_be_cancelled_from_another_thread_and_the_next_run_works(backend, cache_dir):
    import threading
    import time

    torch.manual_seed(2)
    module = Slow().eval()
    image = torch.rand(1, 4, 192, 192)
    wrapped = backends.wrap_network(module, (image,), backend, name="toy_slow", cache_dir=cache_dir, threads=1)
    outcome = {}

    def run():
        started = time.perf_counter()
        try:
            wrapped(image)
            outcome["result"] = "finished"
        except backends.Cancelled:
            outcome["result"] = "cancelled"
        outcome["seconds"] = time.perf_counter() - started

    thread = threading.Thread(target=run)
    thread.start()
    time.sleep(0.02)
    wrapped.cancel()
    thread.join()
    assert outcome["result"] == "cancelled"
    with torch.inference_mode():
        assert_close(wrapped(image), module(image), backend)  # the request is usable again
    wrapped.cancel()  # nothing running: a no-op
    with torch.inference_mode():
        assert_close(wrapped(image), module(image), backend)


@pytest.mark.parametrize("backend", [pytest.param("openvino", marks=installed("openvino")),
                                     pytest.param("onnxruntime", marks=installed("onnxruntime"))])
def test_a_sticky_cancel_also_refuses_the_runs_after_it_until_reset(backend, cache_dir):
    """A worker checks "still wanted?" and then runs; a cancel between the two would find nothing running."""
    torch.manual_seed(3)
    module = OneHead().eval()
    wrapped = backends.wrap_network(module, TOY_INPUTS, backend, name="toy_sticky", cache_dir=cache_dir)
    wrapped.cancel(sticky=True)  # nothing running yet
    for _ in range(2):
        with pytest.raises(backends.Cancelled):
            wrapped(*TOY_INPUTS)
    wrapped.reset_cancel()
    with torch.inference_mode():
        assert_close(wrapped(*TOY_INPUTS), module(*TOY_INPUTS), backend)


@needs_exporter
def test_export_is_cached_and_written_atomically(cache_dir, monkeypatch):
    torch.manual_seed(1)
    module = OneHead().eval()
    first = export.export_onnx(module, TOY_INPUTS, name="toy_cache", cache_dir=cache_dir)
    mtime = first.path.stat().st_mtime_ns
    assert not [p for p in first.path.parent.iterdir() if p.name.endswith(".tmp")]

    def no_export(*args, **kwargs):
        raise AssertionError("exported again although the cache holds this graph")

    monkeypatch.setattr(torch.onnx, "export", no_export)
    again = export.export_onnx(module, TOY_INPUTS, name="toy_cache", cache_dir=cache_dir)
    assert again.path == first.path and again.path.stat().st_mtime_ns == mtime
    assert again.output_spec == first.output_spec


def test_cache_key_follows_weights_shapes_and_rewrites():
    torch.manual_seed(2)
    module = OneHead().eval()
    key = export.cache_key("toy", "v", module, TOY_INPUTS)
    assert export.cache_key("toy", "v", module, TOY_INPUTS) == key
    assert export.cache_key("toy", "v", module, (torch.zeros(1, 4, 32, 32), TOY_INPUTS[1])) != key
    assert export.cache_key("toy", "v", module, TOY_INPUTS, rewrites=["two_pass_instance_norm"]) != key
    with torch.no_grad():
        module.conv.bias[0] += 1e-6
    assert export.cache_key("toy", "v", module, TOY_INPUTS) != key


def test_two_pass_instance_norm_matches_torch():
    torch.manual_seed(3)
    module = OneHead().eval()
    with torch.no_grad():
        module.norm.weight.uniform_(0.5, 2.0)
        module.norm.bias.uniform_(-1.0, 1.0)
    rewritten = rewrites.with_two_pass_instance_norm(module)
    assert not any(isinstance(m, nn.InstanceNorm2d) for m in rewritten.modules())
    assert any(isinstance(m, nn.InstanceNorm2d) for m in module.modules())  # the original is untouched
    with torch.no_grad():
        torch.testing.assert_close(rewritten(*TOY_INPUTS), module(*TOY_INPUTS), atol=1e-5, rtol=1e-5)


def small_networks(separable: bool) -> dict[str, nn.Module]:
    """The per-frame THA3 networks at toy sizes (random weights), as the poser holds them."""
    from talkinghead.tha3 import BodyRotator, Editor, EyebrowMorphingCombiner, FaceMorpher
    from talkinghead.tha3.editor import EditorChanges

    kw = dict(separable=separable, start_channels=8, bottleneck_size=8, num_bottleneck_blocks=2, max_channels=32)
    return {"eyebrow_morphing_combiner": EyebrowMorphingCombiner(image_size=32, **kw),
            "face_morpher": FaceMorpher(image_size=32, **kw),
            "two_algo_face_body_rotator": BodyRotator(image_size=32, **kw),
            "editor": EditorChanges(Editor(image_size=32, **kw))}


def small_inputs(name: str) -> tuple[torch.Tensor, ...]:
    return tuple(torch.rand(*shape[:-2], 32, 32, dtype=torch.float64) * 2 - 1 if len(shape) == 4 else
                 torch.rand(*shape, dtype=torch.float64) for shape in backends.INPUT_SHAPES[name])


@pytest.mark.parametrize("separable", [True, False], ids=["separable", "standard"])
@pytest.mark.parametrize("rewrite", sorted(rewrites.REWRITES))
def test_rewrites_compute_the_same_function(rewrite, separable):
    """In float64, where only the order of operations differs, each rewrite matches the module to ~1e-12."""
    torch.manual_seed(4)
    for name, module in small_networks(separable).items():
        module = module.double().eval()
        with torch.no_grad():  # random affine norm parameters, so the norms' scale and shift matter
            for m in module.modules():
                if isinstance(m, nn.InstanceNorm2d):
                    m.weight.uniform_(0.5, 2.0)
                    m.bias.uniform_(-1.0, 1.0)
        inputs = small_inputs(name)
        rewritten = rewrites.REWRITES[rewrite](module)
        with torch.no_grad():
            expected, actual = module(*inputs), rewritten(*inputs)
        assert type(actual) is type(expected), name
        for a, e in zip(*(x if isinstance(x, tuple) else (x,) for x in (actual, expected))):
            torch.testing.assert_close(a, e, atol=1e-10, rtol=1e-10, msg=f"{rewrite} {name}")


@pytest.mark.parametrize("separable", [True, False], ids=["separable", "standard"])
def test_rewrites_remove_what_they_should(separable):
    networks = small_networks(separable)
    editor = rewrites.with_resize_conv_as_transposed(networks["editor"])
    rotator = rewrites.with_resize_conv_as_transposed(networks["two_algo_face_body_rotator"])
    for rewritten, original in ((editor, networks["editor"]), (rotator, networks["two_algo_face_body_rotator"])):
        assert any(isinstance(m, nn.Upsample) for m in original.modules())
        assert not any(isinstance(m, nn.Upsample) for m in rewritten.modules())
    morpher = rewrites.with_merged_heads(networks["face_morpher"])
    assert isinstance(morpher, rewrites.MergedHeadsFaceMorpher) and morpher.heads.sizes == [2, 1, 4, 1, 4]
    # Modules a rewrite does not know pass through as copies.
    module = OneHead()
    for rewrite in rewrites.REWRITES.values():
        assert type(rewrite(module)) is OneHead and rewrite(module) is not module


# ---- the real networks ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def character():
    from conftest import require

    missing = weights.missing_or_corrupt()
    require(not missing, f"THA3 weights missing or corrupt ({', '.join(missing)}): run `python -m talkinghead.weights`")
    from talkinghead.image import load_character

    return load_character(weights.DEFAULT_CHARACTER.read_bytes())


@pytest.fixture(scope="module")
def reference(character):
    """The torch poser, reference frames for a few poses, and each network's real inputs and outputs."""
    from talkinghead.tha3.poser import Poser

    poser = Poser.load(weights.MODELS_DIR, "separable_float", "cpu")
    poser.set_image(character)
    calls = {}

    def record(name):
        def hook(_module, args, output):  # returns None: the output stays as it is
            calls.setdefault(name, (tuple(a.clone() for a in args), output))
        return hook

    hooks = [net.register_forward_hook(record(name)) for name, net in poser.networks.items()]
    poses = random_poses(3, seed=0)
    frames = [poser.pose(p) for p in poses]
    for hook in hooks:
        hook.remove()
    return poser, poses, frames, calls


@pytest.fixture(scope="module")
def backend_posers(character, cache_dir):
    from talkinghead.tha3.poser import Poser

    posers = {}

    def get(backend: str):
        if backend not in posers:
            poser = backends.apply_backend(Poser.load(weights.MODELS_DIR, "separable_float", "cpu"), backend,
                                           cache_dir=cache_dir)
            poser.set_image(character)
            posers[backend] = poser
        return posers[backend]

    return get


@pytest.mark.slow
@external_backends
def test_apply_backend_swaps_the_per_frame_networks(backend, backend_posers, reference):
    poser = backend_posers(backend)
    for name in PER_FRAME_NETWORKS:
        assert isinstance(poser.networks[name], backends.BackendNetwork)
    assert backends.active_backend(poser) == backend
    assert poser.networks["eyebrow_decomposer"] is not None
    assert not isinstance(poser.networks["eyebrow_decomposer"], backends.BackendNetwork)
    assert backends.apply_backend(poser, backend) is poser  # applying twice changes nothing


@pytest.mark.slow
@external_backends
@pytest.mark.parametrize("name", PER_FRAME_NETWORKS)
def test_network_matches_torch(backend, name, backend_posers, reference):
    _, _, _, calls = reference
    inputs, expected = calls[name]
    with torch.inference_mode():
        actual = backend_posers(backend).networks[name](*inputs)
    assert type(actual) is type(expected)
    for i, (a, e) in enumerate(zip(*(x if isinstance(x, tuple) else (x,) for x in (actual, expected)))):
        assert_close(a, e, f"{backend} {name} output {i}")


@pytest.mark.slow
@external_backends
def test_frames_match_torch(backend, backend_posers, reference):
    _, poses, frames, _ = reference
    poser = backend_posers(backend)
    for i, (pose, frame) in enumerate(zip(poses, frames)):
        assert_close(poser.pose(pose), frame, f"{backend} frame {i}")


@pytest.mark.slow
@external_backends
def test_rendered_frames_within_one_level(backend, backend_posers, reference):
    from talkinghead.tha3.poser import tensor_to_rgba_uint8

    _, poses, frames, _ = reference
    rendered = backend_posers(backend).render(poses[0]).astype(np.int16)
    expected = tensor_to_rgba_uint8(frames[0]).astype(np.int16)
    assert np.abs(rendered - expected).max() <= 1


@pytest.mark.slow
@external_backends
def test_restart_reuses_the_exported_graphs(backend, backend_posers, cache_dir, monkeypatch):
    from talkinghead.tha3.poser import Poser

    backend_posers(backend)  # exported by now
    graphs = {p: p.stat().st_mtime_ns for p in (cache_dir / "onnx").glob("*.onnx")}

    def no_export(*args, **kwargs):
        raise AssertionError("exported again although the cache holds this graph")

    monkeypatch.setattr(torch.onnx, "export", no_export)
    poser = backends.apply_backend(Poser.load(weights.MODELS_DIR, "separable_float", "cpu"), backend,
                                   cache_dir=cache_dir)
    assert all(isinstance(poser.networks[n], backends.BackendNetwork) for n in PER_FRAME_NETWORKS)
    assert {p: p.stat().st_mtime_ns for p in (cache_dir / "onnx").glob("*.onnx")} == graphs
