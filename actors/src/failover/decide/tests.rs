use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::*;

const MS: Duration = Duration::from_millis(1);
const CLAIM_AFTER: Duration = Duration::from_millis(1000);

fn lease(renewals: u64) -> Option<LeaseInfo> {
    Some(LeaseInfo { renewals })
}

#[test]
fn a_closed_session_is_claimed_once_the_counter_stops_for_the_bound() {
    let t0 = Instant::now();
    let mut w = Watch::new(Cause::SessionClosed);
    assert_eq!(w.observe(lease(7), t0, CLAIM_AFTER, true), Verdict::Wait);
    assert_eq!(
        w.observe(lease(7), t0 + 999 * MS, CLAIM_AFTER, true),
        Verdict::Wait
    );
    assert!(matches!(
        w.observe(lease(7), t0 + 1000 * MS, CLAIM_AFTER, true),
        Verdict::Claim(_)
    ));
    assert_eq!(
        w.observe(lease(7), t0 + 5000 * MS, CLAIM_AFTER, true),
        Verdict::Wait,
        "claimed once"
    );
}

#[test]
fn a_peer_that_keeps_renewing_is_never_claimed_whatever_its_session() {
    let t0 = Instant::now();
    for cause in [Cause::SessionClosed, Cause::Silent] {
        let mut w = Watch::new(cause);
        for i in 0..100u64 {
            // A renewal every 500 ms, read every 100 ms.
            let at = t0 + Duration::from_millis(i * 100);
            let v = lease(10 + i / 5);
            assert_eq!(
                w.observe(v, at, CLAIM_AFTER, true),
                Verdict::Wait,
                "{cause:?} at {i}"
            );
        }
    }
}

#[test]
fn a_silent_peer_keeps_its_tasks_until_its_lease_lapses() {
    let t0 = Instant::now();
    let mut w = Watch::new(Cause::Silent);
    assert_eq!(w.observe(lease(3), t0, CLAIM_AFTER, true), Verdict::Wait);
    assert_eq!(
        w.observe(lease(3), t0 + 60_000 * MS, CLAIM_AFTER, true),
        Verdict::Wait,
        "a paused peer is not claimed while its lease lasts"
    );
    assert_eq!(
        w.observe(None, t0 + 61_000 * MS, CLAIM_AFTER, true),
        Verdict::Claim("its lease lapsed")
    );
}

#[test]
fn a_lapse_counts_only_on_a_steady_store() {
    let t0 = Instant::now();
    let mut silent = Watch::new(Cause::Silent);
    assert_eq!(silent.observe(None, t0, CLAIM_AFTER, false), Verdict::Wait);
    assert_eq!(
        silent.observe(None, t0 + 10_000 * MS, CLAIM_AFTER, false),
        Verdict::Wait
    );
    // A closed session with no lease on an unsteady store: claimed only if no renewal
    // shows up for the bound (a live peer renews at once after a store restart).
    let mut closed = Watch::new(Cause::SessionClosed);
    assert_eq!(closed.observe(None, t0, CLAIM_AFTER, false), Verdict::Wait);
    assert_eq!(
        closed.observe(lease(1), t0 + 400 * MS, CLAIM_AFTER, false),
        Verdict::Wait
    );
    assert_eq!(
        closed.observe(lease(1), t0 + 1300 * MS, CLAIM_AFTER, false),
        Verdict::Wait
    );
    assert!(matches!(
        closed.observe(lease(1), t0 + 1400 * MS, CLAIM_AFTER, false),
        Verdict::Claim(_)
    ));
}

#[test]
fn a_failed_read_restarts_the_stall() {
    let t0 = Instant::now();
    let mut w = Watch::new(Cause::SessionClosed);
    w.observe(lease(4), t0, CLAIM_AFTER, true);
    w.read_failed();
    assert_eq!(
        w.observe(lease(4), t0 + 1500 * MS, CLAIM_AFTER, true),
        Verdict::Wait,
        "the outage is not the peer's silence"
    );
    assert!(matches!(
        w.observe(lease(4), t0 + 2500 * MS, CLAIM_AFTER, true),
        Verdict::Claim(_)
    ));
}

#[test]
fn a_departed_peer_is_claimed_at_once() {
    let mut w = Watch::new(Cause::Departed);
    assert_eq!(
        w.observe(lease(9), Instant::now(), CLAIM_AFTER, false),
        Verdict::Claim("it left the cluster")
    );
}

#[test]
fn watches_follow_the_down_set() {
    let t0 = Instant::now();
    let mut watches = HashMap::new();
    let down = |v: &[(&str, Cause)]| -> Vec<(String, Cause)> {
        v.iter().map(|(n, c)| ((*n).to_owned(), *c)).collect()
    };
    assert!(sync_watches(&mut watches, &down(&[("b", Cause::Silent)])));
    assert!(
        !sync_watches(&mut watches, &down(&[("b", Cause::Silent)])),
        "nothing new"
    );
    // b's session closes: watched afresh under the new cause.
    assert!(sync_watches(
        &mut watches,
        &down(&[("b", Cause::SessionClosed)])
    ));
    assert_eq!(watches["b"].cause, Cause::SessionClosed);
    let w = watches.get_mut("b").expect("b");
    w.observe(lease(1), t0, CLAIM_AFTER, true);
    w.observe(lease(1), t0 + CLAIM_AFTER, CLAIM_AFTER, true);
    assert!(w.claiming);
    // Claimed, then it says goodbye: still claimed, nothing to read.
    assert!(!sync_watches(
        &mut watches,
        &down(&[("b", Cause::Departed)])
    ));
    assert!(watches["b"].claiming);
    // b is up again: forgotten; down again later: watched afresh.
    sync_watches(&mut watches, &[]);
    assert!(watches.is_empty());
    assert!(sync_watches(&mut watches, &down(&[("b", Cause::Silent)])));
    assert!(!watches["b"].claiming);
}

#[test]
fn reaping_waits_for_a_whole_lease_of_reachable_store() {
    let ttl = Duration::from_secs(5);
    let t0 = Instant::now();
    assert!(!may_reap(None, t0, ttl), "store unreachable");
    assert!(!may_reap(Some(t0), t0 + 4999 * MS, ttl));
    assert!(may_reap(Some(t0), t0 + ttl, ttl));
    assert!(
        !may_reap(Some(t0 + ttl), t0, ttl),
        "a clock going back reaps nothing"
    );
}

#[test]
fn an_id_is_in_use_only_when_its_lease_moves_between_the_reads() {
    assert!(!id_in_use(None, None), "never used");
    assert!(!id_in_use(lease(5), lease(5)), "left by a killed node");
    assert!(!id_in_use(lease(5), None), "lapsed between the reads");
    assert!(id_in_use(lease(5), lease(6)), "renewed by a running node");
    assert!(
        id_in_use(None, lease(1)),
        "a node took it between the reads"
    );
}
