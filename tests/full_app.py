"""An app with every module on fast stand-ins (the fake poser, a fake classifier): for the tests that go over
all routes (OpenAPI document, --secure, fuzzing)."""
from __future__ import annotations

import modules
from server import Config, create_app


class FakeClassifier:
    name = "fake"
    labels = ["joy", "neutral", "sadness"]

    def classify(self, text: str) -> list[dict]:
        top = "joy" if "happy" in text else "neutral"
        return [{"label": top, "score": 0.9}] + [{"label": n, "score": 0.05} for n in self.labels if n != top]


def full_app(talkinghead_engine, classify_engine=None, **config):
    """create_app with every known module, on the given engines."""
    return create_app(Config(modules=list(modules.KNOWN), **config),
                      engines={"talkinghead": talkinghead_engine, "classify": classify_engine or FakeClassifier()})
