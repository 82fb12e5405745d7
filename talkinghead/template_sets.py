"""One avatar's emotion templates: the server's set (the built-in templates with the user's saved ones over them,
talkinghead.user_templates) and the set in use (the server's, or a client's own: `load_emotion_templates`).

The set in use lives in the animator; `push(templates)`, given at construction, hands it a new one. The lock
guards the server's set and the store, and is held while pushing so that two changes reach the animator in the
order they were made. Lock order: this lock, then the animator's (which calls nobody), never the reverse.
"""
from __future__ import annotations

import threading
from typing import Callable

import numpy as np

from talkinghead import emotions, pose as pose_mod


class TemplateSets:
    def __init__(self, push: Callable[[dict[str, np.ndarray]], None],
                 in_use: Callable[[], dict[str, np.ndarray]]):
        """push(templates): make them the set in use; in_use(): the set in use now."""
        self._push = push
        self._in_use = in_use
        self._lock = threading.Lock()
        self._store = None  # talkinghead.user_templates.TemplateStore, once use_store is called
        self._server = emotions.load_default_templates()

    def use_store(self, store) -> None:
        """Keep saved templates in `store` and use the ones it already holds: they replace the built-in ones in
        the server's set, which becomes the set in use."""
        server_set = {**emotions.load_default_templates(), **store.load()}
        with self._lock:
            self._store = store
            self._server = server_set
            self._push(server_set)

    def load(self, obj: dict) -> None:
        """A client's templates (`{}`: the server's set). Raises emotions.TemplateError; the old set is kept."""
        with self._lock:
            self._push(self._server if not obj else emotions.templates_from_json(obj))

    def save(self, name: str, values: np.ndarray) -> None:
        """Make `values` the template of emotion `name`, kept across restarts; in use at once. Raises
        emotions.TemplateError (unknown emotion) or OSError (not saved; nothing changed)."""
        values = _checked(name, values)
        with self._lock:
            if self._store is not None:
                self._store.save(name, values)
            self._replace(name, values)

    def reset(self, name: str) -> np.ndarray:
        """Back to the built-in template of `name` (the saved one is forgotten); returns it."""
        builtin = _checked(name, emotions.load_default_templates().get(name, pose_mod.zeros()))
        with self._lock:
            if self._store is not None:
                self._store.remove(name)
            self._replace(name, builtin)
        return builtin

    def describe(self) -> dict:
        """For the poser page: the built-in templates, the server's (built-in + saved) and which are saved."""
        with self._lock:
            server_set, store = dict(self._server), self._store

        def as_json(templates):
            return {name: pose_mod.to_dict(values, skip_zeros=True) for name, values in templates.items()}

        return {"builtin": as_json(emotions.load_default_templates()), "server": as_json(server_set),
                "saved": sorted(store.saved()) if store else [],
                "persistent": bool(store and store.persistent)}

    def _replace(self, name: str, values: np.ndarray) -> None:
        """Under the lock: one emotion's template in the server's set and in the set in use (which may be a
        client's own: the user just posed this one and wants to see it)."""
        self._server = {**self._server, name: values}
        self._push({**self._in_use(), name: values})


def _checked(name: str, values: np.ndarray) -> np.ndarray:
    if name not in emotions.EMOTIONS:
        raise emotions.TemplateError(f"unknown emotion {name!r}; known: {', '.join(emotions.EMOTIONS)}")
    return np.array(values, dtype=np.float32).reshape(pose_mod.NUM_PARAMS)
