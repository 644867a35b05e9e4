use super::*;

fn pool(node: &str, local: bool, queued: usize, running: usize, workers: usize) -> PoolView {
    PoolView {
        node: node.into(),
        local,
        labels: vec![],
        capacity: 10,
        queued,
        admitting: 0,
        running,
        workers,
        available: true,
    }
}

fn count(placed: &[usize], i: usize) -> usize {
    placed.iter().filter(|&&p| p == i).count()
}

#[test]
fn a_pool_with_a_free_worker_has_no_wait() {
    assert_eq!(pool("a", true, 0, 3, 4).wait(), 0);
    assert_eq!(pool("a", true, 0, 4, 4).wait(), 250);
    assert_eq!(pool("a", true, 3, 1, 1).wait(), 4000);
    assert_eq!(
        pool("a", true, 0, 0, 0).wait(),
        0,
        "no workers counts as one"
    );
}

#[test]
fn picks_the_least_loaded_pool() {
    let pools = [pool("a", true, 5, 4, 4), pool("b", false, 0, 1, 4)];
    assert_eq!(place_all(&pools, &[None]), Ok(vec![1]));
}

#[test]
fn prefers_the_local_pool_on_ties() {
    let pools = [pool("remote", false, 1, 1, 2), pool("me", true, 1, 1, 2)];
    assert_eq!(place_all(&pools, &[None]), Ok(vec![1]));
}

#[test]
fn balanced_load_stays_local() {
    // Every pool as busy as the others, or the local one a little busier (its own view
    // is fresher than its peers' reports): no saving is worth a hop.
    let even = [
        pool("a", true, 2, 4, 4),
        pool("b", false, 2, 4, 4),
        pool("c", false, 2, 4, 4),
    ];
    assert_eq!(place_all(&even, &[None]), Ok(vec![0]));
    let slightly = [
        pool("a", true, 2, 4, 4),
        pool("b", false, 0, 4, 4),
        pool("c", false, 1, 3, 4),
    ];
    assert_eq!(place_all(&slightly, &[None]), Ok(vec![0]));
    // In-flight admissions count against room, not in the wait: a node with many
    // submissions being stored keeps the next one.
    let mut admitting = even.clone();
    admitting[0].admitting = 3;
    assert_eq!(place_all(&admitting, &[None]), Ok(vec![0]));
    // Idle pools with free workers: nothing to gain anywhere.
    let idle = [pool("a", false, 0, 0, 4), pool("b", true, 0, 1, 4)];
    assert_eq!(place_all(&idle, &[None]), Ok(vec![1]));
}

#[test]
fn a_burst_to_one_node_spreads() {
    let pools = [
        pool("a", true, 0, 0, 2),
        pool("b", false, 0, 0, 2),
        pool("c", false, 0, 0, 2),
    ];
    let mut view = pools.to_vec();
    for p in &mut view {
        p.capacity = 1000;
    }
    let placed = place_all(&view, &[None; 300]).expect("room");
    for i in 0..3 {
        let n = count(&placed, i);
        assert!((95..=106).contains(&n), "pool {i} got {n} of 300");
    }
}

#[test]
fn an_idle_peer_next_to_a_full_node_gets_work() {
    // One worker, busy: the next task would wait a whole task length here.
    let pools = [pool("a", true, 0, 1, 1), pool("b", false, 0, 0, 1)];
    assert_eq!(place_all(&pools, &[None]), Ok(vec![1]));
    // A task sent to the local pool and not taken yet counts the same.
    let pools = [pool("a", true, 1, 0, 1), pool("b", false, 0, 0, 1)];
    assert_eq!(place_all(&pools, &[None]), Ok(vec![1]));
    // Four workers, all busy, two waiting: a peer with a free worker saves 3/4 task.
    let pools = [pool("a", true, 2, 4, 4), pool("b", false, 0, 2, 4)];
    assert_eq!(place_all(&pools, &[None]), Ok(vec![1]));
    // A queue at capacity hands work on whatever the waits.
    let mut full = pool("a", true, 10, 0, 50);
    full.capacity = 10;
    let pools = [full, pool("b", false, 0, 8, 1)];
    assert_eq!(place_all(&pools, &[None]), Ok(vec![1]));
}

#[test]
fn equal_waits_go_to_the_idler_peer() {
    // The local pool is busy; both peers have free workers (no wait), one is idle.
    let pools = [
        pool("a", true, 2, 4, 4),
        pool("b", false, 0, 6, 8),
        pool("c", false, 0, 0, 8),
    ];
    assert_eq!(place_all(&pools, &[None]), Ok(vec![2]));
    // A burst the local pool cannot take splits evenly over two equal peers, not all
    // to the first one listed.
    let mut view = [
        pool("a", true, 0, 4, 4),
        pool("b", false, 0, 0, 16),
        pool("c", false, 0, 0, 16),
    ];
    view[0].capacity = 0;
    let placed = place_all(&view, &[None; 10]).expect("room");
    assert_eq!((count(&placed, 1), count(&placed, 2)), (5, 5));
}

#[test]
fn a_batch_spreads_as_load_evens_out() {
    let pools = [pool("a", true, 0, 0, 1), pool("b", false, 0, 0, 1)];
    let placed = place_all(&pools, &[None; 4]).expect("room");
    assert_eq!(count(&placed, 0), 2);
}

#[test]
fn full_or_unavailable_pools_get_nothing() {
    let mut full = pool("a", true, 10, 0, 1);
    assert_eq!(
        place_all(&[full.clone()], &[None]),
        Err(PlaceError::Saturated)
    );
    full.queued = 0;
    full.available = false;
    assert_eq!(place_all(&[full], &[None]), Err(PlaceError::Saturated));
}

#[test]
fn admissions_in_flight_count_against_capacity() {
    let mut p = pool("a", true, 4, 0, 1);
    p.admitting = 5;
    assert_eq!(place_all(&[p.clone()], &[None]), Ok(vec![0]));
    p.admitting = 6;
    assert_eq!(place_all(&[p], &[None]), Err(PlaceError::Saturated));
}

#[test]
fn batches_are_all_or_nothing() {
    let pools = [pool("a", true, 8, 0, 1)];
    assert_eq!(place_all(&pools, &[None; 3]), Err(PlaceError::Saturated));
    assert_eq!(place_all(&pools, &[None; 2]), Ok(vec![0, 0]));
}

#[test]
fn classes_match_labels() {
    let mut heavy = pool("h", false, 5, 5, 1);
    heavy.labels = vec!["heavy".into()];
    let pools = [pool("l", true, 0, 0, 4), heavy];
    assert_eq!(place_all(&pools, &[Some("heavy")]), Ok(vec![1]));
    assert_eq!(
        place_all(&pools, &[Some("gpu")]),
        Err(PlaceError::NoSuchClass("gpu".into()))
    );
}

#[test]
fn keeps_all_agrees_with_place_all_whatever_the_peers() {
    // Every small local pool state against peers from idle to full: when `keeps_all`
    // says the tasks stay, `place_all` over every view keeps them all local.
    let mut kept = 0;
    for (queued, running, workers, batch) in grid(4, 5, 4, 4) {
        let mut local = pool("a", true, queued, running, workers + 1);
        local.capacity = 6;
        let classes = vec![None; batch + 1];
        for peer_running in 0..3 {
            let peers = [
                pool("b", false, 0, peer_running, 2),
                pool("c", false, 0, 0, 8),
            ];
            let views = [local.clone(), peers[0].clone(), peers[1].clone()];
            if keeps_all(&local, &classes) {
                kept += 1;
                assert_eq!(
                    place_all(&views, &classes),
                    Ok(vec![0; batch + 1]),
                    "local {local:?}, batch {}",
                    batch + 1
                );
            }
        }
    }
    assert!(kept > 20, "the grid exercises the shortcut ({kept} cases)");
    // A task the local pool cannot run (class, draining, full) is never kept.
    let local = pool("a", true, 0, 0, 4);
    assert!(!keeps_all(&local, &[Some("gpu")]));
    let mut draining = local.clone();
    draining.available = false;
    assert!(!keeps_all(&draining, &[None]));
    let mut full = local.clone();
    full.capacity = 1;
    assert!(!keeps_all(&full, &[None, None]));
    // A long wait here is for the dispatcher to weigh against the peers.
    assert!(!keeps_all(&pool("a", true, 4, 4, 4), &[None]));
}

/// Every (queued, running, workers, batch) below the bounds.
fn grid(q: usize, r: usize, w: usize, b: usize) -> Vec<(usize, usize, usize, usize)> {
    let mut all = Vec::new();
    for queued in 0..q {
        for running in 0..r {
            for workers in 0..w {
                for batch in 0..b {
                    all.push((queued, running, workers, batch));
                }
            }
        }
    }
    all
}
