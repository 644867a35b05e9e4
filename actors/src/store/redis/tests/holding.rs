//! Holding across nodes on Redis: owner sets under `claim` and `reassign`, leases, and
//! the holders set behind `expired_holders`.

use std::time::{Duration, Instant};

use redis::AsyncTypedCommands as _;

use super::*;

/// Polls `expired_holders` until it answers `want`, for at most five seconds.
async fn expired_becomes(store: &RedisStore, want: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let expired = store.expired_holders().await.expect("expired");
        if expired == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "expired_holders stayed {expired:?}, expected {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn holders(redis: &mut redis::aio::MultiplexedConnection, prefix: &str) -> Vec<String> {
    let set = redis.smembers(format!("{prefix}holders")).await;
    let mut members: Vec<String> = set.expect("smembers").into_iter().collect();
    members.sort();
    members
}

#[tokio::test]
async fn a_lease_keeps_its_holder_off_the_expired_list_until_it_lapses() {
    let server = server();
    let store = connect(&server, "lease:").await;
    let mut redis = raw(&server).await;
    store
        .create(vec![
            on("a", task("echo", None)),
            on("b", task("echo", None)),
        ])
        .await
        .expect("create");
    assert_eq!(
        store.expired_holders().await.expect("expired"),
        ["a", "b"],
        "holders that never took a lease are expired"
    );

    store.renew_lease("a", 60_000).await.expect("renew a");
    store.renew_lease("b", 60_000).await.expect("renew b");
    assert_eq!(
        store.expired_holders().await.expect("expired"),
        [] as [&str; 0]
    );
    let ttl: i64 = redis::cmd("PTTL")
        .arg("lease:lease:a")
        .query_async(&mut redis)
        .await
        .expect("pttl");
    assert!(0 < ttl && ttl <= 60_000, "lease TTL {ttl}");
    let renewals: Option<String> = redis.get("lease:lease:a").await.expect("get");
    assert_eq!(
        renewals.as_deref(),
        Some("1"),
        "the key is the renewal counter"
    );
    store.renew_lease("a", 60_000).await.expect("renew a again");
    let renewals: Option<String> = redis.get("lease:lease:a").await.expect("get");
    assert_eq!(renewals.as_deref(), Some("2"));

    store.renew_lease("b", 50).await.expect("short lease");
    expired_becomes(&store, &["b"]).await;
    store.renew_lease("b", 60_000).await.expect("renew again");
    assert_eq!(
        store.expired_holders().await.expect("expired"),
        [] as [&str; 0]
    );
    assert_eq!(holders(&mut redis, "lease:").await, ["a", "b"]);
}

#[tokio::test]
async fn nodes_that_hold_nothing_are_never_expired_and_leave_the_holders_set() {
    let server = server();
    let store = connect(&server, "idle:").await;
    let mut redis = raw(&server).await;
    let (done, free) = (on("a", task("echo", None)), task("echo", None));
    store
        .create(vec![done.clone(), free.clone()])
        .await
        .expect("create");
    store.renew_lease("c", 1).await.expect("renew c");
    assert_eq!(holders(&mut redis, "idle:").await, ["a", "c"]);
    assert_eq!(store.expired_holders().await.expect("expired"), ["a"]);
    store.finish(&done.id, succeeded(10)).await.expect("finish");
    assert_eq!(
        store.expired_holders().await.expect("expired"),
        [] as [&str; 0]
    );
    assert_eq!(
        holders(&mut redis, "idle:").await,
        Vec::<String>::new(),
        "pruned: a and c hold nothing"
    );

    store
        .start(&free.id, Fence::new("d", 0), 1, 20)
        .await
        .expect("start");
    assert_eq!(
        holders(&mut redis, "idle:").await,
        ["d"],
        "a start adds its node"
    );
    assert_eq!(store.expired_holders().await.expect("expired"), ["d"]);
}

#[tokio::test]
async fn claim_and_reassign_move_owner_sets_and_expiry() {
    let server = server();
    let store = connect(&server, "move:").await;
    let mut redis = raw(&server).await;
    let tasks = vec![
        on("a", task("echo", None)),
        on("a", task("echo", None)),
        on("a", task("echo", None)),
    ];
    store.create(tasks.clone()).await.expect("create");
    let id = |i: usize| tasks[i].id;
    store
        .start(&id(1), Fence::new("a", 0), 1, 5)
        .await
        .expect("start");
    store.finish(&id(2), succeeded(6)).await.expect("finish");
    // A member whose record is gone must not survive a claim.
    let ghost = TaskId::generate();
    let added: usize = redis
        .sadd("move:owner:a", ghost.text().as_str())
        .await
        .expect("sadd");
    assert_eq!(added, 1);
    store.renew_lease("c", 60_000).await.expect("renew c");
    assert_eq!(store.expired_holders().await.expect("expired"), ["a"]);

    let moved = store.reassign(&[id(0)], "a", "b").await.expect("reassign");
    assert_eq!(ids(&moved), [id(0)]);
    assert_eq!(moved[0].lease, 1, "the move bumped the token");
    assert_eq!(owners(&mut redis, "move:", "b").await, [id(0).to_string()]);
    assert_eq!(store.expired_holders().await.expect("expired"), ["a", "b"]);

    let claimed = store.claim("a", "c").await.expect("claim");
    assert_eq!(ids(&claimed), [id(1)]);
    assert_eq!(owners(&mut redis, "move:", "a").await, Vec::<String>::new());
    assert_eq!(owners(&mut redis, "move:", "c").await, [id(1).to_string()]);
    assert_eq!(store.recoverable("a").await.expect("recoverable"), []);
    assert_eq!(
        ids(&store.recoverable("c").await.expect("recoverable")),
        [id(1)]
    );
    assert_eq!(store.expired_holders().await.expect("expired"), ["b"]);
    let claimed = store.claim("b", "c").await.expect("claim b");
    assert_eq!(ids(&claimed), [id(0)]);
    assert_eq!(
        store.expired_holders().await.expect("expired"),
        [] as [&str; 0]
    );
    assert_eq!(holders(&mut redis, "move:").await, ["c"]);
}
