#!/usr/bin/env bash
# Whole-process probe of a 512 MiB TS file against ffprobe and cat, in one
# run, page cache warm. Prints wall times, rates and ratios.
#
#   perf/probe.sh [SIZE_MIB]      (default 512)
#
# The file is the bundled 5 Mbit/s CBR clip repeated; it is written to
# $TMPDIR and removed at exit.
set -euo pipefail
cd "$(dirname "$0")/.."
size_mib=${1:-512}
command -v ffprobe >/dev/null || { echo "perf/probe.sh needs ffprobe (apt-get install -y ffmpeg)" >&2; exit 2; }
cargo build --release --quiet
bin=target/release/uringest

source perf/common.sh
big_ts_in_tmp "$size_mib"

command -v bc >/dev/null || { echo "perf/probe.sh needs bc (apt-get install -y bc)" >&2; exit 2; }
t_ours=$(best 10 "$bin" probe --json "$file")
t_cat=$(best 10 sh -c "cat '$file' >/dev/null")
t_ffprobe=$(best 5 ffprobe -v error -count_packets -show_streams "$file")

# Our answer must be right, not only fast.
packets=$("$bin" probe --json "$file" | python3 -c 'import json,sys; r=json.load(sys.stdin); print(r["ts_packets"])')
[ "$packets" = $((bytes / 188)) ] || { echo "probe counted $packets packets, expected $((bytes / 188))" >&2; exit 1; }

rate() { echo "scale=2; $bytes / $1 / 1000000000" | bc -l; }
printf '\nprobe of %s MiB (%s bytes, %s packets), page cache warm, best wall time\n' "$size_mib" "$bytes" "$packets"
printf '  %-40s %9s %9s\n' command seconds GB/s
printf '  %-40s %9.4f %9s\n' "uringest probe --json" "$t_ours" "$(rate "$t_ours")"
printf '  %-40s %9.4f %9s\n' "cat >/dev/null" "$t_cat" "$(rate "$t_cat")"
printf '  %-40s %9.4f %9s\n' "ffprobe -count_packets -show_streams" "$t_ffprobe" "$(rate "$t_ffprobe")"
printf '  ratios: uringest vs ffprobe %.1fx faster; uringest rate / cat rate %.2fx\n' \
  "$(echo "$t_ffprobe / $t_ours" | bc -l)" "$(echo "$t_cat / $t_ours" | bc -l)"
