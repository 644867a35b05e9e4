//! Cases for API keys: `put_key`, `get_key`, `list_keys` and `revoke_key`.

use std::sync::Arc;

use crate::auth::key::{ApiKey, KeyRecord};
use crate::auth::scope::Scope;
use crate::store::TaskStore;

fn record(name: &str, scopes: Vec<Scope>, created: u64, expires: Option<u64>) -> KeyRecord {
    KeyRecord::new(&ApiKey::generate(), name, scopes, created, expires)
}

/// A put key reads back whole (by id and in the listing); an unknown id reads `None`;
/// the listing is by creation time, then id. A key's own rate limit round-trips too.
pub async fn a_key_round_trips_and_lists_by_creation_time(store: Arc<dyn TaskStore>) {
    assert_eq!(store.list_keys().await.expect("list"), Vec::new());
    let mut later = record("ci", vec![Scope::Submit, Scope::Read], 2_000, Some(9_000));
    later.rate_limit = Some(crate::rate_limit::RateLimit::new(50, 100).expect("valid"));
    let earlier = record("admin", vec![Scope::Admin], 1_000, None);
    for key in [&later, &earlier] {
        assert!(store.put_key(key.clone()).await.expect("put"));
    }
    assert_eq!(
        store.get_key(&later.id).await.expect("get"),
        Some(later.clone())
    );
    assert_eq!(
        store.get_key(&earlier.id).await.expect("get"),
        Some(earlier.clone())
    );
    assert_eq!(store.get_key("nosuchkey000").await.expect("get"), None);
    assert_eq!(
        store.list_keys().await.expect("list"),
        vec![earlier, later],
        "by creation time"
    );
}

/// Putting a key whose id is taken writes nothing and answers `false`.
pub async fn a_put_of_a_taken_id_writes_nothing(store: Arc<dyn TaskStore>) {
    let first = record("first", vec![Scope::Read], 1, None);
    assert!(store.put_key(first.clone()).await.expect("put"));
    let mut second = record("second", vec![Scope::Admin], 2, None);
    second.id = first.id.clone();
    assert!(!store.put_key(second).await.expect("put again"));
    assert_eq!(
        store.get_key(&first.id).await.expect("get"),
        Some(first.clone())
    );
    assert_eq!(store.list_keys().await.expect("list"), vec![first]);
}

/// Of concurrent puts of one id, exactly one is written.
pub async fn concurrent_puts_of_one_id_write_one_key(store: Arc<dyn TaskStore>) {
    let base = record("k", vec![Scope::Read], 1, None);
    let puts = (0..8).map(|i| {
        let store = Arc::clone(&store);
        let mut key = base.clone();
        key.name = format!("k{i}");
        tokio::spawn(async move { store.put_key(key).await.expect("put") })
    });
    let mut written = 0;
    for put in puts.collect::<Vec<_>>() {
        written += usize::from(put.await.expect("join"));
    }
    assert_eq!(written, 1);
    assert_eq!(store.list_keys().await.expect("list").len(), 1);
}

/// A revoke marks the key (keeping the first time) and answers whether the key exists;
/// the rest of the record is untouched.
pub async fn revoke_keeps_the_first_time_and_refuses_unknown_ids(store: Arc<dyn TaskStore>) {
    let key = record("ci", vec![Scope::Submit], 1, Some(50));
    store.put_key(key.clone()).await.expect("put");
    assert!(!store.revoke_key("nosuchkey000", 5).await.expect("revoke"));
    assert!(store.revoke_key(&key.id, 10).await.expect("revoke"));
    assert!(store.revoke_key(&key.id, 20).await.expect("revoke again"));
    let stored = store
        .get_key(&key.id)
        .await
        .expect("get")
        .expect("still stored");
    assert_eq!(
        stored,
        KeyRecord {
            revoked_at_ms: Some(10),
            ..key
        }
    );
    assert_eq!(store.list_keys().await.expect("list"), vec![stored]);
    assert_eq!(
        store.get_key("nosuchkey000").await.expect("get"),
        None,
        "no key created"
    );
}
