"""The detection benchmark (issue 3 section 4): the same code as `extraction-monitor bench`.

Victims x attacks x benign behaviours x detector configurations (PRADA baseline, density,
boundary, chain alone, the default combined monitor, combined + chain); writes
per_client.csv, adaptive.csv, timelines.csv, spec.json, summary.md, roc.png, timelines.png.
The committed full run under benchmarks/results/detection/ was made with (see COMMAND.txt):

    .venv/bin/extraction-monitor bench --seed 0 --benign-seeds 8 --jobs 3 \
        --out benchmarks/results/detection

Quick variant (CI, under 2 minutes):

    .venv/bin/python benchmarks/detection.py --quick --out /tmp/bench-quick

Re-write summary.md and the PNGs of an existing run without re-running it:

    .venv/bin/python benchmarks/detection.py --resummarise benchmarks/results/detection
"""

from __future__ import annotations

import sys

from monitor.cli import main


def resummarise(out: str) -> int:
    """Rebuild summary.md and the PNGs from a run's CSV/JSON files."""
    from pathlib import Path

    from attacks.bench import load_result, write_outputs

    command_file = Path(out) / "COMMAND.txt"
    command = command_file.read_text().splitlines()[0] if command_file.exists() else ""
    write_outputs(load_result(out), out, command)
    print(f"rewrote the summary and plots in {out}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--resummarise":
        sys.exit(resummarise(sys.argv[2]))
    sys.exit(main(["bench", *sys.argv[1:]]))
