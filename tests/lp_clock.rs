//! The LP deadlines' clock (`lp::clock`) counts the process's CPU time:
//! it advances with work and (almost) not while the process sleeps. A
//! file of its own, with one test, so that no other test spends CPU time
//! in this process while it sleeps (the process clock counts every
//! thread, which is why this cannot live among the lib's unit tests).

use routecert::lp::clock::now;
use std::time::Duration;

#[test]
fn the_clock_advances_with_work_and_not_with_sleep() {
    let t0 = now();
    std::thread::sleep(Duration::from_millis(200));
    let slept = now() - t0;
    // Sleeping costs (almost) no CPU time: a wall clock would show 200 ms.
    assert!(slept < Duration::from_millis(50), "{slept:?}");
    let t1 = now();
    let start = std::time::Instant::now();
    let mut x = 0u64;
    while now() - t1 < Duration::from_millis(30) && start.elapsed() < Duration::from_secs(5) {
        x = x.wrapping_add(std::hint::black_box(1));
    }
    assert!(x > 0);
    // Work advances it: 30 ms of it within 5 s of busy wall time.
    assert!(
        now() - t1 >= Duration::from_millis(30),
        "the clock did not advance with work"
    );
}
