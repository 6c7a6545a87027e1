#!/usr/bin/env bash
# UDP relay on loopback, in one run: one paced 1 Gbit/s input (`uringest
# bench send --rate 1G --gso`, 1316-byte datagrams, pinned to core 0) fanned
# out to 1, 16 and 64 UDP outputs by, in turn, `uringest relay` and a plain
# forwarder written for this script (examples/forward_baseline.rs: recvmmsg
# of up to 64, then one sendmmsg per output with the batch, no pacing, no
# GSO), each pinned to core 1; every output goes to one multi-port sink
# (examples/udp_sink.rs). A calibration row sends straight into the sink to
# measure the input's own gaps.
#
# The sink runs on core 0 with the sender, at nice 10: core 1 belongs to
# the forwarder under test, and the sender is light (GSO, sleeping between
# batches), while nice keeps the sink from delaying the sender's wakeups.
# The sink sleeps 1 ms between sweeps over its sockets, so no send wakes it
# and it reads in big batches; its CPU is printed. On loopback the kernel's
# receive path for a datagram runs in the sender's context: the forwarder's
# CPU includes delivering its outputs into the sink's sockets, and the
# sender's core does the forwarder's input side. The sink uses UDP GRO, so a
# GSO send reaches it as one skb and its segmentation is charged to no one.
#
# Per row: datagrams delivered (all outputs) of sent x N; loss and where it
# happened: "in" (the forwarder's input: (sent - received) x N), "fwd"
# (received but not sent on an output: lag drops, send errors), "sink"
# (sent on an output but not counted by the sink; its socket drops in
# brackets tell an overflow in the sink from loss on the way); the
# forwarder's CPU (user+sys from rusage via wait4) per delivered datagram;
# the outputs' inter-datagram gaps (kernel receive timestamps, all ports
# merged: p50/p90/p99/max in us), burst lengths (p50/p99/max datagrams), and
# the worst port's p99 gap and p99 burst; the sink's CPU; the sender's max
# lag (how late its latest batch was: a disturbed input shows here).
#
# Gaps: a burst is a run of datagrams on one output each less than 5 us
# after the one before (half the 10.5 us between datagrams at 1 Gbit/s);
# datagrams that arrive in one GSO skb count as gaps of 0 (they left in one
# send). "Burstier than the input" means, for some output, a p99 burst
# length longer than the input's p99 burst length (calibration row), or a
# p99 gap more than 10% longer than the input's p99 gap: more datagrams at
# once, or longer silences between them, 99 times in 100.
#
# Target (at 16 outputs): uringest relay's CPU per delivered datagram
# <= 0.5x the baseline's, zero loss, and no output burstier than the input.
# Until `uringest relay` exists (its --help fails) its rows print
# "relay: not built yet" and the baseline rows still run.
#
#   perf/relay.sh [SECONDS]     (default 4 per run)
#   RELAY_FANOUTS=16 perf/relay.sh   (only these fan-outs; the verdict needs 16)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-4}
source perf/common.sh
two_core_setup perf/relay.sh "forwarder apart from sender and sink" forward_baseline udp_sink

python3 - "$secs" <<'PY'
import json, os, random, socket, subprocess, sys, time

secs = float(sys.argv[1])
bin_ = "target/release/uringest"
baseline = "target/release/examples/forward_baseline"
sink_bin = "target/release/examples/udp_sink"
FANOUTS = tuple(int(n) for n in os.environ.get("RELAY_FANOUTS", "1,16,64").split(","))
BURST_GAP_US = 5.0
GAP_SLACK = 1.10
children = []

def kill_all():
    for p in children:
        if p.poll() is None:
            p.kill()
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass

def start(cmd):
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    children.append(p)
    return p

def collect(p, name, timeout):
    """Reads p's output and reaps it with wait4 for its own rusage."""
    deadline = time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(p.pid, os.WNOHANG)
        if pid == p.pid:
            break
        if time.monotonic() > deadline:
            p.kill()
            raise SystemExit(f"{name} did not finish within {timeout:.0f} s; killed")
        time.sleep(0.05)
    p.returncode = os.waitstatus_to_exitcode(status)
    out, err = p.stdout.read(), p.stderr.read()
    if p.returncode != 0:
        raise SystemExit(f"{name} failed ({p.returncode}): {err.strip()[-400:]}")
    try:
        report = json.loads(out)
    except json.JSONDecodeError:
        raise SystemExit(f"{name} printed no JSON: {out[:200]!r} {err.strip()[-200:]}")
    return report, usage.ru_utime + usage.ru_stime

def ephemeral_range():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low, high = (int(v) for v in f.read().split())
            return low, high
    except (OSError, ValueError):
        return 32768, 60999

def free_ports(n):
    """A base port with n free consecutive UDP ports after it, and one more
    free port for the input, all outside the kernel's ephemeral range: the
    forwarder's output sockets take ephemeral ports when they connect, and
    one landing in the sink's range before the sink binds it failed a run
    ("Address already in use")."""
    low, high = ephemeral_range()
    spans = [(s, e) for s, e in ((10000, low), (high + 1, 65536)) if e - s > n + 1]
    if not spans:
        raise SystemExit("no room for UDP ports outside the ephemeral range")
    for _ in range(200):
        start, end = random.choice(spans)
        base = random.randrange(start, end - n - 1)
        held = []
        try:
            for p in range(base, base + n + 1):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                held.append(s)
                s.bind(("127.0.0.1", p))
            return base + 1, base
        except OSError:
            continue
        finally:
            for s in held:
                s.close()
    raise SystemExit("no free run of UDP ports found")

def relay_built():
    try:
        r = subprocess.run([bin_, "relay", "--help"], capture_output=True, timeout=10)
        return r.returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False

def run(kind, n):
    base, in_port = free_ports(max(n, 1))
    fwd_secs, sink_secs = secs + 2.0, secs + 3.0
    sink_base = in_port if kind == "input" else base
    sink = start(["taskset", "-c", "0", "nice", "-n", "10", sink_bin, "--base-port", str(sink_base),
                  "--ports", str(n), "--duration", f"{sink_secs:.2f}", "--burst-gap-us", str(BURST_GAP_US)])
    fwd = None
    if kind == "relay":
        outs = [f"udp://127.0.0.1:{base + i}?start=any" for i in range(n)]
        fwd = start(["taskset", "-c", "1", bin_, "relay", f"udp://127.0.0.1:{in_port}?rcvbuf=64M", *outs,
                     "--duration", f"{fwd_secs:g}", "--json"])
    elif kind == "baseline":
        outs = [a for i in range(n) for a in ("--out", f"127.0.0.1:{base + i}")]
        fwd = start(["taskset", "-c", "1", baseline, "--bind", f"127.0.0.1:{in_port}", *outs,
                     "--duration", f"{fwd_secs:.2f}", "--rcvbuf", str(64 << 20)])
    time.sleep(0.4)
    for p in (sink, fwd):
        if p is not None and p.poll() is not None:
            raise SystemExit(f"{kind}: a process exited at start: {p.stderr.read().strip()[-400:]}")
    tx = subprocess.run([bin_, "bench", "send", f"udp://127.0.0.1:{in_port}", "--rate", "1G", "--duration", str(secs),
                         "--gso", "--core", "0", "--json"], capture_output=True, text=True, timeout=secs + 30)
    if tx.returncode != 0:
        raise SystemExit(f"sender failed: {tx.stderr.strip()}")
    sent = json.loads(tx.stdout)
    f, fwd_cpu = (collect(fwd, kind, fwd_secs + 30) if fwd is not None else (None, 0.0))
    s, sink_cpu = collect(sink, "sink", sink_secs + 30)
    ports = s["ports"]
    delivered = sum(p["datagrams"] for p in ports)
    expected = sent["datagrams"] * n
    if kind == "relay":
        got_in = f["input"]["datagrams"]
        out_sent = [o["datagrams"] for o in f["outputs"]]
        in_drops = f"kernel {f['input'].get('kernel_drops', 0)} pool {f['input'].get('pool_drops', 0)}"
    elif kind == "baseline":
        got_in = f["datagrams_in"]
        out_sent = [o["datagrams"] for o in f["outputs"]]
        in_drops = f"kernel drops seen {f['kernel_drops']}"
    else:
        got_in, out_sent, in_drops = sent["datagrams"], [sent["datagrams"]], ""
    worst = lambda key, q: max((p[key][q] or 0) for p in ports) if ports else 0
    return {
        "sent": sent["datagrams"], "lag_us": sent["max_lag_us"], "expected": expected, "delivered": delivered,
        "loss": expected - delivered,
        "loss_in": (sent["datagrams"] - got_in) * n,
        "loss_fwd": sum(got_in - o for o in out_sent),
        "loss_sink": sum(out_sent) - delivered,
        "in_drops": in_drops,
        "sink_drops": s["kernel_drops"], "missing": s["missing"], "cc_errors": s["cc_errors"],
        "cpu": fwd_cpu, "ns": fwd_cpu * 1e9 / delivered if delivered else float("nan"),
        "sink_cpu": sink_cpu,
        "gap": s["all"]["gap_us"], "burst": s["all"]["burst"],
        "worst_gap_p99": worst("gap_us", "p99"), "worst_burst_p99": worst("burst", "p99"),
    }

def show(label, r):
    g, b = r["gap"], r["burst"]
    print(f"  {label:14} delivered {r['delivered']:>9} of {r['expected']:>9}  loss {r['loss']:>8} "
          f"(in {r['loss_in']}, fwd {r['loss_fwd']}, sink {r['loss_sink']} [sink socket drops {r['sink_drops']}]"
          f"{'; input ' + r['in_drops'] if r['in_drops'] else ''})", flush=True)
    print(f"  {'':14} cpu {r['cpu']:6.3f} s = {r['ns']:7.0f} ns/delivered dgram   "
          f"gap us p50 {g['p50']} p90 {g['p90']} p99 {g['p99']} max {g['max']}   "
          f"burst p50 {b['p50']} p99 {b['p99']} max {b['max']}   worst port p99: gap {r['worst_gap_p99']} "
          f"burst {r['worst_burst_p99']}   sink cpu {r['sink_cpu']:.2f} s   sender max lag {r['lag_us']} us", flush=True)

def burstier(r, cal):
    return (r["worst_burst_p99"] > cal["worst_burst_p99"]
            or r["worst_gap_p99"] > cal["worst_gap_p99"] * GAP_SLACK)

try:
    built = relay_built()
    print(f"input: 1 Gbit/s of 1316-byte datagrams with GSO, {secs:g} s per run; sink on core 0 (nice 10), "
          f"forwarder on core 1")
    cal = run("input", 1)
    show("input (calib.)", cal)
    if cal["lag_us"] > 1000:
        print(f"  note: the sender ran up to {cal['lag_us']} us late in calibration: the input's own gaps "
              f"and bursts (the reference for 'burstier') include its catch-up bursts", flush=True)
    rows = {}
    for n in FANOUTS:
        print(f"{n} output{'s' if n > 1 else ''}:")
        for kind in ("relay", "baseline"):
            if kind == "relay" and not built:
                print(f"  {'relay':14} relay: not built yet", flush=True)
                continue
            r = run(kind, n)
            rows[(kind, n)] = r
            show(kind, r)

    print("\nrelay vs baseline, CPU per delivered datagram (lower is better), same run:")
    for n in FANOUTS:
        b = rows[("baseline", n)]
        if not built:
            print(f"  {n:>2} outputs: relay: not built yet (baseline {b['ns']:.0f} ns, loss {b['loss']})")
            continue
        r = rows[("relay", n)]
        print(f"  {n:>2} outputs: relay {r['ns']:7.0f} ns vs baseline {b['ns']:7.0f} ns = {r['ns']/b['ns']:5.2f}x  "
              f"(loss: relay {r['loss']}, baseline {b['loss']})")
    print(f"\ntarget at 16 outputs: CPU <= 0.5x baseline, zero loss, no output burstier than the input "
          f"(input p99 burst {cal['worst_burst_p99']} dgrams, p99 gap {cal['worst_gap_p99']} us):")
    if not built:
        print("  relay: not built yet")
    else:
        if 16 not in FANOUTS:
            raise SystemExit("  (16 outputs not in RELAY_FANOUTS: no verdict)")
        r, b = rows[("relay", 16)], rows[("baseline", 16)]
        checks = [("cpu", r["ns"] <= 0.5 * b["ns"], f"{r['ns']/b['ns']:.2f}x"),
                  ("loss", r["loss"] == 0, str(r["loss"])),
                  ("gaps", not burstier(r, cal),
                   f"worst port p99 burst {r['worst_burst_p99']}, p99 gap {r['worst_gap_p99']} us")]
        for name, ok, what in checks:
            print(f"  {name:5} {'met' if ok else 'MISSED'}: {what}")
except BaseException:
    kill_all()
    raise
kill_all()
PY
