# SPDX-License-Identifier: LGPL-2.1-or-later
"""Fixtures of the carehare override's tests (tests/bindings/python).

Every test runs on one asyncio loop: gbulb's default loop, which runs the
default GLib main context (a second gbulb loop would get a new context that
nothing runs, and carehare-glib dispatches to the context a connection was
made in). Each test is bounded by asyncio.wait_for, which works inside the
GLib loop where pytest-timeout's signal method could not.
"""
import asyncio
import functools
import inspect
import os
import uuid

import gi
import pytest

gi.require_version("Carehare", "1.0")
import gbulb  # noqa: E402
from gi.repository import Carehare as carehare  # noqa: E402,F401

TEST_TIMEOUT = 20

gbulb.install()
_LOOP = asyncio.get_event_loop_policy().get_default_loop()


def env(name):
    value = os.environ.get(name)
    if not value:
        # Integration tests fail, never skip, without the broker.
        raise RuntimeError(name + ' is not set: run eval "$(test-server/broker env)"')
    return value


def unique(prefix="q"):
    return "carehare-pytest-%s-%s" % (prefix, uuid.uuid4().hex[:12])


@pytest.fixture(scope="session")
def event_loop():
    asyncio.set_event_loop(_LOOP)
    yield _LOOP


@pytest.fixture
def url():
    return env("CAREHARE_TEST_AMQP_URI")


@pytest.fixture
async def connection(url):
    conn = await asyncio.wait_for(carehare.connect(url), TEST_TIMEOUT)
    yield conn
    await asyncio.wait_for(conn.close(), TEST_TIMEOUT)


def _bounded(func):
    @functools.wraps(func)
    async def wrapper(*args, **kwargs):
        return await asyncio.wait_for(func(*args, **kwargs), TEST_TIMEOUT)
    return wrapper


def pytest_collection_modifyitems(items):
    for item in items:
        if isinstance(item, pytest.Function) and inspect.iscoroutinefunction(item.obj):
            item.obj = _bounded(item.obj)
