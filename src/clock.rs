//! Wall-clock time as the agent stores it: whole Unix seconds (lock leases and waiting tags on
//! AWS, the daemon's state file, metrics timestamps).

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch (0 if the clock is before it).
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
