//! API keys on the node's side: `taskmesh keys generate` (offline; `keys create`, `ls`
//! and `revoke` speak to a node, in [`crate::cli::keys`]), and the bootstrap admin key a
//! node with `--auth on` (the default) makes sure of at start.
//!
//! # Bootstrap
//! - `TASKMESH_ADMIN_KEY` (or `--admin-key-file`) names a key: it is stored as the admin
//!   key `bootstrap` unless its id is already stored (idempotent across restarts, and
//!   across the nodes of a cluster sharing a store: the store writes one of them).
//! - Neither, and the store holds no key: the node creates an admin key, writes it to
//!   `<data-dir>/admin.key` (mode 0600; the directory is created if needed) and logs the
//!   path, never the key. The file is written before the key is stored, so a node that
//!   fails in between leaves a useless file, never a stored key nobody has.
//! - Otherwise nothing happens.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Subcommand;
use taskmesh_actors::auth::key::{ApiKey, KeyRecord};
use taskmesh_actors::auth::scope::Scope;
use taskmesh_actors::store::TaskStore;
use taskmesh_actors::task::now_ms;

use crate::config::{AdminKeySource, AuthSettings};

/// The file a node writes its generated admin key to, inside `--data-dir`.
pub const ADMIN_KEY_FILE: &str = "admin.key";

/// `taskmesh keys …`.
#[derive(Debug, Clone, Subcommand)]
pub enum KeysCommand {
    /// Print a fresh, well-formed key (`tm_<key id>_<secret>`) on stdout, offline: for
    /// TASKMESH_ADMIN_KEY. No node is contacted and nothing is stored.
    Generate,
    /// Create a key on the node and print it whole on stdout (shown this once); with
    /// `--output json`, the API's document. Needs an admin key.
    Create(crate::cli::keys::CreateArgs),
    /// List the keys (ids, names, scopes, times; never a secret). Needs an admin key.
    Ls(crate::cli::keys::LsArgs),
    /// Revoke a key by its id: it stops working on every node within about a second.
    /// Needs an admin key.
    Revoke(crate::cli::keys::RevokeArgs),
}

/// Runs a `taskmesh keys` subcommand. The online ones (`create`, `ls`, `revoke`) exit
/// the process with their documented exit code.
pub fn run(command: KeysCommand) -> anyhow::Result<()> {
    use crate::cli::KeysClient;
    let online = match command {
        KeysCommand::Generate => {
            let mut out = std::io::stdout().lock();
            writeln!(out, "{}", ApiKey::generate().expose()).context("writing to stdout")?;
            return Ok(());
        }
        KeysCommand::Create(args) => KeysClient::Create(args),
        KeysCommand::Ls(args) => KeysClient::Ls(args),
        KeysCommand::Revoke(args) => KeysClient::Revoke(args),
    };
    std::process::exit(crate::cli::run_keys(online).into())
}

/// What [`bootstrap`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bootstrapped {
    /// The configured key was stored as `bootstrap`.
    Stored(String),
    /// The configured key's id was already stored.
    AlreadyStored(String),
    /// A key was created and written to this file.
    Created(PathBuf),
    /// The store holds keys and none was configured: nothing to do.
    Nothing,
}

/// Makes sure a node with `--auth on` has an admin key (see the module docs).
pub async fn bootstrap(
    store: &dyn TaskStore,
    settings: &AuthSettings,
    data_dir: &Path,
) -> anyhow::Result<Bootstrapped> {
    let configured = match &settings.admin_key {
        Some(AdminKeySource::Env(key)) => Some(key.clone()),
        Some(AdminKeySource::File(path)) => Some(read_key_file(path)?),
        None => None,
    };
    if let Some(key) = configured {
        let record = KeyRecord::new(&key, "bootstrap", vec![Scope::Admin], now_ms(), None);
        let stored = store
            .put_key(record)
            .await
            .context("storing the bootstrap admin key")?;
        return Ok(if stored {
            Bootstrapped::Stored(key.id().to_owned())
        } else {
            Bootstrapped::AlreadyStored(key.id().to_owned())
        });
    }
    let keys = store.list_keys().await.context("listing the API keys")?;
    if !keys.is_empty() {
        return Ok(Bootstrapped::Nothing);
    }
    let key = ApiKey::generate();
    let path = data_dir.join(ADMIN_KEY_FILE);
    write_key_file(&path, &key)?;
    let record = KeyRecord::new(&key, "admin", vec![Scope::Admin], now_ms(), None);
    store
        .put_key(record)
        .await
        .context("storing the generated admin key")?;
    Ok(Bootstrapped::Created(path))
}

fn read_key_file(path: &Path) -> anyhow::Result<ApiKey> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading --admin-key-file {}", path.display()))?;
    match text.trim().parse() {
        Ok(key) => Ok(key),
        Err(_) => bail!(
            "--admin-key-file {} does not hold a well-formed key (tm_<12 chars>_<32 chars>; \
             `taskmesh keys generate` prints one)",
            path.display()
        ),
    }
}

/// Writes `key` to `path` (mode 0600, through a temporary file and a rename).
fn write_key_file(path: &Path, key: &ApiKey) -> anyhow::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let dir = path
        .parent()
        .context("the admin key file has no directory")?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = path.with_extension("key.tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("restricting {}", tmp.display()))?;
    writeln!(file, "{}", key.expose()).with_context(|| format!("writing {}", tmp.display()))?;
    file.sync_all()
        .with_context(|| format!("syncing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use taskmesh_actors::store::memory::MemoryStore;

    use super::*;

    fn settings(admin_key: Option<AdminKeySource>) -> AuthSettings {
        AuthSettings {
            enabled: true,
            protect_metrics: false,
            admin_key,
        }
    }

    #[tokio::test]
    async fn an_empty_store_gets_an_admin_key_in_a_private_file_once() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let data = dir.path().join("data");
        let store = MemoryStore::new();
        let done = bootstrap(&store, &settings(None), &data).await?;
        let path = data.join(ADMIN_KEY_FILE);
        assert_eq!(done, Bootstrapped::Created(path.clone()));
        let mode = std::fs::metadata(&path)?.permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let key: ApiKey = std::fs::read_to_string(&path)?.trim().parse()?;
        let stored = store.get_key(key.id()).await?.context("stored")?;
        assert_eq!(stored.scopes, vec![Scope::Admin]);
        assert_eq!(stored.secret_hash, key.secret_hash());

        assert_eq!(
            bootstrap(&store, &settings(None), &data).await?,
            Bootstrapped::Nothing,
            "a second start keeps the first key"
        );
        assert_eq!(store.list_keys().await?.len(), 1);
        Ok(())
    }

    #[tokio::test]
    async fn a_configured_key_is_stored_once_and_no_file_is_written() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let store = MemoryStore::new();
        let key = ApiKey::generate();
        let configured = settings(Some(AdminKeySource::Env(key.clone())));
        let id = key.id().to_owned();
        assert_eq!(
            bootstrap(&store, &configured, dir.path()).await?,
            Bootstrapped::Stored(id.clone())
        );
        assert_eq!(
            bootstrap(&store, &configured, dir.path()).await?,
            Bootstrapped::AlreadyStored(id.clone())
        );
        let stored = store.list_keys().await?;
        assert_eq!(stored.len(), 1);
        assert_eq!(stored[0].name, "bootstrap");
        assert!(!dir.path().join(ADMIN_KEY_FILE).exists());

        let file = dir.path().join("given.key");
        std::fs::write(&file, format!("{}\n", key.expose()))?;
        let from_file = settings(Some(AdminKeySource::File(file.clone())));
        assert_eq!(
            bootstrap(&store, &from_file, dir.path()).await?,
            Bootstrapped::AlreadyStored(id)
        );
        std::fs::write(&file, "not a key")?;
        let err = bootstrap(&store, &from_file, dir.path())
            .await
            .expect_err("malformed file");
        assert!(!format!("{err:#}").contains("not a key"));
        Ok(())
    }
}
