#!/usr/bin/env bash
# Issue 19's table in one run (SPEC.md §8.5, §10.4, §11.1–11.2): `cmargin check` against a
# numpy load at the seed shape and at 512 x 360,000 (scripts/check-scale.py, with --auto),
# the stride-64 sweep and benches/sweep.rs, the fused loss (benches/pipeline.rs) and the
# families' bounded check (benches/check_layer.rs), one after another, with the time and the
# load average at each step. A measurement, not a test: nothing asserts a time. Needs numpy,
# about 12 GB of memory and 9 GB of free disk in $TMPDIR; a few minutes on two quiet cores.
#
#   cargo build --release --bins --benches && scripts/measure-scale.sh
set -uo pipefail
cd "$(dirname "$0")/.."
stamp() { echo "== $1 $(date -u +%T) load: $(cut -d' ' -f1-3 /proc/loadavg)"; }
stamp "check-scale 128x180855"
python3 scripts/check-scale.py --shape 128,180855 --reps 3 --auto 2>&1 | grep -v '^    '
stamp "check-scale 512x360000"
python3 scripts/check-scale.py --shape 512,360000 --reps 1 --auto 2>&1 | grep -v '^    '
stamp "sweep --stride 64"
/usr/bin/time -f "wall %e s user %U s sys %S s rss %M KB" target/release/cmargin sweep \
  --profile arcface-thmm --params 1,0.5,0 --stride 64 2>&1 | tail -2
stamp "benches/sweep.rs"
cargo bench --bench sweep -- --reps 3 2>&1 | grep -v "Compiling\|Finished\|Running"
stamp "benches/pipeline.rs"
cargo bench --bench pipeline 2>&1 | grep -A12 "^summary"
stamp "families: benches/check_layer.rs --bounded, 128 x 180855"
for r in 1 2 3; do
  for fam in plain per-row k3; do
    echo "$fam $(cargo bench --bench check_layer -- --n 128 --c 180855 --reps 1 --bounded --family "$fam" 2>/dev/null | grep seconds)"
  done
done
stamp end
