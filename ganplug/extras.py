"""Optional dependencies: the one place that says which `pip install 'ganplug[...]'` a feature needs.

The core (prep, train with its watch, generate, interpolate to GIF, rank, mix, project, translate, demo)
runs on the core dependencies alone. A feature that needs an extra imports it through `require`, which
turns a missing package into a `MissingExtraError` (a UserError: one line, exit code 2) naming the extra.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from ganplug.errors import UserError

# extra -> what it installs (pyproject.toml [project.optional-dependencies]); shown in the message.
EXTRAS = {
    "eval": "scipy, clean-fid, matplotlib",
    "serve": "fastapi, uvicorn",
    "media": "imageio, imageio-ffmpeg",
}


class MissingExtraError(UserError):
    """A feature needs a package from one of ganplug's extras that is not installed."""

    def __init__(self, module: str, extra: str, for_what: str, alternative: str = "") -> None:
        self.module, self.extra = module, extra
        super().__init__(
            f"{for_what} needs the {module!r} package, which is not installed: "
            f"pip install 'ganplug[{extra}]' (it adds {EXTRAS.get(extra, module)})"
            + (f", or {alternative}." if alternative else ".")
        )


def require(module: str, extra: str, for_what: str, alternative: str = "") -> ModuleType:
    """Import `module` and return it, or raise MissingExtraError saying to install `ganplug[extra]`.

    `for_what` starts the message ("ganplug serve", "writing morph.mp4"); `alternative` ends it with what
    works without the extra ("use a .gif").
    """
    try:
        return importlib.import_module(module)
    except ImportError as e:
        package = module.split(".")[0]
        missing = (e.name or package).split(".")[0]
        if missing != package:
            # the package is there but one of its own dependencies is not: the extra installs both
            for_what = f"{for_what} (through {package})"
        raise MissingExtraError(missing, extra, for_what, alternative) from None
