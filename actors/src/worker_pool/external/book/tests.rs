use std::sync::Arc;
use std::time::{Duration, Instant};

use taskmesh_kernels::task::TaskId;

use super::*;
use crate::store::conformance::fixtures::spec;

const LEASE: Duration = Duration::from_secs(10);

fn worker(slots: usize) -> WorkerSpec {
    WorkerSpec {
        name: "w".into(),
        kinds: vec!["py".into()],
        slots,
        class: None,
    }
}

fn job(timeout_ms: Option<u64>) -> Job {
    let mut spec = spec("py", None);
    spec.timeout_ms = timeout_ms;
    Job::new(TaskId::generate(), Arc::new(spec))
}

fn book_with(id: &str, slots: usize, now: Instant) -> (Book<u32>, WorkerId) {
    let mut book = Book::new(LEASE);
    let id: WorkerId = id.into();
    book.register(Arc::clone(&id), worker(slots), now);
    (book, id)
}

#[test]
fn grants_use_slots_and_a_release_frees_one() {
    let now = Instant::now();
    let (mut book, w) = book_with("w1", 2, now);
    assert_eq!(book.free_slots(&w), 2);
    let t1 = book.grant(&w, job(None), now, 1);
    let t2 = book.grant(&w, job(None), now, 1);
    assert_ne!(t1, t2);
    assert_eq!(book.free_slots(&w), 0);
    assert!(book.release(&t1).is_some());
    assert!(book.release(&t1).is_none(), "a lease ends once");
    assert_eq!(book.free_slots(&w), 1);
    assert_eq!(book.leases(), 1);
}

#[test]
fn a_token_names_task_lease_and_attempt() {
    let id = TaskId::generate();
    let a = Token::new(id, 3, 2, 0xab);
    assert_eq!(a.as_str(), format!("{id}.3.2.00000000000000ab"));
    assert_ne!(a, Token::new(id, 4, 2, 0xab), "a newer store lease");
    assert_ne!(a, Token::new(id, 3, 3, 0xab), "a later attempt");
}

#[test]
fn heartbeat_states_follow_leases_owners_and_cancels() {
    let now = Instant::now();
    let (mut book, w) = book_with("w1", 4, now);
    book.register("w2".into(), worker(1), now);
    let j = job(None);
    let id = j.id;
    let t = book.grant(&w, j, now, 1);
    let unknown = Token::quoted("nope");
    assert_eq!(
        book.states(&w, &[t.clone(), unknown.clone()]),
        [LeaseState::Ok, LeaseState::Stale]
    );
    assert_eq!(
        book.states("w2", std::slice::from_ref(&t)),
        [LeaseState::Stale],
        "another worker's lease"
    );
    book.lease_of_mut(&id).expect("leased").cancel_requested = true;
    assert_eq!(
        book.states(&w, std::slice::from_ref(&t)),
        [LeaseState::CancelRequested]
    );
    book.release_task(&id);
    assert_eq!(book.states(&w, &[t]), [LeaseState::Stale]);
}

#[test]
fn a_silent_worker_loses_its_leases_and_a_parked_poll_keeps_only_its_registration() {
    let start = Instant::now();
    let (mut book, w) = book_with("w1", 4, start);
    book.register("parked".into(), worker(2), start);
    book.register("calling".into(), worker(1), start);
    book.grant(&w, job(None), start, 1);
    let frozen: WorkerId = "parked".into();
    book.grant(&frozen, job(None), start, 1);
    book.park("parked", 1, 7, start);
    let later = start + LEASE / 2;
    book.touch("calling", later).expect("registered");
    assert!(
        book.expire(start + LEASE).leases.is_empty(),
        "not silent for longer than the lease yet"
    );
    let expired = book.expire(start + LEASE + Duration::from_millis(1));
    let gone: Vec<&str> = expired.workers.iter().map(|(id, _)| &**id).collect();
    assert_eq!(gone, ["w1"]);
    // A frozen process with a parked poll loses its lease too: only heartbeats keep one.
    assert_eq!(expired.leases.len(), 2);
    assert!(
        expired
            .leases
            .iter()
            .all(|(_, why)| *why == Ended::LeaseExpired)
    );
    assert_eq!(book.leases(), 0);
    assert!(book.touch("w1", later).is_none(), "forgotten");
    assert_eq!(book.free_slots("parked"), 2, "registered, holding nothing");
    assert!(book.touch("calling", later).is_some());
}

#[test]
fn a_timeout_ends_a_lease_whatever_the_heartbeats() {
    let start = Instant::now();
    let (mut book, w) = book_with("w1", 4, start);
    book.grant(&w, job(Some(300)), start, 1);
    book.grant(&w, job(None), start, 1);
    book.touch(&w, start + Duration::from_millis(299));
    assert!(
        book.expire(start + Duration::from_millis(299))
            .leases
            .is_empty()
    );
    book.touch(&w, start + Duration::from_millis(300));
    let expired = book.expire(start + Duration::from_millis(300));
    assert!(expired.workers.is_empty());
    assert_eq!(expired.leases.len(), 1);
    assert_eq!(
        expired.leases[0].1,
        Ended::TimedOut(Duration::from_millis(300))
    );
    assert_eq!(book.leases(), 1);
}

#[test]
fn a_new_poll_replaces_the_parked_one_and_unpark_checks_the_sequence() {
    let now = Instant::now();
    let (mut book, w) = book_with("w1", 4, now);
    let (first, replaced) = book.park(&w, 2, 1, now);
    assert_eq!(replaced, None);
    let (second, replaced) = book.park(&w, 2, 2, now);
    assert_eq!(replaced, Some(1), "the older poll is answered");
    assert!(book.unpark(&w, Some(first)).is_none(), "its timer is stale");
    assert_eq!(book.unpark(&w, Some(second)).map(|p| p.reply), Some(2));
    assert!(book.unpark(&w, None).is_none());
}

#[test]
fn leaving_ends_every_lease_and_changes_what_is_served() {
    let now = Instant::now();
    let (mut book, w) = book_with("w1", 4, now);
    let mut gpu = worker(1);
    gpu.class = Some("gpu".into());
    book.register("w2".into(), gpu, now);
    book.grant(&w, job(None), now, 1);
    book.grant(&w, job(None), now, 1);
    assert!(book.serves("py"));
    assert_eq!(book.classes(), ["gpu"]);
    let (leases, parked) = book.deregister(&w).expect("registered");
    assert_eq!(leases.len(), 2);
    assert!(parked.is_none());
    assert_eq!(book.leases(), 0);
    assert!(book.deregister(&w).is_none());
    book.deregister("w2");
    assert!(!book.serves("py"));
    assert!(book.classes().is_empty());
}
