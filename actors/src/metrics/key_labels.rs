//! The API key id as a bounded metric label.
//!
//! Keys are made by admins, so a node sees few of them, but a label must stay bounded
//! whatever happens: the first [`MAX_KEY_LABELS`] key ids a node authenticates get a label
//! of their own, every later one counts under [`OTHER`]. A node restart starts the count
//! afresh.

use std::collections::HashSet;
use std::sync::Mutex;

/// The most key ids that get a label of their own on one node.
pub const MAX_KEY_LABELS: usize = 100;

/// The label of every key id past the first [`MAX_KEY_LABELS`].
pub const OTHER: &str = "other";

/// The key ids that have a label of their own.
#[derive(Debug, Default)]
pub struct KeyLabels {
    seen: Mutex<HashSet<String>>,
}

impl KeyLabels {
    /// The label of `key_id`: the id itself while there is room (or it has one already),
    /// [`OTHER`] once [`MAX_KEY_LABELS`] others have theirs.
    pub fn label<'a>(&self, key_id: &'a str) -> &'a str {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.contains(key_id) {
            return key_id;
        }
        if seen.len() < MAX_KEY_LABELS {
            seen.insert(key_id.to_owned());
            return key_id;
        }
        OTHER
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_ids_keep_their_label_and_later_ones_share_other() {
        let labels = KeyLabels::default();
        let ids: Vec<String> = (0..MAX_KEY_LABELS + 5)
            .map(|i| format!("k{i:011}"))
            .collect();
        for id in &ids[..MAX_KEY_LABELS] {
            assert_eq!(labels.label(id), id.as_str());
        }
        for id in &ids[MAX_KEY_LABELS..] {
            assert_eq!(labels.label(id), OTHER);
        }
        assert_eq!(labels.label(&ids[0]), ids[0].as_str(), "still its own");
    }
}
