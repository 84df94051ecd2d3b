"""Every bad gateway setting is one clear line naming the key: exit 2 for a setting, 1 for a
runtime failure (a port taken), never a traceback; and no error shows the broker password."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from streamfuse.errors import BrokerError, ConfigError
from streamfuse.gateway.loading import check_paths, from_mapping, load
from streamfuse.mqtt.address import parse_broker_url, redact

REPO = Path(__file__).resolve().parents[1]
SECRET = "hunter2-s3cret"


def gateway(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("STREAMFUSE_MQTT_BROKER", None)
    return subprocess.run(
        [sys.executable, "-m", "streamfuse.cli", "gateway", "--client-id", "", *args],
        capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO,
    )


def one_line_error(proc: subprocess.CompletedProcess[str], code: int, *words: str) -> str:
    assert proc.returncode == code, (proc.returncode, proc.stderr[-3000:])
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if line.startswith("streamfuse: error:")]
    assert len(lines) == 1, proc.stderr[-3000:]
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


# ------------------------------------------------------------------ broker URL and password


@pytest.mark.parametrize(
    "url",
    [
        f"mqtt://ann:{SECRET}@broker:port",  # a port that is not a number
        f"mqtt://ann:{SECRET}@broker:0",
        f"http://ann:{SECRET}@broker",
        f"ann:{SECRET}@broker:1883",  # no scheme
        f"mqtt://ann:{SECRET}@broker/path",
        f"mqtt://ann:{SECRET}@[::1:1883",  # unbalanced bracket
        f"mqtt://:{SECRET}@broker",  # a password, no user
        f"mqtt://ann:{SECRET}@",  # no host
    ],
)
def test_a_malformed_broker_url_never_shows_the_password(url: str) -> None:
    with pytest.raises(BrokerError) as info:
        parse_broker_url(url)
    assert SECRET not in str(info.value) and "***" in str(info.value)
    with pytest.raises(ConfigError) as info2:
        from_mapping({"mqtt": {"broker": url}}, env={})
    assert SECRET not in str(info2.value)


def test_the_gateway_command_with_a_malformed_url_shows_no_password() -> None:
    proc = gateway("--broker", f"mqtt://gw:{SECRET}@127.0.0.1:notaport")
    line = one_line_error(proc, 2, "mqtt.broker", "invalid port")
    assert SECRET not in proc.stderr + proc.stdout and "gw:***@" in line


def test_redact_keeps_urls_without_a_password() -> None:
    for url in ("mqtt://127.0.0.1:1883", "mqtt://ann@host", "host:1883", "mqtts://h/x@y"):
        assert redact(url) == url
    assert redact("mqtt://a:b:c@d@host:1") == "mqtt://a:***@host:1"


# ------------------------------------------------------------------ settings (exit 2)


@pytest.mark.parametrize(
    "table, key",
    [
        ({"engine": {"max_pending": -5}}, "engine.max_pending"),
        ({"engine": {"max_pending": 0}}, "engine.max_pending"),
        ({"engine": {"max_payload_bytes": -1}}, "engine.max_payload_bytes"),
        ({"engine": {"max_samples": 0}}, "engine.max_samples"),
        ({"engine": {"max_fs": -2.0}}, "engine.max_fs"),
        ({"engine": {"max_devices": 0}}, "engine.max_devices"),
    ],
)
def test_engine_bounds_must_be_positive(table: dict, key: str) -> None:
    with pytest.raises(ConfigError, match=f"{key} must be positive"):
        from_mapping(table, env={})


def test_device_cap_settings_reach_the_engine_and_are_checked() -> None:
    cfg = from_mapping({"engine": {"max_devices": 7, "device_policy": "evict"}}, env={})
    assert cfg.engine_config().max_devices == 7 and cfg.engine_config().device_policy == "evict"
    with pytest.raises(ConfigError, match="engine.device_policy"):
        from_mapping({"engine": {"device_policy": "drop"}}, env={})


def test_negative_max_pending_is_exit_2_naming_the_key_not_a_traceback(tmp_path: Path) -> None:
    conf = tmp_path / "gw.toml"
    conf.write_text("[engine]\nmax_pending = -5\n", encoding="utf-8")
    one_line_error(gateway("--config", str(conf), "--duration", "1"), 2, "engine.max_pending")


def test_a_missing_ca_file_is_a_setting_not_an_unreachable_broker(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "ca.pem"
    cfg = from_mapping({"mqtt": {"tls": True, "ca_file": str(missing)}}, env={})
    with pytest.raises(ConfigError, match=r"mqtt\.ca_file .*cannot be read"):
        check_paths(cfg)
    conf = tmp_path / "gw.toml"
    conf.write_text(f'[mqtt]\ntls = true\nca_file = "{missing}"\n', encoding="utf-8")
    one_line_error(gateway("--config", str(conf), "--duration", "30"), 2, "mqtt.ca_file")


@pytest.fixture
def unwritable(tmp_path: Path) -> Iterator[Path]:
    """A checkpoint folder nobody can create: its parent is a regular file (root included)."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder", encoding="utf-8")
    yield blocker / "ckpt"


def test_an_unwritable_checkpoint_dir_is_refused_at_start(unwritable: Path, tmp_path: Path) -> None:
    cfg = from_mapping({"checkpoint": {"dir": str(unwritable)}}, env={})
    with pytest.raises(ConfigError, match=r"checkpoint\.dir .*not a folder the gateway can write"):
        check_paths(cfg)
    one_line_error(
        gateway("--checkpoint-dir", str(unwritable), "--duration", "30"), 2, "checkpoint.dir"
    )
    # a writable one passes and leaves nothing behind
    good = tmp_path / "ok"
    check_paths(from_mapping({"checkpoint": {"dir": str(good)}}, env={}))
    assert good.is_dir() and not list(good.iterdir())


# ------------------------------------------------------------------ /metrics (exit 1)


def test_metrics_port_in_use_is_exit_1_naming_the_key(broker_url: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = gateway("--broker", broker_url, "--metrics-port", str(port), "--duration", "30")
    line = one_line_error(proc, 1, "metrics.port", str(port))
    assert "in use" in line


def test_metrics_bad_host_is_exit_1_naming_the_key(tmp_path: Path, broker_url: str) -> None:
    conf = tmp_path / "gw.toml"
    conf.write_text('[metrics]\nport = 9\nhost = "no-such-host.invalid"\n', encoding="utf-8")
    proc = gateway("--config", str(conf), "--broker", broker_url, "--duration", "30")
    one_line_error(proc, 1, "metrics.host", "no-such-host.invalid")


def test_load_reads_settings_only(tmp_path: Path) -> None:
    """``load`` never touches the folders it names (replay --config reads the same file)."""
    conf = tmp_path / "gw.toml"
    conf.write_text(f'[checkpoint]\ndir = "{tmp_path / "later"}"\n', encoding="utf-8")
    load(conf, env={})
    assert not (tmp_path / "later").exists()
