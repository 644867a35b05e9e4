//! Leases kept in memory, for the stores private to one node (embedded, memory): the
//! renewal counter and expiry behind [`TaskStore::lease`](crate::store::TaskStore::lease).
//! Nothing here survives a restart, nor needs to: no other node reads them.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::store::{LeaseInfo, StoreError};

#[derive(Debug)]
struct Lease {
    renewals: u64,
    expires: Instant,
}

/// Every node's lease, by node id.
#[derive(Debug, Default)]
pub(crate) struct LocalLeases {
    leases: Mutex<HashMap<String, Lease>>,
}

impl LocalLeases {
    fn with<T>(&self, f: impl FnOnce(&mut HashMap<String, Lease>) -> T) -> Result<T, StoreError> {
        let mut leases = self
            .leases
            .lock()
            .map_err(|_| StoreError::Backend("lease table lock poisoned".into()))?;
        Ok(f(&mut leases))
    }

    /// Renews `node`'s lease for `ttl_ms` (at least 1) from `now`: the counter goes up by
    /// one, or starts at 1 after a lapse.
    pub(crate) fn renew(&self, node: &str, ttl_ms: u64, now: Instant) -> Result<(), StoreError> {
        let expires = now + Duration::from_millis(ttl_ms.max(1));
        self.with(|leases| {
            let lease = leases.entry(node.to_owned()).or_insert(Lease {
                renewals: 0,
                expires,
            });
            if lease.expires <= now {
                lease.renewals = 0;
            }
            lease.renewals += 1;
            lease.expires = expires;
        })
    }

    /// `node`'s lease at `now`, if live.
    pub(crate) fn get(&self, node: &str, now: Instant) -> Result<Option<LeaseInfo>, StoreError> {
        self.with(|leases| {
            leases
                .get(node)
                .filter(|l| l.expires > now)
                .map(|l| LeaseInfo {
                    renewals: l.renewals,
                })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewals_count_up_and_restart_after_a_lapse() {
        let leases = LocalLeases::default();
        let t0 = Instant::now();
        assert_eq!(leases.get("a", t0).expect("get"), None);
        leases.renew("a", 100, t0).expect("renew");
        leases
            .renew("a", 100, t0 + Duration::from_millis(50))
            .expect("renew");
        let at = t0 + Duration::from_millis(120);
        assert_eq!(
            leases.get("a", at).expect("get"),
            Some(LeaseInfo { renewals: 2 })
        );
        let lapsed = t0 + Duration::from_millis(150);
        assert_eq!(leases.get("a", lapsed).expect("get"), None);
        leases.renew("a", 100, lapsed).expect("renew");
        assert_eq!(
            leases.get("a", lapsed).expect("get"),
            Some(LeaseInfo { renewals: 1 })
        );
    }
}
