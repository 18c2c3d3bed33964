//! Generates the client from the crate's copy of the committed OpenAPI
//! document (`openapi.json`, kept equal to the repository's
//! `openapi/fastlane.json` by `scripts/openapi.sh` and checked by the
//! drift test) into `$OUT_DIR/fastlane.rs`, which `src/lib.rs` includes.
//! The build reads nothing outside the crate, so it builds as a published
//! package too. Cargo reruns it whenever the document changes.

use std::path::PathBuf;

use progenitor::{GenerationSettings, Generator, InterfaceStyle, TagStyle};

/// The document, relative to this crate.
const DOCUMENT: &str = "openapi.json";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed={DOCUMENT}");
    let text =
        std::fs::read_to_string(DOCUMENT).map_err(|err| format!("reading {DOCUMENT}: {err}"))?;
    let document =
        serde_json::from_str(&text).map_err(|err| format!("parsing {DOCUMENT}: {err}"))?;

    let mut settings = GenerationSettings::default();
    settings
        .with_interface(InterfaceStyle::Builder)
        .with_tag(TagStyle::Merged);
    let tokens = Generator::new(&settings)
        .generate_tokens(&document)
        .map_err(|err| format!("generating the client from {DOCUMENT}: {err}"))?;
    let code = prettyplease::unparse(&syn::parse2(tokens)?);

    let out = PathBuf::from(std::env::var("OUT_DIR")?).join("fastlane.rs");
    std::fs::write(&out, code).map_err(|err| format!("writing {}: {err}", out.display()))?;
    Ok(())
}
