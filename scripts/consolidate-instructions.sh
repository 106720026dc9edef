#!/usr/bin/env bash
# Instructions per `patterns::consolidate` call at 10k, 40k and 160k distinct patterns (the
# `consolidate` bench's inputs), counted by valgrind's callgrind: the work, free of the noise
# of a shared host. Also the data reads and writes that miss a simulated last-level cache of
# 32 MB (`LL_BYTES` to change it): what grows faster than the work. Needs valgrind; about
# two minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
bench=$(cargo bench --bench consolidate --features mock,tokio --no-run --message-format=json 2>/dev/null |
  python3 -c 'import sys, json
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "consolidate" and m.get("executable"):
        print(m["executable"])')
out=$(mktemp)
previous=""
for n in 10000 40000 160000; do
  valgrind --tool=callgrind --cache-sim=yes --LL="${LL_BYTES:-33554432},16,64" --toggle-collect='*consolidate::consolidate' --callgrind-out-file="$out" \
    "$bench" --bench --profile-time 2 "consolidate_distinct/$n\$" >/dev/null 2>&1
  per_call=$(python3 - "$out" <<'PY'
import re, sys
lines = open(sys.argv[1]).read().split("\n")
names, calls, events, summary = {}, 0, [], []
for i, line in enumerate(lines):
    m = re.match(r"c?fn=\((\d+)\)(?: (.*))?", line)
    if m and m.group(2):
        names[m.group(1)] = m.group(2)
    if m and line.startswith("cfn="):
        if names.get(m.group(1), "").endswith("consolidate::consolidate"):
            c = re.match(r"calls=(\d+)", lines[i + 1])
            calls += int(c.group(1)) if c else 0
    if line.startswith("events:"):
        events = line.split()[1:]
    if line.startswith("summary:"):
        summary = [int(x) for x in line.split()[1:]]
count = dict(zip(events, summary))
calls = max(calls, 1)
print(count["Ir"] // calls, (count["DLmr"] + count["DLmw"]) // calls)
PY
)
  python3 - "$n" $per_call $previous <<'PY'
import sys
n, ir, misses, *before = (int(x) for x in sys.argv[1:])
line = f"{n:>7} patterns: {ir / 1e6:7.1f} M instructions, {misses / 1e3:6.0f} k last-level misses per call"
if before:
    line += f"  ({ir / before[0]:.2f}x and {misses / before[1]:.2f}x the previous size)"
print(line)
PY
  previous=$per_call
done
rm -f "$out"
