"""One error hierarchy for the whole package."""

from __future__ import annotations


class StreamfuseError(Exception):
    """Root of every error streamfuse raises on purpose."""


class PayloadError(StreamfuseError):
    """A message could not be decoded into a chunk or a label.

    ``reason`` is a short machine-readable tag (used as a counter key, e.g. ``"truncated"``);
    the message says, for a human, what is wrong and where.
    """

    def __init__(
        self,
        reason: str,
        message: str,
        *,
        device: str | None = None,
        modality: str | None = None,
        seq: int | None = None,
    ) -> None:
        where = ", ".join(
            f"{k}={v}"
            for k, v in (("device", device), ("modality", modality), ("seq", seq))
            if v is not None
        )
        super().__init__(f"{message} [{where}]" if where else message)
        self.reason = reason
        self.device = device
        self.modality = modality
        self.seq = seq


class TopicError(PayloadError):
    """A topic does not follow ``{prefix}/{device}/{kind}`` or names an invalid device."""


class ConfigError(StreamfuseError):
    """A configuration value is missing, unknown or of the wrong type."""


class DataSourceError(StreamfuseError):
    """A recording is missing, corrupt, or has channels the mapping does not know."""


class BrokerError(StreamfuseError):
    """The MQTT broker could not be started, reached or authenticated against."""
