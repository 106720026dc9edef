#!/usr/bin/env bash
# The crate's public surface, listed from rustdoc JSON (cargo-public-api, nightly rustdoc) in
# public-api.txt, so that every change to it shows in review; and a check that every type the
# surface names (in a field, a signature, a variant) is itself public, at one path.
#
#   scripts/public-api.sh           # regenerate and diff against public-api.txt (exit 1 if it changed)
#   scripts/public-api.sh --bless   # write the new list to public-api.txt
#
# Installs cargo-public-api (~4 min, once) and a nightly toolchain when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo-public-api > /dev/null || cargo install cargo-public-api --locked
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
mkdir -p target
cargo public-api --all-features -ss > target/public-api.txt

# Every `dynbatch::…::Type` the list mentions must be declared in it: a type that appears in a
# public field or signature but lives in a private module cannot be named by users.
python3 - target/public-api.txt <<'PY'
import re, sys
lines = open(sys.argv[1]).read().splitlines()
item = re.compile(r'^(?:#\[non_exhaustive\] )?pub (?:(?:struct|enum|trait|type|mod|const|static|fn|async fn) )?(dynbatch(?:::\w+)*)')
declared = {m.group(1) for l in lines if (m := item.match(l))}
named = {m.group(1) for l in lines for m in re.finditer(r'\b(dynbatch(?:::\w+)*::[A-Z]\w*)', l)}
missing = sorted(n for n in named if n not in declared
                 and not any(n.startswith(d + '::') for d in declared if d.rsplit('::', 1)[-1][:1].isupper()))
if missing:
    sys.exit('named but not public: ' + ', '.join(missing))
print(f'{len(named)} types named, all public')
PY

if [ "${1:-}" = "--bless" ]; then
  cp target/public-api.txt public-api.txt
  echo "public-api.txt: $(wc -l < public-api.txt) items"
  exit 0
fi
diff -u public-api.txt target/public-api.txt && echo "the public API is unchanged"
