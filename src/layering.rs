//! The import graph points down only: `ops` (operator commands) may use `roles`, which may use
//! `pipeline`, which may use `config`; never the other way. A role that reached into an operator
//! command, or settings that reached into the sink, would tie the flow to what sits around it,
//! so this test reads the sources and names any arrow that runs back up.

use std::path::{Path, PathBuf};

/// (folder under `src/`, what its files must never mention)
const RULES: &[(&str, &[&str])] = &[
    ("roles", &["crate::ops"]),
    ("pipeline", &["crate::ops", "crate::roles"]),
    ("config", &["crate::ops", "crate::roles", "crate::pipeline"]),
];

fn rust_files(dir: &Path, found: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, found);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            found.push(path);
        }
    }
}

#[test]
fn no_arrow_runs_back_up() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut wrong = Vec::new();
    for (folder, forbidden) in RULES {
        let mut files = Vec::new();
        rust_files(&src.join(folder), &mut files);
        assert!(!files.is_empty(), "src/{folder} holds no Rust files");
        for file in files {
            let text = std::fs::read_to_string(&file).expect("a readable source file");
            for (n, line) in text.lines().enumerate() {
                for name in *forbidden {
                    if line.contains(name) {
                        let shown = file.strip_prefix(&src).unwrap_or(&file).display();
                        wrong.push(format!("src/{shown}:{}: {}", n + 1, line.trim()));
                    }
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports that run back up:\n{}",
        wrong.join("\n")
    );
}
