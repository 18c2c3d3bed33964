//! The codebase a newcomer opens (rust-analyzer's tidy tests): every Rust
//! file says what it is in a `//!` header, no source file outgrows a room
//! one can read, and nothing below the HTTP layer imports it.

use std::path::{Path, PathBuf};

use anyhow::Context;

/// Lines a source file may have.
const MAX_LINES: usize = 800;

/// Files still over [`MAX_LINES`], to be split (#20). A file listed here
/// that shrinks under the limit fails the test until it leaves the list.
const TOO_BIG_FOR_NOW: &[&str] = &["fastlane-server/src/store/mongo.rs"];

/// The server's modules above its HTTP layer: the command line and the
/// process assembly, which start the API. Everything else in
/// `fastlane-server/src` outside `api/` is below it.
const ABOVE_API: &[&str] = &["lib.rs", "main.rs", "commands.rs", "roles.rs"];

fn workspace() -> anyhow::Result<PathBuf> {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .context("the workspace root")
}

/// Every `.rs` file of the workspace, relative to its root, outside build
/// output and installed tools.
fn rust_files() -> anyhow::Result<Vec<PathBuf>> {
    let root = workspace()?;
    let mut found = Vec::new();
    let mut dirs = vec![root.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).with_context(|| format!("{}", dir.display()))? {
            let path = entry?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if path.is_dir() {
                if !matches!(
                    name,
                    "target" | "node_modules" | ".git" | "corpus" | "artifacts"
                ) {
                    dirs.push(path);
                }
            } else if name.ends_with(".rs") {
                found.push(path.strip_prefix(&root)?.to_path_buf());
            }
        }
    }
    found.sort();
    anyhow::ensure!(found.len() > 100, "only {} Rust files found", found.len());
    Ok(found)
}

fn read(relative: &Path) -> anyhow::Result<String> {
    let path = workspace()?.join(relative);
    std::fs::read_to_string(&path).with_context(|| format!("{}", path.display()))
}

#[test]
fn every_rust_file_opens_with_a_header_saying_what_it_is() -> anyhow::Result<()> {
    let mut missing = Vec::new();
    for file in rust_files()? {
        if !read(&file)?.trim_start().starts_with("//!") {
            missing.push(file.display().to_string());
        }
    }
    assert!(
        missing.is_empty(),
        "these files do not open with a `//!` header: {missing:#?}"
    );
    Ok(())
}

#[test]
fn no_source_file_outgrows_a_room_one_can_read() -> anyhow::Result<()> {
    let mut too_big = Vec::new();
    let mut split_since = Vec::new();
    for file in rust_files()? {
        let lines = read(&file)?.lines().count();
        let name = file.display().to_string();
        let listed = TOO_BIG_FOR_NOW.contains(&name.as_str());
        if lines > MAX_LINES && !listed {
            too_big.push(format!("{name}: {lines} lines"));
        }
        if lines <= MAX_LINES && listed {
            split_since.push(name);
        }
    }
    assert!(
        too_big.is_empty(),
        "over {MAX_LINES} lines, split them: {too_big:#?}"
    );
    assert!(
        split_since.is_empty(),
        "now under {MAX_LINES} lines, take them off TOO_BIG_FOR_NOW: {split_since:#?}"
    );
    Ok(())
}

#[test]
fn nothing_below_the_http_layer_imports_it() -> anyhow::Result<()> {
    let server = Path::new("fastlane-server/src");
    let mut reaching_up = Vec::new();
    for file in rust_files()? {
        let Ok(inside) = file.strip_prefix(server) else {
            continue;
        };
        let inside = inside.display().to_string();
        if inside.starts_with("api/") || ABOVE_API.contains(&inside.as_str()) {
            continue;
        }
        let text = read(&file)?;
        for (number, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            if imports_api(code) {
                reaching_up.push(format!("{inside}:{}: {}", number + 1, line.trim()));
            }
        }
    }
    assert!(
        reaching_up.is_empty(),
        "modules below `api` must not use it (move what they need below it): {reaching_up:#?}"
    );
    Ok(())
}

/// True when `code` names the `api` module: `crate::api`, `super::api`
/// from a top-level module, or `api` inside `use crate::{…}`.
fn imports_api(code: &str) -> bool {
    let words = |prefix: &str| {
        code.match_indices(prefix).any(|(at, _)| {
            let rest = &code[at + prefix.len()..];
            rest.starts_with("api")
                && !rest[3..].starts_with(|c: char| c.is_alphanumeric() || c == '_')
        })
    };
    if words("crate::") || words("super::") {
        return true;
    }
    code.split("crate::{").skip(1).any(|group| {
        group
            .split('}')
            .next()
            .unwrap_or("")
            .split(',')
            .any(|item| item.trim() == "api" || item.trim().starts_with("api::"))
    })
}

#[test]
fn the_import_check_sees_every_way_of_naming_the_api() {
    for code in [
        "use crate::api::Urls;",
        "let urls = crate::api::Urls::with_base(None);",
        "use crate::{api, notify};",
        "use crate::{notify, api::Urls};",
        "use super::api;",
    ] {
        assert!(imports_api(code), "{code}");
    }
    for code in [
        "use crate::apis::Thing;",
        "use crate::urls::Urls;",
        "use crate::{notify, scheduler};",
        "let api_key = 1;",
    ] {
        assert!(!imports_api(code), "{code}");
    }
}
