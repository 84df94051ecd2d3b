"""The engine's CPU per device-second, this checkout against another, interleaved in one sitting.

    python bench/engine_ab.py BASE [DEVICES] [--bundle] [--rounds R]   # from the repository root

``BASE`` is another checkout of streamfuse (e.g. ``git worktree add /tmp/base 9f91eb8``). Each
round runs one fresh engine pass in a child process for each side, the order alternating from
round to round, so that both sides meet the same neighbours on a shared machine. A pass is the
fleet of ``bench/engine_cost.py`` (ECG 250 Hz, EEG 8 x 256 Hz, ACC 3 x 50 Hz, 100 ms chunks,
labels 1/s, the default configuration: every default fusion level on), its first 10 s untimed;
what is timed is the process CPU time of the rest (``time.process_time``), so time the machine
gave to others is not counted. Prints every pass, the minimum of each side and their ratio.
Each side runs its own code, including its own traffic generator; the script checks that both
sides made the same number of predictions.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

CHILD = r"""
import json, sys, time
root = sys.argv[1]
sys.path[:0] = [root, root + "/bench"]
from test_bench_engine import SECONDS, WARM, _messages
from streamfuse import Engine, warm_up
from streamfuse.config import EngineConfig
from streamfuse.types import Prediction
devices, bundle = int(sys.argv[2]), sys.argv[3] == "1"
items = _messages(bundle=bundle, devices=devices)
warm_up(EngineConfig())
engine = Engine(EngineConfig())
split = next(i for i, (_, t) in enumerate(items) if t > WARM)
engine.push_many(items[:split])
t0 = time.process_time()
out = engine.push_many(items[split:])
cpu = time.process_time() - t0
made = sum(isinstance(o, Prediction) for o in out)
print(json.dumps({"ms": cpu / (devices * (SECONDS - WARM)) * 1e3, "predictions": made}))
"""


def _pass(root: Path, devices: int, bundle: bool) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(root), str(devices), "1" if bundle else "0"],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        sys.exit(f"a pass in {root} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(base: Path, devices: int, bundle: bool, rounds: int) -> None:
    here = Path(__file__).resolve().parent.parent
    sides = {"base": base.resolve(), "this": here}
    runs: dict[str, list[dict[str, float]]] = {"base": [], "this": []}
    kind = "bundled" if bundle else "per-modality"
    print(f"{devices} devices ({kind}), {rounds} rounds; base {sides['base']}, this {here}")
    for r in range(rounds):
        order = ["base", "this"] if r % 2 == 0 else ["this", "base"]
        for side in order:
            got = _pass(sides[side], devices, bundle)
            runs[side].append(got)
            print(f"  round {r + 1} {side:4s} {got['ms']:.3f} ms per device-second", flush=True)
    made = {side: {int(g["predictions"]) for g in v} for side, v in runs.items()}
    if made["base"] != made["this"]:
        print(f"  note: predictions differ: base {made['base']}, this {made['this']}")
    best = {side: min(g["ms"] for g in v) for side, v in runs.items()}
    print(
        f"minimum: base {best['base']:.3f}, this {best['this']:.3f} ms of CPU per device-second;"
        f" this / base = {best['this'] / best['base']:.3f}"
        f" ({best['base'] / best['this']:.2f}x cheaper)"
    )


if __name__ == "__main__":
    argv = sys.argv[1:]
    rounds = 3
    if "--rounds" in argv:
        i = argv.index("--rounds")
        rounds = int(argv[i + 1])
        del argv[i : i + 2]
    bundle = "--bundle" in argv
    args = [a for a in argv if a != "--bundle"]
    if not args:
        sys.exit(__doc__)
    main(Path(args[0]), int(args[1]) if len(args) > 1 else 300, bundle, rounds)
