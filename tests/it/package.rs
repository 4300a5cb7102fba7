//! The systemd unit and the Debian package, checked with systemd's and dpkg's own tools.
//!
//! These need `systemd-analyze` (package systemd) and `dpkg-deb`; `scripts/test.sh`
//! installs them. Where they are missing they can truly not run: without DESKGATE_IT=1 the
//! tests say so and return, with it (the full suite) that is a failure.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// True if `tool` runs; else prints why the test is skipped (or panics under DESKGATE_IT=1).
fn have(tool: &str) -> bool {
    let found = Command::new(tool).arg("--version").output().is_ok();
    if !found {
        let why = format!("{tool} is not installed (scripts/test.sh installs it)");
        assert!(std::env::var("DESKGATE_IT").as_deref() != Ok("1"), "{why}");
        eprintln!("skipping: {why}");
    }
    found
}

fn run(command: &mut Command) -> Output {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// An empty Debian-like root (merged /usr) with an empty dpkg database.
fn empty_root() -> tempfile::TempDir {
    let root = tempfile::tempdir().expect("temp dir");
    for dir in [
        "var/lib/dpkg/info",
        "var/lib/dpkg/updates",
        "usr/lib",
        "usr/bin",
    ] {
        std::fs::create_dir_all(root.path().join(dir)).expect("mkdir");
    }
    std::fs::write(root.path().join("var/lib/dpkg/status"), "").expect("dpkg status");
    std::os::unix::fs::symlink("usr/lib", root.path().join("lib")).expect("symlink lib");
    std::os::unix::fs::symlink("usr/bin", root.path().join("bin")).expect("symlink bin");
    root
}

/// `systemd-analyze verify` of deskgate.service inside `root`, which must hold the binary;
/// the host's own units (targets the unit orders itself against) and kill(1) (ExecReload)
/// are copied in first.
fn verify_in(root: &Path) {
    let units = root.join("usr/lib/systemd/system");
    std::fs::create_dir_all(&units).expect("mkdir");
    run(Command::new("cp")
        .args(["-a", "/usr/lib/systemd/system/."])
        .arg(&units));
    run(Command::new("cp")
        .arg("/usr/bin/kill")
        .arg(root.join("usr/bin/kill")));
    let output = run(Command::new("systemd-analyze")
        .arg("verify")
        .arg(format!("--root={}", root.display()))
        .arg("deskgate.service"));
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(
        !said.contains("deskgate"),
        "systemd-analyze verify:\n{said}"
    );
}

#[test]
fn unit_is_hardened_and_verifies() {
    if !have("systemd-analyze") {
        return;
    }
    let unit = repo().join("systemd/deskgate.service");
    let output = run(Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(&unit));
    let text = String::from_utf8_lossy(&output.stdout);
    let exposure: f64 = text
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for deskgate.service: ")
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no overall exposure level in:\n{text}"));
    assert!(exposure <= 2.0, "exposure {exposure} > 2.0:\n{text}");

    let root = empty_root();
    let units = root.path().join("usr/lib/systemd/system");
    std::fs::create_dir_all(&units).expect("mkdir");
    std::fs::copy(&unit, units.join("deskgate.service")).expect("copy unit");
    std::fs::copy(
        env!("CARGO_BIN_EXE_deskgate"),
        root.path().join("usr/bin/deskgate"),
    )
    .expect("copy binary");
    verify_in(root.path());
}

#[test]
fn debian_package_installs_and_its_unit_verifies() {
    if !have("dpkg-deb") || !have("systemd-analyze") {
        return;
    }
    let out = tempfile::tempdir().expect("temp dir");
    let built = run(Command::new("bash")
        .arg(repo().join("scripts/deb.sh"))
        .args([
            "--binary",
            env!("CARGO_BIN_EXE_deskgate"),
            "--fast",
            "--out",
        ])
        .arg(out.path()));
    let deb = PathBuf::from(String::from_utf8_lossy(&built.stdout).trim());
    assert!(deb.exists(), "{}", deb.display());

    // Installed with dpkg into an empty root: maintainer scripts run outside a chroot (with
    // DPKG_ROOT set) and the libc dependency is the host's.
    let root = empty_root();
    run(Command::new("dpkg")
        .arg(format!("--root={}", root.path().display()))
        .args([
            "--force-depends",
            "--force-script-chrootless",
            "--log=/dev/null",
            "-i",
        ])
        .arg(&deb));
    let status = run(Command::new("dpkg")
        .arg(format!("--root={}", root.path().display()))
        .args(["-s", "deskgate"]));
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(status.contains("Status: install ok installed"), "{status}");
    assert!(
        status.contains(" /etc/deskgate/deskgate.toml "),
        "a conffile:\n{status}"
    );

    let version = run(Command::new(root.path().join("usr/bin/deskgate")).arg("--version"));
    assert_eq!(
        String::from_utf8_lossy(&version.stdout).trim(),
        format!("deskgate {}", env!("CARGO_PKG_VERSION"))
    );
    for file in [
        "etc/deskgate/deskgate.toml",
        "usr/share/man/man1/deskgate.1.gz",
        "usr/share/bash-completion/completions/deskgate",
        "usr/share/zsh/vendor-completions/_deskgate",
        "usr/share/fish/vendor_completions.d/deskgate.fish",
    ] {
        let path = root.path().join(file);
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        assert!(size > 0, "{file} missing or empty");
    }
    let example = std::fs::read_to_string(root.path().join("etc/deskgate/deskgate.toml"))
        .expect("read the installed configuration");
    assert_eq!(
        example,
        std::fs::read_to_string(repo().join("config.example.toml")).expect("read example")
    );
    verify_in(root.path());
}

/// Tests and benchmarks measure memory with `daemon::UNIT_MALLOC`: the unit must set the same.
#[test]
fn the_unit_sets_the_allocator_as_measured() {
    let unit = std::fs::read_to_string(repo().join("systemd/deskgate.service")).expect("unit");
    for (name, value) in crate::daemon::UNIT_MALLOC {
        let line = format!("Environment={name}={value}");
        assert!(
            unit.lines().any(|l| l == line),
            "systemd/deskgate.service has no `{line}`"
        );
    }
}
