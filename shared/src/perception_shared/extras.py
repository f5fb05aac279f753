"""Optional dependencies, checked before a command starts its work.

A command that needs a package from one of a package's extras (``[export]``, ``[wandb]``, ``[landmarks]``, ...)
calls :func:`require_extra` first, so a missing package is one line that names the extra and the pip command,
not an ``ImportError`` from deep inside a library halfway through the work.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence

from .errors import UserError


class MissingExtraError(UserError):
    """An optional dependency of the command is not installed."""


def require_extra(modules: str | Sequence[str], *, package: str, extra: str, what: str) -> None:
    """Raise :class:`MissingExtraError` unless every module in ``modules`` can be imported.

    ``package`` is the distribution's folder name in this repository (``gaze-estimation``, or ``shared``),
    ``extra`` the optional-dependency group that brings the modules, ``what`` the command or feature that needs them.
    """
    names = [modules] if isinstance(modules, str) else list(modules)
    missing = [m for m in names if importlib.util.find_spec(m) is None]
    if missing:
        where = "shared" if package in ("shared", "perception-shared") else f"packages/{package}"
        raise MissingExtraError(
            f"{what} needs {', '.join(missing)} (the [{extra}] extra): pip install \"{where}[{extra}]\""
        )
