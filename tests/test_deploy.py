"""The deployment kit in deploy/: what can be checked without a container engine.

The compose file parses and wires Mosquitto, the gateway, Prometheus and Grafana together (the
services, ports, volumes and provisioning each needs); every metric the Grafana dashboard
queries is one the gateway's /metrics exposes; the Dockerfile and the systemd unit start the
gateway the way its docs say; the wheel's example config is deploy/gateway.toml and loads.
"""

from __future__ import annotations

import json
import re
import tomllib
from importlib import resources
from pathlib import Path

import yaml
from prometheus_client import generate_latest

from streamfuse.gateway.loading import load
from streamfuse.gateway.metrics import GatewayMetrics

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
COMPOSE = DEPLOY / "compose"


def _compose() -> dict:
    return yaml.safe_load((COMPOSE / "compose.yaml").read_text(encoding="utf-8"))


def test_compose_has_the_four_services_wired_together() -> None:
    doc = _compose()
    services = doc["services"]
    assert set(services) == {"mosquitto", "gateway", "prometheus", "grafana"}
    assert "1883:1883" in services["mosquitto"]["ports"]
    assert "9090:9090" in services["prometheus"]["ports"]
    assert "3000:3000" in services["grafana"]["ports"]
    gw = services["gateway"]
    assert gw["build"]["dockerfile"] == "deploy/Dockerfile"
    assert (COMPOSE / gw["build"]["context"] / gw["build"]["dockerfile"]).is_file()
    env = gw["environment"]
    assert env["STREAMFUSE_MQTT_BROKER"].endswith("@mosquitto:1883")
    assert env["STREAMFUSE_METRICS_HOST"] == "0.0.0.0"
    assert "mosquitto" in gw["depends_on"]
    # every bind-mounted file or folder exists; every named volume is declared
    for name, service in services.items():
        for volume in service.get("volumes", []):
            src = volume.split(":")[0]
            if src.startswith("."):
                assert src in ("./passwd",) or (COMPOSE / src).exists(), (name, src)
            else:
                assert src in doc["volumes"], (name, src)
    assert any(v.endswith("/var/lib/streamfuse/checkpoints") for v in gw["volumes"])
    # Prometheus scrapes the gateway's metrics port; Grafana is provisioned from files
    prom = yaml.safe_load((COMPOSE / "prometheus.yml").read_text(encoding="utf-8"))
    targets = prom["scrape_configs"][0]["static_configs"][0]["targets"]
    assert targets == [f"gateway:{env['STREAMFUSE_METRICS_PORT']}"]
    assert any(v.startswith("./grafana/provisioning:") for v in services["grafana"]["volumes"])
    providers = yaml.safe_load(
        (COMPOSE / "grafana/provisioning/dashboards/streamfuse.yml").read_text(encoding="utf-8")
    )
    mounted = {v.split(":")[1] for v in services["grafana"]["volumes"]}
    assert providers["providers"][0]["options"]["path"] in mounted
    sources = yaml.safe_load(
        (COMPOSE / "grafana/provisioning/datasources/prometheus.yml").read_text(encoding="utf-8")
    )
    assert sources["datasources"][0]["url"] == "http://prometheus:9090"


def _exposed_names() -> set[str]:
    """Every metric family name of a gateway's /metrics, with engine figures filled in."""
    metrics = GatewayMetrics(queue_depth=lambda: 0, queue_capacity=10)
    metrics.refresh(
        {"rejections": {"oversize": 1}, "align": {"gaps": 2}, "engine": {"windows": 3}},
        devices=1,
        quality={"early.accuracy": 0.5, "early.auc": 0.6, "early.n": 4.0,
                 "selected.accuracy": 0.7, "selected.auc": float("nan")},
    )  # fmt: skip
    metrics.observe_latency({"decode": 1e-4})
    metrics.messages.labels("data").inc()
    metrics.shed.labels("data").inc()
    text = generate_latest(metrics.registry).decode()
    return {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line[:1] != "#"}


def test_the_prequential_gauges_are_exposed_per_level() -> None:
    metrics = GatewayMetrics(queue_depth=lambda: 0, queue_capacity=10)
    metrics.refresh({}, 0, {"early.accuracy": 0.5, "late.auc": 0.75, "selected.n": 9.0,
                            "late.accuracy": float("nan")})  # fmt: skip
    text = generate_latest(metrics.registry).decode()
    assert 'streamfuse_level_accuracy{level="early"} 0.5' in text
    assert 'streamfuse_level_auc{level="late"} 0.75' in text
    assert 'streamfuse_level_scored{level="selected"} 9.0' in text
    assert 'streamfuse_level_accuracy{level="late"}' not in text  # NaN: not defined yet


def test_every_metric_the_dashboard_queries_exists() -> None:
    dashboard = json.loads((COMPOSE / "grafana/dashboards/streamfuse.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    queried = {m for e in exprs for m in re.findall(r"\bstreamfuse_[a-z_]+", e)}
    exposed = _exposed_names()
    assert len(queried) >= 15
    assert queried - exposed == set(), sorted(exposed)
    # and the dashboard shows the per-level figures beside the counters
    assert {"streamfuse_level_accuracy", "streamfuse_level_auc"} <= queried
    uids = {t["datasource"]["uid"] for p in dashboard["panels"] for t in p["targets"]}
    sources = yaml.safe_load(
        (COMPOSE / "grafana/provisioning/datasources/prometheus.yml").read_text(encoding="utf-8")
    )
    assert uids == {sources["datasources"][0]["uid"]}


def test_the_dockerfile_and_the_unit_start_the_gateway_with_a_writable_numba_cache() -> None:
    docker = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    assert "NUMBA_CACHE_DIR=" in docker and "warm_up()" in docker
    assert 'CMD ["gateway", "--config", "/etc/streamfuse/gateway.toml"]' in docker
    unit = (DEPLOY / "streamfuse-gateway.service").read_text(encoding="utf-8")
    assert "Environment=NUMBA_CACHE_DIR=/var/cache/streamfuse/numba" in unit
    assert "CacheDirectory=streamfuse" in unit and "Restart=on-failure" in unit
    assert re.search(r"^ExecStart=\S+streamfuse gateway --config ", unit, re.M)


def test_the_package_carries_the_example_config() -> None:
    shipped = resources.files("streamfuse.gateway").joinpath("gateway.example.toml")
    text = shipped.read_text(encoding="utf-8")
    assert text == (DEPLOY / "gateway.toml").read_text(encoding="utf-8")
    tomllib.loads(text)
    with resources.as_file(shipped) as path:
        assert load(str(path)).metrics.port == 9108
