# Shared by the perf/ scripts: sourced, not run.

# Writes SIZE_MIB MiB of the bundled 5 Mbit/s CBR clip repeated (whole
# packets) to PATH, syncs it and warms the page cache: writeback running
# during timed runs slowed every command by a third here.
make_big_ts() {
  local path=$1 size_mib=$2
  python3 - tests/fixtures/cbr_5mbit.ts "$path" $((size_mib * 1024 * 1024)) <<'PY'
import sys
clip = open(sys.argv[1], 'rb').read()
target = int(sys.argv[3])
with open(sys.argv[2], 'wb') as f:
    written = 0
    while written + len(clip) <= target:
        f.write(clip); written += len(clip)
    rest = (target - written) // 188 * 188
    f.write(clip[:rest]); written += rest
PY
  sync "$path"
  cat "$path" >/dev/null
}

# Best of N wall-clock runs of a command, in seconds. Timed in one python
# process around the child alone: forking `date` on both sides of each run
# added a millisecond or two to every measurement.
best() {
  python3 - "$@" <<'PY'
import subprocess, sys, time
n, cmd = int(sys.argv[1]), sys.argv[2:]
best = float("inf")
for _ in range(n):
    t0 = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    best = min(best, time.perf_counter() - t0)
print(f"{best:.6f}")
PY
}

# Preamble of the two-core loopback runs: builds uringest and the EXAMPLEs
# (release), stops unless there are two cores (WHY says what each is for),
# and warns when the machine is already busy: other work on these cores
# makes the numbers noisy.
#   two_core_setup SCRIPT WHY EXAMPLE...
two_core_setup() {
  local script=$1 why=$2 examples=() e
  shift 2
  for e in "$@"; do examples+=(--example "$e"); done
  cargo build --release --quiet
  cargo build --release --quiet "${examples[@]}"
  [ "$(nproc)" -ge 2 ] || { echo "$script needs two cores ($why)" >&2; exit 2; }
  local load
  read -r load _ < /proc/loadavg
  if awk "BEGIN { exit !($load > 0.5) }"; then
    echo "warning: load average $load before the run: other work on these cores makes the numbers noisy" >&2
  fi
}

# big_ts_in_tmp SIZE_MIB: a SIZE_MIB MiB TS file (make_big_ts) in a temporary
# directory removed at exit; sets $work, $file and $bytes.
big_ts_in_tmp() {
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  file=$work/big.ts
  make_big_ts "$file" "$1"
  bytes=$(stat -c %s "$file")
}
