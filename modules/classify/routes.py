"""HTTP routes of the classify module: parse and validate, ask the engine, shape the answer (api.md)."""
from __future__ import annotations

import logging

from flask import Blueprint, current_app, jsonify, request

from modules.errors import bad_request, json_body

log = logging.getLogger(__name__)
bp = Blueprint("classify", __name__)


@bp.post("/api/classify")
def classify():
    body = json_body(request)
    if "text" not in body:
        raise bad_request('missing field "text": send {"text": "<the message>"}')
    text = body["text"]
    if not isinstance(text, str):
        raise bad_request(f'"text" must be a string, not {_json_type(text)}')
    classification = current_app.extensions["classify"].classify(text)
    set_avatar_emotion(classification[0]["label"])
    return jsonify(classification=classification)


@bp.get("/api/classify/labels")
def labels():
    config = current_app.config["TH_CONFIG"]
    return jsonify(labels=labels_for(current_app.extensions["classify"].labels, config.modules))


def _json_type(value) -> str:
    names = {bool: "a boolean", int: "a number", float: "a number", list: "an array", dict: "an object"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def labels_for(engine_labels: list[str], enabled_modules: list[str]) -> list[str]:
    """The client offers talkinghead mode only when "talkinghead" is among the labels, so append it then."""
    return list(engine_labels) + (["talkinghead"] if "talkinghead" in enabled_modules else [])


def set_avatar_emotion(label: str) -> None:
    """Side effect from api.md: with talkinghead enabled, the top label becomes the avatar's emotion."""
    avatar = current_app.extensions.get("talkinghead")
    if avatar is None:
        return
    try:
        avatar.set_emotion(label)
    except Exception:  # the client still needs its classification; the avatar's failure is logged, not returned
        log.exception("classify: could not set the talkinghead emotion to %s", label)
