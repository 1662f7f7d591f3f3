"""Write benchmark query logs and the verdict tables `extraction-monitor analyze` gives on them.

Used to check that a refactor changes no verdict: run it before and after into two folders and
compare the verdict CSVs byte for byte::

    .venv/bin/python benchmarks/verdict_snapshot.py /tmp/verdicts-before
    # ... change the code ...
    .venv/bin/python benchmarks/verdict_snapshot.py /tmp/verdicts-after
    diff -r /tmp/verdicts-before/verdicts /tmp/verdicts-after/verdicts && echo identical

The logs hold, per reference victim, the demo's benign and attack clients, one client per
benign behaviour, and every registry attack that applies to the victim (budgets capped at
300), exported by `attacks.traffic`. Each log is analyzed with the default config, with the
chain detector on, and with the PRADA baseline on.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

CONFIGS = {
    "default": "",
    "chain": 'detectors = ["density", "boundary", "chain"]\n',
    "prada": "prada = true\n",
}


def write_logs(folder: Path) -> list[Path]:
    """One Parquet log per reference victim (seeded)."""
    from attacks.benign import benign_streams
    from attacks.registry import ATTACKS, run_attack
    from attacks.synthetic import demo_clients
    from attacks.traffic import to_log, write_log
    from victims import VICTIMS, load_victim

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in VICTIMS:
        victim = load_victim(name)
        streams = demo_clients(victim, seed=0, n=200) + benign_streams(victim, seed=1, n=200)
        for attack, spec in ATTACKS.items():
            if name in spec.applies_to and "proba" in spec.output_modes:
                streams.append(run_attack(attack, victim, budget=min(300, spec.default_budget),
                                          seed=0).stream)
        paths.append(write_log(to_log(streams, victim), folder / f"{name}.parquet"))
    return paths


def main(out: str) -> int:
    from monitor.cli import main as cli
    from victims import load_victim

    warnings.filterwarnings("ignore")
    out_dir = Path(out)
    logs = write_logs(out_dir / "logs")
    for label, text in CONFIGS.items():
        config = out_dir / "configs" / f"{label}.toml"
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text("[monitor]\n" + text)
        for log in logs:
            victim = load_victim(log.stem)
            profile = out_dir / "profiles" / log.stem
            if not profile.exists():
                from monitor import Profile

                Profile().fit(victim.model, victim.X_train, victim.y_train, X_cal=victim.X_cal,
                              y_cal=victim.y_cal).save(profile)
            verdicts = out_dir / "verdicts" / f"{log.stem}-{label}.csv"
            status = cli(["analyze", str(log), "--profile", str(profile), "--config", str(config),
                          "--out", str(verdicts)])
            if status:
                return status
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "/tmp/verdicts"))
