"""Gateway daemon settings: TOML file, STREAMFUSE_ environment, flags, and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamfuse.errors import ConfigError
from streamfuse.gateway import loading as settings

DEPLOY = Path(__file__).resolve().parents[1] / "deploy" / "gateway.toml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gw.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_example_config_loads_and_builds_the_engine_config() -> None:
    cfg = settings.load(DEPLOY, env={})
    assert cfg.mqtt.qos == 1 and cfg.mqtt.client_id == "streamfuse-gateway-1"
    assert cfg.metrics.port == 9108 and cfg.checkpoint.keep == 3
    engine = cfg.engine_config()
    assert engine.modalities["eeg"].channels == 8 and engine.modalities["acc"].fs == 50.0
    assert engine.limits.max_payload_bytes == 1 << 20


def test_precedence_file_then_environment_then_flags(tmp_path: Path) -> None:
    path = write(tmp_path, '[mqtt]\nprefix = "filep"\nmax_queued_incoming = 7\n')
    env = {
        "STREAMFUSE_MQTT_PREFIX": "envp",
        "STREAMFUSE_METRICS_PORT": "9200",
        "STREAMFUSE_MQTT_TLS": "yes",
        "STREAMFUSE_DATA": "/not/ours",  # other STREAMFUSE_ variables are ignored
    }
    cfg = settings.load(path, env=env, overrides={"mqtt.prefix": "flagp", "engine.model": None})
    assert cfg.mqtt.prefix == "flagp"
    assert cfg.mqtt.max_queued_incoming == 7
    assert cfg.metrics.port == 9200 and cfg.mqtt.tls is True
    assert cfg.engine.model == "logreg"  # None flags do not override


@pytest.mark.parametrize(
    "text, env, message",
    [
        ('[mqtt]\nbrokr = "mqtt://x"\n', {}, "unknown key mqtt.brokr"),
        ("[mqt]\n", {}, "unknown section [mqt]"),
        ('[mqtt]\nqos = "one"\n', {}, "mqtt.qos"),
        ("[mqtt]\nqos = 3\n", {}, "must be 0, 1 or 2"),
        ("[mqtt]\narrival = \"socket\"\n", {}, "mqtt.arrival must be \"take\" or \"read\""),
        ("[metrics]\nport = true\n", {}, "metrics.port"),
        ('[modalities.ppg]\nchannels = ["p"]\n', {}, "modalities.ppg"),
        ("[modalities.ppg]\nfs = 64.0\n", {}, "non-empty list"),
        ('[modalities.ppg]\nchannels = ["p"]\nfs = 64.0\ngain = 2\n', {}, "unknown key"),
        ('[mqtt]\nbroker = "http://x"\n', {}, "http://x"),
        ("[engine]\nhop_s = 5.0\n", {}, "hop_s"),
        ("[checkpoint]\ninterval_s = -1\n", {}, "checkpoint.interval_s must be positive"),
        ("not toml = = 1", {}, "not valid TOML"),
        ("", {"STREAMFUSE_MQTT_QOS": "high"}, "STREAMFUSE_MQTT_QOS"),
        ("", {"STREAMFUSE_MQTT_NOPE": "1"}, "unknown key mqtt.nope"),
    ],
)
def test_bad_settings_fail_with_a_message_naming_the_key(
    tmp_path: Path, text: str, env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        settings.load(write(tmp_path, text), env=env)
    assert message in str(info.value)


def test_modality_without_rate_says_what_to_add(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no rate: add fs"):
        settings.load(write(tmp_path, '[modalities.ppg]\nchannels = ["p"]\n'), env={})


def test_password_file_is_read_and_missing_file_is_reported(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("s3cret\n", encoding="utf-8")
    cfg = settings.load(None, env={"STREAMFUSE_MQTT_PASSWORD_FILE": str(secret)})
    assert cfg.password() == "s3cret"
    cfg = settings.load(None, env={"STREAMFUSE_MQTT_PASSWORD_FILE": str(tmp_path / "nope")})
    with pytest.raises(ConfigError, match="cannot be read"):
        cfg.password()


def test_the_review_levels_selector_and_smoothing_are_settings(tmp_path: Path) -> None:
    path = write(tmp_path, '[engine]\nmodel = "lda"\nlevels = "late, attention,bayes"\n'
                 'selector_score = "auc"\nselector_horizon = 200\nmember_smoothing = 1\n'
                 'normalize = false\n')
    engine = settings.load(path, env={"STREAMFUSE_ENGINE_LEVELS": "late,mkl"}).engine_config()
    assert engine.levels == ("late", "mkl")  # the environment over the file, as for any key
    engine = settings.load(path, env={}).engine_config()
    assert engine.levels == ("late", "attention", "bayes") and engine.model == "lda"
    assert (engine.selector_score, engine.selector_horizon) == ("auc", 200)
    assert engine.member_smoothing == 1.0 and engine.normalize is False
    default = settings.load(write(tmp_path, ""), env={}).engine_config()
    assert default.levels == ("early", "intermediate", "late")
    for bad, says in [('levels = "late,magic"', "magic"), ('levels = ""', "levels"),
                      ('selector_score = "vibes"', "vibes"), ("member_smoothing = -1", "-1")]:
        with pytest.raises(ConfigError, match=says):
            settings.load(write(tmp_path, f"[engine]\n{bad}\n"), env={}).engine_config()
