//! Where the output goes, as OUTPUT_DIR says: a local folder (a plain path or `file:///path`)
//! or an object store URL (`s3://bucket/prefix`, and `gs://`, `az://` where the object_store
//! crate supports them). Parsing only: the sink's `Output::open` opens it. It lives with the
//! settings, below the pipeline, so that reading the settings never reaches into the sink.

use std::fmt;
use std::path::PathBuf;

/// URL schemes handed to the object store, as the object_store crate names them.
const STORE_SCHEMES: &[&str] = &["s3", "s3a", "gs", "az", "adl", "azure", "abfs", "abfss"];

/// A parsed OUTPUT_DIR.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OutputDir {
    Folder(PathBuf),
    /// An object store URL; never holds credentials (they are refused by [`OutputDir::parse`]).
    Store(url::Url),
}

impl OutputDir {
    /// Reads OUTPUT_DIR. Anything shaped `scheme://…` is a URL and must have a supported scheme;
    /// anything else is a folder path, as it always was. The error never repeats a credential.
    pub fn parse(text: &str) -> Result<OutputDir, String> {
        let Some((scheme, _)) = text.split_once("://").filter(|(s, _)| is_scheme(s)) else {
            return Ok(OutputDir::Folder(PathBuf::from(text)));
        };
        let url = url::Url::parse(text).map_err(|e| format!("not a valid URL: {e}"))?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err(
                "credentials do not belong in the URL; set AWS_ACCESS_KEY_ID and \
                 AWS_SECRET_ACCESS_KEY (or the store's own variables) instead"
                    .into(),
            );
        }
        let scheme = scheme.to_ascii_lowercase();
        if scheme == "file" {
            if url
                .host_str()
                .is_some_and(|h| !h.is_empty() && h != "localhost")
            {
                return Err("a file:// URL must name a local path (file:///path)".into());
            }
            return url
                .to_file_path()
                .map(OutputDir::Folder)
                .map_err(|()| "a file:// URL must name an absolute local path".into());
        }
        if !STORE_SCHEMES.contains(&scheme.as_str()) {
            return Err(format!(
                "unsupported scheme {scheme:?}: expected a folder, file:///path, s3://bucket/prefix, \
                 gs://bucket/prefix or az://container/prefix"
            ));
        }
        if url.host_str().unwrap_or("").is_empty() {
            return Err(format!(
                "{scheme}:// needs a bucket: {scheme}://bucket/prefix"
            ));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(
                "a store URL takes no ?query or #fragment; settings come from the \
                 environment (AWS_ENDPOINT_URL, AWS_REGION, ...)"
                    .into(),
            );
        }
        Ok(OutputDir::Store(url))
    }

    /// The local folder, if the output is one.
    pub fn folder(&self) -> Option<&std::path::Path> {
        match self {
            OutputDir::Folder(path) => Some(path),
            OutputDir::Store(_) => None,
        }
    }
}

/// The form OUTPUT_DIR takes back (a child process is given this).
impl fmt::Display for OutputDir {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OutputDir::Folder(path) => write!(f, "{}", path.display()),
            OutputDir::Store(url) => write!(f, "{}", url.as_str().trim_end_matches('/')),
        }
    }
}

fn is_scheme(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_urls_and_refusals() {
        assert_eq!(
            OutputDir::parse("./data").unwrap(),
            OutputDir::Folder("./data".into())
        );
        assert_eq!(
            OutputDir::parse("file:///tmp/out").unwrap(),
            OutputDir::Folder("/tmp/out".into())
        );
        let s3 = OutputDir::parse("s3://bucket/run/1").unwrap();
        assert!(matches!(&s3, OutputDir::Store(u) if u.host_str() == Some("bucket")));
        assert_eq!(s3.to_string(), "s3://bucket/run/1");
        assert!(OutputDir::parse("gs://bucket").is_ok());
        // A folder whose name merely holds a colon stays a folder.
        assert!(matches!(
            OutputDir::parse("s3:bucket").unwrap(),
            OutputDir::Folder(_)
        ));
        for bad in [
            "ftp://host/x",
            "http://host/x",
            "s3:///prefix",
            "file://otherhost/x",
            "s3://bucket/x?region=1",
        ] {
            assert!(OutputDir::parse(bad).is_err(), "{bad}");
        }
        let err = OutputDir::parse("s3://AKIAKEY:s3cr3t@bucket/x").unwrap_err();
        assert!(!err.contains("s3cr3t") && !err.contains("AKIAKEY"), "{err}");
    }
}
