//! The configuration layers as figment providers, and errors that name the layer of a bad value.
//!
//! Lowest first: the built-in defaults of [`VARS`], `--config FILE` (TOML, keys in either case),
//! `.env` in the working directory, the process environment (only the declared variables) and
//! command-line flags. Every provider but the TOML file hands over text as it was written, so
//! figment never turns a password of digits into a number.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use figment::providers::{Format, Toml};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider, Source};

use super::vars::{Var, VARS};
use super::ConfigError;

/// The metadata name of each layer, as errors show it.
pub const DEFAULTS: &str = "built-in default";
pub const DOTENV: &str = ".env file";
pub const ENVIRONMENT: &str = "environment variable";
pub const FLAGS: &str = "command-line flag";

/// The raw text of each layer, before merging.
#[derive(Default)]
pub struct Layers {
    /// `--config FILE`, a TOML file whose keys are the variable names (either case).
    pub config_file: Option<PathBuf>,
    /// Contents of `.env` in the working directory.
    pub dotenv: BTreeMap<String, String>,
    /// Where [`Layers::dotenv`] was read from, for messages (default: `.env`).
    pub dotenv_file: Option<PathBuf>,
    /// The process environment, only the variables of [`VARS`].
    pub env: BTreeMap<String, String>,
    /// Settings given as command-line flags.
    pub flags: BTreeMap<String, String>,
}

impl Layers {
    /// The layers of a real process: `.env` of the working directory and the environment.
    pub fn from_process(
        config_file: Option<PathBuf>,
        flags: BTreeMap<String, String>,
    ) -> Result<Self, ConfigError> {
        let dotenv_file = Path::new(".env");
        Ok(Layers {
            config_file,
            dotenv: read_dotenv(dotenv_file)?,
            dotenv_file: Some(dotenv_file.to_path_buf()),
            env: std::env::vars()
                .filter(|(k, _)| Var::find(k).is_some())
                .collect(),
            flags,
        })
    }

    /// The layers as one figment, lowest precedence first.
    pub fn figment(self) -> Result<Figment, ConfigError> {
        let defaults = VARS
            .iter()
            .map(|v| {
                (
                    v.name.to_string(),
                    v.default.unwrap_or_default().to_string(),
                )
            })
            .collect();
        let mut figment = Figment::new().merge(Texts::new(Metadata::named(DEFAULTS), defaults));
        if let Some(path) = &self.config_file {
            if !path.is_file() {
                return Err(ConfigError(format!(
                    "config file {} does not exist",
                    path.display()
                )));
            }
            figment = figment.merge(UpperKeys(Toml::file_exact(path)));
        }
        let dotenv_file = self.dotenv_file.unwrap_or_else(|| PathBuf::from(".env"));
        let dotenv = Metadata::from(DOTENV, Source::File(absolute(&dotenv_file)));
        let env =
            Metadata::named(ENVIRONMENT).interpolater(|_: &Profile, keys: &[&str]| keys.join("."));
        let flags = Metadata::named(FLAGS).interpolater(|_: &Profile, keys: &[&str]| match keys {
            [key] => Var::find(key).map_or_else(|| key.to_string(), |v| format!("--{}", v.flag)),
            _ => keys.join("."),
        });
        Ok(figment
            .merge(Texts::new(dotenv, self.dotenv))
            .merge(Texts::new(env, self.env))
            .merge(Texts::new(flags, self.flags)))
    }
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// Reads a `.env` file into a map of the declared variables; a missing file is an empty map.
pub fn read_dotenv(path: &Path) -> Result<BTreeMap<String, String>, ConfigError> {
    if !path.exists() {
        return Ok(BTreeMap::new());
    }
    let iter = dotenvy::from_path_iter(path)
        .map_err(|e| ConfigError(format!("cannot read {}: {e}", path.display())))?;
    let mut map = BTreeMap::new();
    for item in iter {
        let (k, v) = item.map_err(|e| ConfigError(format!("{}: {e}", path.display())))?;
        if Var::find(&k).is_some() {
            map.insert(k, v);
        }
    }
    Ok(map)
}

/// A layer of variable texts (defaults, `.env`, environment, flags): each value stays the text
/// it was, only the declared variables are kept.
struct Texts {
    metadata: Metadata,
    values: BTreeMap<String, String>,
}

impl Texts {
    fn new(metadata: Metadata, values: BTreeMap<String, String>) -> Self {
        Texts { metadata, values }
    }
}

impl Provider for Texts {
    fn metadata(&self) -> Metadata {
        self.metadata.clone()
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let dict: Dict = self
            .values
            .iter()
            .filter(|(k, _)| Var::find(k).is_some())
            .map(|(k, v)| (k.clone(), Value::from(v.clone())))
            .collect();
        Ok(Map::from([(Profile::Default, dict)]))
    }
}

/// Makes TOML keys case-insensitive by upper-casing them, so `redis_port = 1` works too.
struct UpperKeys<P>(P);

impl<P: Provider> Provider for UpperKeys<P> {
    fn metadata(&self) -> Metadata {
        self.0.metadata()
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let mut data = self.0.data()?;
        for dict in data.values_mut() {
            *dict = std::mem::take(dict)
                .into_iter()
                .map(|(k, v)| (k.to_uppercase(), v))
                .collect();
        }
        Ok(data)
    }
}

/// Where a value came from, for messages: `environment variable REDIS_PORT`,
/// `command-line flag --redis-port`, `.env file /srv/.env`, `TOML file conf.toml`.
pub fn describe_source(metadata: &Metadata, key: &str) -> String {
    match &metadata.source {
        Some(source) => format!("{} {source}", metadata.name),
        None if metadata.name == DEFAULTS => metadata.name.to_string(),
        None => format!(
            "{} {}",
            metadata.name,
            metadata.interpolate(&Profile::Default, &[key])
        ),
    }
}

/// A figment error as one line per problem: `REDIS_PORT: invalid value "abc", expected a port
/// number 0-65535 (from environment variable REDIS_PORT)`.
pub fn describe_error(error: figment::Error) -> ConfigError {
    let lines: Vec<String> = error
        .into_iter()
        .map(|e| {
            let key = e.path.join(".");
            let from = e
                .metadata
                .as_ref()
                .map(|md| format!(" (from {})", describe_source(md, &key)))
                .unwrap_or_default();
            if key.is_empty() {
                format!("{}{from}", e.kind)
            } else {
                format!("{key}: {}{from}", e.kind)
            }
        })
        .collect();
    ConfigError(lines.join("; "))
}
