"""Fixtures of the migrate scenario's tests."""

from __future__ import annotations

import pytest
from greenlight_steps import Database


@pytest.fixture()
def db(host):
    return Database(host)


@pytest.fixture()
def container(host) -> str:
    return host.backend.get_hostname()
