"""The module registry: each enabled module name maps to a package under `modules/` with a `setup(app, config)`.

`setup` builds the module's engine, keeps it in `app.extensions[name]` (so other modules can reach it, e.g.
classify sets the talkinghead emotion) and registers the module's blueprint.
"""
from __future__ import annotations

import importlib

KNOWN = ("classify", "talkinghead")


class UnknownModuleError(ValueError):
    pass


def validate(names: list[str]) -> None:
    unknown = [n for n in names if n not in KNOWN]
    if unknown:
        raise UnknownModuleError(
            f"unknown module{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; "
            f"known modules: {', '.join(KNOWN)}")


def disabled_module_for(path: str, enabled: list[str]) -> str | None:
    """The known module an /api/<module>… path belongs to, when that module is not enabled."""
    parts = path.split("/")
    if len(parts) > 2 and parts[1] == "api" and parts[2] in KNOWN and parts[2] not in enabled:
        return parts[2]
    return None


def setup_all(app, config) -> None:
    """Set up the enabled modules in the order given on the command line."""
    validate(config.modules)
    for name in config.modules:
        importlib.import_module(f"modules.{name}").setup(app, config)


class SetupError(RuntimeError):
    """A module cannot start (missing weights, no CUDA, bad model). server.py prints it as one line and exits."""
