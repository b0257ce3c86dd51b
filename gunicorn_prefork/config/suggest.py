"""Misspelt ``prefork_*`` names: which names are not settings, and the closest one.

Pure logic; :mod:`gunicorn_prefork.config.settings` feeds it the names it finds in the
configuration and the environment, and the callers print or log the messages.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass


def closest(name: str, known: Iterable[str], prefix: str = "") -> str | None:
    """The known name closest to ``name`` (difflib's ratio >= 0.6), if any; the
    ``prefix`` all of them share is left out of the comparison (with it every
    ``prefork_*`` name would look close to every other)."""
    start = len(prefix) if name.startswith(prefix) else 0
    by_rest = {k[len(prefix):] if k.startswith(prefix) else k: k for k in known}
    matches = difflib.get_close_matches(name[start:], list(by_rest), n=1)
    return by_rest[matches[0]] if matches else None


@dataclass(frozen=True)
class UnknownName:
    """A name that looks like one of ours but is not."""

    name: str
    #: where it was found, as in "in the configuration file"
    where: str
    suggestion: str | None

    def message(self) -> str:
        hint = f"; did you mean {self.suggestion}?" if self.suggestion else ""
        return f"{self.name} {self.where} is not a gunicorn-prefork setting, ignored{hint}"


def unknown(names: Iterable[str], prefix: str, known: Iterable[str],
            where: str) -> list[UnknownName]:
    """The names starting with ``prefix`` that are not ``known``, sorted, each with
    its closest known name."""
    known = sorted(known)
    return [UnknownName(name, where, closest(name, known, prefix))
            for name in sorted(set(names))
            if name.startswith(prefix) and name not in known]
