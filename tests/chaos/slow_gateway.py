"""``streamfuse`` with a deliberately slowed engine, to load a gateway to a known multiple of
what it keeps up with on any machine.

``python -m tests.chaos.slow_gateway SECONDS <streamfuse arguments>``: every data message
costs the engine SECONDS more (a sleep, so the overload does not take CPU from the other
processes of a shared machine); labels are not slowed. Capacity is then about
``1 / SECONDS`` data messages a second, and a publisher at twice that rate is a 2x overload.
"""

from __future__ import annotations

import sys
import time
from typing import Any


def main(argv: list[str]) -> int:
    delay = float(argv[0])
    from streamfuse import engine as engine_module

    push = engine_module.Engine.push

    def slowed(self: Any, raw: Any, now: float) -> Any:
        if not str(getattr(raw, "topic", "")).endswith("/label"):
            time.sleep(delay)
        return push(self, raw, now)

    engine_module.Engine.push = slowed  # type: ignore[method-assign]
    from streamfuse.cli import main as cli

    return cli(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
