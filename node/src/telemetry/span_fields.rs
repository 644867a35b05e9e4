//! The fields of a span in a JSON log line.
//!
//! tracing-subscriber writes a span as its fields followed by its name under the key
//! `name`. ractor's actor spans (`Actor{id, name}`) carry a field called `name` as well,
//! so every line logged inside an actor had the key `name` twice in `span`, and JSON
//! parsers kept only one of them (`"Actor"`): the actor's name was lost. [`SpanFields`]
//! writes a span field called `name` under [`ACTOR_KEY`] instead.

use std::fmt;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::FormatFields;
use tracing_subscriber::fmt::FormattedFields;
use tracing_subscriber::fmt::format::Writer;

/// The key a span field called `name` (an actor's name) is written under.
const ACTOR_KEY: &str = "actor";

/// Formats span fields as a JSON object, renaming `name` to [`ACTOR_KEY`].
#[derive(Debug, Default)]
pub(crate) struct SpanFields;

impl<'w> FormatFields<'w> for SpanFields {
    fn format_fields<R: RecordFields>(&self, mut writer: Writer<'w>, fields: R) -> fmt::Result {
        let mut visitor = JsonMap::default();
        fields.record(&mut visitor);
        write!(writer, "{}", Value::Object(visitor.0))
    }

    fn add_fields(
        &self,
        current: &'w mut FormattedFields<Self>,
        fields: &tracing::span::Record<'_>,
    ) -> fmt::Result {
        // Fields recorded after the span was created: merge them into the object.
        let mut visitor = match serde_json::from_str::<Value>(&current.fields) {
            Ok(Value::Object(map)) => JsonMap(map),
            _ => JsonMap::default(),
        };
        fields.record(&mut visitor);
        current.fields = Value::Object(visitor.0).to_string();
        Ok(())
    }
}

/// Collects fields into a JSON object.
#[derive(Default)]
struct JsonMap(Map<String, Value>);

impl JsonMap {
    fn put(&mut self, field: &Field, value: Value) {
        let key = match field.name() {
            "name" => ACTOR_KEY,
            other => other,
        };
        self.0.insert(key.to_owned(), value);
    }
}

impl Visit for JsonMap {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, Value::from(value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, Value::from(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, Value::from(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, Value::from(value));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, Value::from(value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, Value::from(format!("{value:?}")));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::fmt::MakeWriter;

    use super::*;

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Buffer {
        type Writer = Self;

        fn make_writer(&'a self) -> Self {
            self.clone()
        }
    }

    #[test]
    fn a_span_field_called_name_survives_as_actor_next_to_the_span_name() {
        let buffer = Buffer::default();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .fmt_fields(SpanFields)
            .with_writer(buffer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("Actor", id = "0.3", name = "n1/dispatcher", late = 0);
            span.record("late", 7);
            span.in_scope(|| tracing::info!(name = "event field", "hello"));
        });
        let bytes = buffer.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let line = String::from_utf8(bytes).expect("utf-8");
        let parsed: Value = serde_json::from_str(line.trim()).expect("one JSON line");
        let span = &parsed["span"];
        assert_eq!(span["actor"], "n1/dispatcher", "{line}");
        assert_eq!(span["name"], "Actor", "{line}");
        assert_eq!(span["id"], "0.3", "{line}");
        assert_eq!(span["late"], 7, "a field recorded later is merged: {line}");
        assert_eq!(
            line.matches("\"name\"").count(),
            2,
            "one in the event, one in the span: {line}"
        );
    }
}
