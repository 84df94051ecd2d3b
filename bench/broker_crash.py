"""What a kill -9 of Mosquitto loses of acknowledged QoS 1 messages queued for an offline
persistent session, by persistence setting, and what the setting costs the broker in CPU.

    python bench/broker_crash.py [--messages 3000] [--rate 300]

For each setting: a private broker; a persistent session (the gateway's) subscribes and goes
away; a device publishes MESSAGES QoS 1 messages of 800 bytes (about an 8-channel EEG chunk)
at RATE a second (each acknowledged by the broker); the broker is killed with SIGKILL,
restarted, and the session resumed: how many of
the acknowledged messages it delivers. The broker's CPU seconds during the publishing are
the cost (same run, same machine, so settings compare; absolute figures move with load).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.chaos.brokers import crash_loss  # noqa: E402

ON_CHANGES = "autosave_on_changes true"
SETTINGS = {
    "autosave_interval 30 (seconds; the old deploy/)": ("autosave_interval 30",),
    "autosave_on_changes, every 1000 changes": (ON_CHANGES, "autosave_interval 1000"),
    "autosave_on_changes, every 100 changes (deploy/)": (ON_CHANGES, "autosave_interval 100"),
    "autosave_on_changes, every 10 changes": (ON_CHANGES, "autosave_interval 10"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--rate", type=float, default=300.0)
    args = parser.parse_args()
    for name, lines in SETTINGS.items():
        acked, kept, cpu = crash_loss(lines, args.messages, args.rate)
        print(f"{name:50s} acknowledged {acked:5d}, delivered after kill -9 {kept:5d} "
              f"({100 * (acked - kept) / max(acked, 1):5.1f} % lost), broker CPU {cpu:.2f} s")


if __name__ == "__main__":
    main()
