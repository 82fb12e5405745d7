"""Face capture drives the character: the receivers' decoders (`ifacialmocap`, `vmc`), the capture → pose table
(`mapping`), the `Puppeteer` that runs a source and publishes the pose override (`puppeteer`), and `Captures`,
one puppeteer per avatar (`captures`).

The names are re-exported here: `from talkinghead.mocap import Captures, Puppeteer, MocapError, parse_spec`.
"""
from talkinghead.mocap.puppeteer import (EASE_IN, EASE_OUT, FACE_STEP, HANDSHAKE_EVERY, MAX_PACKET, ROTATION_STEP,
                                         SOURCES, TIMEOUT, MocapError, PortTaken, Puppeteer, default_port,
                                         parse_spec)
from talkinghead.mocap.captures import Captures  # noqa: E402  (after the puppeteer, which it uses)

__all__ = ["EASE_IN", "EASE_OUT", "FACE_STEP", "HANDSHAKE_EVERY", "MAX_PACKET", "ROTATION_STEP", "SOURCES",
           "TIMEOUT", "Captures", "MocapError", "PortTaken", "Puppeteer", "default_port", "parse_spec"]
