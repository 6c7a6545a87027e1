//! The bench's view of the OS: CPU clocks, CPU pinning, timer slack.

use std::time::Duration;

fn cpu(clock: libc::clockid_t) -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec; the clock ids used are
    // supported on every Linux.
    let rc = unsafe { libc::clock_gettime(clock, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

pub fn process_cpu() -> Duration {
    cpu(libc::CLOCK_PROCESS_CPUTIME_ID)
}

pub fn thread_cpu() -> Duration {
    cpu(libc::CLOCK_THREAD_CPUTIME_ID)
}

/// The CPU the readers' runtime is pinned to (`HUB_BENCH_READER_CPU`, 1 by
/// default).
pub fn reader_cpu() -> usize {
    std::env::var("HUB_BENCH_READER_CPU").ok().and_then(|s| s.parse().ok()).unwrap_or(1)
}

/// Pins the calling thread to one CPU, as the node pins its shards: the
/// writer on CPU 0, the readers' runtime on [`reader_cpu`] (if there is one).
pub fn pin_to(cpu: usize) {
    // Online CPUs, not `available_parallelism`: that reads the calling
    // thread's affinity, which a thread spawned by the pinned writer
    // inherits, and so put every reader runtime after the first run on the
    // writer's CPU.
    // SAFETY: sysconf reads a system value and touches no memory of ours.
    let cpus = usize::try_from(unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }).unwrap_or(1).max(1);
    // SAFETY: `set` is a plain bitmask owned by this frame; CPU_ZERO/CPU_SET
    // only write inside it, and sched_setaffinity reads `size_of` bytes.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_ZERO(&mut set);
        libc::CPU_SET(cpu % cpus, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// Sleeps of 80 µs need the timer slack (50 µs by default) out of the way.
pub fn tight_timer_slack() {
    // SAFETY: PR_SET_TIMERSLACK takes one integer argument and touches no
    // memory of ours.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong, 0, 0, 0) };
}
