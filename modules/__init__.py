"""The module registry: each known module name maps to a package under `modules/` with
* `config.py`: its section of the server's config (`Config`), its command-line flags (`add_arguments(parser)`),
  the section read from the parsed flags (`from_args`), and `check(section)`: what can fail at start, checked
  before any engine loads;
* `setup(app, config)`: builds the module's engine (or calls what builds it), keeps it in
  `app.extensions[name]` (so other modules can reach it, e.g. classify sets the talkinghead emotion) and
  registers the module's blueprint.
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


def config_modules() -> dict:
    """name -> the module's config.py, for every known module (their flags are there whether enabled or not)."""
    return {name: importlib.import_module(f"modules.{name}.config") for name in KNOWN}


def check_all(config) -> None:
    """Each enabled module's start-up checks (SetupError), before any engine loads."""
    modules = config_modules()
    for name in config.modules:
        modules[name].check(getattr(config, name))


def setup_all(app, config) -> None:
    """Set up the enabled modules in the order given on the command line."""
    validate(config.modules)
    for name in config.modules:
        importlib.import_module(f"modules.{name}").setup(app, config)


class SetupError(RuntimeError):
    """A module cannot start (missing weights, no CUDA, bad model). server.py prints it as one line and exits."""


class FlagError(ValueError):
    """A command-line flag's value cannot be used; the message names the flag. server.py exits with it (2)."""
