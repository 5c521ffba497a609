//! What /proc tells of a process: the CPU time the load generator used,
//! and the broker's resident memory (`bench conn --rss-pid`).

/// CPU time (user + system, all threads) this process has used, in
/// seconds; `None` where /proc is not there.
pub(super) fn self_cpu_s() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    parse_cpu_ticks(&stat).map(|ticks| ticks as f64 / 100.0)
}

/// utime + stime of a /proc/PID/stat text, in clock ticks (USER_HZ, 100
/// on Linux).
pub(super) fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    // The command name, in parentheses, may hold spaces: count from after it.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    // After the name: state (3), ..., utime (14), stime (15).
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// Resident memory of process `pid` in KiB: VmRSS in /proc/PID/status.
pub(super) fn rss_kb(pid: u32) -> Result<u64, String> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("cannot read {path}: {e}"))?;
    parse_vm_rss(&text).ok_or_else(|| format!("no VmRSS line in {path}"))
}

/// The VmRSS value (KiB) of a /proc/PID/status text.
pub(super) fn parse_vm_rss(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_rss_is_read_from_proc_status() {
        let status = "Name:\tmqtt\nVmPeak:\t  999 kB\nVmRSS:\t   46672 kB\nRssAnon:\t 1 kB\n";
        assert_eq!(parse_vm_rss(status), Some(46672));
        assert_eq!(parse_vm_rss("Name:\tx\n"), None);
    }

    #[test]
    fn cpu_ticks_skip_a_command_name_with_spaces() {
        let stat = "42 (tokio rt) S 1 42 42 0 -1 4194560 100 0 0 0 250 17 0 0 20 0 3 0 1 2 3";
        assert_eq!(parse_cpu_ticks(stat), Some(267));
        assert!(self_cpu_s().is_some_and(|s| s >= 0.0) || !std::path::Path::new("/proc").exists());
    }
}
