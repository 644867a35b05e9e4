//! The task model: what a task is, independent of where it runs or how it travels.
//!
//! A task has a [`TaskId`] (a UUIDv7, so ids sort by creation time), a [`TaskSpec`]
//! (what a client asked for: the kind, its params, the priority and the limits) and a
//! [`TaskStatus`]. The HTTP API, the stores and the node-to-node protocol all carry these
//! types; none of them owns them.
//!
//! Everything here is serialized with serde: JSON at the HTTP edge, MessagePack with
//! field names between nodes and in every store. Field and variant names are part of
//! those contracts: renaming one changes the stored records and the node-to-node
//! protocol (it bumps `taskmesh_cluster::protocol::PROTOCOL_VERSION`).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A task identifier: a UUIDv7, written in its hyphenated lowercase form.
///
/// It is 16 bytes and `Copy`: passing an id around never allocates. Its text (in JSON,
/// MessagePack and store keys) is the hyphenated lowercase form, 36 characters; parsing
/// accepts any case. UUIDv7 starts with a millisecond timestamp, so ids sort by creation
/// time both as bytes (this type's `Ord`) and as text; stores use that to list recent
/// tasks without an extra index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaskId(uuid::Uuid);

/// A string that is not a valid task id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a task id (expected a UUID)")]
pub struct InvalidTaskId;

impl TaskId {
    /// A fresh, time-ordered id.
    pub fn generate() -> Self {
        Self(uuid::Uuid::now_v7())
    }

    /// The id's text, on the stack: for store keys and other places that need a `&str`
    /// without allocating. (`Display` writes the same text.)
    pub fn text(self) -> TaskIdText {
        let mut buf = [0; TaskIdText::LEN];
        self.0.hyphenated().encode_lower(&mut buf);
        TaskIdText(buf)
    }
}

impl FromStr for TaskId {
    type Err = InvalidTaskId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        uuid::Uuid::try_parse(s)
            .map(Self)
            .map_err(|_| InvalidTaskId)
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.hyphenated(), f)
    }
}

impl Serialize for TaskId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.text().as_str())
    }
}

impl<'de> Deserialize<'de> for TaskId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(TaskIdVisitor)
    }
}

/// Reads a [`TaskId`] from any string form a deserializer offers (borrowed or owned
/// text, or UTF-8 bytes), with the same error as `FromStr`.
struct TaskIdVisitor;

impl serde::de::Visitor<'_> for TaskIdVisitor {
    type Value = TaskId;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a task id (a UUID as text)")
    }

    fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<TaskId, E> {
        s.parse().map_err(E::custom)
    }

    fn visit_bytes<E: serde::de::Error>(self, b: &[u8]) -> Result<TaskId, E> {
        match std::str::from_utf8(b) {
            Ok(s) => self.visit_str(s),
            Err(_) => Err(E::invalid_value(serde::de::Unexpected::Bytes(b), &self)),
        }
    }
}

/// A [`TaskId`]'s hyphenated lowercase text in a stack buffer, from [`TaskId::text`].
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TaskIdText([u8; TaskIdText::LEN]);

impl TaskIdText {
    /// The length of an id's text.
    pub const LEN: usize = uuid::fmt::Hyphenated::LENGTH;

    /// The text.
    pub fn as_str(&self) -> &str {
        // The buffer holds hex digits and hyphens only, so it is always UTF-8.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl std::ops::Deref for TaskIdText {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for TaskIdText {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Display for TaskIdText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for TaskIdText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

/// Scheduling priority. High runs before normal before low, but low is never starved.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase", try_from = "String")]
pub enum Priority {
    /// Served first.
    High,
    /// The default.
    #[default]
    Normal,
    /// Served last, but with a guaranteed share.
    Low,
}

impl Priority {
    /// All priorities, highest first.
    pub const ALL: [Priority; 3] = [Priority::High, Priority::Normal, Priority::Low];

    /// The lowercase name used in the API and in metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::High => "high",
            Priority::Normal => "normal",
            Priority::Low => "low",
        }
    }

    /// Position in [`Priority::ALL`], for per-priority arrays.
    pub fn index(self) -> usize {
        self as usize
    }
}

/// A priority name that is not one of ours.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown priority `{0}` (expected high, normal or low)")]
pub struct InvalidPriority(String);

impl TryFrom<String> for Priority {
    type Error = InvalidPriority;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        match s.as_str() {
            "high" => Ok(Priority::High),
            "normal" => Ok(Priority::Normal),
            "low" => Ok(Priority::Low),
            _ => Err(InvalidPriority(s)),
        }
    }
}

/// Where a task is in its life. The last three are terminal: once one is recorded it
/// never changes (the first terminal write wins).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TaskStatus {
    /// Accepted and durably stored, waiting for a worker.
    Queued,
    /// Claimed by a worker.
    Running,
    /// Finished with a result.
    Succeeded,
    /// Finished with an error, after its retries.
    Failed,
    /// Cancelled before it finished.
    Cancelled,
}

impl TaskStatus {
    /// Whether the status can never change again.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            TaskStatus::Succeeded | TaskStatus::Failed | TaskStatus::Cancelled
        )
    }

    /// The lowercase name used in the API and in metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Queued => "queued",
            TaskStatus::Running => "running",
            TaskStatus::Succeeded => "succeeded",
            TaskStatus::Failed => "failed",
            TaskStatus::Cancelled => "cancelled",
        }
    }
}

/// A status name that is not one of ours.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown status (expected queued, running, succeeded, failed or cancelled)")]
pub struct InvalidStatus;

impl FromStr for TaskStatus {
    type Err = InvalidStatus;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "queued" => TaskStatus::Queued,
            "running" => TaskStatus::Running,
            "succeeded" => TaskStatus::Succeeded,
            "failed" => TaskStatus::Failed,
            "cancelled" => TaskStatus::Cancelled,
            _ => return Err(InvalidStatus),
        })
    }
}

/// What a client asked for: everything needed to run the task anywhere.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskSpec {
    /// The kernel to run, e.g. `monte_carlo_option`.
    pub kind: String,
    /// The kernel's parameters as JSON text, already validated at the edge.
    pub params: String,
    /// Scheduling priority.
    pub priority: Priority,
    /// Fail the attempt when it runs longer than this.
    pub timeout_ms: Option<u64>,
    /// Retries after the first attempt before the task fails.
    pub max_retries: u32,
    /// Client-chosen key: submitting the same key again returns the first task.
    pub idempotency_key: Option<String>,
    /// Resource class, matched against node labels by placement.
    pub class: Option<String>,
    /// The `X-Request-ID` of the submission, carried into every log line of the task.
    pub request_id: Option<String>,
    /// The id of the API key that submitted the task; `None` when the node ran with
    /// `--auth off`, and in records written before the field existed. A key with only
    /// the `submit` scope sees and cancels only the tasks it submitted. Left out of the
    /// serialized forms when `None`, so they stay as they were.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub submitted_by: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> TaskSpec {
        TaskSpec {
            kind: "echo".into(),
            params: r#"{"value":1}"#.into(),
            priority: Priority::Low,
            timeout_ms: Some(5),
            max_retries: 2,
            idempotency_key: Some("k".into()),
            class: None,
            request_id: Some("r".into()),
            submitted_by: None,
        }
    }

    #[test]
    fn task_ids_sort_by_creation_time() {
        let a = TaskId::generate();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = TaskId::generate();
        assert!(a < b, "{a} should sort before {b}");
    }

    #[test]
    fn task_id_rejects_garbage_and_normalises_case() {
        assert_eq!("nope".parse::<TaskId>(), Err(InvalidTaskId));
        let id = TaskId::generate();
        let upper = id.to_string().to_uppercase();
        assert_eq!(upper.parse::<TaskId>(), Ok(id));
        assert_eq!(id.to_string(), upper.to_lowercase());
    }

    #[test]
    fn task_id_text_is_the_lowercase_hyphenated_uuid_in_every_form() {
        let text = "0190f5a3-1b2c-7d4e-8f60-0a1b2c3d4e5f";
        let id: TaskId = text.to_uppercase().parse().expect("parse");
        assert_eq!(id.to_string(), text);
        assert_eq!(id.text().as_str(), text);
        assert_eq!(
            serde_json::to_string(&id).expect("json"),
            format!("\"{text}\"")
        );
        assert_eq!(
            serde_json::from_str::<TaskId>(&format!("\"{text}\"")).expect("json"),
            id
        );
        // MessagePack: the same 36-character string as before the id became a UUID.
        let bytes = rmp_serde::to_vec_named(&id).expect("encode");
        assert_eq!(bytes, rmp_serde::to_vec_named(text).expect("encode"));
        assert_eq!(rmp_serde::from_slice::<TaskId>(&bytes).expect("decode"), id);
        // Wrong values are data errors naming what was expected.
        let err = serde_json::from_str::<TaskId>("\"nope\"").expect_err("garbage");
        assert!(err.is_data(), "{err}");
        assert!(err.to_string().contains("not a task id"), "{err}");
        assert!(serde_json::from_str::<TaskId>("5").is_err());
    }

    #[test]
    fn task_ids_order_as_their_text_does() {
        let ids: Vec<TaskId> = (0..50).map(|_| TaskId::generate()).collect();
        let mut by_value = ids.clone();
        by_value.sort();
        let mut by_text = ids;
        by_text.sort_by_key(|id| id.to_string());
        assert_eq!(by_value, by_text);
    }

    #[test]
    fn spec_round_trips_through_messagepack_and_json() {
        let s = spec();
        let bytes = rmp_serde::to_vec_named(&s).expect("encode");
        assert_eq!(
            rmp_serde::from_slice::<TaskSpec>(&bytes).expect("decode"),
            s
        );
        let json = serde_json::to_string(&s).expect("encode");
        assert_eq!(serde_json::from_str::<TaskSpec>(&json).expect("decode"), s);
    }

    /// The spec as it was written before it moved here, field for field: the
    /// serialized forms must not change.
    #[derive(Serialize)]
    struct PlainSpec {
        kind: String,
        params: String,
        priority: String,
        timeout_ms: Option<u64>,
        max_retries: u32,
        idempotency_key: Option<String>,
        class: Option<String>,
        request_id: Option<String>,
    }

    #[test]
    fn spec_serialized_forms_are_unchanged() {
        let s = spec();
        let plain = PlainSpec {
            kind: "echo".into(),
            params: r#"{"value":1}"#.into(),
            priority: "low".into(),
            timeout_ms: Some(5),
            max_retries: 2,
            idempotency_key: Some("k".into()),
            class: None,
            request_id: Some("r".into()),
        };
        assert_eq!(
            serde_json::to_string(&s).expect("json"),
            r#"{"kind":"echo","params":"{\"value\":1}","priority":"low","timeout_ms":5,"max_retries":2,"idempotency_key":"k","class":null,"request_id":"r"}"#
        );
        assert_eq!(
            rmp_serde::to_vec_named(&s).expect("encode"),
            rmp_serde::to_vec_named(&plain).expect("encode")
        );
    }

    #[test]
    fn status_names_round_trip_and_terminality() {
        for s in [
            TaskStatus::Queued,
            TaskStatus::Running,
            TaskStatus::Succeeded,
            TaskStatus::Failed,
            TaskStatus::Cancelled,
        ] {
            assert_eq!(s.as_str().parse::<TaskStatus>(), Ok(s));
        }
        assert!(!TaskStatus::Running.is_terminal());
        assert!(TaskStatus::Cancelled.is_terminal());
        assert_eq!(
            serde_json::to_string(&Priority::High).expect("json"),
            "\"high\""
        );
        assert_eq!(
            serde_json::from_str::<Priority>("\"low\"").expect("json"),
            Priority::Low
        );
        let err = serde_json::from_str::<Priority>("5").expect_err("number");
        assert!(
            err.is_data(),
            "a wrong type is a data error, not a syntax error: {err}"
        );
        assert!(serde_json::from_str::<Priority>("\"urgent\"").is_err());
    }
}
