use super::*;

fn pool(node: &str, local: bool, queued: usize, running: usize, workers: usize) -> PoolView {
    PoolView {
        node: node.into(),
        local,
        labels: vec![],
        kinds: kinds(&["noop"]),
        unserved: kinds(&[]),
        capacity: 10,
        queued,
        admitting: 0,
        running,
        workers,
        available: true,
    }
}

/// A task of kind `noop` without a class.
const ANY: Need<'static> = Need {
    kind: "noop",
    class: None,
};

fn kinds(names: &[&str]) -> Arc<[String]> {
    names.iter().map(|k| (*k).to_owned()).collect()
}

fn of_kind(kind: &str) -> Need<'_> {
    Need { kind, class: None }
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
    assert_eq!(place_all(&pools, &[ANY]), Ok(vec![1]));
}

#[test]
fn prefers_the_local_pool_on_ties() {
    let pools = [pool("remote", false, 1, 1, 2), pool("me", true, 1, 1, 2)];
    assert_eq!(place_all(&pools, &[ANY]), Ok(vec![1]));
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
    assert_eq!(place_all(&even, &[ANY]), Ok(vec![0]));
    let slightly = [
        pool("a", true, 2, 4, 4),
        pool("b", false, 0, 4, 4),
        pool("c", false, 1, 3, 4),
    ];
    assert_eq!(place_all(&slightly, &[ANY]), Ok(vec![0]));
    // In-flight admissions count against room, not in the wait: a node with many
    // submissions being stored keeps the next one.
    let mut admitting = even.clone();
    admitting[0].admitting = 3;
    assert_eq!(place_all(&admitting, &[ANY]), Ok(vec![0]));
    // Idle pools with free workers: nothing to gain anywhere.
    let idle = [pool("a", false, 0, 0, 4), pool("b", true, 0, 1, 4)];
    assert_eq!(place_all(&idle, &[ANY]), Ok(vec![1]));
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
    let placed = place_all(&view, &[ANY; 300]).expect("room");
    for i in 0..3 {
        let n = count(&placed, i);
        assert!((95..=106).contains(&n), "pool {i} got {n} of 300");
    }
}

#[test]
fn an_idle_peer_next_to_a_full_node_gets_work() {
    // One worker, busy: the next task would wait a whole task length here.
    let pools = [pool("a", true, 0, 1, 1), pool("b", false, 0, 0, 1)];
    assert_eq!(place_all(&pools, &[ANY]), Ok(vec![1]));
    // A task sent to the local pool and not taken yet counts the same.
    let pools = [pool("a", true, 1, 0, 1), pool("b", false, 0, 0, 1)];
    assert_eq!(place_all(&pools, &[ANY]), Ok(vec![1]));
    // Four workers, all busy, two waiting: a peer with a free worker saves 3/4 task.
    let pools = [pool("a", true, 2, 4, 4), pool("b", false, 0, 2, 4)];
    assert_eq!(place_all(&pools, &[ANY]), Ok(vec![1]));
    // A queue at capacity hands work on whatever the waits.
    let mut full = pool("a", true, 10, 0, 50);
    full.capacity = 10;
    let pools = [full, pool("b", false, 0, 8, 1)];
    assert_eq!(place_all(&pools, &[ANY]), Ok(vec![1]));
}

#[test]
fn equal_waits_go_to_the_idler_peer() {
    // The local pool is busy; both peers have free workers (no wait), one is idle.
    let pools = [
        pool("a", true, 2, 4, 4),
        pool("b", false, 0, 6, 8),
        pool("c", false, 0, 0, 8),
    ];
    assert_eq!(place_all(&pools, &[ANY]), Ok(vec![2]));
    // A burst the local pool cannot take splits evenly over two equal peers, not all
    // to the first one listed.
    let mut view = [
        pool("a", true, 0, 4, 4),
        pool("b", false, 0, 0, 16),
        pool("c", false, 0, 0, 16),
    ];
    view[0].capacity = 0;
    let placed = place_all(&view, &[ANY; 10]).expect("room");
    assert_eq!((count(&placed, 1), count(&placed, 2)), (5, 5));
}

#[test]
fn a_batch_spreads_as_load_evens_out() {
    let pools = [pool("a", true, 0, 0, 1), pool("b", false, 0, 0, 1)];
    let placed = place_all(&pools, &[ANY; 4]).expect("room");
    assert_eq!(count(&placed, 0), 2);
}

#[test]
fn full_or_unavailable_pools_get_nothing() {
    let mut full = pool("a", true, 10, 0, 1);
    assert_eq!(
        place_all(&[full.clone()], &[ANY]),
        Err(PlaceError::Saturated)
    );
    full.queued = 0;
    full.available = false;
    assert_eq!(place_all(&[full], &[ANY]), Err(PlaceError::Saturated));
}

#[test]
fn admissions_in_flight_count_against_capacity() {
    let mut p = pool("a", true, 4, 0, 1);
    p.admitting = 5;
    assert_eq!(place_all(&[p.clone()], &[ANY]), Ok(vec![0]));
    p.admitting = 6;
    assert_eq!(place_all(&[p], &[ANY]), Err(PlaceError::Saturated));
}

#[test]
fn batches_are_all_or_nothing() {
    let pools = [pool("a", true, 8, 0, 1)];
    assert_eq!(place_all(&pools, &[ANY; 3]), Err(PlaceError::Saturated));
    assert_eq!(place_all(&pools, &[ANY; 2]), Ok(vec![0, 0]));
}

#[test]
fn classes_match_labels() {
    let mut heavy = pool("h", false, 5, 5, 1);
    heavy.labels = vec!["heavy".into()];
    let pools = [pool("l", true, 0, 0, 4), heavy];
    assert_eq!(
        place_all(
            &pools,
            &[Need {
                class: Some("heavy"),
                ..ANY
            }]
        ),
        Ok(vec![1])
    );
    assert_eq!(
        place_all(
            &pools,
            &[Need {
                class: Some("gpu"),
                ..ANY
            }]
        ),
        Err(PlaceError::NoSuchClass("gpu".into()))
    );
}

#[test]
fn kinds_are_matched_like_classes() {
    // Only `b` can run word_count: it goes there even from an idle local pool.
    let mut b = pool("b", false, 5, 5, 1);
    b.kinds = kinds(&["noop", "word_count"]);
    let pools = [pool("a", true, 0, 0, 4), b.clone()];
    assert_eq!(place_all(&pools, &[of_kind("word_count")]), Ok(vec![1]));
    assert_eq!(
        place_all(&pools, &[ANY, of_kind("word_count")]),
        Ok(vec![0, 1])
    );
    // No pool has it, up or down: unknown.
    assert_eq!(
        place_all(&pools, &[of_kind("pdf")]),
        Err(PlaceError::UnknownKind("pdf".into()))
    );
    // Only an unavailable pool has it, while others take work: unavailable, not
    // saturated (and not unknown).
    let mut down = b.clone();
    down.available = false;
    let pools = [pool("a", true, 0, 0, 4), down];
    assert_eq!(
        place_all(&pools, &[of_kind("word_count")]),
        Err(PlaceError::KindUnavailable("word_count".into()))
    );
    assert_eq!(place_all(&pools, &[ANY]), Ok(vec![0]));
    // It has it but is full: saturated, as for any kind.
    let mut full = b.clone();
    full.capacity = 5;
    let pools = [pool("a", true, 0, 0, 4), full];
    assert_eq!(
        place_all(&pools, &[of_kind("word_count")]),
        Err(PlaceError::Saturated)
    );
    // Nothing takes work at all (a single draining node): saturated, as before kinds.
    let mut draining = pool("a", true, 0, 0, 4);
    draining.available = false;
    assert_eq!(place_all(&[draining], &[ANY]), Err(PlaceError::Saturated));
    // A class only nodes without the kind have.
    let mut heavy = pool("c", false, 0, 0, 4);
    heavy.labels = vec!["heavy".into()];
    let pools = [pool("a", true, 0, 0, 4), b, heavy];
    let need = Need {
        kind: "word_count",
        class: Some("heavy"),
    };
    assert_eq!(
        place_all(&pools, &[need]),
        Err(PlaceError::NoSuchClass("heavy".into()))
    );
}

#[test]
fn keeps_all_agrees_with_place_all_whatever_the_peers() {
    // Every small local pool state, with and without the kind word_count, against peers
    // from idle to full (one with word_count, one without): when `keeps_all` says the
    // tasks stay, `place_all` over every view keeps them all local.
    let mut kept = 0;
    for (queued, running, workers, batch) in grid(4, 5, 4, 4) {
        for local_kinds in [&["noop"][..], &["noop", "word_count"][..]] {
            let mut local = pool("a", true, queued, running, workers + 1);
            local.capacity = 6;
            local.kinds = kinds(local_kinds);
            for last in ["noop", "word_count"] {
                let mut needs = vec![ANY; batch + 1];
                needs[batch] = of_kind(last);
                for peer_running in 0..3 {
                    let mut b = pool("b", false, 0, peer_running, 2);
                    b.kinds = kinds(&["noop", "word_count"]);
                    let views = [local.clone(), b, pool("c", false, 0, 0, 8)];
                    if keeps_all(&local, &needs) {
                        kept += 1;
                        assert!(local_kinds.contains(&last), "kept a kind it lacks");
                        assert_eq!(
                            place_all(&views, &needs),
                            Ok(vec![0; batch + 1]),
                            "local {local:?}, batch {}, last kind {last}",
                            batch + 1
                        );
                    }
                }
            }
        }
    }
    assert!(kept > 40, "the grid exercises the shortcut ({kept} cases)");
    // A task the local pool cannot run (kind, class, draining, full) is never kept.
    let local = pool("a", true, 0, 0, 4);
    assert!(!keeps_all(&local, &[of_kind("word_count")]));
    assert!(!keeps_all(&local, &[ANY, of_kind("word_count")]));
    assert!(!keeps_all(
        &local,
        &[Need {
            class: Some("gpu"),
            ..ANY
        }]
    ));
    let mut draining = local.clone();
    draining.available = false;
    assert!(!keeps_all(&draining, &[ANY]));
    let mut full = local.clone();
    full.capacity = 1;
    assert!(!keeps_all(&full, &[ANY, ANY]));
    // A long wait here is for the dispatcher to weigh against the peers.
    assert!(!keeps_all(&pool("a", true, 4, 4, 4), &[ANY]));
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

#[test]
fn an_external_kind_goes_where_a_worker_serves_it_else_stays_local() {
    let external = |node: &str, local: bool, served: bool| {
        let mut p = pool(node, local, 0, 0, 4);
        p.kinds = kinds(&["noop", "py"]);
        p.unserved = if served { kinds(&[]) } else { kinds(&["py"]) };
        p
    };
    // Only `b` has a worker: the task leaves the idle local pool for it, even past a
    // queue of local built-in work there.
    let mut b = external("b", false, true);
    b.queued = 8;
    let pools = [external("a", true, false), b, external("c", false, false)];
    assert_eq!(place_all(&pools, &[of_kind("py")]), Ok(vec![1]));
    assert!(!keeps_all(&pools[0], &[of_kind("py")]));
    // Nobody has a worker: it waits on the local pool, which declares the kind.
    let pools = [external("a", true, false), external("b", false, false)];
    assert_eq!(place_all(&pools, &[of_kind("py")]), Ok(vec![0]));
    // A served local pool keeps it, without asking the peers.
    assert!(keeps_all(&external("a", true, true), &[of_kind("py")]));
    // Built-in kinds are not affected by an unserved external kind.
    assert!(keeps_all(&external("a", true, false), &[ANY]));
}
