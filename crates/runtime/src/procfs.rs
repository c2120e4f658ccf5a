//! Small readers of `/proc`, enough to identify node processes safely.

use std::fs;

/// State letter and start time (clock ticks since boot) of a process.
pub fn stat(pid: u32) -> Option<(char, u64)> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses; fields resume after the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    // Field 22 overall is the 20th after the name.
    let start_ticks = fields.nth(18)?.parse().ok()?;
    Some((state, start_ticks))
}

/// Whether `pid` runs and started at `start_ticks` (not a zombie, not a reused pid).
pub fn is_alive(pid: u32, start_ticks: u64) -> bool {
    matches!(stat(pid), Some((state, ticks)) if ticks == start_ticks && state != 'Z' && state != 'X')
}

/// Command line arguments of a process.
pub fn cmdline(pid: u32) -> Option<Vec<String>> {
    let bytes = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        bytes
            .split(|b| *b == 0)
            .filter(|part| !part.is_empty())
            .map(|part| String::from_utf8_lossy(part).into_owned())
            .collect(),
    )
}

/// Short program name of a process.
pub fn comm(pid: u32) -> Option<String> {
    fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|s| s.trim().to_string())
}

/// Every pid on the machine.
pub fn all_pids() -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

/// Seconds a process has run, from its start ticks.
pub fn uptime_seconds(start_ticks: u64) -> Option<u64> {
    let uptime: f64 = fs::read_to_string("/proc/uptime")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let ticks_per_second = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .filter(|t| *t > 0)? as f64;
    let started = start_ticks as f64 / ticks_per_second;
    Some((uptime - started).max(0.0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_is_alive_and_a_wrong_start_time_is_not() {
        let pid = std::process::id();
        let (state, ticks) = stat(pid).expect("own stat");
        assert_ne!(state, 'Z');
        assert!(is_alive(pid, ticks));
        assert!(!is_alive(pid, ticks + 1));
        assert!(!is_alive(u32::MAX, ticks));
        assert!(cmdline(pid).is_some_and(|args| !args.is_empty()));
        assert!(all_pids().contains(&pid));
        assert!(uptime_seconds(ticks).is_some());
    }
}
