//! Proof in a real systemd: runs `tests/systemd/nspawn_test.sh`, which boots a Debian container
//! with systemd-nspawn, installs the agent's .deb (made from this build's binary with
//! `cargo deb --no-build`) and checks the unit and package life cycle against moto, the IMDS test
//! server and a Kafka stand-in. The script prints one PASS/FAIL line per assertion.
//!
//! Both tests need root (containers, dpkg, apt-get), so they are `#[ignore]`d and a plain
//! `cargo test` passes for other users. `.ci/run` (as root) runs them explicitly:
//! `cargo test --test suite systemd:: -- --include-ignored`. Run that way without root, they fail, never
//! skip silently.

use std::path::Path;
use std::process::Command;

fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

#[test]
#[ignore = "needs root: installs packages and boots systemd in nspawn"]
fn package_and_unit_in_a_real_systemd() {
    let uid = effective_uid();
    assert_eq!(
        uid,
        Some(0),
        "tests/systemd/nspawn_test.sh needs root (systemd-nspawn, debootstrap, dpkg inside a \
         container); effective uid is {uid:?}. Run the tests as root (CI does)."
    );
    run_script("nspawn_test.sh");
}

#[test]
#[ignore = "needs root: installs rpm (apt-get) and cargo-generate-rpm when missing"]
fn rpm_contents_and_scripts() {
    run_script("rpm_check.sh");
}

/// Runs `tests/systemd/<name>` and fails unless it exits 0; it prints a PASS/FAIL line per assertion.
fn run_script(name: &str) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/systemd")
        .join(name);
    let status = Command::new("bash")
        .arg(&script)
        .env("KPLINK_AGENT_BIN", env!("CARGO_BIN_EXE_kplink-agent"))
        .status()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    assert!(
        status.success(),
        "{} failed ({status}); its FAIL lines above say which assertions",
        script.display()
    );
}
