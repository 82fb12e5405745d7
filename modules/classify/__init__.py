"""The classify module: builds the emotion classifier from its config section (config.py) and serves it over HTTP
(routes.py)."""
from __future__ import annotations

import logging

from classifier import ClassifierError, load_classifier
from modules import SetupError
from modules.classify.routes import bp

log = logging.getLogger(__name__)


def setup(app, config) -> None:
    """Load the classifier (built-in, or --classification-model) on the chosen device; register the routes."""
    if "classify" not in app.extensions:  # tests may hand in an engine they share across apps
        try:
            app.extensions["classify"] = load_classifier(config.classify.model, config.classify.device)
        except ClassifierError as e:
            raise SetupError(f"classify: {e}") from None
        log.info("classify: serving %s on %s", app.extensions["classify"].name, config.classify.device)
    app.register_blueprint(bp)
