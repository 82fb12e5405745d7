"""One list of the 28 emotion labels: talkinghead.emotions.EMOTIONS. The classifier reads it; the copies that
cannot import it (the SillyTavern extension's JavaScript, docs/api.md) are held to it here."""
from __future__ import annotations

import re
from pathlib import Path

from classifier import labels
from talkinghead.emotions import EMOTIONS, TEMPLATE_DIR

REPO = Path(__file__).resolve().parent.parent
EXTENSION = REPO / "clients" / "sillytavern"
# A JavaScript array literal of quoted strings (single or double quotes, any line breaks).
JS_STRING_ARRAY = re.compile(r"\[\s*((?:(['\"])[a-z_]+\2\s*,\s*)+(['\"])[a-z_]+\3\s*,?\s*)\]")


def js_label_lists(source: str) -> list[list[str]]:
    """Every array literal of strings in `source` that holds emotion labels (at least ten of them)."""
    found = []
    for match in JS_STRING_ARRAY.finditer(source):
        items = re.findall(r"['\"]([a-z_]+)['\"]", match.group(1))
        if len(set(items) & set(EMOTIONS)) >= 10:
            found.append(items)
    return found


def test_the_classifier_labels_are_the_emotions():
    assert labels.LABELS is EMOTIONS and len(EMOTIONS) == 28 == len(set(EMOTIONS))
    assert set(labels.FAMILY_OF) == set(EMOTIONS)
    assert sorted(path.stem for path in TEMPLATE_DIR.glob("*.json")) == sorted(EMOTIONS)


def test_the_sillytavern_extension_has_the_same_labels_or_asks_the_server():
    """A copy in the extension's JavaScript must be the same list, in the same order; without a copy, the
    extension must take them from the server (GET /api/talkinghead/emotions or /api/classify/labels)."""
    copies = {}
    for path in sorted(EXTENSION.rglob("*.js")):
        for items in js_label_lists(path.read_text(encoding="utf-8")):
            copies.setdefault(path.name, []).append(items)
    for name, lists in copies.items():
        for items in lists:
            assert items == list(EMOTIONS), (
                f"clients/sillytavern/{name}: its emotion list differs from talkinghead.emotions.EMOTIONS: "
                f"missing {sorted(set(EMOTIONS) - set(items))}, extra {sorted(set(items) - set(EMOTIONS))}, "
                "or another order")
    if not copies:
        sources = "".join(path.read_text(encoding="utf-8") for path in EXTENSION.rglob("*.js"))
        assert "/api/talkinghead/emotions" in sources or "/api/classify/labels" in sources, \
            "the extension neither lists the emotions nor asks the server for them"


def test_the_reader_finds_a_copy_and_its_drift():
    good = "const EMOTIONS = [" + ", ".join(f"'{e}'" for e in EMOTIONS) + "];"
    assert js_label_lists(good) == [list(EMOTIONS)]
    assert js_label_lists(good.replace("'pride', ", "")) == [[e for e in EMOTIONS if e != "pride"]]
    assert js_label_lists('const MODES = ["png", "jpeg"];') == []


def test_docs_api_lists_the_same_labels():
    text = " ".join((REPO / "docs" / "api.md").read_text(encoding="utf-8").split())
    listed = re.search(r"the 28 GoEmotions labels: ([a-z, ]+)\.", text)
    assert listed, "docs/api.md: the sentence listing the 28 labels is gone (update this test)"
    assert [w.strip() for w in listed.group(1).split(",")] == list(EMOTIONS)
