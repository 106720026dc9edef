#!/usr/bin/env bash
# Fuzzes every parser that reads what others wrote (fuzz/fuzz_targets/*), each for SECONDS
# (default 600), two at a time, with a 2 GB RSS limit. Needs the nightly toolchain and
# cargo-fuzz (installed from crates.io when missing). Not run by CI (time).
#
#   scripts/fuzz.sh [SECONDS] [TARGET ...]
#
# Each target starts from its committed seed corpus (fuzz/corpus/TARGET/seed-*) plus whatever
# earlier runs left there; findings go to fuzz/artifacts/TARGET/. A summary line per target
# (executions, seconds, crashes) is printed at the end and written to fuzz/last-run.txt.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds="${1:-600}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(response read_clusters openai_wire anthropic_wire batch_lines journal)
fi
command -v cargo-fuzz >/dev/null || cargo +nightly install cargo-fuzz --locked
cargo +nightly fuzz build -O "${targets[@]/#/}" 2>/dev/null || cargo +nightly fuzz build -O
mkdir -p logs
run() {
  local target="$1"
  mkdir -p "corpus/$target" "artifacts/$target"
  # Leak detection is off: LeakSanitizer reports the thread-local scratch strings the
  # cluster reader keeps for reuse; real growth would hit the RSS limit instead.
  cargo +nightly fuzz run -O "$target" "corpus/$target" -- \
    -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
    -detect_leaks=0 \
    >"logs/$target.log" 2>&1 || true
}
running=0
for target in "${targets[@]}"; do
  run "$target" &
  running=$((running + 1))
  if [ "$running" -ge 2 ]; then
    wait -n
    running=$((running - 1))
  fi
done
wait
: >last-run.txt
for target in "${targets[@]}"; do
  log="logs/$target.log"
  # "Done N runs in S second(s)" when the time ran out; a finding stops the run earlier.
  done_line=$(grep -oE 'Done [0-9]+ runs in [0-9]+ second' "$log" | tail -1)
  crashes=$(find "artifacts/$target" -type f | wc -l)
  if [ -n "$done_line" ]; then
    runs=$(echo "$done_line" | awk '{print $2}')
    secs=$(echo "$done_line" | awk '{print $5}')
    echo "$target: $runs executions in $secs s, $crashes artifacts" | tee -a last-run.txt
  else
    verdict=$(grep -m1 -oE 'ERROR: libFuzzer: [a-z-]+|panicked at [^ ]+|out-of-memory' "$log" || echo "stopped")
    echo "$target: stopped early ($verdict), $crashes artifacts; see fuzz/$log" | tee -a last-run.txt
  fi
done
