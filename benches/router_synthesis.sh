#!/usr/bin/env bash
# f32 safety of the router, perceptron against max-margin (docs/export.md):
# for each set, `export --dtype f32 --force` with each --router-synthesis,
# then the largest router weight (W_gate, b_gate), the smallest exact router
# margin, their ratio, the f32 forward pass's flips (all from config.json's
# `precision`), which synthesis ran, and the build time export prints.
# Sets: constructions/running_example.toml and random_seed1/2, generate
# seeds 1-3, 1/8 paper scale (--paper-scale --pairs 25) and, with FULL=1,
# 1x paper scale (LIMIT seconds per run, default 600; 124 = timed out).
#   usage: benches/router_synthesis.sh [path/to/release/routecert]   (FULL=1 LIMIT=600)
set -u
B=${1:-target/release/routecert}
LIMIT=${LIMIT:-600}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
sets=(constructions/running_example.toml constructions/shared_keys.toml
      constructions/random_seed1.toml constructions/random_seed2.toml)
for s in 1 2 3; do "$B" generate --seed "$s" -o "$dir/seed$s.toml" && sets+=("$dir/seed$s.toml"); done
"$B" generate --paper-scale --pairs 25 -o "$dir/paper_eighth.toml" && sets+=("$dir/paper_eighth.toml")
if [ "${FULL:-0}" = 1 ]; then
  "$B" generate --paper-scale -o "$dir/paper.toml" && sets+=("$dir/paper.toml")
fi
printf '| %s | %s | %s | %s | %s | %s | %s | %s |\n' set synthesis "largest router weight" \
  "smallest router margin" "margin / weight" "f32 flips" "build s" "ran"
printf '|---|---|---|---|---|---|---|---|\n'
for f in "${sets[@]}"; do
  for syn in perceptron max-margin; do
    out="$dir/out"
    rm -rf "$out"
    timeout "$LIMIT" "$B" export "$f" -o "$out" --dtype f32 --force \
      --router-synthesis "$syn" > "$dir/stdout" 2> "$dir/stderr"
    rc=$?
    python3 - "$f" "$syn" "$rc" "$out/config.json" "$dir/stdout" "$dir/stderr" <<'EOF'
import json, os, re, sys
from fractions import Fraction
f, syn, rc, config, stdout, stderr = sys.argv[1:]
name = os.path.basename(f).removesuffix(".toml")
if rc != "0":
    why = "timed out" if rc == "124" else open(stderr).read().strip().splitlines()[-1:]
    print(f"| {name} | {syn} | exit {rc}: {why} | | | | | |")
    sys.exit()
c = json.load(open(config))
p = c["precision"]
w = max(v for k, v in p["max_abs_by_tensor"].items() if "gate" in k)
m = p["min_router_margin"]
mf = float(Fraction(m)) if m else None
out = open(stdout).read()
build = re.search(r"build ([0-9.]+) s", out).group(1)
total = re.search(r"([0-9]+) prefixes", out).group(1)
flips = p["f32_flips"]
ran = c["router"].get("synthesis", "")
shown = "-" if mf is None else (m if len(m) < 12 else f"{mf:.3g}")
ratio = "-" if mf is None else f"{mf / w:.2g}"
print(f"| {name} | {syn} | {w:.3g} | {shown} | {ratio} | {flips} / {total} | {build} | {ran} |")
EOF
  done
done
