"""The bare training loop in a plain process: ``python -m bench.bare_train CONFIG_JSON ROOT [--wait]``.

Calls :func:`hcl_core.train.train` directly (no app, no worker protocol) after the same warm-up
the app's warm worker does (``hcl_core.worker._warm_up``: the lazy imports a first optimiser
step would otherwise pay inside the first epoch). Prints one JSON line: the summary of its
events (:func:`bench.train_speed.summarise`) and the wall time of ``train``. With ``--wait`` it
prints ``ready`` after the imports and trains only once a line arrives on stdin (so the start-up
can overlap other work that is not being measured).
"""

from __future__ import annotations

import json
import sys
import time


def main() -> int:
    from bench.train_speed import summarise
    from hcl_core.config import RunConfig
    from hcl_core.train import train
    from hcl_core.worker import _warm_up

    config = RunConfig.from_json(sys.argv[1])
    _warm_up()
    if "--wait" in sys.argv[3:]:
        print("ready", flush=True)
        sys.stdin.readline()
    events: list[dict] = []
    t0 = time.perf_counter()
    result = train(config, callback=events.append, root=sys.argv[2])
    out = summarise(events)
    out.update(wall_s=time.perf_counter() - t0, state=result.state)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
