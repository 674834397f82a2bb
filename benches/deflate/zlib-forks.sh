#!/usr/bin/env bash
# The permessage-deflate backend as a measured choice among C zlibs: the system's libz (what
# libz-sys links), zlib 1.3.1 as libz-sys bundles it, and Cloudflare's fork as
# cloudflare-zlib-sys builds it (the backend on x86-64 and ARM64). The same harness
# (zlib-forks.c) is linked against each; rounds alternate the three, and the summary gives
# each one's median and its ratio to the system's libz, paired by round.
#
# Usage: benches/deflate/zlib-forks.sh [ROUNDS] [MESSAGES]   (CORE=N pins to core N, 1 by
# default). Needs gcc and zlib's headers (zlib1g-dev).
set -euo pipefail
cd "$(dirname "$0")/../.."
if [[ $(uname -m) != x86_64 ]]; then
    # Cloudflare's build below uses the crate's x86-64 flags.
    echo "zlib-forks.sh: needs x86-64, this is $(uname -m)" >&2
    exit 2
fi
rounds=${1:-5}
messages=${2:-2000}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cargo fetch --quiet
source_of() {
    cargo metadata --format-version 1 | python3 -c '
import json, os, sys
meta = json.load(sys.stdin)
print(next(os.path.dirname(p["manifest_path"]) for p in meta["packages"] if p["name"] == sys.argv[1]))' "$1"
}
cloudflare=$(source_of cloudflare-zlib-sys)
bundled=$(source_of libz-sys)/src/zlib

# 2 MiB of records in the format of surge-loadgen's JSON generator (loadgen/src/workload.rs).
python3 - "$work/records.json" <<'PY'
import random, sys
rng = random.Random(1)
users = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi"]
symbols = ["BTC-USD", "ETH-USD", "SOL-USD", "AAPL", "MSFT", "EUR-USD"]
lines, size = [], 0
ident, ts = 1_000_000 + rng.randrange(1_000_000), 1_733_050_000_000
while size < 2 << 20:
    ident += 1 + rng.randrange(3)
    ts += rng.randrange(50)
    price = 100 + rng.randrange(90_000)
    line = ('{"type":"trade","id":%d,"user":"%s","symbol":"%s","side":"%s","price":%d.%02d,'
            '"qty":%d,"ts":%d}\n') % (ident, rng.choice(users), rng.choice(symbols),
                                     rng.choice(["buy", "sell"]), price // 100, price % 100,
                                     1 + rng.randrange(500), ts)
    lines.append(line)
    size += len(line)
open(sys.argv[1], "w").write("".join(lines))
PY

harness=benches/deflate/zlib-forks.c
gcc -O2 "$harness" -lz -o "$work/system"
build() { # NAME SOURCE_DIR "EXTRA_SOURCES" "FLAGS"
    local name=$1 dir=$2 extra=$3 flags=$4
    mkdir -p "$work/$name.o"
    # shellcheck disable=SC2086 # the lists are meant to split
    for c in "$dir"/{adler32,crc32,deflate,inffast,inflate,inftrees,trees,zutil}.c $extra; do
        gcc -O3 -DHAVE_UNISTD_H $flags -I"$dir" -c "$c" -o "$work/$name.o/$(basename "$c" .c).o"
    done
    ar rcs "$work/lib$name.a" "$work/$name.o"/*.o
    gcc -O2 -I"$dir" "$harness" "$work/lib$name.a" -o "$work/$name"
}
build zlib-1.3.1 "$bundled" "" ""
# The sources, defines and flags cloudflare-zlib-sys's build script uses on x86-64 with SSE4.2.
build cloudflare "$cloudflare" \
    "$cloudflare/adler32_simd.c $cloudflare/crc32_simd.c $cloudflare/inffast_chunk.c" \
    "-msse4.2 -mssse3 -mpclmul -DINFLATE_CHUNK_SIMD_SSE2 -DHAS_SSE2 -DHAS_SSE42 -DHAS_SSSE3
     -DADLER32_SIMD_SSSE3 -DHAS_PCLMUL -DINFLATE_CHUNK_READ_64LE"

for round in $(seq "$rounds"); do
    for lib in system zlib-1.3.1 cloudflare; do
        taskset -c "${CORE:-1}" "$work/$lib" "$work/records.json" "$messages" |
            sed "s/^/$round $lib /"
    done
done | tee "$work/results"

python3 - "$work/results" <<'PY'
import collections, statistics, sys
rows = collections.defaultdict(dict)  # (setting, lib) -> round -> (compress, inflate, ratio)
for line in open(sys.argv[1]):
    f = line.split()
    rows[(f[2], f[1])][f[0]] = (float(f[4]), float(f[7]), float(f[10]))
print("\nmedians over rounds; x: against the system's libz, paired by round (median)")
for setting in dict.fromkeys(s for s, _ in rows):
    base = rows[(setting, "system")]
    for lib in ("system", "zlib-1.3.1", "cloudflare"):
        r = rows[(setting, lib)]
        med = [statistics.median(v[i] for v in r.values()) for i in range(3)]
        cx = statistics.median(r[k][0] / base[k][0] for k in r)
        ix = statistics.median(r[k][1] / base[k][1] for k in r)
        print(f"{setting:18} {lib:11} compress {med[0]:8.2f} us ({cx:.2f}x)  "
              f"inflate {med[1]:7.2f} us ({ix:.2f}x)  ratio {med[2]:.3f}")
PY
