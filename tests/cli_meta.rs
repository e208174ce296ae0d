//! What build.rs makes for the packages: `--version` with the git commit, and the man pages and
//! shell completions generated from the clap definition into `<target>/<profile>/assets/` (next to
//! the binary), where the deb and rpm metadata in Cargo.toml take them from.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_kplink-agent");
const SUBCOMMANDS: [&str; 7] = [
    "run",
    "plan",
    "check-config",
    "check-properties",
    "status",
    "decommission",
    "consumer-dns",
];

fn assets() -> PathBuf {
    Path::new(BIN)
        .parent()
        .expect("the binary is in <target>/<profile>")
        .join("assets")
}

fn gunzip(path: &Path) -> String {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut text = String::new();
    flate2::read::GzDecoder::new(file)
        .read_to_string(&mut text)
        .unwrap_or_else(|e| panic!("{} is not gzipped text: {e}", path.display()));
    text
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

#[test]
fn version_names_the_commit_it_was_built_from() {
    let out = Command::new(BIN).arg("--version").output().unwrap();
    assert!(out.status.success());
    let version = String::from_utf8(out.stdout).unwrap();
    let commit = env!("KPLINK_GIT_COMMIT");
    assert_eq!(
        version.trim_end(),
        format!("kplink-agent {} ({commit})", env!("CARGO_PKG_VERSION"))
    );
    let commit_like =
        commit == "unknown" || (commit.len() >= 7 && commit.bytes().all(|b| b.is_ascii_hexdigit()));
    assert!(commit_like, "not a commit: {commit:?}");
    // In this repository's work tree (CI clones it), the commit is HEAD's, unless the build was
    // told otherwise through KPLINK_GIT_COMMIT.
    let top = git(&["rev-parse", "--show-toplevel"]).map(PathBuf::from);
    let ours = top.and_then(|t| t.canonicalize().ok())
        == Path::new(env!("CARGO_MANIFEST_DIR")).canonicalize().ok();
    if ours && std::env::var_os("KPLINK_GIT_COMMIT").is_none() {
        let head = git(&["rev-parse", "HEAD"]).expect("git rev-parse HEAD");
        assert!(
            head.starts_with(commit),
            "--version says {commit}, HEAD is {head}"
        );
    }
}

#[test]
fn man_pages_are_generated_for_the_command_and_each_subcommand() {
    let man = assets().join("man");
    let page = gunzip(&man.join("kplink-agent.1.gz"));
    assert!(page.contains(".TH kplink-agent 1 "), "{page}");
    assert!(
        page.contains(env!("KPLINK_GIT_COMMIT")),
        "the footer names the version and commit: {page}"
    );
    for section in [
        "NAME",
        "SYNOPSIS",
        "OPTIONS",
        "SUBCOMMANDS",
        "\"EXIT STATUS\"",
        "FILES",
    ] {
        assert!(
            page.contains(&format!(".SH {section}")),
            "no {section}: {page}"
        );
    }
    assert!(page.contains("/etc/kplink/agent.toml"), "{page}");
    for sub in SUBCOMMANDS {
        let name = format!("kplink-agent-{sub}");
        assert!(
            page.contains(&format!("{}(1)", name.replace('-', "\\-"))),
            "kplink-agent(1) does not list {name}(1)"
        );
        let sub_page = gunzip(&man.join(format!("{name}.1.gz")));
        assert!(sub_page.contains(&format!(".TH {name} 1 ")), "{sub_page}");
    }
    let dns = gunzip(&man.join("kplink-agent-consumer-dns.1.gz"));
    for option in [
        "\\-\\-endpoint",
        "\\-\\-zone\\-id",
        "\\-\\-host\\-template",
        "\\-\\-bootstrap\\-host",
        "\\-\\-bootstrap\\-port",
        "\\-\\-apply",
        "\\-\\-insync\\-timeout",
        "one invocation per endpoint",
    ] {
        assert!(
            dns.contains(option),
            "kplink-agent-consumer-dns(1) lacks {option}: {dns}"
        );
    }
    let run = gunzip(&man.join("kplink-agent-run.1.gz"));
    for option in [
        "\\-\\-once",
        "\\-\\-json",
        "\\-\\-metadata\\-timeout",
        "\\-\\-config",
    ] {
        assert!(
            run.contains(option),
            "kplink-agent-run(1) lacks {option}: {run}"
        );
    }
}

#[test]
fn completions_are_generated_for_bash_zsh_and_fish() {
    let dir = assets().join("completions");
    let zsh = read(&dir.join("_kplink-agent"));
    assert!(zsh.starts_with("#compdef kplink-agent"), "{zsh}");
    let fish = read(&dir.join("kplink-agent.fish"));
    assert!(fish.contains("complete -c kplink-agent "), "{fish}");
    for sub in SUBCOMMANDS {
        assert!(zsh.contains(sub) && fish.contains(sub), "{sub} missing");
    }
    assert!(read(&dir.join("kplink-agent.bash")).contains("complete -F _kplink__agent"));
}

/// Completes `words` (the last one being completed) with the generated bash script.
fn bash_complete(words: &[&str]) -> Vec<String> {
    let script = assets().join("completions/kplink-agent.bash");
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let cword = words.len() - 1;
    let prev = words[cword - 1];
    let cur = words[cword];
    let program = format!(
        "source '{}'; COMP_WORDS=({}); COMP_CWORD={cword}; _kplink__agent kplink-agent '{cur}' '{prev}'; \
         printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        script.display(),
        quoted.join(" ")
    );
    let out = Command::new("bash")
        .args(["--norc", "-c", &program])
        .output()
        .expect("bash");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn bash_completion_completes_commands_and_their_options() {
    let top = bash_complete(&["kplink-agent", ""]);
    for sub in SUBCOMMANDS {
        assert!(top.iter().any(|w| w == sub), "{sub} not offered: {top:?}");
    }
    // After a subcommand (clap_complete spells the state of a hyphenated binary's subcommands two
    // ways; build.rs makes them agree).
    let run = bash_complete(&["kplink-agent", "run", "--"]);
    for option in ["--once", "--json", "--metadata-timeout"] {
        assert!(
            run.iter().any(|w| w == option),
            "{option} not offered: {run:?}"
        );
    }
    let dns = bash_complete(&["kplink-agent", "consumer-dns", "--"]);
    for option in ["--endpoint", "--zone-id", "--host-template", "--apply"] {
        assert!(
            dns.iter().any(|w| w == option),
            "{option} not offered: {dns:?}"
        );
    }
    let check = bash_complete(&["kplink-agent", "check-config", "--"]);
    assert!(check.iter().any(|w| w == "--config"), "{check:?}");
    let formats = bash_complete(&["kplink-agent", "--log-format", ""]);
    assert_eq!(formats, ["text", "json"]);
}

/// A usage error exits 64 (EX_USAGE), never 2, which `plan` reserves for "changes pending".
#[test]
fn usage_errors_exit_64_and_help_exits_0() {
    let bin = env!("CARGO_BIN_EXE_kplink-agent");
    let run = |args: &[&str]| std::process::Command::new(bin).args(args).output().unwrap();
    for args in [
        &["--no-such-option"][..],
        &["plan", "--metadata-timeout", "soon"],
        &["frobnicate"],
        &["consumer-dns", "--endpoint", "vpce-1", "--zone-id", "Z1"],
        &[
            "consumer-dns",
            "--endpoint",
            "vpce-1",
            "--zone-id",
            "Z1",
            "--host-template",
            "kafka.example.internal",
        ],
    ] {
        let out = run(args);
        assert_eq!(
            out.status.code(),
            Some(64),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.stderr.is_empty(), "{args:?}: says why");
    }
    for args in [
        &["--help"][..],
        &["plan", "--help"],
        &["consumer-dns", "--help"],
    ] {
        assert_eq!(run(args).status.code(), Some(0), "{args:?}");
    }
}
