//! The crate's layers, checked on its source: backends know nothing of plans, runs, patterns or
//! the batch workflow above them, and consolidation knows nothing of the runner. Doc comments
//! may link anywhere.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Lines of code (not comments) under `dir` that name one of `forbidden`.
fn offences(dir: &str, forbidden: &[&str]) -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src").join(dir);
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    assert!(!files.is_empty(), "{}", root.display());
    let mut found = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.trim_start();
            if code.starts_with("//") {
                continue;
            }
            for name in forbidden {
                if code.contains(name) {
                    found.push(format!("{}:{}: {}", file.display(), n + 1, line.trim()));
                }
            }
        }
    }
    found
}

#[test]
fn backends_import_nothing_above_them() {
    let found = offences(
        "backend",
        &[
            "crate::run",
            "crate::plan",
            "crate::patterns",
            "crate::batch",
        ],
    );
    assert!(found.is_empty(), "{}", found.join("\n"));
}

#[test]
fn consolidation_and_the_runner_do_not_import_each_other_both_ways() {
    let found = offences("patterns", &["crate::run", "crate::batch", "crate::report"]);
    assert!(found.is_empty(), "{}", found.join("\n"));
    let found = offences("report", &["crate::run::", "crate::batch"]);
    assert!(found.is_empty(), "{}", found.join("\n"));
}
