//! This process's memory as the operating system reports it: the peak
//! resident set that `verify --timings` prints and the scale benchmark
//! reads.

/// Peak resident set size (VmHWM) in MiB, on Linux; None elsewhere or if
/// /proc cannot be read.
pub fn peak_rss_mib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}
