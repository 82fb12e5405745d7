"""The manual poser: a page the server serves (`/talkinghead/poser`) to pose the character by hand and keep
the poses as emotion templates, plus the small API behind it.

    GET    /talkinghead/poser                      the page (static html/css/js; no key needed to load it)
    GET    /api/talkinghead/pose_params            the 45 parameters: names, ranges, sections, left/right pairs
    GET    /api/talkinghead/templates              built-in, server (built-in + saved) and saved templates
    PUT    /api/talkinghead/templates/<emotion>    {"pose": {morph: value}} → the server's template, kept
    DELETE /api/talkinghead/templates/<emotion>    back to the built-in template
    GET    /api/talkinghead/sprites.zip            28 exact renders, <emotion>.png each (streamed)

The live preview, character upload and `_emotions.json` loading use the existing `/render`, `/load`,
`/load_emotion_templates` and `/emotions`.
"""
from __future__ import annotations

import re
from pathlib import Path

from flask import Blueprint, Response, current_app, jsonify, request, send_from_directory

from modules.errors import ApiError, bad_request, json_body
from talkinghead import emotions, pose as pose_mod, sprites

STATIC_DIR = Path(__file__).resolve().parent / "static" / "poser"
page = Blueprint("talkinghead_poser_page", __name__, url_prefix="/talkinghead/poser")
api = Blueprint("talkinghead_poser", __name__, url_prefix="/api/talkinghead")

# Sections as the model groups the parameters (eyebrow morpher, face morpher, rotator): name prefixes
# within pose.py's slices; the order is the page's.
SECTIONS = (
    ("eyebrow", "Eyebrows", pose_mod.EYEBROW, "eyebrow_"),
    ("eye", "Eyes", pose_mod.FACE, "eye_"),
    ("iris", "Iris", pose_mod.FACE, "iris_"),
    ("mouth", "Mouth", pose_mod.FACE, "mouth_"),
    ("head", "Head, neck, body", pose_mod.ROTATION, ""),
    ("breathing", "Breathing", pose_mod.ROTATION, "breathing"),
)
_SIDE = re.compile(r"_(left|right)_index$")
_PATH_CHARACTERS = re.compile(r"[/\\:\x00]|\.\.")


def setup(app, config) -> None:
    """Give the engine its template store (the user data folder; none: kept in memory) and the routes."""
    from talkinghead.user_templates import TemplateStore

    app.extensions["talkinghead"].use_template_store(TemplateStore(config.talkinghead.user_data))
    app.register_blueprint(page)
    app.register_blueprint(api)


def engine():
    return current_app.extensions["talkinghead"]


# -- the page ---------------------------------------------------------------------------------------------
@page.get("")
@page.get("/")
def index():
    return send_from_directory(STATIC_DIR, "index.html")


@page.get("/<path:filename>")
def asset(filename: str):
    return send_from_directory(STATIC_DIR, filename)  # safe_join: 404 for anything outside the folder


# -- the API ----------------------------------------------------------------------------------------------
@api.get("/pose_params")
def pose_params():
    return jsonify(describe_params())


def describe_params() -> dict:
    """What the page builds its sliders from, so it never hard-codes a name or a range."""
    params, sections = [], []
    for section_id, title, part, prefix in SECTIONS:
        names = [n for n in pose_mod.NAMES[part] if n.startswith(prefix) and not _in_later_section(n, section_id)]
        sections.append({"id": section_id, "title": title, "params": names})
        for name in names:
            i = pose_mod.INDEX[name]
            side = _SIDE.search(name)
            params.append({
                "name": name, "section": section_id, "label": _label(name, prefix),
                "low": float(pose_mod.LOW[i]), "high": float(pose_mod.HIGH[i]),
                "side": side.group(1) if side else None,
                "pair": (name[:side.start()] + ("_right_index" if side.group(1) == "left" else "_left_index"))
                if side else None,
            })
    assert sorted(p["name"] for p in params) == sorted(pose_mod.NAMES), "every parameter in one section"
    return {"params": params, "sections": sections}


def _in_later_section(name: str, section_id: str) -> bool:
    # "head" takes the rotation slice but breathing, which has a section of its own
    return section_id == "head" and name.startswith("breathing")


def _label(name: str, prefix: str) -> str:
    bare = _SIDE.sub("", name).removesuffix("_index")
    return (bare[len(prefix):] if prefix and bare != prefix else bare).replace("_", " ")


@api.get("/templates")
def templates():
    return jsonify({**engine().template_sets(), "current": engine().emotions()})


@api.put("/templates/<path:name>")
def save_template(name: str):
    emotion = _emotion_name(name)
    body = json_body(request)
    if set(body) != {"pose"} or not isinstance(body["pose"], dict):
        raise bad_request('send {"pose": {morph: value, ...}} (morphs left out are 0)')
    try:
        values = pose_mod.from_dict(body["pose"], strict=True)
    except pose_mod.PoseError as e:
        raise bad_request(f"{e}; the template of {emotion!r} is unchanged") from None
    try:
        engine().save_template(emotion, values)
    except OSError as e:
        raise ApiError(500, f"could not save the template of {emotion!r} ({e}); the saved templates are "
                            "unchanged") from None
    return jsonify(emotion=emotion, template=pose_mod.to_dict(values, skip_zeros=True),
                   persistent=engine().template_sets()["persistent"])


@api.delete("/templates/<path:name>")
def reset_template(name: str):
    emotion = _emotion_name(name)
    try:
        values = engine().reset_template(emotion)
    except OSError as e:
        raise ApiError(500, f"could not reset the template of {emotion!r} ({e}); the saved templates are "
                            "unchanged") from None
    return jsonify(emotion=emotion, template=pose_mod.to_dict(values, skip_zeros=True))


def _emotion_name(name: str) -> str:
    if _PATH_CHARACTERS.search(name):
        raise bad_request(f"template name {name!r} must be an emotion name such as 'joy', without path "
                          "characters (/ \\ : ..)")
    if name not in emotions.EMOTIONS:
        raise bad_request(f"unknown emotion {name!r}; known: {', '.join(emotions.EMOTIONS)}")
    return name


@api.get("/sprites.zip")
def sprites_zip():
    """All 28 emotions of the current templates as exact renders, as SillyTavern names expression sprites."""
    th = engine()
    poses = {name: th.emotion_pose(name) for name in emotions.EMOTIONS}  # one set, even if it changes meanwhile
    response = Response(sprites.stream_zip(poses, th.render_still, order=emotions.EMOTIONS),
                        mimetype="application/zip", direct_passthrough=True)
    response.headers["Content-Disposition"] = f'attachment; filename="{sprites.FILE_NAME}"'
    response.headers["X-Sprite-Count"] = str(len(poses))
    response.headers["Cache-Control"] = "no-store"
    return response
