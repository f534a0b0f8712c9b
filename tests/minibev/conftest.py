"""Session setup for the minibev tests."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session", autouse=True)
def minibev_cache(tmp_path_factory):
    """Render the synthetic splits once per test session, outside the user's cache."""
    old = os.environ.get("SCALEOUT_MINIBEV_CACHE")
    os.environ["SCALEOUT_MINIBEV_CACHE"] = str(tmp_path_factory.mktemp("minibev-cache"))
    yield
    if old is None:
        os.environ.pop("SCALEOUT_MINIBEV_CACHE", None)
    else:
        os.environ["SCALEOUT_MINIBEV_CACHE"] = old
