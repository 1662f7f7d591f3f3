"""Per-client state size in bytes after 10k queries (``Monitor.state(c).nbytes()``).

Configurations measured side by side: the default detectors (density, boundary), with the
opt-in chain detector, and with the PRADA baseline on (whose state grows with history, capped
at ``prada_max_stored``). Also the size of the state serialised with ``np.savez`` (what a
state store holds). digits-mlp profile, 64 features, seeded public-like rows.

Run:  .venv/bin/python benchmarks/state_size.py          (under a minute)
      .venv/bin/python benchmarks/state_size.py --quick  (2k queries)
Writes benchmarks/results/state_size.{json,md}.
"""

from __future__ import annotations

import argparse
import io

import numpy as np
from offline_throughput import digits_profile, public_like_rows, write_results

TARGET_BYTES = 16 * 1024


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--queries", type=int, default=None)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    from monitor import Monitor, MonitorConfig

    n = args.queries or (2_000 if args.quick else 10_000)
    victim, profile = digits_profile()
    X = public_like_rows(victim, n, np.random.default_rng(0))
    P = victim.model.predict_proba(X)
    configs = {
        "default": MonitorConfig(),
        "with chain": MonitorConfig(detectors=("density", "boundary", "chain")),
        "with PRADA baseline": MonitorConfig(prada=True),
    }
    rows = []
    for name, config in configs.items():
        mon = Monitor(profile, config)
        mon.observe("c", X, P)
        state = mon.state("c")
        buffer = io.BytesIO()
        np.savez(buffer, **state.to_arrays())
        rows.append({"config": name, "queries": n, "nbytes": state.nbytes(),
                     "npz_bytes": len(buffer.getvalue())})
        print(f"{name:<20}: {state.nbytes():>9,} bytes in memory, {len(buffer.getvalue()):>7,} "
              f"bytes as .npz (PRADA not serialised) after {n:,} queries")
    default = rows[0]["nbytes"]
    print(f"default state / 16 KiB target = {default / TARGET_BYTES:.2f} "
          f"({'met' if default <= TARGET_BYTES else 'MISSED'}); PRADA state / default = "
          f"{rows[2]['nbytes'] / default:.1f}x")
    result = {"command": "benchmarks/state_size.py" + (" --quick" if args.quick else ""),
              "victim": "digits-mlp", "rows": rows, "target_bytes": TARGET_BYTES}
    if not args.no_write:
        write_results("state_size", result)
    return result


if __name__ == "__main__":
    main()
