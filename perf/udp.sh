#!/usr/bin/env bash
# UDP ingest on loopback, in one run: a paced sender (`uringest bench send`)
# pinned to core 0, and on core 1, in turn, uringest on io_uring, uringest
# on epoll (`uringest bench recv`: the udp:// input, classifying and
# counting every datagram and dropping the chunks, without probe's per-PID
# analysis), and a plain recvmmsg(64) receiver with and without UDP GRO
# (examples/recvmmsg_baseline.rs, which checks sync bytes and counts). Prints per receiver and sender mode:
# datagrams/s received at the highest send rate (`--rate max`: the sender
# unpaced), and at fixed 1 and 3 Gbit/s (UDP payload) the loss and the CPU
# per received datagram (the receiver's user+system time over the run
# divided by the datagrams it received). The receiver listens one second
# longer than the sender sends, so its CPU includes some idle waiting.
#
# On loopback the kernel's receive work for a datagram runs on the sending
# core, so the sender may not reach the rate asked for: such rows are
# marked "SENDER BEHIND" and their ratios compare receivers at different
# rates. With GRO on the receiver (uringest uses it when it can; the
# baseline with --gro) and GSO on the sender, kernel drops and uringest's
# pool drops count coalesced batches (up to 49 datagrams each), not
# datagrams; the loss column counts datagrams (sent - received).
#
#   perf/udp.sh [SECONDS]     (default 4 per run)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-4}
source perf/common.sh
two_core_setup perf/udp.sh "sender and receiver apart" recvmmsg_baseline

python3 - "$secs" <<'PY'
import json, os, socket, subprocess, sys, time

secs = float(sys.argv[1])
bin_ = "target/release/uringest"
baseline = "target/release/examples/recvmmsg_baseline"

def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port

def receiver_cmd(kind, port, listen):
    if kind in ("io_uring", "epoll"):
        io = "uring" if kind == "io_uring" else "epoll"
        return ["taskset", "-c", "1", bin_, "bench", "recv", "--json", "--io", io,
                "--duration", f"{listen:.2f}", f"udp://127.0.0.1:{port}?rcvbuf=64M"]
    cmd = ["taskset", "-c", "1", baseline, "--bind", f"127.0.0.1:{port}",
           "--duration", f"{listen:.2f}", "--rcvbuf", str(64 << 20)]
    if kind == "recvmmsg+gro":
        cmd.append("--gro")
    return cmd

def received(kind, out):
    """Datagrams received, kernel drops, receiver's own (pool) drops."""
    r = json.loads(out)
    if kind in ("io_uring", "epoll"):
        return r["datagrams"], r["kernel_drops"], r.get("pool_drops", 0)
    return r["datagrams"], r.get("kernel_drops", 0), 0

def run(kind, rate, gso):
    port = free_port()
    listen = secs + 1.0
    rx = subprocess.Popen(receiver_cmd(kind, port, listen), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.4)
    send = [bin_, "bench", "send", f"udp://127.0.0.1:{port}", "--rate", rate, "--duration", str(secs),
            "--core", "0", "--json"]
    if gso:
        send.append("--gso")
    tx = subprocess.run(send, capture_output=True, text=True)
    if tx.returncode != 0:
        rx.kill()
        raise SystemExit(f"sender failed: {tx.stderr.strip()}")
    sent = json.loads(tx.stdout)
    out, err = rx.stdout.read(), rx.stderr.read()
    # wait4 gives this child's own user and system time.
    _, status, usage = os.wait4(rx.pid, 0)
    rx.returncode = os.waitstatus_to_exitcode(status)
    if rx.returncode != 0:
        raise SystemExit(f"{kind} receiver failed: {err.strip()}")
    cpu = usage.ru_utime + usage.ru_stime
    got, drops, pool_drops = received(kind, out)
    loss = 1 - got / sent["datagrams"] if sent["datagrams"] else 0.0
    planned = sent.get("planned_datagrams")
    behind = planned is not None and sent["datagrams"] < 0.99 * planned
    return {"sent": sent["datagrams"], "got": got, "drops": drops, "pool_drops": pool_drops, "loss": loss,
            "behind": behind,
            "ns_per_dgram": cpu * 1e9 / got if got else float("nan"),
            "rate_dgram_s": got / secs, "sent_bps": sent["bits_per_sec"]}

kinds = ["io_uring", "epoll", "recvmmsg", "recvmmsg+gro"]
rows = []
for gso in (True, False):
    mode = "GSO sender" if gso else "plain sender"
    for kind in kinds:
        for rate in ("1G", "3G", "max"):
            r = run(kind, rate, gso)
            rows.append((mode, kind, rate, r))
            print(f"  {mode:12} {kind:13} {rate:>4}: sent {r['sent']:>9} ({r['sent_bps']/1e9:5.2f} Gbit/s) "
                  f"got {r['got']:>9} loss {r['loss']*100:6.2f}% (drops: kernel {r['drops']:>6} pool "
                  f"{r['pool_drops']:>6})  {r['ns_per_dgram']:6.0f} ns/dgram  {r['rate_dgram_s']/1e3:6.0f} kdgram/s"
                  f"{'  SENDER BEHIND' if r['behind'] else ''}", flush=True)

def find(mode, kind, rate):
    return next(r for m, k, rt, r in rows if m == mode and k == kind and rt == rate)

print("\nratios of CPU per datagram (lower is better), same run:")
for mode, base in (("GSO sender", "recvmmsg+gro"), ("plain sender", "recvmmsg")):
    for rate in ("1G", "3G"):
        b = find(mode, base, rate)["ns_per_dgram"]
        for kind in ("io_uring", "epoll"):
            r = find(mode, kind, rate)
            bb = find(mode, base, rate)
            note = ""
            if r["behind"] or bb["behind"]:
                note = (f"  [sender behind: {r['rate_dgram_s']/1e3:.0f} vs "
                        f"{bb['rate_dgram_s']/1e3:.0f} kdgram/s received]")
            print(f"  {mode:12} {rate}: {kind:8} {r['ns_per_dgram']:6.0f} ns vs {base} {b:6.0f} ns "
                  f"= {r['ns_per_dgram']/b:4.2f}x  (loss {r['loss']*100:.2f}%){note}")
PY
