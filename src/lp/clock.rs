//! The clock every LP deadline is measured on: the process's CPU time, not
//! the wall clock. On a shared machine the wall clock runs several times
//! faster than the work (load 5 on 2 cores: 1 s of CPU takes 2.5 s), so a
//! wall-clock limit would let the machine's load, not the problem, turn a
//! decision into "undecided". CPU time is what `routability --time-limit`
//! and the repair limits promise.
//!
//! The deadlines stay [`Instant`]s (so the callers' types do not change):
//! [`now`] is a fixed origin plus the CPU time used since, a monotone
//! clock that advances only while the process works. Only the float
//! solver's own limit (microlp's `set_time_limit`) is on the wall clock,
//! which runs at least as fast, so it can only stop earlier; whatever it
//! then fails to propose is left to the exact side, under this clock.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// CPU time of the whole process (every thread), from the kernel.
fn cpu() -> Duration {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec to a valid pointer; the
    // process CPU clock exists on every Linux and POSIX system.
    let ok = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut t) } == 0;
    if ok {
        Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
    } else {
        Duration::ZERO
    }
}

/// The origin: the wall instant and the CPU time at the first reading.
static ORIGIN: OnceLock<(Instant, Duration)> = OnceLock::new();

/// The CPU-time clock as an [`Instant`]: deadlines are `now() + limit` and
/// passed once `now() > deadline`.
pub fn now() -> Instant {
    let (wall, cpu0) = *ORIGIN.get_or_init(|| (Instant::now(), cpu()));
    wall + cpu().saturating_sub(cpu0)
}

// The clock's test is tests/lp_clock.rs: it needs a process of its own, as
// the lib's other tests would spend CPU time in parallel while it sleeps.
