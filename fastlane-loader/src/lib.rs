//! # fastlane-loader
//!
//! Loads plugin libraries (`PLUGINS` in the server's configuration) and
//! registers what they contain. This crate holds all of fastlane's
//! `unsafe` code; every block says why it is sound.
//!
//! Loading a library is trusting it: its initialisers run when it is
//! opened, with the server's privileges. What the loader guards against is
//! the honest mistake, a library built for another server:
//!
//! 1. it looks up [`DECLARATION_SYMBOL`]; a library without it is refused;
//! 2. it reads the declaration's ABI version (a `u32` first in every
//!    version) and refuses any but its own;
//! 3. it reads the fingerprint (SDK version, compiler, target, features,
//!    type sizes) and refuses a library whose fingerprint differs from the
//!    server's, naming both;
//! 4. only then does it call the library's registration function, into a
//!    registry of its own, and merges that into the server's.
//!
//! Libraries are never unloaded: their code backs trait objects the server
//! keeps for its whole life.
//!
//! [`DECLARATION_SYMBOL`]: fastlane_sdk::dynamic::DECLARATION_SYMBOL

use std::ffi::{CStr, c_char};
use std::path::{Path, PathBuf};

use fastlane_sdk::dynamic::{self, ABI_VERSION, DECLARATION_SYMBOL, Host, PluginDeclaration};
use fastlane_sdk::{PluginError, Registry};

/// Why a library was not loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The dynamic linker could not open it.
    #[error("cannot open plugin library {path}: {source}")]
    Open {
        /// The library.
        path: PathBuf,
        /// The linker's error.
        source: libloading::Error,
    },
    /// It does not export a declaration.
    #[error(
        "{path} is not a fastlane plugin: it does not export `{DECLARATION_SYMBOL}` \
         (plugins declare themselves with `fastlane_sdk::declare_plugin!`)"
    )]
    NotAPlugin {
        /// The library.
        path: PathBuf,
    },
    /// Its declaration has another layout.
    #[error(
        "{path} declares plugin ABI version {found}, but this server reads version {expected}; \
         rebuild the plugin against this server's fastlane-sdk"
    )]
    AbiVersion {
        /// The library.
        path: PathBuf,
        /// The library's ABI version.
        found: u32,
        /// The server's.
        expected: u32,
    },
    /// It was built by another compiler or against another SDK.
    #[error(
        "{path} was built as `{found}`, but this server is `{expected}`; \
         rebuild the plugin with the same fastlane-sdk version and compiler as the server"
    )]
    Fingerprint {
        /// The library.
        path: PathBuf,
        /// The library's fingerprint.
        found: String,
        /// The server's.
        expected: String,
    },
    /// Its registration failed (or registered a name already taken).
    #[error("{path} could not register its plugins: {source}")]
    Register {
        /// The library.
        path: PathBuf,
        /// The plugin's error.
        source: PluginError,
    },
}

/// A library that was loaded, and what it registered.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The library.
    pub path: PathBuf,
    /// `(trait, kind)` pairs such as `("executor", "local")`.
    pub registered: Vec<(&'static str, &'static str)>,
}

/// Loads the library at `path` and registers its plugins into `registry`.
/// The library starts a tokio runtime of its own for its plugins the first
/// time it is registered.
pub fn load(path: &Path, registry: &mut Registry) -> Result<Loaded, LoadError> {
    let fail_open = |source| LoadError::Open {
        path: path.to_owned(),
        source,
    };
    // SAFETY: opening a library runs its initialisers. The operator named
    // this file in the configuration, which is the trust decision; fastlane
    // plugins have no initialisers of their own (Rust has no life before
    // main), and nothing else of the library runs before the checks below.
    let library = unsafe { libloading::Library::new(path) }.map_err(fail_open)?;
    // SAFETY: the symbol is looked up as an address only (`*const`), which
    // is what any exported static is; nothing is read through it here.
    let symbol = unsafe { library.get::<*const PluginDeclaration>(DECLARATION_SYMBOL.as_bytes()) };
    let declaration: *const PluginDeclaration = symbol
        .ok()
        .map(|symbol| *symbol)
        .filter(|declaration| !declaration.is_null())
        .ok_or_else(|| LoadError::NotAPlugin {
            path: path.to_owned(),
        })?;

    // SAFETY: every ABI version of `PluginDeclaration` is `#[repr(C)]` and
    // starts with a `u32`, and the symbol is a static of the library, so the
    // first four bytes at its (aligned) address are readable and are the
    // library's ABI version.
    let found = unsafe { declaration.cast::<u32>().read() };
    if found != ABI_VERSION {
        return Err(LoadError::AbiVersion {
            path: path.to_owned(),
            found,
            expected: ABI_VERSION,
        });
    }

    // SAFETY: the ABI version matches, so the declaration has this server's
    // layout: a `u32` then a non-null pointer to a NUL-terminated string in
    // the library's read-only data, which `declare_plugin!` always writes.
    let fingerprint_start: *const u8 = unsafe { (*declaration).fingerprint };
    // SAFETY: see above: the pointer is non-null, NUL-terminated and lives
    // as long as the library, which is never unloaded.
    let fingerprint = unsafe { CStr::from_ptr(fingerprint_start.cast::<c_char>()) };
    let found = fingerprint.to_string_lossy();
    let expected = dynamic::fingerprint();
    if found != expected {
        return Err(LoadError::Fingerprint {
            path: path.to_owned(),
            found: found.into_owned(),
            expected: expected.to_owned(),
        });
    }

    // SAFETY: the fingerprints match: the library was built from the same
    // SDK sources by the same compiler for the same target, so its
    // declaration and every Rust type it passes have this server's layout,
    // and `register` is a valid function pointer of the declared type.
    let register = unsafe { (*declaration).register };
    // The library's code now backs trait objects the server keeps until it
    // exits, so it must stay mapped: the handle is leaked, never closed.
    std::mem::forget(library);

    let mut own = Registry::new();
    register(&mut own, &Host::current()).map_err(|source| LoadError::Register {
        path: path.to_owned(),
        source,
    })?;
    let registered = registry.merge(own).map_err(|source| LoadError::Register {
        path: path.to_owned(),
        source,
    })?;
    tracing::info!(path = %path.display(), ?registered, "loaded plugin library");
    Ok(Loaded {
        path: path.to_owned(),
        registered,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_missing_file_is_an_open_error_naming_it() {
        let err = load(
            Path::new("/nonexistent/libnothing.so"),
            &mut Registry::new(),
        )
        .expect_err("no such file");
        assert!(matches!(err, LoadError::Open { .. }), "{err}");
        assert!(
            err.to_string().contains("/nonexistent/libnothing.so"),
            "{err}"
        );
    }
}
