#!/usr/bin/env bash
# File input, in one run:
#  1. `probe` of a 512 MiB file with pace=none against a plain read loop
#     (dd, 1 MiB reads into one buffer), page cache warm, best wall time;
#  2. 32 looped files played at once with pace=pcr (`uringest bench pace`)
#     on each backend: CPU per stream and the pacing error (emission time
#     minus PCR time, signed: negative is early).
#
#   perf/file.sh [SIZE_MIB] [PACE_SECONDS]     (defaults 512 and 10)
set -euo pipefail
cd "$(dirname "$0")/.."
size_mib=${1:-512}
pace_secs=${2:-10}
cargo build --release --quiet
bin=target/release/uringest
command -v bc >/dev/null || { echo "perf/file.sh needs bc (apt-get install -y bc)" >&2; exit 2; }

source perf/common.sh
big_ts_in_tmp "$size_mib"

t_probe=$(best 10 "$bin" probe --json "file://$file?pace=none")
t_read=$(best 10 dd if="$file" of=/dev/null bs=1M)
packets=$("$bin" probe --json "file://$file?pace=none" | python3 -c 'import json,sys; print(json.load(sys.stdin)["ts_packets"])')
[ "$packets" = $((bytes / 188)) ] || { echo "probe counted $packets packets, expected $((bytes / 188))" >&2; exit 1; }
rate() { echo "scale=2; $bytes / $1 / 1000000000" | bc -l; }
printf '\n1. probe of %s MiB with pace=none, page cache warm, best of 10\n' "$size_mib"
printf '  %-36s %9s %9s\n' command seconds GB/s
printf '  %-36s %9.4f %9s\n' "uringest probe file://…?pace=none" "$t_probe" "$(rate "$t_probe")"
printf '  %-36s %9.4f %9s\n' "dd bs=1M (plain read loop)" "$t_read" "$(rate "$t_read")"
printf '  probe rate / read-loop rate: %.2fx (target >= 0.9x)\n' "$(echo "$t_read / $t_probe" | bc -l)"

for i in $(seq 1 32); do cp tests/fixtures/cbr_5mbit.ts "$work/loop$i.ts"; done
printf '\n2. 32 looped 5 Mbit/s files, pace=pcr, %s s, all shards (%s cores)\n' "$pace_secs" "$(nproc)"
for io in uring epoll; do
  "$bin" bench pace --json --io "$io" --duration "$pace_secs" "$work"/loop*.ts | python3 -c '
import json, sys
r = json.load(sys.stdin)
print("  %-8s  CPU %5.1f %% of a core in all (target < 20), %.2f %% per stream;" % (r["io"], r["cpu_percent_of_core"], r["cpu_percent_per_stream"]))
print("            |error| p50 %.0f us, p99 %.0f us (target < 2000); median %+.0f us, range %+.0f to %+.0f us;"
      % (r["error_abs_p50_us"], r["error_abs_p99_us"], r["error_p50_us"], r["error_min_us"], r["error_max_us"]))
print("            %.2f Mbit/s per stream, %.0f wake-ups/s per stream, %d seams, %d stalls"
      % (r["bits_per_sec_per_stream"] / 1e6, r["wakeups_per_sec_per_stream"], r["loops"], r["stalls"]))'
done
