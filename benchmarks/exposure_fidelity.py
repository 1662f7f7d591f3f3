"""Does exposure track what an in-distribution thief really stole?

For every classification victim and each attack whose queries are real (or near-real)
records — ``in-distribution-thief``, ``in-distribution-thief-jitter``, ``copycat-pd`` — the
attack runs once; after its first ``n`` answered queries (checkpoints) we record

* the monitor's exposure estimate for that client (``Verdict.exposure``: a 1-NN copy's
  agreement with the victim on the profile's 256 held-out reference rows), and
* the fidelity of the attacker's own surrogate rebuilt from those ``n`` answers
  (``AttackResult.refit(n)``), as agreement with the victim on the public records.

Reported: the Pearson correlation over all (victim, attack, checkpoint) points, and the
absolute error at the first checkpoint where the real fidelity reaches 0.9.

Run:  .venv/bin/python benchmarks/exposure_fidelity.py          (about 1.5 minutes)
      .venv/bin/python benchmarks/exposure_fidelity.py --quick  (3 victims, about 30 s)
Writes benchmarks/results/exposure_fidelity.{json,md}.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import json  # noqa: E402
import sys  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402
from loadgen import results_dir  # noqa: E402

ATTACKS = ("in-distribution-thief", "in-distribution-thief-jitter", "copycat-pd")
CHECKPOINTS = (2, 5, 10, 20, 50, 100, 200, 500)


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="digits-mlp, cancer-logreg and wine-tree only")
    args = parser.parse_args(argv)
    from attacks.bench import ALL_VICTIMS, fidelity_after, victim_and_profile
    from attacks.registry import run_attack
    from monitor import Monitor

    warnings.filterwarnings("ignore")
    points = []
    for name in ALL_VICTIMS[:3] if args.quick else ALL_VICTIMS:
        victim, profile = victim_and_profile(name)
        for attack in ATTACKS:
            result = run_attack(attack, victim, budget=max(CHECKPOINTS), seed=0)
            X = result.stream.X
            monitor = Monitor(profile, model=victim.model)
            done = 0
            for n in CHECKPOINTS:
                if n > len(X):
                    break
                verdict = monitor.observe("thief", X[done:n])
                done = n
                points.append({"victim": name, "attack": attack, "n": n,
                               "exposure": verdict.exposure,
                               "fidelity": fidelity_after(result, victim, n)})
        print(f"{name} done", file=sys.stderr, flush=True)
    exposure = np.array([p["exposure"] for p in points], dtype=float)
    fidelity = np.array([p["fidelity"] for p in points], dtype=float)
    correlation = float(np.corrcoef(exposure, fidelity)[0, 1])
    at_90 = []
    for key in {(p["victim"], p["attack"]) for p in points}:
        series = [p for p in points if (p["victim"], p["attack"]) == key]
        first = next((p for p in series if p["fidelity"] >= 0.9), None)
        if first is not None:
            at_90.append({"victim": key[0], "attack": key[1], "n": first["n"],
                          "fidelity": first["fidelity"], "exposure": first["exposure"],
                          "error": abs(first["exposure"] - first["fidelity"])})
    at_90.sort(key=lambda r: (r["victim"], r["attack"]))
    summary = {"command": "benchmarks/exposure_fidelity.py" + (" --quick" if args.quick else ""),
               "correlation": correlation,
               "mean_abs_error": float(np.mean(np.abs(exposure - fidelity))),
               "median_error_at_90": float(np.median([r["error"] for r in at_90]))
               if at_90 else None, "at_90": at_90, "points": points}
    RESULTS = results_dir()
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "exposure_fidelity.json").write_text(json.dumps(summary, indent=2) + "\n")
    lines = ["# Exposure against the attacker's real surrogate fidelity", "",
             f"Command: `{summary['command']}`", "",
             f"Pearson correlation over {len(points)} (victim, attack, checkpoint) points: "
             f"**{correlation:.3f}**; mean |exposure - fidelity| {summary['mean_abs_error']:.3f}.",
             "", "At the first checkpoint where the real fidelity reaches 0.9:", "",
             "| victim | attack | queries | fidelity | exposure | error |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['victim']} | {r['attack']} | {r['n']} | {r['fidelity']:.3f} | "
              f"{r['exposure']:.3f} | {r['error']:.3f} |" for r in at_90]
    (RESULTS / "exposure_fidelity.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
