//! Human-readable output.

use chainfleet_control::{Event, NodeStatus};

fn dash<T: ToString>(value: Option<T>) -> String {
    value.map(|v| v.to_string()).unwrap_or_else(|| "-".into())
}

/// `90s` → `1m30s`, compactly.
pub fn human_duration(seconds: u64) -> String {
    match seconds {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m{:02}s", s / 60, s % 60),
        s if s < 86_400 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        s => format!("{}d{:02}h", s / 86_400, (s % 86_400) / 3600),
    }
}

/// The `chainfleet status` table.
pub fn status(nodes: &[NodeStatus]) -> String {
    let header = [
        "NAME", "INSTANCE", "REPLICA", "CHAIN", "STATE", "HEIGHT", "LAG", "PEERS", "HEAD AGE",
        "PID", "UPTIME",
    ];
    let mut rows: Vec<Vec<String>> = vec![header.iter().map(|h| h.to_string()).collect()];
    for node in nodes {
        rows.push(vec![
            node.name.clone(),
            node.instance.clone(),
            node.replica.to_string(),
            node.chain.clone(),
            node.state.clone(),
            dash(node.height),
            dash(node.lag),
            dash(node.peers),
            dash(node.head_age_seconds.map(human_duration)),
            dash(node.pid),
            dash(node.uptime_seconds.map(human_duration)),
        ]);
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|col| rows.iter().map(|r| r[col].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in &rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    for node in nodes
        .iter()
        .filter(|n| n.last_error.is_some() && n.state != "healthy")
    {
        out.push_str(&format!(
            "\n{}: {}\n",
            node.name,
            node.last_error.as_deref().unwrap_or("")
        ));
        for line in &node.log_tail {
            out.push_str(&format!("  | {line}\n"));
        }
    }
    out
}

/// One event as a line.
pub fn event_line(event: &Event) -> String {
    let secs = event.time_ms / 1000;
    let (h, m, s) = ((secs / 3600) % 24, (secs / 60) % 60, secs % 60);
    format!(
        "{h:02}:{m:02}:{s:02}Z  {:<22} {:<14} {}",
        event.node.as_deref().unwrap_or("-"),
        event.kind,
        event.message
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_compact() {
        assert_eq!(human_duration(5), "5s");
        assert_eq!(human_duration(90), "1m30s");
        assert_eq!(human_duration(7260), "2h01m");
        assert_eq!(human_duration(90_000), "1d01h");
    }
}
