"""The avatars of a server: id → TalkingHead, all on one SharedEngine (one set of networks, one pair of turns on
them), at most `max_avatars` of them, the default one included.

    avatars = Avatars(default_engine, max_avatars=8)
    avatars.create("alice")            # the default character; or create("bob", image=png_bytes)
    avatars.get("alice").set_emotion("joy")
    avatars.capture("alice").start("vmc", port=39540)   # its own face capture (made on first use)
    avatars.delete("alice")            # its threads and capture end, its viewers' streams end, its memory goes

Ids match ID (safe in a URL path segment). DEFAULT ("default") is the server's first avatar, the one the
SillyTavern-Extras routes act on; it is never deleted. Each avatar has its own image, animator (emotion,
talking, lip-sync track, settings), templates, capture override and stream (talkinghead.engine), and its own
face capture (`captures`, talkinghead.mocap.Captures: a Puppeteer on its own UDP port, made on first use).

Threads: HTTP threads. `_lock` guards the table and the ids being made; making an avatar (its first frame: a
keyframe's time on a CPU), closing one (joining its threads) and its capture (`captures`' own lock) happen
outside it.
"""
from __future__ import annotations

import itertools
import logging
import re
import threading

from talkinghead.image import load_character
from talkinghead.mocap import Captures, Puppeteer

log = logging.getLogger(__name__)

ID = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
ID_RULE = "1 to 64 characters: lower-case letters, digits, '_' and '-', starting with a letter or a digit"
DEFAULT = "default"
DEFAULT_MAX_AVATARS = 8


class AvatarError(Exception):
    """A request about avatars that cannot be done; the message says why."""


class BadAvatarId(AvatarError):
    pass


class UnknownAvatar(AvatarError):
    pass


class AvatarExists(AvatarError):
    pass


class TooManyAvatars(AvatarError):
    pass


class DefaultAvatar(AvatarError):
    """The default avatar cannot be deleted."""


def _unknown(avatar_id) -> UnknownAvatar:
    return UnknownAvatar(f"no avatar {str(avatar_id)[:80]!r}; GET /api/talkinghead/avatars lists them")


def check_id(avatar_id) -> str:
    if not isinstance(avatar_id, str) or not ID.fullmatch(avatar_id):
        raise BadAvatarId(f"bad avatar id {str(avatar_id)[:80]!r}: {ID_RULE}")
    return avatar_id


class Avatars:
    def __init__(self, default, max_avatars: int = DEFAULT_MAX_AVATARS, *, listen: bool = False):
        """default: the server's first avatar (a talkinghead.engine.TalkingHead); the others share its networks.
        listen: face capture listens on every interface (--listen: a phone on the network), else loopback."""
        self.shared = default.shared
        self.max_avatars = max_avatars
        self.captures = Captures(listen=listen)
        self._lock = threading.Lock()
        self._avatars = {DEFAULT: default}
        self._coming: set[str] = set()  # ids being made (counted against the cap, not yet looked up)
        self._numbers = itertools.count(1)

    def get(self, avatar_id: str):
        with self._lock:
            avatar = self._avatars.get(avatar_id)
        if avatar is None:
            raise _unknown(avatar_id)
        return avatar

    def items(self) -> list:
        with self._lock:
            return list(self._avatars.items())

    def capture_status(self, avatar_id: str) -> dict:
        """What GET /mocap says: the avatar's capture, or, before its first use, an idle one's state (a GET
        makes nothing: a capture set as the pose override is a change of the avatar's future). Raises
        UnknownAvatar."""
        avatar = self.get(avatar_id)
        puppeteer = self.captures.made(avatar_id, avatar)
        return (puppeteer or Puppeteer(listen=self.captures.listen)).status()

    def capture(self, avatar_id: str):
        """The avatar's face capture (a talkinghead.mocap.Puppeteer), made on first use and set as its pose
        override. Raises UnknownAvatar."""
        avatar = self.get(avatar_id)
        puppeteer = self.captures.of(avatar_id, avatar)
        with self._lock:
            deleted = self._avatars.get(avatar_id) is not avatar
        if deleted:  # meanwhile, after `delete` closed its capture: close the one just made
            self.captures.close(avatar_id, avatar)
            raise _unknown(avatar_id)
        return puppeteer

    def describe(self) -> list[dict]:
        return [{"id": avatar_id, "emotion": avatar.animator.emotion, "talking": avatar.animator.talking,
                 "viewers": avatar.viewers.count} for avatar_id, avatar in self.items()]

    def create(self, avatar_id: str | None = None, image: bytes | None = None) -> str:
        """A new avatar showing `image` (an upload, checked as `load` checks it; None: the server's default
        character), started; returns its id (made up when None). Raises BadAvatarId, AvatarExists,
        TooManyAvatars, image.ImageError (nothing made) or shared.OneCharacterPoser."""
        with self._lock:
            avatar_id = self._new_id() if avatar_id is None else check_id(avatar_id)
            if avatar_id in self._avatars or avatar_id in self._coming:
                raise AvatarExists(f"avatar {avatar_id!r} exists already")
            if len(self._avatars) + len(self._coming) >= self.max_avatars:
                raise TooManyAvatars(f"this server holds at most {self.max_avatars} avatars, the default one "
                                     "included (--talkinghead-max-avatars); delete one first")
            self._coming.add(avatar_id)
        from talkinghead.engine import TalkingHead  # here: the HTTP module imports this file for its errors

        try:
            character = load_character(image) if image is not None else self.shared.default_character
            if character is None:
                raise AvatarError("this server has no default character: send the avatar's image")
            avatar = TalkingHead(self.shared.character_poser(), shared=self.shared)
            avatar.start(character)
        except BaseException:
            with self._lock:
                self._coming.discard(avatar_id)
            raise
        with self._lock:
            self._coming.discard(avatar_id)
            self._avatars[avatar_id] = avatar
        log.info("avatar %r made (%d of at most %d)", avatar_id, len(self._avatars), self.max_avatars)
        return avatar_id

    def delete(self, avatar_id: str) -> None:
        """Close the avatar: its capture stops (its UDP port is free), its threads end, its viewers' streams end,
        and its memory goes with the last reference (an HTTP thread still at work on it keeps it until it
        answers)."""
        if avatar_id == DEFAULT:
            raise DefaultAvatar("the default avatar cannot be deleted (the SillyTavern-Extras routes use it); "
                                "unload it to pause it")
        with self._lock:
            avatar = self._avatars.pop(avatar_id, None)
        if avatar is None:
            raise _unknown(avatar_id)
        self.captures.close(avatar_id, avatar)
        avatar.close()
        log.info("avatar %r deleted", avatar_id)

    def close(self) -> None:
        """Delete every avatar but the default one (which its maker closes), and stop every capture, the default
        one's too (server shutdown)."""
        for avatar_id, _ in self.items():
            if avatar_id != DEFAULT:
                self.delete(avatar_id)
        self.captures.close_all()

    def _new_id(self) -> str:
        """Under the lock: an id nobody has."""
        while True:
            avatar_id = f"avatar-{next(self._numbers)}"
            if avatar_id not in self._avatars and avatar_id not in self._coming:
                return avatar_id
