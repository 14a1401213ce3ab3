#!/usr/bin/env bash
# The LP benchmark of issue 12: generate --shared-keys at its default sizes
# for seeds 1-20 and --tasks 6..12 (seed 1), then time `verify` (both
# models) and `routability` on each. Prints a table: per set and run, the
# exit code (0 holds / routable, 1 fails / not routable / undecided, 124 the
# LIMIT was hit), the verdict, wall and user seconds. Exits 1 if any run did
# not finish within LIMIT seconds. The machine's load matters: wall time is
# user time times the load factor on a shared 2-core machine, so the table
# shows both.
#   usage: benches/lp.sh [path/to/release/routecert]   (LIMIT=10 SEEDS="1 2" TASKS="6 7")
set -u
B=${1:-target/release/routecert}
LIMIT=${LIMIT:-10}
SEEDS=${SEEDS:-$(seq 1 20)}
TASKS=${TASKS:-$(seq 6 12)}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
sets=()
for s in $SEEDS; do "$B" generate --shared-keys --seed "$s" -o "$dir/seed$s.toml" && sets+=("$dir/seed$s.toml"); done
for t in $TASKS; do "$B" generate --shared-keys --tasks "$t" --seed 1 -o "$dir/tasks$t.toml" && sets+=("$dir/tasks$t.toml"); done
bad=0
printf '%-9s %-12s %4s %-14s %7s %7s\n' set run exit verdict wall user
for f in "${sets[@]}"; do
  for run in "verify --model moe" "verify --model dense" "routability"; do
    out="$dir/out.json"
    start=$(date +%s.%N)
    /usr/bin/time -f '%U' -o "$dir/user" timeout "$LIMIT" "$B" $run "$f" --format json > "$out" 2>/dev/null
    rc=$?
    wall=$(echo "$(date +%s.%N) - $start" | bc)
    user=$(tail -1 "$dir/user" 2>/dev/null | grep -E '^[0-9.]+$' || echo '-')
    verdict=$(python3 -c '
import json, sys
try:
    d = json.load(open(sys.argv[1]))
except Exception:
    print("-"); sys.exit()
if "decision" in d:
    print(d["decision"])
else:
    c = d.get("claims", {})
    bad = [k for k, v in c.items() if isinstance(v, dict) and v.get("holds") is False]
    L = {"routing": "R", "probability": "P", "retrieval": "A", "size": "S", "isolation": "I"}
    print("holds" if not bad else "fails:" + "".join(L.get(k, k) for k in bad))
' "$out")
    printf '%-9s %-12s %4s %-14s %7.2f %7s\n' "$(basename "$f" .toml)" "${run#verify --model }" "$rc" "$verdict" "$wall" "$user"
    [ "$rc" -le 1 ] || bad=1
  done
done
[ $bad = 0 ] && echo "every run decided within ${LIMIT} s" || echo "SOME RUN DID NOT FINISH within ${LIMIT} s"
exit $bad
