//! Whose tasks a caller may see and cancel. Pure.
//!
//! | caller's scopes | reads | cancels |
//! |---|---|---|
//! | none (`--auth off`: no [`Caller`]) | every task | every task |
//! | `admin` | every task | every task |
//! | `read` (with or without `submit`) | every task | its own (`submit`); another key's: 403 |
//! | `submit` only | its own; another key's task answers 404, as if absent | its own; another's: 404 |
//!
//! "Its own" means the task's [`TaskSpec::submitted_by`] is the caller's key id; a task
//! without a submitter (created with `--auth off`) belongs to no key. Worker routes do
//! not look at the submitter: a worker runs the tasks of every submitter.
//!
//! [`TaskSpec::submitted_by`]: taskmesh_kernels::task::TaskSpec::submitted_by

use taskmesh_kernels::task::TaskSpec;

use super::middleware::Caller;
use super::scope::Scope;

/// What a caller may do with one task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Read it and cancel it.
    Full,
    /// Read it, not cancel it (a `read` key, the task of another key).
    ReadOnly,
    /// Neither: answer as if it did not exist.
    Hidden,
}

impl Caller {
    fn has(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope)
    }

    /// The key id whose tasks are the only ones this caller may list, or `None` when it
    /// may list every task (`read` or `admin`).
    pub fn list_only(&self) -> Option<&str> {
        (!self.has(Scope::Admin) && !self.has(Scope::Read)).then_some(self.key_id.as_str())
    }

    /// What this caller may do with the task of `spec`.
    pub fn access(&self, spec: &TaskSpec) -> Access {
        let own = spec.submitted_by.as_deref() == Some(self.key_id.as_str());
        if self.has(Scope::Admin) || own {
            Access::Full
        } else if self.has(Scope::Read) {
            Access::ReadOnly
        } else {
            Access::Hidden
        }
    }
}

/// Marks a spec about to be created as `caller`'s: its `submitted_by` is the key id, and
/// its idempotency key is scoped to that key (`<key id>/<key>`), so two keys that happen
/// to send the same idempotency key get a task each and never see the other's. Without a
/// caller (`--auth off`) the spec is left as it is.
pub fn stamp(spec: &mut TaskSpec, caller: Option<&Caller>) {
    let Some(caller) = caller else { return };
    spec.submitted_by = Some(caller.key_id.clone());
    if let Some(key) = &mut spec.idempotency_key {
        *key = format!("{}/{key}", caller.key_id);
    }
}

/// What `caller` (`None`: the node runs with `--auth off`) may do with the task of `spec`.
pub fn access(caller: Option<&Caller>, spec: &TaskSpec) -> Access {
    caller.map_or(Access::Full, |c| c.access(spec))
}

#[cfg(test)]
mod tests {
    use taskmesh_kernels::task::Priority;

    use super::*;

    fn caller(scopes: &[Scope]) -> Caller {
        Caller {
            key_id: "me0000000000".into(),
            scopes: scopes.to_vec(),
            rate_limit: None,
        }
    }

    fn spec(submitted_by: Option<&str>) -> TaskSpec {
        TaskSpec {
            kind: "echo".into(),
            params: "{}".into(),
            priority: Priority::Normal,
            timeout_ms: None,
            max_retries: 0,
            idempotency_key: None,
            class: None,
            request_id: None,
            submitted_by: submitted_by.map(str::to_owned),
        }
    }

    #[test]
    fn the_table_of_the_module_docs_holds() {
        use Scope::*;
        let mine = spec(Some("me0000000000"));
        let theirs = spec(Some("other0000000"));
        let nobodys = spec(None);
        let cases = [
            (
                &[Submit][..],
                [Access::Full, Access::Hidden, Access::Hidden],
            ),
            (&[Read], [Access::Full, Access::ReadOnly, Access::ReadOnly]),
            (
                &[Submit, Read],
                [Access::Full, Access::ReadOnly, Access::ReadOnly],
            ),
            (&[Admin], [Access::Full, Access::Full, Access::Full]),
        ];
        for (scopes, expected) in cases {
            let c = caller(scopes);
            let got = [&mine, &theirs, &nobodys].map(|s| c.access(s));
            assert_eq!(got, expected, "{scopes:?}");
        }
        assert_eq!(access(None, &theirs), Access::Full, "--auth off");
    }

    #[test]
    fn a_stamped_spec_names_its_key_and_scopes_its_idempotency_key() {
        let mut s = spec(None);
        s.idempotency_key = Some("k".into());
        let mut open = s.clone();
        stamp(&mut open, None);
        assert_eq!(open, s, "--auth off changes nothing");
        stamp(&mut s, Some(&caller(&[Scope::Submit])));
        assert_eq!(s.submitted_by.as_deref(), Some("me0000000000"));
        assert_eq!(s.idempotency_key.as_deref(), Some("me0000000000/k"));
    }

    #[test]
    fn only_a_submit_only_key_lists_its_own_tasks() {
        use Scope::*;
        assert_eq!(caller(&[Submit]).list_only(), Some("me0000000000"));
        assert_eq!(caller(&[Submit, Read]).list_only(), None);
        assert_eq!(caller(&[Read]).list_only(), None);
        assert_eq!(caller(&[Admin]).list_only(), None);
    }
}
