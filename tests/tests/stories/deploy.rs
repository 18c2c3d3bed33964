//! What operators install: the systemd unit (`deploy/fastlane.service`)
//! is one systemd accepts, and stays hardened. systemd is not PID 1 on the
//! machines the tests run on, so the unit is checked offline
//! (`systemd-analyze verify` and `security --offline`), not run.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

use fastlane_tests::binary;

fn unit() -> anyhow::Result<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/fastlane.service");
    std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
}

/// The unit, its `ExecStart` pointed at the binary under test, in a
/// directory of its own.
fn installed() -> anyhow::Result<PathBuf> {
    let text = unit()?.replace("/usr/local/bin/fastlane", &binary().to_string_lossy());
    let dir = std::env::temp_dir().join(format!("fastlane-unit-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("fastlane.service");
    std::fs::write(&path, text)?;
    Ok(path)
}

fn analyze(args: &[&str], unit: &Path) -> anyhow::Result<std::process::Output> {
    Command::new("systemd-analyze")
        .args(args)
        .arg(unit)
        .output()
        .context("systemd-analyze (Debian's systemd package) must be installed")
}

#[test]
fn the_systemd_unit_is_valid_and_rated_ok_for_exposure() -> anyhow::Result<()> {
    let unit = installed()?;
    let verified = analyze(&["verify", "--man=no"], &unit)?;
    if !verified.status.success() || !verified.stderr.is_empty() {
        bail!(
            "systemd-analyze verify: {}",
            String::from_utf8_lossy(&verified.stderr)
        );
    }
    // 0 is the most locked down, 10 the least; 2.0 and under is "OK".
    let rated = analyze(&["security", "--offline=yes", "--threshold=20"], &unit)?;
    let report = String::from_utf8_lossy(&rated.stdout);
    let verdict = report
        .lines()
        .find(|line| line.contains("Overall exposure level"))
        .unwrap_or_default();
    assert!(rated.status.success(), "exposure above 2.0: {verdict}");
    assert!(verdict.contains("OK"), "{verdict}");
    std::fs::remove_dir_all(unit.parent().context("its directory")?)?;
    Ok(())
}
