"""Face capture drives the character: the receivers' decoders (`ifacialmocap`, `vmc`), the capture → pose table
(`mapping`) and the `Puppeteer` that runs a source and publishes the pose override (`puppeteer`).

The puppeteer's names are re-exported here: `from talkinghead.mocap import Puppeteer, MocapError, parse_spec`.
"""
from talkinghead.mocap.puppeteer import (EASE_IN, EASE_OUT, FACE_STEP, HANDSHAKE_EVERY, MAX_PACKET, ROTATION_STEP,
                                         SOURCES, TIMEOUT, MocapError, Puppeteer, parse_spec)

__all__ = ["EASE_IN", "EASE_OUT", "FACE_STEP", "HANDSHAKE_EVERY", "MAX_PACKET", "ROTATION_STEP", "SOURCES",
           "TIMEOUT", "MocapError", "Puppeteer", "parse_spec"]
