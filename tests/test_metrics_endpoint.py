"""The ``/metrics`` endpoint the gateway and a shard host share (:class:`MetricsEndpoint`):
it serves its registry, stops, and says which setting to change when it cannot serve."""

from __future__ import annotations

import socket
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest

from streamfuse.errors import StreamfuseError
from streamfuse.gateway.loading import from_mapping
from streamfuse.gateway.metrics import GatewayMetrics, parse_exposition
from streamfuse.gateway.shards import ShardHost


def _gateway_metrics() -> GatewayMetrics:
    metrics = GatewayMetrics(lambda: 3, 10)
    metrics.bytes.inc(42)
    return metrics


def _shard_metrics() -> Any:
    config = from_mapping({"shards": {"count": 2}}, where="a test", env={})
    return ShardHost(config).metrics


def _scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        return parse_exposition(reply.read().decode())


def test_the_gateway_serves_its_figures_then_stops() -> None:
    metrics = _gateway_metrics()
    port = metrics.serve(0)
    try:
        assert port == metrics.port and port > 0
        figures = _scrape(port)
        assert figures["streamfuse_bytes_total"] == 42 and figures["streamfuse_queue_depth"] == 3
    finally:
        metrics.close()
    metrics.close()  # twice is fine
    with pytest.raises(OSError):
        _scrape(port)


def test_a_shard_host_serves_on_its_own_endpoint() -> None:
    metrics = _shard_metrics()
    port = metrics.serve(0)
    try:
        assert port == metrics.port and port > 0
        assert _scrape(port) == {}  # no shard served yet: an empty exposition
    finally:
        metrics.close()


@pytest.mark.parametrize(
    ("make", "setting", "hint"),
    [
        (_gateway_metrics, "metrics.port", "metrics.port = 0 to disable"),
        (_shard_metrics, "the shards' metrics port", "or 0 for any"),
    ],
)
def test_a_taken_port_names_the_setting_to_change(
    make: Callable[[], Any], setting: str, hint: str
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(StreamfuseError) as caught:
            make().serve(port)
    message = str(caught.value)
    assert message.startswith(f"{setting} {port} on 127.0.0.1 cannot be served (")
    assert hint in message


@pytest.mark.parametrize("make", [_gateway_metrics, _shard_metrics])
def test_a_host_that_is_no_address_names_metrics_host(make: Callable[[], Any]) -> None:
    with pytest.raises(StreamfuseError) as caught:
        make().serve(0, "no-such-host.invalid")
    message = str(caught.value)
    assert message.startswith("metrics.host 'no-such-host.invalid' is not a host name")
