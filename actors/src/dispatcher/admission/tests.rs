use super::*;

fn load(received_total: u64, busy: usize) -> PoolLoad {
    let figures = LoadFigures {
        incarnation: 1,
        busy,
        workers: 4,
        capacity: 100,
        received_total,
        ..Default::default()
    };
    PoolLoad::new("b".into(), vec![], figures)
}

#[test]
fn tasks_sent_to_a_peer_count_in_its_queue_until_a_report_after_their_ack() {
    let mut entry = PoolEntry::new(load(0, 0), 0);
    // The peer took 10,000 tasks from its own clients: that says nothing about ours.
    entry.reported(load(10_000, 0), 0);
    entry.unacked += 3;
    assert_eq!(
        entry.view(true, Arc::from([])).queued,
        3,
        "sent, not acknowledged"
    );
    entry.answered(3, true);
    assert_eq!(
        entry.view(true, Arc::from([])).queued,
        3,
        "acknowledged, not reported yet"
    );
    entry.reported(load(10_003, 3), 0);
    let view = entry.view(true, Arc::from([]));
    assert_eq!(
        (view.queued, view.running),
        (0, 3),
        "the report counts them now"
    );
}

#[test]
fn refused_tasks_leave_the_peers_queue_at_once() {
    let mut entry = PoolEntry::new(load(0, 0), 0);
    entry.unacked += 5;
    entry.answered(5, false);
    assert_eq!(entry.view(true, Arc::from([])).queued, 0);
    // An answer for more than is outstanding never underflows.
    entry.answered(1, false);
    assert_eq!(entry.view(true, Arc::from([])).queued, 0);
}
