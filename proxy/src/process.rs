//! The proxy process's own resource use, read from `/proc/self` on Linux (elsewhere: none):
//! CPU time, resident memory, open and allowed file descriptors, threads, start time.

/// One reading. Fields a kernel did not give are `None`.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ProcessStats {
    /// User plus system CPU time.
    pub cpu_seconds: Option<f64>,
    pub resident_memory_bytes: Option<u64>,
    pub open_fds: Option<u64>,
    /// The soft limit on open files.
    pub max_fds: Option<u64>,
    pub threads: Option<u64>,
    /// Seconds since the Unix epoch.
    pub start_time_seconds: Option<f64>,
}

/// The values at most a second old: a status page served on the front end
/// (`handler = "status"`) must not make every request list thousands of descriptors. The
/// files are read outside the lock, so callers never wait on each other's reading; while one
/// caller refreshes, the others get the previous values.
pub fn recent() -> ProcessStats {
    use std::sync::Mutex;
    use std::time::{Duration, Instant};
    static CACHE: Mutex<Option<(Instant, ProcessStats)>> = Mutex::new(None);
    {
        let mut cache = CACHE.lock().unwrap_or_else(|p| p.into_inner());
        match *cache {
            Some((at, stats)) if at.elapsed() < Duration::from_secs(1) => return stats,
            // Stale: this caller refreshes; until it has, others see the stale values.
            Some((_, stats)) => *cache = Some((Instant::now(), stats)),
            None => {}
        }
    }
    let stats = read();
    *CACHE.lock().unwrap_or_else(|p| p.into_inner()) = Some((Instant::now(), stats));
    stats
}

/// Read the current values (a few small files and one directory listing).
#[cfg(target_os = "linux")]
pub fn read() -> ProcessStats {
    let ticks = rustix::param::clock_ticks_per_second().max(1) as f64;
    let file = |path: &str| std::fs::read_to_string(path).ok();
    let stat = file("/proc/self/stat").and_then(|s| parse_stat(&s));
    let boot = file("/proc/stat").and_then(|s| parse_boot_time(&s));
    ProcessStats {
        cpu_seconds: stat.map(|s| (s.utime + s.stime) as f64 / ticks),
        resident_memory_bytes: file("/proc/self/status").and_then(|s| parse_rss(&s)),
        // The listing holds its own descriptor while it runs.
        open_fds: std::fs::read_dir("/proc/self/fd").ok().map(|d| d.count().saturating_sub(1) as u64),
        max_fds: file("/proc/self/limits").and_then(|s| parse_max_open_files(&s)),
        threads: stat.map(|s| s.threads),
        start_time_seconds: stat.zip(boot).map(|(s, boot)| boot as f64 + s.start_ticks as f64 / ticks),
    }
}

#[cfg(not(target_os = "linux"))]
pub fn read() -> ProcessStats {
    ProcessStats::default()
}

/// The fields used from `/proc/self/stat`, in clock ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stat {
    utime: u64,
    stime: u64,
    threads: u64,
    start_ticks: u64,
}

/// `/proc/self/stat`: the command name (field 2) is in parentheses and may hold spaces or
/// parentheses itself, so fields are counted after its last `)`; that is field 3.
fn parse_stat(text: &str) -> Option<Stat> {
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Field n (1-based, proc(5)) is at index n - 3.
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    Some(Stat { utime: field(14)?, stime: field(15)?, threads: field(20)?, start_ticks: field(22)? })
}

/// `VmRSS:    12345 kB` in `/proc/self/status`, in bytes.
fn parse_rss(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("VmRSS:"))?;
    let mut words = line["VmRSS:".len()..].split_whitespace();
    let n = words.next()?.parse::<u64>().ok()?;
    match words.next() {
        Some("kB") | None => Some(n * 1024),
        Some(_) => None,
    }
}

/// The soft limit on the `Max open files` line of `/proc/self/limits` (`None` when unlimited).
fn parse_max_open_files(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..].split_whitespace().next()?.parse().ok()
}

/// `btime` in `/proc/stat`: when the system booted, in seconds since the epoch.
fn parse_boot_time(text: &str) -> Option<u64> {
    text.lines().find_map(|l| l.strip_prefix("btime "))?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        let stat = "4242 (p (odd) name) S 1 4242 4242 0 -1 4194560 1234 0 0 0 250 75 0 0 20 0 7 0 98765 \
                    123456789 3000 18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 0 17 1 0 0 0 0 0";
        let s = parse_stat(stat).expect("parses");
        assert_eq!(s, Stat { utime: 250, stime: 75, threads: 7, start_ticks: 98765 });
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(parse_stat("1 (x) S 1 2"), None);
    }

    #[test]
    fn status_limits_and_boot_time() {
        assert_eq!(parse_rss("Name:\tp\nVmPeak:\t  9000 kB\nVmRSS:\t    2048 kB\nThreads:\t4\n"), Some(2048 * 1024));
        assert_eq!(parse_rss("Name:\tp\n"), None);
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max processes             63581                63581                processes\n\
                      Max open files            1048576              1048576              files\n";
        assert_eq!(parse_max_open_files(limits), Some(1_048_576));
        assert_eq!(parse_max_open_files("Max open files            unlimited            unlimited   files\n"), None);
        assert_eq!(parse_boot_time("cpu  1 2 3\nbtime 1763800000\nprocesses 5\n"), Some(1_763_800_000));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_has_plausible_values() {
        let s = read();
        assert!(s.cpu_seconds.is_some_and(|c| c >= 0.0), "{s:?}");
        assert!(s.resident_memory_bytes.is_some_and(|r| r > 1024 * 1024), "{s:?}");
        assert!(s.open_fds.is_some_and(|n| n >= 3), "{s:?}");
        assert!(s.threads.is_some_and(|n| n >= 1), "{s:?}");
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
        assert!(s.start_time_seconds.is_some_and(|t| t <= now + 1.0 && t > now - 86400.0 * 365.0), "{s:?}");
    }
}
