"""``[cluster]`` and ``events.redis_*`` settings: what start-up refuses, and what ``config show`` hides."""

from __future__ import annotations

import pytest

from gateway.config import ConfigError, GatewayConfig
from gateway.config.loader import ConfigSource, load_config, to_dict

URL = "redis://:hunter2-password@redis:6379/0"
TOKEN = "a-shared-internal-token"


def load(**values: str) -> GatewayConfig:
    return load_config(ConfigSource(overrides=values))


@pytest.mark.parametrize(("values", "key"), [
    ({"cluster.redis_url": "http://redis:6379"}, "cluster.redis_url"),
    ({"cluster.redis_url": URL}, "cluster.internal_token"),  # forwarded hang-ups need it
    ({"cluster.redis_url": URL, "cluster.internal_token": "short"}, "cluster.internal_token"),
    ({"cluster.redis_url": URL, "cluster.internal_token": TOKEN, "server.workers": "2"}, "cluster.redis_url"),
    ({"cluster.redis_url": URL, "cluster.internal_token": TOKEN, "server.host": "0.0.0.0"}, "cluster.instance_url"),
    ({"cluster.heartbeat_seconds": "5", "cluster.lease_seconds": "6"}, "cluster.lease_seconds"),
    ({"cluster.key_prefix": "has space"}, "cluster.key_prefix"),
    ({"events.redis_stream": "events"}, "events.redis_stream"),  # no Redis to put it in
    ({"events.redis_url": "redis.example:6379"}, "events.redis_url"),
    ({"events.nats_url": "http://nats:4222"}, "events.nats_url"),
])
def test_bad_cluster_settings_stop_start_up_naming_the_key(values: dict[str, str], key: str) -> None:
    with pytest.raises(ConfigError) as refused:
        load(**values)
    assert refused.value.key == key


def test_a_cluster_configuration_loads_and_config_show_masks_its_secrets() -> None:
    config = load_config(ConfigSource(env={"VOICE_GATEWAY_CLUSTER_REDIS_URL": URL,
                                           "VOICE_GATEWAY_CLUSTER_INTERNAL_TOKEN": TOKEN,
                                           "VOICE_GATEWAY_EVENTS_REDIS_STREAM": "voice-gateway:events",
                                           "VOICE_GATEWAY_EVENTS_NATS_URL": "nats://user:hunter2-nats@nats:4222"}))
    assert config.cluster.redis_url == URL and config.events.redis_stream == "voice-gateway:events"
    shown = repr(to_dict(config))
    assert "hunter2" not in shown and TOKEN not in shown
    assert not load().cluster.redis_url  # the default: one instance, no Redis
