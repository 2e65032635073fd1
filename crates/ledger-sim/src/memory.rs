//! The machine's memory, for the checks that refuse a run or a plan before it would fail to
//! allocate: a failed allocation aborts the process with nothing said and nothing written.

/// Bytes of memory available now (`MemAvailable` of `/proc/meminfo`), where the system says.
pub fn available() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb.saturating_mul(1024))
}
