"""Each avatar's face capture: avatar id → its own Puppeteer, made on first use and set as that avatar's pose
override, so that several avatars are driven at once by several senders (phones, VMC apps), each on its own UDP
port. A port one avatar's capture listens on is refused to the others (PortTaken names the holder), and closing
an avatar's capture frees its port. talkinghead.avatars.Avatars holds one of these for its avatars.

    captures = Captures(listen=False)
    captures.of("alice", alice).start("vmc", port=39540)   # alice's pose follows the sender on 39540
    captures.close("alice")                                 # stopped for good, the port free

Threads: HTTP threads (make, look up, close), and each puppeteer's `start` asking who holds a port. `_lock`
guards the table only: the puppeteers are made, connected, asked and closed outside it.
"""
from __future__ import annotations

import threading

from talkinghead.mocap.puppeteer import Puppeteer


class Captures:
    def __init__(self, *, listen: bool = False):
        """listen: the puppeteers listen on every interface (a phone on the network), else on loopback only."""
        self.listen = listen
        self._lock = threading.Lock()
        self._table: dict[str, tuple[object, Puppeteer]] = {}  # id → (the avatar, its puppeteer)

    def of(self, avatar_id: str, avatar) -> Puppeteer:
        """The avatar's puppeteer (`avatar`: a talkinghead.engine.TalkingHead), made and set as its pose override
        on first use."""
        with self._lock:
            found = self._table.get(avatar_id)
            if found is not None and found[0] is avatar:
                return found[1]
            puppeteer = Puppeteer(listen=self.listen, port_holder=lambda port: self._holder(port, avatar_id))
            self._table[avatar_id] = (avatar, puppeteer)
        if found is not None:  # an earlier avatar of that id, never closed: its port is freed
            found[1].close()
        avatar.set_pose_override(puppeteer)
        return puppeteer

    def made(self, avatar_id: str, avatar) -> Puppeteer | None:
        """The avatar's puppeteer if one was made (None: its capture was never asked to do anything)."""
        with self._lock:
            found = self._table.get(avatar_id)
        return found[1] if found is not None and found[0] is avatar else None

    def close(self, avatar_id: str, avatar=None) -> None:
        """Stop the avatar's puppeteer for good and forget it (only if it is `avatar`'s, when given)."""
        with self._lock:
            found = self._table.get(avatar_id)
            if found is None or (avatar is not None and found[0] is not avatar):
                return
            del self._table[avatar_id]
        found[1].close()

    def close_all(self) -> None:
        with self._lock:
            found, self._table = list(self._table.values()), {}
        for _, puppeteer in found:
            puppeteer.close()

    def _holder(self, port: int, asking: str) -> str | None:
        """Which other avatar's capture listens on `port`, in words (None: none)."""
        with self._lock:
            others = [(avatar_id, p) for avatar_id, (_, p) in self._table.items() if avatar_id != asking]
        for avatar_id, puppeteer in others:
            running = puppeteer.listening()
            if running is not None and running[1] == port:
                return f"the {running[0]} capture of avatar {avatar_id!r}"
        return None
