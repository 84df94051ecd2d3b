"""``streamfuse gateway --print-config``: the complete default configuration as commented TOML.

Generated from :class:`~.config.GatewayConfig` itself (every section, every key at its default,
each key's ``#:`` comment from the source), so it cannot drift from what the gateway reads.
"""

from __future__ import annotations

import inspect
import json
import re
from dataclasses import fields

from .config import SECTIONS, GatewayConfig

HEADER = """\
# streamfuse gateway: the complete default configuration (streamfuse gateway --print-config).
#   streamfuse gateway --config gateway.toml
# Any key can be overridden by an environment variable STREAMFUSE_<SECTION>_<KEY>
# (e.g. STREAMFUSE_MQTT_PASSWORD, STREAMFUSE_METRICS_PORT=9108) and then by command-line flags.
# Unknown keys, wrong types and modalities without a rate are refused at start with a message.
"""


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML form for {value!r}")


def _field_comments(cls: type) -> dict[str, str]:
    """Each field's ``#:`` comment lines (and trailing ``# ...``) in the class source."""
    out: dict[str, str] = {}
    pending: list[str] = []
    for line in inspect.getsource(cls).splitlines():
        stripped = line.strip()
        if stripped.startswith("#:"):
            pending.append(stripped[2:].strip())
            continue
        m = re.match(r"(\w+)\s*:\s*[^=]+=\s*[^#]*(?:#\s*(.*))?$", stripped)
        if m:
            words = [*pending, *([m.group(2)] if m.group(2) else [])]
            if words:
                out[m.group(1)] = " ".join(words)
        pending = []
    return out


def _comment(text: str, width: int = 96) -> list[str]:
    lines, line = [], "#"
    for word in text.split():
        if len(line) + 1 + len(word) > width:
            lines.append(line)
            line = "#"
        line += " " + word
    return [*lines, line] if line != "#" else lines


def default_toml() -> str:
    """The default :class:`GatewayConfig` as commented TOML (loads back to the same config)."""
    base = GatewayConfig()
    parts = [HEADER]
    for name, cls in SECTIONS.items():
        section = getattr(base, name)
        doc = inspect.cleandoc(cls.__doc__ or "")
        parts.append("")
        parts.extend(_comment(doc))
        parts.append(f"[{name}]")
        comments = _field_comments(cls)
        for f in fields(cls):
            if f.name in comments:
                parts.extend(_comment(comments[f.name]))
            parts.append(f"{f.name} = {_toml_value(getattr(section, f.name))}")
    parts.append("")
    parts.extend(
        _comment(
            "Modalities: each [modalities.<name>] a stream a device may send on "
            "{prefix}/<device>/<name>, with its channel names (the channel count a chunk must "
            "have), its rate in Hz (a chunk whose fs strays more than 2 % from it is refused, "
            "rate_mismatch) and its unit. Listing any replaces the defaults below."
        )
    )
    for name, spec in base.modalities.items():
        parts.append(f"[modalities.{name}]")
        parts.append(f"channels = {_toml_value(list(spec.channel_names))}")
        parts.append(f"fs = {_toml_value(float(spec.fs))}")
        parts.append(f"unit = {_toml_value(spec.unit)}")
    return "\n".join(parts) + "\n"


