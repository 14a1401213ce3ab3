#!/usr/bin/env bash
# The LP benchmark of issue 12: generate --shared-keys at its default sizes
# for seeds 1-20 and --tasks 6..12 (seed 1), then time `verify` (both
# models) and `routability` on each; every run must decide (exit 0 or 1)
# within LIMIT seconds (default 10). Prints one line per set and run, and
# exits 1 if any run failed to decide in time.
#   usage: benches/lp.sh [path/to/release/routecert]   (LIMIT=10 SEEDS="1 2")
set -u
B=${1:-target/release/routecert}
LIMIT=${LIMIT:-10}
SEEDS=${SEEDS:-$(seq 1 20)}
TASKS=${TASKS:-$(seq 6 12)}
dir=$(mktemp -d)
sets=()
for s in $SEEDS; do "$B" generate --shared-keys --seed "$s" -o "$dir/seed$s.toml" && sets+=("$dir/seed$s.toml"); done
for t in $TASKS; do "$B" generate --shared-keys --tasks "$t" --seed 1 -o "$dir/tasks$t.toml" && sets+=("$dir/tasks$t.toml"); done
bad=0
printf '%-14s %-16s %5s %8s\n' set run exit seconds
for f in "${sets[@]}"; do
  for run in "verify --model moe" "verify --model dense" "routability"; do
    start=$(date +%s.%N)
    timeout "$LIMIT" "$B" $run "$f" > /dev/null 2>&1
    rc=$?
    secs=$(echo "$(date +%s.%N) - $start" | bc)
    printf '%-14s %-16s %5s %8.2f\n' "$(basename "$f" .toml)" "${run#verify --model }" "$rc" "$secs"
    [ "$rc" -le 1 ] || bad=1
  done
done
rm -rf "$dir"
[ $bad = 0 ] && echo "every run decided within ${LIMIT} s" || echo "SOME RUN DID NOT DECIDE within ${LIMIT} s"
exit $bad
