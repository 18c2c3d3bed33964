//! The codebase a newcomer opens (rust-analyzer's tidy tests): every Rust
//! file says what it is in a `//!` header, no source file outgrows a room
//! one can read, and nothing below the HTTP layer imports it.

use std::path::{Path, PathBuf};

use anyhow::Context;

/// Lines a source file may have.
const MAX_LINES: usize = 800;

/// Files still over [`MAX_LINES`], to be split (#20). A file listed here
/// that shrinks under the limit fails the test until it leaves the list.
const TOO_BIG_FOR_NOW: &[&str] = &[];

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
        let code: String = read(&file)?
            .lines()
            .map(|line| line.split("//").next().unwrap_or(""))
            .collect::<Vec<_>>()
            .join("\n");
        if let Some(found) = api_named_in(&code) {
            reaching_up.push(format!("{inside}: {found}"));
        }
    }
    assert!(
        reaching_up.is_empty(),
        "modules below `api` must not use it (move what they need below it): {reaching_up:#?}"
    );
    Ok(())
}

/// Where `code` names the `api` module, if it does: a path `crate::api…`
/// or `super::api…`, or `api` among the top-level items of a
/// `use crate::{…}` or `use super::{…}` group, over as many lines as the
/// group takes.
fn api_named_in(code: &str) -> Option<String> {
    for prefix in ["crate::", "super::"] {
        for (at, _) in code.match_indices(prefix) {
            let rest = &code[at + prefix.len()..];
            if names_api(rest) {
                return Some(format!("{prefix}{}", first_line(rest)));
            }
            if let Some(group) = rest.strip_prefix('{')
                && top_level_items(group).iter().any(|item| names_api(item))
            {
                return Some(format!("{prefix}{{{}", first_line(group)));
            }
        }
    }
    None
}

/// True when `path` starts with the segment `api`.
fn names_api(path: &str) -> bool {
    path.trim_start()
        .strip_prefix("api")
        .is_some_and(|after| !after.starts_with(|c: char| c.is_alphanumeric() || c == '_'))
}

/// The items of a `{…}` group (its opening brace already read), split at
/// its top-level commas.
fn top_level_items(group: &str) -> Vec<&str> {
    let (mut depth, mut start, mut items) = (0usize, 0, Vec::new());
    for (at, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => {
                items.push(&group[start..at]);
                return items;
            }
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&group[start..at]);
                start = at + 1;
            }
            _ => {}
        }
    }
    items
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or("")
}

#[test]
fn the_import_check_sees_every_way_of_naming_the_api() {
    for code in [
        "use crate::api::Urls;",
        "let urls = crate::api::Urls::with_base(None);",
        "use crate::{api, notify};",
        "use crate::{notify, api::Urls};",
        "use crate::{\n    notify,\n    api::Urls,\n};",
        "use crate::{store::{a, b}, api};",
        "use super::api;",
        "use super::{api, store};",
    ] {
        assert!(api_named_in(code).is_some(), "{code}");
    }
    for code in [
        "use crate::apis::Thing;",
        "use crate::urls::Urls;",
        "use crate::{notify, scheduler};",
        "use crate::{store::{api_key, b}, notify};",
        "let api_key = 1;",
    ] {
        assert!(api_named_in(code).is_none(), "{code}");
    }
}
