"""Puppeteer: a face-capture source (iFacialMocap, VMC) drives the character's pose (re-exported by talkinghead.mocap).

One receiver thread per running source reads UDP packets, decodes them (ifacialmocap.parse, vmc.VmcDecoder),
maps them to the 45 THA3 values (mapping.Mapper) and publishes the result for the engine, which asks
`override_at(t)` for each pose (talkinghead.capture.PoseOverride). What it publishes is a pure function of t, so
the smooth stream may render ahead: from the shown values it moves in a straight line to the newest capture
over `ramp()` seconds (the smoothing: one frame on an exact renderer; on the CPU the time a face and a
keyframe take, the soonest a frame can show a new head pose), then holds it. Each publication is an event
(the engine's `on_change`, given by `connect`; the generation goes up); packets that come faster than one per
ramp (or change nothing visible) wait: only the latest is published. After TIMEOUT s without a packet the
override eases out over EASE_OUT s (another event), and the animator's idle motion is back; the next packet
eases in over EASE_IN s.

Emotions are suspended while capture drives: every value but breathing is the capture's (the unmapped ones
0), because the user's face is the expression, and an emotion template layered on it would fight it (a
template's smile on the user's open mouth). The animator keeps following set_emotion meanwhile, so when
capture stops the character eases into the emotion of the moment. Breathing stays the animator's.

Packets that do not decode, are too big, or say nothing usable are counted (`dropped`) and ignored; the
thread survives anything a packet holds.

Each avatar has its own Puppeteer (talkinghead.mocap.captures), each on its own port: `port_holder`, given at
construction, names who else on this server listens on a port (another avatar's capture), so that `start`
refuses it (PortTaken) before anything changes. `close` is for good (the avatar is gone): a later `start` is
refused, so no socket is bound for an avatar that no longer exists.

Threads: the receiver thread and HTTP threads. `_lock` guards the capture state (source, options, socket,
thread, mapping, counters, the published track, closed); `on_change` and `port_holder` are called outside it.
"""
from __future__ import annotations

import collections
import ipaddress
import logging
import socket
import threading
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from talkinghead import pose as P
from talkinghead.curves import smoothstep as _smoothstep
from talkinghead.mocap import ifacialmocap, vmc
from talkinghead.mocap.mapping import DRIVEN, Capture, Mapper

log = logging.getLogger(__name__)

SOURCES = ("ifacialmocap", "vmc")
TIMEOUT = 1.0  # seconds without a packet: the animator takes over again
EASE_OUT = 0.5
EASE_IN = 0.2
MAX_PACKET = 16384  # bytes; a VMC bundle of all bones and blends is ~6 KB, iFacialMocap's text ~1.5 KB
HANDSHAKE_EVERY = 2.0  # seconds between iFacialMocap handshakes while the phone sends nothing
FACE_STEP = 1 / 32  # a face value must change this much to be news (the smooth stream's face lattice)
ROTATION_STEP = 0.005  # a head/body value must change this much (0.075° of pitch)


class MocapError(ValueError):
    """A bad source spec or request, or a port that cannot be bound; the message says which."""


class PortTaken(MocapError):
    """Another capture of this server (another avatar's) listens on the port; it keeps running."""


def default_port(source: str) -> int:
    return ifacialmocap.PORT if source == "ifacialmocap" else vmc.PORT


@dataclass(frozen=True)
class _Track:
    """What is published: from `start` values move to `target` over [t0, t0 + ramp]; weight eases in from
    `began` and out from `released`."""
    generation: int
    start: np.ndarray
    target: np.ndarray
    t0: float
    ramp: float
    began: float
    released: float | None

    def values(self, t: float) -> np.ndarray:
        if self.ramp <= 0 or t >= self.t0 + self.ramp:
            return self.target
        a = min(max((t - self.t0) / self.ramp, 0.0), 1.0)
        return (1 - a) * self.start + a * self.target

    def weight(self, t: float) -> float:
        w = _smoothstep((t - self.began) / EASE_IN)
        if self.released is not None:
            w = min(w, 1.0 - _smoothstep((t - self.released) / EASE_OUT))
        return w


def parse_spec(spec: str) -> tuple[str, dict]:
    """`ifacialmocap[:PHONE_IP]` or `vmc[:PORT]` → (source, options for start())."""
    source, _, arg = spec.strip().partition(":")
    source = source.lower()
    if source == "ifacialmocap":
        return source, ({"phone": arg} if arg else {})
    if source == "vmc":
        if not arg:
            return source, {}
        if not arg.isdigit() or not 0 < int(arg) < 65536:
            raise MocapError(f"vmc:PORT needs a port number 1-65535, got {arg!r}")
        return source, {"port": int(arg)}
    raise MocapError(f"unknown mocap source {source!r}; use ifacialmocap[:PHONE_IP] or vmc[:PORT]")


class Puppeteer:
    """The running capture source (at most one), its statistics, and the published pose override."""

    def __init__(self, *, listen: bool = False, clock: Callable[[], float] = time.monotonic,
                 port_holder: Callable[[int], str | None] = lambda port: None):
        """port_holder(port): who else on this server listens on `port` (e.g. "the vmc capture of avatar 'alice'"),
        or None: `start` refuses a port it names."""
        self.host = "0.0.0.0" if listen else "127.0.0.1"
        self._clock = clock
        self._port_holder = port_holder
        self._closed = False
        self._lock = threading.Lock()  # everything below; the thread and the HTTP threads share it
        self.mapper = Mapper()
        self._on_change: Callable[[], None] = lambda: None  # the engine's (connect): an event
        self._ramp: Callable[[], float] = lambda: 1 / 25  # the engine's (connect): seconds to the newest capture
        self._track: _Track | None = None
        self._generation = 0
        self._source: str | None = None
        self._options: dict = {}
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._reset_stats()

    # -- control ---------------------------------------------------------------------------------------------
    def start(self, source: str, *, port: int | None = None, phone: str | None = None) -> None:
        """Listen for `source` (replacing the running one). Raises PortTaken (another capture of this server
        listens there; nothing changes) or MocapError (bad option, port in use by another program, closed)."""
        if source not in SOURCES:
            raise MocapError(f"unknown mocap source {source!r}; known: {', '.join(SOURCES)}")
        if phone is not None:
            try:
                ipaddress.ip_address(phone)
            except ValueError:
                raise MocapError(f"phone must be an IP address, got {phone[:40]!r}") from None
            if source != "ifacialmocap":
                raise MocapError("phone is for ifacialmocap only")
        if port is None:
            port = default_port(source)
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port < 65536:
            raise MocapError(f"port must be 0-65535, got {port!r}")
        holder = self._port_holder(port) if port else None  # port 0: any free port, never taken
        if holder:
            raise PortTaken(f"UDP port {port} is taken by {holder}, which keeps running: stop that one "
                            '({"on": false}) or choose another "port"')
        if self._closed:
            raise MocapError("this capture is closed: its avatar was deleted")
        self.stop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.bind((self.host, port))
        except OSError as e:
            sock.close()
            raise MocapError(f"cannot listen for {source} on UDP {self.host}:{port}: {e.strerror or e}") from None
        sock.settimeout(0.05)
        decoder = ifacialmocap.parse if source == "ifacialmocap" else vmc.VmcDecoder().parse
        if phone and self.host == "127.0.0.1" and not ipaddress.ip_address(phone).is_loopback:
            log.warning("mocap: listening on loopback only; a phone at %s cannot reach it: start with --listen",
                        phone)
        with self._lock:
            if self._closed:  # closed while binding: the socket is nobody's
                sock.close()
                raise MocapError("this capture is closed: its avatar was deleted")
            self._source, self._options = source, {"port": sock.getsockname()[1], "phone": phone}
            self._sock = sock
            self._reset_stats()
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._run, args=(sock, decoder, phone, self._stop),
                                            name=f"mocap-{source}", daemon=True)
            self._thread.start()
        log.info("mocap: listening for %s on UDP %s:%d", source, self.host, self._options["port"])

    def stop(self) -> None:
        """Stop listening; the character eases back to the animator."""
        with self._lock:
            thread, sock, self._thread, self._sock = self._thread, self._sock, None, None
            self._stop.set()
        if thread is not None:
            thread.join(timeout=2)
        if sock is not None:
            sock.close()
        with self._lock:
            self._source = None
            self._release(self._clock())

    def close(self) -> None:
        """Stop for good (the avatar is gone): the socket is freed, a later `start` is refused."""
        with self._lock:
            self._closed = True
        self.stop()

    def listening(self) -> tuple[str, int] | None:
        """(source, UDP port) while it runs; None when stopped."""
        with self._lock:
            return (self._source, self._options["port"]) if self._thread is not None else None

    def calibrate(self, on: bool = True) -> None:
        """The latest capture is the resting face (on=False: forget it). MocapError with no capture yet."""
        with self._lock:
            if on and self._raw is None:
                raise MocapError("no capture data yet: calibrate while the sender is sending your resting face")
            self.mapper.calibrate(self._raw if on else None)
            self._remap()

    def set_gains(self, gains: dict[str, float]) -> None:
        for name, gain in gains.items():
            if name not in P.INDEX:
                raise MocapError(f"unknown pose parameter {name!r}")
            if isinstance(gain, bool) or not isinstance(gain, (int, float)) or not -10.0 <= gain <= 10.0:
                raise MocapError(f"gain of {name!r} must be a number in -10..10")
        with self._lock:
            for name, gain in gains.items():
                self.mapper.set_gain(name, float(gain))
            self._remap()

    # -- what the engine asks --------------------------------------------------------------------------------
    def connect(self, on_change: Callable[[], None], ramp: Callable[[], float]) -> None:
        """The engine that uses this source (talkinghead.capture.PoseOverride): on_change() after each
        publication, ramp() the seconds a move to a new capture takes."""
        with self._lock:
            self._on_change, self._ramp = on_change, ramp

    @property
    def generation(self) -> int:
        return self._generation

    def override_at(self, t: float) -> tuple[np.ndarray, float] | None:
        """(45 values, weight 0..1) to blend over the animator's pose at t (DRIVEN: all but breathing), or
        None: the animator alone. Pure in t until the next on_change()."""
        track = self._track
        if track is None:
            return None
        weight = track.weight(t)
        return (track.values(t), weight) if weight > 0 else None

    def status(self) -> dict:
        now = self._clock()
        with self._lock:
            recent = [t for t in self._arrivals if t > now - 1.0]
            track = self._track
            values = track.values(now) if track else None
            return {
                "source": self._source, "running": self._thread is not None,
                "host": self.host, **{k: v for k, v in self._options.items() if v is not None},
                "packets": self.packets, "packets_per_s": len(recent), "dropped": self.dropped,
                "last_drop": self.last_drop,
                "last_packet_age_s": None if self._last_packet is None else round(now - self._last_packet, 3),
                "driving": bool(track and track.weight(now) > 0), "published": self.published,
                "calibrated": self.mapper.rest is not None,
                "gains": {P.NAMES[i]: float(g) for i, g in enumerate(self.mapper.gains) if g != 1.0},
                "values": (None if values is None else
                           {name: round(float(v), 4) for name, v, d in zip(P.NAMES, values, DRIVEN) if d}),
            }

    # -- the receiver thread -----------------------------------------------------------------------------------
    def _run(self, sock: socket.socket, decode, phone: str | None, stop: threading.Event) -> None:
        last_handshake = -HANDSHAKE_EVERY
        while not stop.is_set():
            try:
                if phone and (self._last_packet is None or self._clock() - self._last_packet > TIMEOUT) \
                        and self._clock() - last_handshake >= HANDSHAKE_EVERY:
                    last_handshake = self._clock()
                    self._send(sock, ifacialmocap.HANDSHAKE_V2.encode("ascii"), (phone, ifacialmocap.PORT))
                try:
                    data, _ = sock.recvfrom(MAX_PACKET + 1)
                except (socket.timeout, BlockingIOError):
                    data = None
                if stop.is_set():
                    return
                now = self._clock()
                if data is not None:
                    self._packet(data, decode, now)
                self._tick(now)
            except OSError:
                if stop.is_set():
                    return
                time.sleep(0.05)  # e.g. ICMP port unreachable after a handshake to a phone that is off
            except Exception:  # never die on a packet
                log.exception("mocap: unexpected error; continuing")
                with self._lock:
                    self.dropped += 1

    def _send(self, sock, data: bytes, address) -> None:
        try:
            sock.sendto(data, address)
        except OSError as e:
            log.debug("mocap: handshake to %s failed: %s", address, e)

    def _packet(self, data: bytes, decode, now: float) -> None:
        with self._lock:
            self.packets += 1
            self._arrivals.append(now)
            if len(data) > MAX_PACKET:
                self._drop(f"oversized ({len(data)} bytes)")
                return
            try:
                capture = decode(data)
            except (ifacialmocap.MalformedPacket, vmc.MalformedPacket) as e:
                self._drop(str(e))
                return
            self._last_packet = now
            if capture is None:
                return
            self._raw = capture
            self._pending = self.mapper.convert(capture)
        # published on the next _tick, at once unless the last publication's ramp is still running

    def _drop(self, why: str) -> None:
        self.dropped += 1
        self.last_drop = why[:100]

    def _tick(self, now: float) -> None:
        """Publish the pending capture when due; release the override after TIMEOUT of silence."""
        changed = False
        with self._lock:
            track = self._track
            if self._pending is not None and (track is None or track.released is not None
                                              or now >= track.t0 + track.ramp):
                changed = self._publish(self._pending, now)
                self._pending = None
            elif (track is not None and track.released is None and self._last_packet is not None
                  and now - self._last_packet >= TIMEOUT):
                changed = self._release(now, notify=False)
        if changed:
            self._on_change()

    def _publish(self, target: np.ndarray, now: float) -> bool:
        """Under the lock. False when the capture shows nothing new (nothing published)."""
        track = self._track
        fresh = track is None or track.released is not None
        if not fresh:
            shown = track.values(now)
            if (np.abs(target[:P.NUM_EYEBROW + P.NUM_FACE] - track.target[:P.NUM_EYEBROW + P.NUM_FACE]).max()
                    < FACE_STEP / 2 and np.abs(target[P.ROTATION] - track.target[P.ROTATION]).max() < ROTATION_STEP):
                return False
        else:
            shown = target
        self._generation += 1
        self.published += 1
        self._track = _Track(self._generation, shown, target, now, max(float(self._ramp()), 0.0),
                             now if fresh else track.began, None)
        return True

    def _release(self, now: float, notify: bool = True) -> bool:
        """Under the lock: ease out from now."""
        track = self._track
        if track is None or track.released is not None:
            return False
        self._generation += 1
        held = track.values(now)
        self._track = _Track(self._generation, held, held, now, 0.0, track.began, now)
        if notify:
            threading.Thread(target=self._on_change, daemon=True).start()  # not under our lock
        return True

    def _remap(self) -> None:
        """Under the lock: a new calibration or gain applies to the latest capture at once."""
        if self._raw is not None and self._track is not None and self._track.released is None:
            self._pending = self.mapper.convert(self._raw)

    def _reset_stats(self) -> None:
        self.packets = 0
        self.dropped = 0
        self.published = 0
        self.last_drop: str | None = None
        self._arrivals: collections.deque[float] = collections.deque(maxlen=2048)
        self._last_packet: float | None = None
        self._raw: Capture | None = None
        self._pending: np.ndarray | None = None
