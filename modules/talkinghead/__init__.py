"""The talkinghead module: the engine (built by talkinghead.build from this module's config section, config.py)
and its routes: routes.py (each avatar's), avatar_routes.py (make and delete avatars), manual_poser_routes.py,
mocap_routes.py."""
from __future__ import annotations

import atexit

from modules import SetupError


def setup(app, config) -> None:
    from modules.talkinghead import avatar_routes, manual_poser_routes, mocap_routes
    from modules.talkinghead.routes import VIEWER_CAP, avatar_blueprint, blueprint
    from modules.viewers import ViewerCap

    built = "talkinghead" not in app.extensions  # tests may hand in an engine they share across apps
    if built:
        engine = _build(config.talkinghead)
        app.extensions["talkinghead"] = engine
        atexit.register(engine.close)
    app.extensions[VIEWER_CAP] = ViewerCap(config.talkinghead.max_viewers)
    app.register_blueprint(blueprint)
    avatar_routes.setup(app, config)  # the avatars: the default one is the engine above
    if built:  # at exit, before the engine (atexit runs last first): every avatar and face capture
        atexit.register(app.extensions["talkinghead_avatars"].close)
    app.register_blueprint(avatar_blueprint)  # each avatar's own routes, as blueprint's for the default one
    manual_poser_routes.setup(app, config)  # the manual poser page and its API
    mocap_routes.setup(app, config)  # each avatar's puppeteer: face capture drives its pose


def _build(section):
    from talkinghead.build import BuildError, build_engine

    try:
        return build_engine(gpu=section.gpu, model=section.model, models_dir=section.models, backend=section.backend,
                            idle_seconds=section.idle_seconds, keyframes=section.keyframes)
    except BuildError as e:
        raise SetupError(str(e)) from None
