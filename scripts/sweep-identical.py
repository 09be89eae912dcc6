#!/usr/bin/env python3
"""Are two `cmargin` binaries' sweeps and checks bit-identical? (SPEC.md §10.4, issue 19)

    python3 scripts/sweep-identical.py OLD_CMARGIN NEW_CMARGIN

Runs with both binaries, and compares:
- the JSON report of `cmargin sweep` (every maximum, histogram and worst input; the `run`
  object, which holds the timing, is left out) for every preset at the four paper
  configurations, every 40,961st f32 (plus the band and the kinks' windows); for four presets
  the complete f16 and bf16 sweeps at (1, 0.3, 0.2) and a strided f64 sweep at (1, 0.5, 0);
- the text of `cmargin check -v` on every shipped golden dump, and of the conformance matrix.

Prints each difference and exits 1 if there is one, 0 otherwise. Writes no files.
"""

import json
import pathlib
import subprocess
import sys

PRESETS = [
    "analytic", "caffe-cpu", "caffe-gpu", "detached", "arcface-thmm", "arcface-thmm-easy",
    "recommended", "textbook", "oneflow-cpu", "speechbrain-aam", "sphereface",
]
PAPER = ["1,0.5,0", "1,0.3,0.2", "4,0.5,0.35", "1.35,0.25,0.1"]
HALF_AND_F64 = ["caffe-gpu", "arcface-thmm", "recommended", "analytic"]


def runs():
    for pr in PRESETS:
        for pa in PAPER:
            yield ["sweep", "--profile", pr, "--params", pa, "--stride", "40961", "--json", "-"]
    for pr in HALF_AND_F64:
        for dt in ["f16", "bf16"]:
            yield ["sweep", "--profile", pr, "--params", "1,0.3,0.2", "--dtype", dt, "--json", "-"]
        yield ["sweep", "--profile", pr, "--params", "1,0.5,0", "--dtype", "f64",
               "--range", "-1,1", "--stride", "1000000000000", "--json", "-"]


def sweep_json(binary, args):
    out = subprocess.run([binary] + args, capture_output=True, text=True)
    if out.returncode not in (0, 1):
        sys.exit(f"{binary} {' '.join(args)}: exit {out.returncode}: {out.stderr.strip()}")
    d = json.loads(out.stdout)
    d.pop("run", None)
    return d


def text(binary, args):
    return subprocess.run([binary] + args, capture_output=True, text=True).stdout


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    old, new = sys.argv[1:]
    diffs = 0
    n = 0
    for args in runs():
        n += 1
        if sweep_json(old, args) != sweep_json(new, args):
            diffs += 1
            print("DIFFERS:", " ".join(args))
    root = pathlib.Path(__file__).resolve().parent.parent
    dumps = sorted(
        str(p) for p in (root / "fixtures" / "golden").rglob("*.json")
        if p.name != "expected_deviations.json"
    )
    for args in (["check", "-v", "--max-elements", "50"] + dumps, ["check"]):
        n += 1
        if text(old, args) != text(new, args):
            diffs += 1
            print("DIFFERS:", " ".join(args[:4]), f"({len(dumps)} dumps)" if len(args) > 1 else "")
    print(f"{n} comparisons ({len(dumps)} golden dumps), {diffs} differ")
    sys.exit(1 if diffs else 0)


if __name__ == "__main__":
    main()
