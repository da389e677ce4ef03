"""Fixtures shared by the security tests."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.app.application import create_app
from gateway.config import AdmissionConfig, EventsConfig, GatewayConfig, LimitsConfig
from tests.security.support import Client, MakeClient
from tests.support.fakes import fake_engines


@pytest.fixture
def make_client(aiohttp_client: Any) -> MakeClient:
    """A test client of an app with fake engines and these ``[limits]`` (keyword arguments)."""
    async def make(**limits: Any) -> Client:
        config = GatewayConfig(events=EventsConfig(file=""), limits=LimitsConfig(**limits),
                               admission=AdmissionConfig(enabled=False))  # tested in tests/gateway/test_admission.py
        client: Client = await aiohttp_client(create_app(config, engines=fake_engines()[0]))
        return client

    return make
