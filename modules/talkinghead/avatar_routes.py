"""HTTP for the avatars of a server (talkinghead.avatars): list, make, delete. Each avatar's own routes
(load, set_emotion, result_feed, ...) are routes.py's, under /api/talkinghead/avatars/<id>/.

    GET    /api/talkinghead/avatars         {"avatars": [{"id", "emotion", "talking", "viewers"}], "max_avatars"}
    POST   /api/talkinghead/avatars         JSON {"id"} (optional), or multipart: file (the PNG), id → 201 {"id"}
    PUT    /api/talkinghead/avatars/<id>    made if missing (201), else 200; {"id"}
    DELETE /api/talkinghead/avatars/<id>    {"id", "deleted": true}; its threads, its face capture (its UDP port
                                            freed) and its viewers' streams end
"""
from __future__ import annotations

from flask import Blueprint, current_app, jsonify, request

from modules.errors import ApiError, bad_request, json_body
from talkinghead import avatars as avatars_mod
from talkinghead.avatars import Avatars
from talkinghead.image import ImageError

blueprint = Blueprint("talkinghead_avatars", __name__, url_prefix="/api/talkinghead/avatars")
_STATUS = {avatars_mod.BadAvatarId: 400, avatars_mod.UnknownAvatar: 404, avatars_mod.AvatarExists: 409,
           avatars_mod.DefaultAvatar: 409, avatars_mod.TooManyAvatars: 429}


def setup(app, config) -> None:
    """The avatars of this app's engine (its default one), at most --talkinghead-max-avatars; their face captures
    listen on every interface with --listen."""
    app.extensions["talkinghead_avatars"] = Avatars(app.extensions["talkinghead"], config.talkinghead.max_avatars,
                                                    listen=config.listen)
    app.register_blueprint(blueprint)


def avatars() -> Avatars:
    return current_app.extensions["talkinghead_avatars"]


@blueprint.get("")
def list_avatars():
    return jsonify(avatars=avatars().describe(), max_avatars=avatars().max_avatars)


@blueprint.post("")
def create_avatar():
    """JSON {"id": ...} (or no body), or multipart with the image as `file` and the id as form field `id`."""
    image = None
    if request.mimetype == "multipart/form-data":
        avatar_id = request.form.get("id")
        upload = request.files.get("file")
        if upload is None and request.files:
            raise bad_request(f"send the image as multipart form field 'file' (got fields: {', '.join(request.files)})")
        image = upload.read() if upload is not None else None
    elif request.content_length or request.mimetype:
        body = json_body(request)
        unknown = set(body) - {"id"}
        if unknown:
            raise bad_request(f"unknown keys {', '.join(sorted(map(str, unknown)))}; send {{\"id\": \"<avatar id>\"}}")
        avatar_id = body.get("id")
        if avatar_id is not None and not isinstance(avatar_id, str):
            raise bad_request('"id" must be a string')
    else:
        avatar_id = None
    return jsonify(id=_create(avatar_id, image)), 201


@blueprint.put("/<id>")
def put_avatar(id: str):
    """Made with the default character if missing (201), else left as it is (200)."""
    try:
        avatars().get(id)
    except avatars_mod.UnknownAvatar:
        try:
            return jsonify(id=_create(id, None)), 201
        except avatars_mod.AvatarExists:  # made by another request meanwhile
            pass
    return jsonify(id=id), 200


@blueprint.delete("/<id>")
def delete_avatar(id: str):
    try:
        avatars().delete(id)
    except avatars_mod.AvatarError as e:
        raise _api_error(e) from None
    return jsonify(id=id, deleted=True)


def _create(avatar_id: str | None, image: bytes | None) -> str:
    try:
        return avatars().create(avatar_id, image)
    except ImageError as e:
        raise bad_request(f"{e}; no avatar was made") from None
    except avatars_mod.AvatarError as e:
        raise _api_error(e) from None


def _api_error(e: avatars_mod.AvatarError) -> ApiError:
    return ApiError(_STATUS.get(type(e), 400), str(e))
