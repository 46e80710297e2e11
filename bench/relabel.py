"""portal-dev with and without the questions whose label contradicts their own words (bench/portal-dev-relabels.tsv).

    python -m bench.relabel [--cmd ".venv/bin/python -m bot ask --json"]

Scores three question files with ../shared/eval/score.py: the original (the official figure), the original less the
contradicted rows, and the original with those rows relabelled to the record their words name ('-', the base holds
none, means the bot should decline). Only the first is the official figure; the others show what the labels cost.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from bot.config import ROOT

SHARED = ROOT.parent / "shared"
RELABELS = ROOT / "bench" / "portal-dev-relabels.tsv"


def read_tsv(path: Path) -> list[list[str]]:
    """Rows of a tab-separated file, comments and blank lines left out."""
    return [line.rstrip("\n").split("\t") for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip() and not line.startswith("#")]


def variants(dev: list[list[str]], relabels: list[list[str]]) -> dict[str, list[tuple[str, str]]]:
    """The question files to score: original, without the contradicted rows, relabelled."""
    fixed = {row[0]: row[2] for row in relabels}
    unknown = [q for q in fixed if q not in {r[0] for r in dev}]
    if unknown:
        sys.exit(f"{RELABELS}: {len(unknown)} questions are not in portal-dev, e.g. {unknown[0][:80]}")
    return {
        "original": [(q, e) for q, e in dev],
        "without": [(q, e) for q, e in dev if q not in fixed],
        "relabelled": [(q, fixed.get(q, e)) for q, e in dev],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dev", type=Path, default=SHARED / "eval" / "portal-dev.tsv")
    ap.add_argument("--cmd", default=f"{sys.executable} -m bot ask --json")
    args = ap.parse_args()
    relabels = read_tsv(RELABELS)
    print(f"{len(relabels)} reviewed rows in {RELABELS.relative_to(ROOT)}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for name, rows in variants(read_tsv(args.dev), relabels).items():
            path = Path(tmp) / f"{name}.tsv"
            path.write_text("".join(f"{q}\t{e}\n" for q, e in rows), encoding="utf-8")
            run = subprocess.run([sys.executable, str(SHARED / "eval" / "score.py"), str(path), "--cmd", args.cmd],
                                 cwd=ROOT, capture_output=True, text=True)
            if run.returncode:
                sys.stderr.write(run.stderr)
                return run.returncode
            print(f"== {name} ({len(rows)} questions)\n{run.stdout.strip()}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
