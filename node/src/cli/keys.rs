//! `taskmesh keys create | ls | revoke`: the keys API (`/v1/keys`, admin scope) from the
//! command line. `taskmesh keys generate` (offline) lives in [`crate::keys`].

use clap::{Args, ValueEnum};
use reqwest::Method;
use serde_json::{Value, json};

use super::Exit;
use super::args::{ClientArgs, EXIT_CODES, Output};
use super::client::{CliError, Client, REQUEST_TIMEOUT};
use super::output::{cell, compact, line, table};

/// A scope a key may be given.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum KeyScope {
    /// Create tasks; read and cancel its own; run tasks as an HTTP worker.
    Submit,
    /// Read every task and the cluster view.
    Read,
    /// Everything, including managing keys and cancelling any task.
    Admin,
}

/// `taskmesh keys create`.
#[derive(Debug, Clone, Args)]
#[command(after_help = EXIT_CODES)]
pub struct CreateArgs {
    /// A name for people (`ci`, `grafana`), 1 to 64 characters.
    #[arg(long)]
    pub name: String,

    /// What the key may do; repeat for several (`--scope submit --scope read`).
    #[arg(long = "scope", value_enum, required = true)]
    pub scopes: Vec<KeyScope>,

    /// The key stops working after this long: a number and a unit, `s`, `m`, `h`, `d`
    /// or `w` (`90m`, `30d`) [default: never].
    #[arg(long, value_parser = parse_expires_in)]
    pub expires_in: Option<u64>,

    /// Server, key and output.
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `taskmesh keys ls`.
#[derive(Debug, Clone, Args)]
#[command(after_help = EXIT_CODES)]
pub struct LsArgs {
    /// Server, key and output.
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `taskmesh keys revoke`.
#[derive(Debug, Clone, Args)]
#[command(after_help = EXIT_CODES)]
pub struct RevokeArgs {
    /// The key id (the 12 characters after `tm_`, as `keys ls` shows them).
    pub key_id: String,

    /// Server, key and output.
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `--expires-in`: seconds from `<number><unit>`.
fn parse_expires_in(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("`{text}`: expected a number and a unit, such as 30d"))?;
    let unit_secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(format!("`{text}`: the unit must be s, m, h, d or w")),
    };
    match number.checked_mul(unit_secs) {
        Some(secs) if secs > 0 => Ok(secs),
        _ => Err(format!(
            "`{text}`: must be more than 0 and not absurdly long"
        )),
    }
}

/// `taskmesh keys create`: prints the whole key (text) or the API's document (json).
pub(crate) async fn create(args: CreateArgs) -> Result<Exit, CliError> {
    let client = Client::new(&args.client)?;
    let scopes: Vec<String> = args.scopes.iter().map(|s| super::value_name(*s)).collect();
    let mut body = json!({ "name": args.name, "scopes": scopes });
    if let Some(secs) = args.expires_in {
        body["expires_in_secs"] = json!(secs);
    }
    let url = client.url(&["v1", "keys"], &[]);
    // Not retried on a lost answer: a retry would create a second key.
    let created = client
        .call(Method::POST, url, Some(&body), REQUEST_TIMEOUT)
        .await?
        .into_ok()?;
    match args.client.output {
        Output::Json => line(&compact(&created)),
        Output::Text => {
            line(&cell(&created["key"]));
            eprintln!(
                "taskmesh: created key {} ({}; scopes {}); it is shown this once: store it now",
                cell(&created["id"]),
                cell(&created["name"]),
                scopes.join(", ")
            );
        }
    }
    Ok(Exit::Success)
}

/// `taskmesh keys ls`: every key, without secrets.
pub(crate) async fn ls(args: LsArgs) -> Result<Exit, CliError> {
    let client = Client::new(&args.client)?;
    let body = client.get(&["v1", "keys"], &[]).await?;
    let keys = body["keys"].as_array().cloned().unwrap_or_default();
    match args.client.output {
        Output::Json => keys.iter().for_each(|k| line(&compact(k))),
        Output::Text => line(&table(
            &["ID", "NAME", "SCOPES", "CREATED", "EXPIRES", "REVOKED"],
            &keys.iter().map(key_row).collect::<Vec<_>>(),
        )),
    }
    Ok(Exit::Success)
}

fn key_row(key: &Value) -> Vec<String> {
    let scopes: Vec<String> = key["scopes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(cell)
        .collect();
    vec![
        cell(&key["id"]),
        cell(&key["name"]),
        scopes.join(","),
        cell(&key["created_at"]),
        cell(&key["expires_at"]),
        cell(&key["revoked_at"]),
    ]
}

/// `taskmesh keys revoke KEY_ID`.
pub(crate) async fn revoke(args: RevokeArgs) -> Result<Exit, CliError> {
    let client = Client::new(&args.client)?;
    let url = client.url(&["v1", "keys", &args.key_id], &[]);
    client
        .call(Method::DELETE, url, None, REQUEST_TIMEOUT)
        .await?
        .into_ok()?;
    match args.client.output {
        Output::Json => line(&compact(&json!({ "id": args.key_id, "revoked": true }))),
        Output::Text => line(&format!("{}  revoked", args.key_id)),
    }
    Ok(Exit::Success)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expires_in_takes_a_number_and_a_unit() {
        assert_eq!(parse_expires_in("30d"), Ok(30 * 86_400));
        assert_eq!(parse_expires_in("90m"), Ok(5_400));
        assert_eq!(parse_expires_in("1w"), Ok(604_800));
        assert_eq!(parse_expires_in("45s"), Ok(45));
        for bad in [
            "",
            "30",
            "d",
            "0d",
            "3x",
            "-1d",
            "1.5h",
            "99999999999999999999w",
        ] {
            assert!(parse_expires_in(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_key_row_shows_its_scopes_and_dashes_for_absent_times() {
        let key = json!({"id": "abc", "name": "ci", "scopes": ["read", "submit"],
            "created_at": "2026-01-01T00:00:00Z"});
        assert_eq!(
            key_row(&key),
            ["abc", "ci", "read,submit", "2026-01-01T00:00:00Z", "-", "-"]
        );
    }
}
