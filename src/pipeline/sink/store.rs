//! The place game files go: a local folder or an object store, behind one small enum.
//!
//! Both hold the same layout, `<root>/superhero/<table>/<game>_<worker>.gz`. In a folder a file
//! is written under a temporary name and renamed into place ([`super::folder`]); in an
//! object store a PUT is atomic per object, so the final name is written directly. Either way
//! META goes in place before PODIUM, so a PODIUM file always has its META beside it.
//!
//! What the exactly-once claim needs from the storage is here too: is a worker's pair complete
//! ([`Output::has_pair`]), remove a worker's files of a game ([`Output::remove_pair`]), list a
//! table ([`Output::list`], for the start-up sweep, `report` and `demo`).
//!
//! Store requests are retried by the object_store client with exponential backoff (connection
//! errors, timeouts, 5xx) for up to [`STORE_RETRY_FOR`]; past that the error reaches the worker,
//! which leaves the record unacknowledged. Errors are stripped of the credentials the process
//! holds ([`redact`]) before they reach a log line or a dead letter.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use futures_util::StreamExt;
use object_store::path::Path as StorePath;
use object_store::{
    BackoffConfig, ClientOptions, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig,
};

use super::folder::place_file;
use super::{file_name, MetaRow, PodiumRow, DATASET_DIR, META_TABLE, PODIUM_TABLE};
use crate::config::OutputDir;

/// How long one store request is retried before its error is reported.
pub const STORE_RETRY_FOR: Duration = Duration::from_secs(30);

/// An opened OUTPUT_DIR.
#[derive(Clone, Debug)]
pub enum Output {
    Folder(PathBuf),
    Store {
        store: Arc<dyn ObjectStore>,
        /// `<prefix>` inside the bucket (may be empty).
        root: StorePath,
        /// The URL, for messages (it never holds credentials).
        shown: String,
    },
}

impl Output {
    /// Opens OUTPUT_DIR. For a store this builds the client from the environment (AWS_*,
    /// GOOGLE_*, AZURE_* variables) without contacting it.
    pub fn open(dir: &OutputDir) -> Result<Output> {
        let url = match dir {
            OutputDir::Folder(path) => return Ok(Output::Folder(path.clone())),
            OutputDir::Store(url) => url,
        };
        let shown = dir.to_string();
        // The Redis client installs the same provider; whoever comes first wins.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let retry = RetryConfig {
            backoff: BackoffConfig {
                init_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_secs(5),
                base: 2.0,
            },
            max_retries: 20,
            retry_timeout: STORE_RETRY_FOR,
        };
        let client = ClientOptions::new()
            .with_timeout(Duration::from_secs(30))
            .with_connect_timeout(Duration::from_secs(5));
        let store: Arc<dyn ObjectStore> = match url.scheme() {
            "s3" | "s3a" => {
                let mut builder = object_store::aws::AmazonS3Builder::from_env()
                    .with_url(url.as_str())
                    .with_retry(retry)
                    .with_client_options(client);
                // An explicit plain-http endpoint (MinIO, a local test server) means http.
                if endpoint_from_env().is_some_and(|e| e.starts_with("http://")) {
                    builder = builder.with_allow_http(true);
                }
                Arc::new(builder.build().map_err(|e| store_error(e, &shown))?)
            }
            "gs" => Arc::new(
                object_store::gcp::GoogleCloudStorageBuilder::from_env()
                    .with_url(url.as_str())
                    .with_retry(retry)
                    .with_client_options(client)
                    .build()
                    .map_err(|e| store_error(e, &shown))?,
            ),
            _ => Arc::new(
                object_store::azure::MicrosoftAzureBuilder::from_env()
                    .with_url(url.as_str())
                    .with_retry(retry)
                    .with_client_options(client)
                    .build()
                    .map_err(|e| store_error(e, &shown))?,
            ),
        };
        let root = StorePath::from_url_path(url.path())
            .map_err(|e| anyhow::anyhow!("{shown}: not a valid object prefix: {e}"))?;
        Ok(Output::Store { store, root, shown })
    }

    /// The local folder, if this is one.
    pub fn folder(&self) -> Option<&Path> {
        match self {
            Output::Folder(path) => Some(path),
            Output::Store { .. } => None,
        }
    }

    /// Where a table's files are, for messages: a folder path or a URL.
    pub fn table_location(&self, table: &str) -> String {
        match self {
            Output::Folder(path) => super::table_dir(path, table).display().to_string(),
            Output::Store { shown, .. } => format!("{shown}/{DATASET_DIR}/{table}"),
        }
    }

    /// The dataset's location (`<OUTPUT_DIR>/superhero`), for messages.
    pub fn dataset_location(&self) -> String {
        match self {
            Output::Folder(path) => path.join(DATASET_DIR).display().to_string(),
            Output::Store { shown, .. } => format!("{shown}/{DATASET_DIR}"),
        }
    }

    fn object(root: &StorePath, table: &str, name: &str) -> StorePath {
        root.clone()
            .join(DATASET_DIR)
            .join(table)
            .join(name.to_string())
    }

    /// Writes `worker_id`'s two Parquet files of `game`: the only writer of game files. META
    /// goes in place first and PODIUM last, so a PODIUM file always has its META beside it.
    /// Nothing is written when the game token or the worker id would not make a safe file name
    /// ([`super::encode_game`] checks both).
    pub async fn write_game(
        &self,
        worker_id: &str,
        game: &str,
        meta: Vec<MetaRow>,
        podium: Vec<PodiumRow>,
    ) -> Result<()> {
        match self {
            Output::Folder(dir) => {
                let (dir, id, g) = (dir.clone(), worker_id.to_string(), game.to_string());
                // Encoding and the fsyncs block: off the async threads.
                tokio::task::spawn_blocking(move || {
                    let (meta_bytes, podium_bytes) = super::encode_game(&id, &g, &meta, &podium)?;
                    place_file(&super::file_path(&dir, META_TABLE, &g, &id), &meta_bytes)?;
                    place_file(
                        &super::file_path(&dir, PODIUM_TABLE, &g, &id),
                        &podium_bytes,
                    )
                })
                .await
                .context("the writing thread failed")?
            }
            Output::Store { store, root, shown } => {
                let (meta_bytes, podium_bytes) =
                    super::encode_game(worker_id, game, &meta, &podium)?;
                let name = file_name(game, worker_id);
                for (table, bytes) in [(META_TABLE, meta_bytes), (PODIUM_TABLE, podium_bytes)] {
                    let object = Self::object(root, table, &name);
                    store
                        .put(&object, PutPayload::from(bytes))
                        .await
                        .map_err(|e| store_error(e, shown))
                        .with_context(|| {
                            format!(
                                "cannot write {shown}/{object_tail}",
                                object_tail = tail(&object, root)
                            )
                        })?;
                }
                Ok(())
            }
        }
    }

    /// Whether both of `worker`'s files of `game` are in place.
    pub async fn has_pair(&self, game: &str, worker: &str) -> Result<bool> {
        let name = file_name(game, worker);
        for table in [META_TABLE, PODIUM_TABLE] {
            let present = match self {
                Output::Folder(dir) => dir.join(DATASET_DIR).join(table).join(&name).is_file(),
                Output::Store { store, root, shown } => {
                    match store.head(&Self::object(root, table, &name)).await {
                        Ok(_) => true,
                        Err(object_store::Error::NotFound { .. }) => false,
                        Err(e) => return Err(store_error(e, shown)),
                    }
                }
            };
            if !present {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Removes `worker`'s files of `game`: final and (in a folder) temporary. Every file is
    /// tried; the first that could not be removed is the error (a file already gone is not).
    pub async fn remove_pair(&self, game: &str, worker: &str) -> Result<()> {
        match self {
            Output::Folder(dir) => remove_folder_pair(dir, game, worker),
            Output::Store { store, root, shown } => {
                let name = file_name(game, worker);
                let mut first_error = None;
                for table in [META_TABLE, PODIUM_TABLE] {
                    match store.delete(&Self::object(root, table, &name)).await {
                        Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                        Err(e) => {
                            let e = store_error(e, shown).context(format!(
                                "cannot remove {}/{name}",
                                self.table_location(table)
                            ));
                            first_error.get_or_insert(e);
                        }
                    }
                }
                first_error.map_or(Ok(()), Err)
            }
        }
    }

    /// [`Self::remove_pair`] where a failure changes nothing but a warning: files of ours that
    /// are not the output, which `report` names if they stay.
    pub async fn remove_pair_or_warn(&self, game: &str, worker: &str) {
        if let Err(e) = self.remove_pair(game, worker).await {
            tracing::warn!("{e:#}");
        }
    }

    /// Removes one file of a table by name (a leftover temporary file of a folder).
    pub async fn remove_name(&self, table: &str, name: &str) {
        match self {
            Output::Folder(dir) => remove_if_present(&dir.join(DATASET_DIR).join(table).join(name)),
            Output::Store { store, root, shown } => {
                if let Err(e) = store.delete(&Self::object(root, table, name)).await {
                    if !matches!(e, object_store::Error::NotFound { .. }) {
                        tracing::warn!("cannot remove {name}: {:#}", store_error(e, shown));
                    }
                }
            }
        }
    }

    /// The names of the files of a table, sorted (in a folder, temporary names too). A table
    /// nobody has written to yet is empty.
    pub async fn list(&self, table: &str) -> Result<Vec<String>> {
        let mut names = match self {
            Output::Folder(dir) => {
                let dir = super::table_dir(dir, table);
                let entries = match std::fs::read_dir(&dir) {
                    Ok(entries) => entries,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
                    Err(e) => {
                        return Err(e).with_context(|| format!("cannot list {}", dir.display()))
                    }
                };
                let mut names = Vec::new();
                for entry in entries {
                    let entry = entry.with_context(|| format!("cannot list {}", dir.display()))?;
                    names.push(entry.file_name().to_string_lossy().to_string());
                }
                names
            }
            Output::Store { store, root, shown } => {
                let prefix = root.clone().join(DATASET_DIR).join(table);
                let mut listing = store.list(Some(&prefix));
                let mut names = Vec::new();
                while let Some(meta) = listing.next().await {
                    let meta = meta
                        .map_err(|e| store_error(e, shown))
                        .with_context(|| format!("cannot list {}", self.table_location(table)))?;
                    if let Some(name) = meta.location.filename() {
                        names.push(name.to_string());
                    }
                }
                names
            }
        };
        names.sort();
        Ok(names)
    }

    /// The bytes of one file of a table.
    pub async fn read(&self, table: &str, name: &str) -> Result<Vec<u8>> {
        match self {
            Output::Folder(dir) => {
                let path = super::table_dir(dir, table).join(name);
                std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))
            }
            Output::Store { store, root, shown } => {
                let object = Self::object(root, table, name);
                let got = async { store.get(&object).await?.bytes().await }.await;
                got.map(|b| b.to_vec())
                    .map_err(|e| store_error(e, shown))
                    .with_context(|| format!("cannot read {}/{name}", self.table_location(table)))
            }
        }
    }

    /// Reads a GAME_META file by name.
    pub async fn read_meta(&self, name: &str) -> Result<Vec<MetaRow>> {
        super::meta_from_bytes(self.read(META_TABLE, name).await?)
    }

    /// Reads a GAME_PODIUM file by name.
    pub async fn read_podium(&self, name: &str) -> Result<Vec<PodiumRow>> {
        super::podium_from_bytes(self.read(PODIUM_TABLE, name).await?)
    }
}

fn tail(object: &StorePath, root: &StorePath) -> String {
    object
        .prefix_match(root)
        .map(|parts| {
            parts
                .map(|p| p.as_ref().to_string())
                .collect::<Vec<_>>()
                .join("/")
        })
        .unwrap_or_else(|| object.to_string())
}

fn endpoint_from_env() -> Option<String> {
    ["AWS_ENDPOINT_URL", "AWS_ENDPOINT"]
        .iter()
        .find_map(|k| std::env::var(k).ok())
}

/// A store error as one line, without credentials.
fn store_error(e: object_store::Error, shown: &str) -> anyhow::Error {
    anyhow::anyhow!("{}", redact(&format!("{shown}: {e}")))
}

/// Variables whose values must never appear in a message.
const SECRET_VARIABLES: &[&str] = &[
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "GOOGLE_SERVICE_ACCOUNT_KEY",
    "AZURE_STORAGE_ACCOUNT_KEY",
    "AZURE_STORAGE_ACCESS_KEY",
    "AZURE_STORAGE_SAS_KEY",
    "AZURE_CLIENT_SECRET",
];

/// `text` with the value of every credential variable of this process replaced by `***`
/// (a store's error body may echo the access key id, for one).
pub fn redact(text: &str) -> String {
    let mut out = text.to_string();
    for var in SECRET_VARIABLES {
        if let Ok(secret) = std::env::var(var) {
            if secret.len() >= 4 {
                out = out.replace(&secret, "***");
            }
        }
    }
    out.replace('\n', " ")
}

/// Removes `worker`'s files of `game` under folder `dir`, final and temporary; the first
/// failure is the error, after trying every file.
fn remove_folder_pair(dir: &Path, game: &str, worker: &str) -> Result<()> {
    let name = file_name(game, worker);
    let mut first_error = None;
    let mut note = |result: Result<()>| {
        if let Err(e) = result {
            first_error.get_or_insert(e);
        }
    };
    for table in [META_TABLE, PODIUM_TABLE] {
        let table_dir = super::table_dir(dir, table);
        note(remove_file_if_present(&table_dir.join(&name)));
        let entries = match std::fs::read_dir(&table_dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                note(Err(e).with_context(|| format!("cannot list {}", table_dir.display())));
                continue;
            }
        };
        for entry in entries.flatten() {
            let file = entry.file_name();
            let file = file.to_string_lossy();
            if super::final_name_of_temporary(&file) == Some(name.as_str()) {
                note(remove_file_if_present(&entry.path()));
            }
        }
    }
    first_error.map_or(Ok(()), Err)
}

fn remove_file_if_present(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("cannot remove {}", path.display()))
        }
        _ => Ok(()),
    }
}

fn remove_if_present(path: &Path) {
    if let Err(e) = remove_file_if_present(path) {
        tracing::warn!("{e:#}");
    }
}
