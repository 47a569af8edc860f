//! Tidy checks over the source tree (after rust-analyzer's `xtask/src/tidy.rs`): every source
//! file opens with a `//!` line saying what the room is for; no use-case module of
//! `shared/src/app` imports another (they stand on `support`, the request types, the domain, the
//! store and the AWS port); the server and the worker reach the use cases only; the CLI speaks
//! the API only.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::path::{Path, PathBuf};

/// The workspace root (this crate is `tests/`).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

/// Every `.rs` file under `dir`, `target` and hidden folders left out.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read dir") {
            let path = entry.expect("entry").path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            if path.is_dir() {
                if name != "target" && !name.starts_with('.') {
                    stack.push(path);
                }
            } else if name.ends_with(".rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// The use-case modules of `shared/src/app`: its files and folders but `mod.rs`, `requests.rs`,
/// `support` and `jobs`.
fn use_case_modules(app: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(app)
        .expect("app dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter_map(|p| p.file_stem().and_then(|s| s.to_str()).map(str::to_owned))
        .filter(|n| !["mod", "requests", "support", "jobs"].contains(&n.as_str()))
        .collect();
    names.sort();
    names
}

/// `text` without `//` comments (doc comments included) and string literals' contents, so
/// that only code is searched.
fn code_only(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let mut in_str = false;
        let mut prev = '\0';
        let mut kept = String::new();
        let chars: Vec<char> = line.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            if !in_str && c == '/' && chars.get(i + 1) == Some(&'/') {
                break;
            }
            if c == '"' && prev != '\\' {
                in_str = !in_str;
            } else if !in_str {
                kept.push(c);
            }
            prev = c;
            i += 1;
        }
        out.push_str(&kept);
        out.push('\n');
    }
    out
}

/// The use-case modules (of `modules`, other than `own`) that `text` imports or names by path:
/// `super::m`, `crate::app::m`, or `m` inside a `use super::{…}` / `use crate::app::{…}` group.
fn sideways_imports(own: &str, text: &str, modules: &[String]) -> Vec<String> {
    let code: String = code_only(text).split_whitespace().collect::<Vec<_>>().join(" ");
    let code = code.replace(" ::", "::").replace(":: ", "::");
    let mut found = Vec::new();
    for m in modules.iter().filter(|m| m.as_str() != own) {
        let named_by_path = ["super::", "crate::app::"].iter().any(|prefix| {
            let needle = format!("{prefix}{m}");
            code.match_indices(&needle).any(|(i, _)| {
                let before_ok = i == 0 || !code[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_');
                let after = code[i + needle.len()..].chars().next();
                before_ok && !after.is_some_and(|c| c.is_alphanumeric() || c == '_')
            })
        });
        let in_group = ["super::{", "crate::app::{"].iter().any(|prefix| {
            code.match_indices(prefix).any(|(i, _)| {
                let rest = &code[i + prefix.len()..];
                let group = &rest[..rest.find('}').unwrap_or(rest.len())];
                group.split([',', '{', ' ']).any(|item| item.trim() == m || item.trim().starts_with(&format!("{m}::")))
            })
        });
        if named_by_path || in_group {
            found.push(m.clone());
        }
    }
    found
}

#[test]
fn every_source_file_opens_with_a_doc_line() {
    let root = root();
    let mut missing = Vec::new();
    for dir in ["proto", "shared", "server", "worker", "cli", "tests"] {
        for f in rust_files(&root.join(dir)) {
            let text = std::fs::read_to_string(&f).expect("read");
            if !text.starts_with("//!") {
                missing.push(f.strip_prefix(&root).unwrap_or(&f).display().to_string());
            }
        }
    }
    assert!(missing.is_empty(), "files without a first-line //! comment:\n{}", missing.join("\n"));
}

#[test]
fn no_use_case_module_imports_another() {
    let app = root().join("shared/src/app");
    let modules = use_case_modules(&app);
    assert!(modules.len() >= 7, "use-case modules not found: {modules:?}");
    let mut bad = Vec::new();
    for f in rust_files(&app) {
        let rel = f.strip_prefix(&app).unwrap_or(&f).to_path_buf();
        let own = rel.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_owned();
        // A use-case module, `support` or `jobs` (the room's own mod.rs re-exports the modules).
        if rel == Path::new("mod.rs") {
            continue;
        }
        // A file of a use-case module's folder (`rotation/saga.rs`) belongs to that module;
        // `support` and `jobs` belong to none.
        let first = rel.components().next().and_then(|c| c.as_os_str().to_str()).unwrap_or_default();
        let own = match rel.components().count() {
            1 => own,
            _ if modules.iter().any(|m| m == first) => first.to_owned(),
            _ => String::new(),
        };
        let text = std::fs::read_to_string(&f).expect("read");
        for m in sideways_imports(&own, &text, &modules) {
            bad.push(format!("shared/src/app/{} imports the use-case module {m}", rel.display()));
        }
    }
    assert!(bad.is_empty(), "sideways imports (import support instead):\n{}", bad.join("\n"));
}

#[test]
fn the_check_sees_sideways_imports() {
    let modules: Vec<String> = ["byok", "keys", "sync"].map(String::from).to_vec();
    let caught = |text: &str| sideways_imports("byok", text, &modules);
    assert_eq!(caught("use super::keys::NewKey;"), vec!["keys"]);
    assert_eq!(caught("use super::{Ctx, keys::NewKey, Keyward};"), vec!["keys"]);
    assert_eq!(caught("use super::{sync, Ctx};"), vec!["sync"]);
    assert_eq!(caught("let x = crate::app::sync::run();"), vec!["sync"]);
    assert!(caught("use super::support::aws_keys::next_check;").is_empty());
    assert!(caught("use crate::crypto::keys as ck;").is_empty());
    assert!(caught("use super::byok::Own;").is_empty(), "its own module");
    assert!(caught("// see super::keys::NewKey\nuse super::support::checks;").is_empty(), "comments are not code");
}

#[test]
fn the_binaries_call_use_cases_only() {
    let root = root();
    let mut bad = Vec::new();
    for dir in ["server/src", "worker/src"] {
        for f in rust_files(&root.join(dir)) {
            let code = code_only(&std::fs::read_to_string(&f).expect("read"));
            for needle in [".store()", "kms::faults", "keyward_shared::store", "sea_orm", "aws_sdk_kms"] {
                if code.contains(needle) {
                    bad.push(format!("{} uses {needle}", f.strip_prefix(&root).unwrap_or(&f).display()));
                }
            }
        }
    }
    assert!(bad.is_empty(), "the server and the worker call use cases only:\n{}", bad.join("\n"));
}

#[test]
fn the_cli_speaks_the_api_only() {
    let root = root();
    let manifest = std::fs::read_to_string(root.join("cli/Cargo.toml")).expect("cli/Cargo.toml");
    let deps = manifest.split("[dev-dependencies]").next().unwrap_or_default();
    let mut bad = Vec::new();
    for name in ["keyward-shared", "keyward-server", "keyward-worker", "sea-orm", "aws-sdk-kms"] {
        if deps.contains(name) {
            bad.push(format!("cli/Cargo.toml depends on {name}"));
        }
    }
    for f in rust_files(&root.join("cli/src")) {
        let code = code_only(&std::fs::read_to_string(&f).expect("read"));
        for needle in ["keyward_shared", "keyward_server", "keyward_worker", "sea_orm", "aws_sdk_kms"] {
            if code.contains(needle) {
                bad.push(format!("{} uses {needle}", f.strip_prefix(&root).unwrap_or(&f).display()));
            }
        }
    }
    assert!(bad.is_empty(), "the CLI is a client of the gRPC API (keyward-proto) only:\n{}", bad.join("\n"));
}
