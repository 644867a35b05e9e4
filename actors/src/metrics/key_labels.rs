//! `taskmesh_key_requests_total{key_id}`: requests by API key id, a bounded label.
//!
//! Keys are made by admins, so a node sees few of them, but a label must stay bounded
//! whatever happens: the first [`MAX_KEY_LABELS`] key ids a node authenticates get a label
//! of their own, every later one counts under [`OTHER`]. A node restart starts the count
//! afresh. Each label's counter is looked up in the vector once and kept, so counting a
//! request is one map lookup (the request path runs it for every authenticated request).

use std::collections::HashMap;
use std::sync::Mutex;

use prometheus::{IntCounter, IntCounterVec};

/// The most key ids that get a label of their own on one node.
pub const MAX_KEY_LABELS: usize = 100;

/// The label of every key id past the first [`MAX_KEY_LABELS`].
pub const OTHER: &str = "other";

/// The counter vector and the counters of the key ids that have a label of their own.
pub struct KeyRequests {
    vec: IntCounterVec,
    counters: Mutex<HashMap<String, IntCounter>>,
}

impl KeyRequests {
    /// Counts into `vec` (labelled `key_id`).
    pub fn new(vec: IntCounterVec) -> Self {
        Self {
            vec,
            counters: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one request of `key_id`: under its own label while there is room (or it has
    /// one already), under [`OTHER`] once [`MAX_KEY_LABELS`] others have theirs.
    pub fn count(&self, key_id: &str) {
        let mut counters = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(counter) = counters.get(key_id) {
            counter.inc();
            return;
        }
        let label = if counters.len() < MAX_KEY_LABELS {
            key_id
        } else {
            OTHER
        };
        let counter = self.vec.with_label_values(&[label]);
        counter.inc();
        if label != OTHER {
            counters.insert(key_id.to_owned(), counter);
        }
    }
}

#[cfg(test)]
mod tests {
    use prometheus::Opts;

    use super::*;

    #[test]
    fn the_first_ids_keep_their_label_and_later_ones_share_other() {
        let vec = IntCounterVec::new(Opts::new("t", "t"), &["key_id"]).expect("valid");
        let requests = KeyRequests::new(vec.clone());
        let ids: Vec<String> = (0..MAX_KEY_LABELS + 5)
            .map(|i| format!("k{i:011}"))
            .collect();
        for id in &ids {
            requests.count(id);
        }
        requests.count(&ids[0]);
        assert_eq!(
            vec.with_label_values(&[ids[0].as_str()]).get(),
            2,
            "still its own"
        );
        assert_eq!(
            vec.with_label_values(&[ids[MAX_KEY_LABELS - 1].as_str()])
                .get(),
            1
        );
        assert_eq!(vec.with_label_values(&[OTHER]).get(), 5);
        assert_eq!(
            vec.with_label_values(&[ids[MAX_KEY_LABELS].as_str()]).get(),
            0,
            "past the bound: no label of its own"
        );
    }
}
