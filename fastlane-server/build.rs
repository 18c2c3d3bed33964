//! Build-time switches of the test suite. The MongoDB store's tests need a
//! server (`FASTLANE_TEST_MONGO_URL`), and none can be installed on every
//! machine: without one they are compiled `#[ignore]`d (`cfg
//! fastlane_mongo_tests` unset), so the runner reports them skipped rather
//! than passing them.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(fastlane_mongo_tests)");
    println!("cargo::rerun-if-env-changed=FASTLANE_TEST_MONGO_URL");
    if std::env::var("FASTLANE_TEST_MONGO_URL").is_ok_and(|url| !url.is_empty()) {
        println!("cargo::rustc-cfg=fastlane_mongo_tests");
    }
}
