"""What every avatar of a server shares: one set of networks and the turns on them, and how avatars stream.

The networks are one Poser's modules on one backend; each avatar's poser (`character_poser`) holds only its
own image and caches, on the very same modules (no copy of the weights). The turns (talkinghead.turns) are the
worker pool's two lanes: at most one face job and one keyframe job run at once, whichever avatars they are
for, handed out round-robin among the avatars whose workers wait (those with viewers: an unwatched avatar's
workers are paused). Also shared: smooth (CPU) or exact frames, idle_after, where keyframes are kept on disk,
the clock, the user's saved templates, the character a new avatar starts with, what stats say of it all, and
the one thread exact stills are rendered on.

Threads: set up once at start (and `use_template_store`, `default_character` by the first avatar's setup);
read by every avatar after that. `stills` runs one still at a time, for any HTTP thread.
"""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import numpy as np

from talkinghead.turns import PoserTurns


class OneCharacterPoser(RuntimeError):
    """The poser cannot make a twin for another character (a test double, an embedder's own poser)."""


class SharedEngine:
    def __init__(self, poser, *, smooth: bool = False, idle_after: float | None = None, keyframe_disk=None,
                 description: dict | None = None, clock: Callable[[], float] = time.monotonic):
        """poser: the networks (and the first avatar's poser). smooth: frames from keyframes and
        interpolation (a CPU that cannot render exact frames at target_fps), else exact renders. idle_after:
        seconds without a viewer before an avatar stops rendering (None: never). keyframe_disk: where the
        smooth stream keeps each character's keyframes (talkinghead.smooth.KeyframeDisk; None: nowhere)."""
        self.networks = poser
        self.turns = PoserTurns()
        self.smooth = smooth
        self.idle_after = idle_after
        self.keyframe_disk = keyframe_disk
        self.description = dict(description or {})
        self.clock = clock
        self.template_store = None  # talkinghead.user_templates.TemplateStore: the user's saved templates
        self.default_character: np.ndarray | None = None  # what a new avatar shows until it gets its own
        # Exact stills (/render, sprite exports) are rendered on this one thread, whichever HTTP thread asked:
        # a still's ~200 MB of temporaries then stay in one allocator arena, which the next still reuses. Run
        # on each HTTP thread, every thread that served one kept its own until the next trim (memory.py): a
        # burst of six stills raised the server's RSS by ~190 MB, its peak to 1.52 GB.
        self.stills = ThreadPoolExecutor(max_workers=1, thread_name_prefix="talkinghead-still")

    def character_poser(self):
        """A poser for one more character on the shared networks."""
        twin = getattr(self.networks, "with_own_image", None)
        if twin is None:
            raise OneCharacterPoser(f"{type(self.networks).__name__} serves one character only")
        return twin()
