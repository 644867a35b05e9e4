//! The run's clock: milliseconds since the run started, and the wall-clock instant it
//! started at, to compare with the `created_at` / `finished_at` of task records.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// When the run started.
#[derive(Clone, Copy, Debug)]
pub struct RunClock {
    start: Instant,
    wall_start_ms: u64,
}

impl RunClock {
    /// A clock starting now.
    pub fn start() -> Self {
        let wall_start_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        Self {
            start: Instant::now(),
            wall_start_ms,
        }
    }

    /// Milliseconds since the start.
    pub fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Milliseconds since the start of a wall-clock timestamp (RFC 3339), if it parses;
    /// negative before the start.
    pub fn offset_ms(&self, rfc3339: &str) -> Option<i64> {
        let at = humantime::parse_rfc3339_weak(rfc3339.trim_end_matches('Z')).ok()?;
        let ms = at.duration_since(UNIX_EPOCH).ok()?.as_millis();
        Some(i64::try_from(ms).ok()? - i64::try_from(self.wall_start_ms).ok()?)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn offsets_of_record_timestamps() {
        let clock = super::RunClock {
            start: std::time::Instant::now(),
            wall_start_ms: 1_795_368_126_000,
        };
        // 2026-11-22T17:22:06Z is 1_795_368_126 s after the epoch.
        assert_eq!(clock.offset_ms("2026-11-22T17:22:06.250Z"), Some(250));
        assert_eq!(clock.offset_ms("2026-11-22T17:22:05Z"), Some(-1000));
        assert_eq!(clock.offset_ms("yesterday"), None);
    }
}
