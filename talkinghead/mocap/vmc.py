"""The VMC protocol: OSC over UDP (receivers listen on 39539 by default), decoded by python-osc.

    /VMC/Ext/Blend/Val  (s name, f value)       staged…
    /VMC/Ext/Blend/Apply                       …and applied together
    /VMC/Ext/Bone/Pos   (s bone, f px py pz, f qx qy qz qw)   local rotations; Head, Neck, Spine, Chest…

Blend names are VRM presets (A, I, U, E, O, Blink, Blink_L, Joy, …; VRM 1.0: aa, blinkLeft, happy, …) or
ARKit names in any capitalisation. `VmcDecoder.parse(datagram)` applies one packet (a message or a bundle,
timetags ignored: live capture is shown at once) and gives the face as it now stands, or None when the
packet changed nothing shown (a staged blend, another message); MalformedPacket for anything python-osc
cannot parse or whose arguments are not what the address needs.
"""
from __future__ import annotations

import math

from pythonosc import osc_packet
from pythonosc.dispatcher import Dispatcher

from talkinghead.mocap.mapping import Capture, canonical, euler_degrees, quaternion_product

PORT = 39539
MAX_BLENDS = 256  # distinct blend names kept (a hostile sender cannot grow the table without bound)
MAX_NAME = 64
HEAD_BONES = ("Neck", "Head")  # parent first
BODY_BONES = ("Spine", "Chest", "UpperChest")


class MalformedPacket(ValueError):
    pass


class VmcDecoder:
    def __init__(self):
        self.dispatcher = Dispatcher()
        self.dispatcher.map("/VMC/Ext/Blend/Val", self._blend_value)
        self.dispatcher.map("/VMC/Ext/Blend/Apply", self._blend_apply)
        self.dispatcher.map("/VMC/Ext/Bone/Pos", self._bone)
        self._staged: dict[str, float] = {}
        self._applied: dict[str, float] = {}
        self._bones: dict[str, tuple[float, float, float, float]] = {}
        self._changed = False

    def parse(self, data: bytes) -> Capture | None:
        try:
            packet = osc_packet.OscPacket(data)
            messages = packet.messages
        except osc_packet.ParseError as e:
            raise MalformedPacket(str(e)[:80]) from None
        except Exception as e:  # python-osc on hostile bytes: IndexError, struct.error, RecursionError…
            raise MalformedPacket(f"{type(e).__name__}") from None
        self._changed = False
        for timed in messages:
            address = timed.message.address
            if not isinstance(address, str) or len(address) > 64:
                raise MalformedPacket("bad address")
            for handler in self.dispatcher.handlers_for_address(address):
                handler.invoke(None, timed.message)
        return self.capture() if self._changed else None

    def capture(self) -> Capture:
        return Capture(shapes=dict(self._applied), head=self._rotation(HEAD_BONES), body=self._rotation(BODY_BONES))

    def _rotation(self, bones: tuple[str, ...]) -> tuple[float, float, float] | None:
        present = [self._bones[b] for b in bones if b in self._bones]
        if not present:
            return None
        q = present[0]
        for child in present[1:]:
            q = quaternion_product(q, child)
        return euler_degrees(*q)

    # -- handlers (python-osc calls them with the address and the message's arguments) -------------------
    def _blend_value(self, _address, *args) -> None:
        if len(args) != 2 or not isinstance(args[0], str) or not _is_number(args[1]):
            raise MalformedPacket("Blend/Val wants (name, value)")
        name = canonical(args[0])
        if len(name) > MAX_NAME:
            raise MalformedPacket("blend name too long")
        if name not in self._staged and len(self._staged) >= MAX_BLENDS:
            raise MalformedPacket("too many blend names")
        self._staged[name] = min(max(float(args[1]), 0.0), 1.0)

    def _blend_apply(self, _address, *args) -> None:
        if self._staged != self._applied:
            self._applied = dict(self._staged)
        self._changed = True

    def _bone(self, _address, *args) -> None:
        if len(args) != 8 or not isinstance(args[0], str) or not all(_is_number(a) for a in args[1:]):
            raise MalformedPacket("Bone/Pos wants (name, px, py, pz, qx, qy, qz, qw)")
        name = args[0]
        if name in HEAD_BONES or name in BODY_BONES:
            q = tuple(float(a) for a in args[4:])
            try:
                euler_degrees(*q)
            except ValueError:
                raise MalformedPacket("bad rotation") from None
            self._bones[name] = q
            self._changed = True


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) \
        and abs(value) < 1e6
