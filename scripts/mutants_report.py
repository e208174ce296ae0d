#!/usr/bin/env python3
"""Per-module summary of a cargo-mutants run: caught / missed / unviable / timeouts.

    python3 scripts/mutants_report.py [mutants.out] [--min 90]
        [--previous OLD/mutants.out ... --current LIST]   # after `cargo mutants --iterate`

Reads ``<dir>/outcomes.json`` (cargo-mutants' machine-readable result) and prints one Markdown row
per source file: caught, missed, unviable (did not build), timeouts, and caught as a share of the
viable mutants (caught + missed + timeouts). Then every missed mutant, one per line, so each can
be killed by a test or written down as equivalent (``scripts/mutants-equivalent.txt``: one
line per mutant, ``<file>: <description> -- why``; line numbers, if given, are ignored). Mutants listed there count as
equivalent, not missed. Exit status 1 when a file is under ``--min`` percent (default 90).
Python 3.11 stdlib only.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import defaultdict
from pathlib import Path

EQUIVALENT = Path(__file__).with_name("mutants-equivalent.txt")


def mutant_of(outcome: dict) -> dict | None:
    scenario = outcome.get("scenario")
    if isinstance(scenario, dict) and "Mutant" in scenario:
        return scenario["Mutant"]
    return None


def describe(m: dict) -> str:
    line = m.get("span", {}).get("start", {}).get("line", "?")
    name = m.get("name")
    if not name:
        func = (m.get("function") or {}).get("function_name", "?")
        name = f"replace {func} with {m.get('replacement', '?')}"
    return f"{m.get('file', '?')}:{line}: {name}"


def without_lines(description: str) -> str:
    """``file: mutant``, without line and column numbers (they move as code is added above)."""
    m = re.match(r"^(\S+?):[\d?]+(?::\d+)?: (?:\S+?:\d+:\d+: )?(.*)$", description)
    return f"{m.group(1)}: {m.group(2)}" if m else description


def equivalents() -> dict[str, str]:
    out = {}
    if EQUIVALENT.exists():
        for raw in EQUIVALENT.read_text().splitlines():
            if raw.strip() and not raw.startswith("#") and " -- " in raw:
                what, why = raw.split(" -- ", 1)
                out[without_lines(what.strip())] = why.strip()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dir", nargs="?", default="mutants.out")
    ap.add_argument("--min", type=float, default=90.0)
    ap.add_argument(
        "--previous",
        action="append",
        default=[],
        help="the mutants.out of a run an `--iterate` run continued (repeat for a chain of "
        "runs): its caught and unviable mutants, which --iterate skips, count too",
    )
    ap.add_argument(
        "--current",
        help="`cargo mutants --list` of the tree now: with --previous, only these mutants count",
    )
    args = ap.parse_args(argv)
    data = json.loads((Path(args.dir) / "outcomes.json").read_text())
    # Mutants of the tree as it is now (`cargo mutants --list`): an earlier run's outcome counts
    # only for a mutant that still exists, and once (the newest run's outcome wins).
    current = set(Path(args.current).read_text().splitlines()) if args.current else None
    seen = {mutant_of(o).get("name") for o in data.get("outcomes", []) if mutant_of(o)}
    for previous in args.previous:
        earlier = json.loads((Path(previous) / "outcomes.json").read_text())
        for o in earlier.get("outcomes", []):
            m = mutant_of(o)
            if m is None or o.get("summary") not in ("CaughtMutant", "Unviable"):
                continue
            name = m.get("name")
            if name in seen or (current is not None and name not in current):
                continue
            seen.add(name)
            data["outcomes"].append(o)
    eq = equivalents()
    rows: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    missed: list[str] = []
    for outcome in data.get("outcomes", []):
        m = mutant_of(outcome)
        if m is None:
            continue
        file = m.get("file", "?")
        summary = outcome.get("summary", "?")
        kind = {
            "CaughtMutant": "caught",
            "MissedMutant": "missed",
            "Unviable": "unviable",
            "Timeout": "timeout",
        }.get(summary, summary)
        if kind == "missed" and without_lines(describe(m)) in eq:
            kind = "equivalent"
        rows[file][kind] += 1
        if kind == "missed":
            missed.append(describe(m))
    print("| file | caught | missed | equivalent | unviable | timeouts | caught of viable |")
    print("|---|---|---|---|---|---|---|")
    worst = 100.0
    totals: dict[str, int] = defaultdict(int)
    for file in sorted(rows):
        r = rows[file]
        for k, v in r.items():
            totals[k] += v
        viable = r["caught"] + r["missed"] + r["timeout"]
        share = 100.0 * (r["caught"] + r["timeout"]) / viable if viable else 100.0
        worst = min(worst, share)
        print(
            f"| {file} | {r['caught']} | {r['missed']} | {r['equivalent']} | {r['unviable']} | "
            f"{r['timeout']} | {share:.1f} % |"
        )
    viable = totals["caught"] + totals["missed"] + totals["timeout"]
    share = 100.0 * (totals["caught"] + totals["timeout"]) / viable if viable else 100.0
    print(
        f"| **all** | {totals['caught']} | {totals['missed']} | {totals['equivalent']} | "
        f"{totals['unviable']} | {totals['timeout']} | {share:.1f} % |"
    )
    if missed:
        print("\nmissed:")
        for line in sorted(missed):
            print(f"  {line}")
    return 0 if worst >= args.min else 1


if __name__ == "__main__":
    sys.exit(main())
