"""The Debian tools some tests drive (``wrk``, ``ab``, ``haproxy``): found on PATH or
in ``/usr/sbin``; a test that needs a missing one is skipped, or fails when ``CI`` is
set (``.ci/run`` installs them; a CI run must not pass by skipping)."""

from __future__ import annotations

import os
import shutil

import pytest


def debian_tool(name: str, package: str) -> str:
    """The path of ``name`` (from Debian's ``package``)."""
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin")
    if path is None:
        message = f"the {name} command is not installed (apt-get install {package})"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path
