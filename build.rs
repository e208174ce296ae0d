//! Build script: the git commit for `--version`, and the man pages and shell completions generated
//! from the clap definition (src/cli/args.rs) for the deb and rpm packages.
//!
//! * `KPLINK_GIT_COMMIT` (rustc env): `$KPLINK_GIT_COMMIT` when set (distribution builds), else
//!   `git rev-parse --short HEAD` when this package is the top of a git work tree, else the commit
//!   in `.cargo_vcs_info.json` (a crates.io tarball), else "unknown".
//! * Assets, written to `$OUT_DIR` and copied to `<target-dir>/<profile>/assets/` (the directory
//!   three levels above `$OUT_DIR`, which is `<target-dir>/<profile>/build/<package>-<hash>/out`)
//!   so that the package metadata in Cargo.toml can name them as `target/release/assets/…` (cargo-deb
//!   and cargo-generate-rpm map `target/release/` to the profile and target directory they package):
//!   - `man/kplink-agent.1.gz` and one `man/kplink-agent-<command>.1.gz` per subcommand;
//!   - `completions/kplink-agent.bash`, `completions/_kplink-agent` (zsh),
//!     `completions/kplink-agent.fish`.

// A build script that cannot build stops the build with its message: it may panic. It also
// compiles src/cli/args.rs, whose items are `pub` for the library, not for this script.
#![allow(clippy::expect_used, clippy::unwrap_used, unreachable_pub)]

use std::env;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::Command as Process;

use clap::CommandFactory;
use clap_complete::Shell;
use clap_mangen::roff::{bold, roman, Roff};
use clap_mangen::Man;
use flate2::write::GzEncoder;
use flate2::Compression;

// Only the definition is used here, not the parsed fields.
#[allow(dead_code)]
#[path = "src/cli/args.rs"]
mod args;

/// What args.rs names as `super::VERSION`; the rendered command gets the version with the commit.
const VERSION: &str = env!("CARGO_PKG_VERSION");

const BIN: &str = "kplink-agent";

fn main() -> io::Result<()> {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=src/cli/args.rs");
    let manifest_dir =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR"));

    let commit = git_commit(&manifest_dir);
    println!("cargo:rustc-env=KPLINK_GIT_COMMIT={commit}");
    // clap keeps &'static str; the build script runs once, so leaking this one string is fine.
    let version: &'static str = Box::leak(format!("{VERSION} ({commit})").into_boxed_str());
    let cmd = args::Cli::command().version(version);

    let files = assets(cmd)?;
    for (rel, bytes) in &files {
        write_atomically(&out_dir.join(rel), bytes)?;
    }
    match stable_assets_dir(&out_dir) {
        Some(dir) => {
            for (rel, bytes) in &files {
                write_atomically(&dir.join(rel), bytes)?;
            }
            remove_stale_man_pages(&dir.join("man"), &files)?;
        }
        None => println!(
            "cargo:warning=OUT_DIR {} is not <target>/<profile>/build/<pkg>/out: man pages and \
             completions only in OUT_DIR, not in <target>/<profile>/assets for packaging",
            out_dir.display()
        ),
    }
    Ok(())
}

/// The commit this build is made from (see the module docs for the order of sources).
fn git_commit(manifest_dir: &Path) -> String {
    println!("cargo:rerun-if-env-changed=KPLINK_GIT_COMMIT");
    if let Some(commit) = env::var("KPLINK_GIT_COMMIT")
        .ok()
        .filter(|c| !c.trim().is_empty())
    {
        return commit.trim().to_owned();
    }
    if let Some(commit) = git_head(manifest_dir) {
        return commit;
    }
    let vcs_info = manifest_dir.join(".cargo_vcs_info.json");
    if let Ok(text) = fs::read_to_string(&vcs_info) {
        println!("cargo:rerun-if-changed={}", vcs_info.display());
        if let Some(sha1) = json_string_value(&text, "sha1") {
            return sha1.chars().take(7).collect();
        }
    }
    "unknown".to_owned()
}

/// `git rev-parse --short HEAD` when `dir` is the top of a git work tree (not a directory inside
/// some other repository), with rerun-if-changed on the files that move HEAD.
fn git_head(dir: &Path) -> Option<String> {
    let git = |args: &[&str]| -> Option<String> {
        let out = Process::new("git")
            .args(args)
            .current_dir(dir)
            .output()
            .ok()?;
        let text = String::from_utf8(out.stdout).ok()?.trim().to_owned();
        (out.status.success() && !text.is_empty()).then_some(text)
    };
    let top = PathBuf::from(git(&["rev-parse", "--show-toplevel"])?);
    if fs::canonicalize(top).ok()? != fs::canonicalize(dir).ok()? {
        return None;
    }
    let commit = git(&["rev-parse", "--short", "HEAD"])?;
    // HEAD (a checkout), the branch it names (a commit) and packed-refs (gc). Only existing files:
    // cargo reruns a build script on every build when a rerun-if-changed path is missing.
    let branch = git(&["symbolic-ref", "-q", "HEAD"]);
    for name in ["HEAD", "packed-refs"].into_iter().chain(branch.as_deref()) {
        if let Some(path) = git(&["rev-parse", "--git-path", name]) {
            let path = dir.join(path);
            if path.exists() {
                println!("cargo:rerun-if-changed={}", path.display());
            }
        }
    }
    Some(commit)
}

/// The string value of `"key": "value"` in a small JSON document (.cargo_vcs_info.json).
fn json_string_value<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    let rest = &text[text.find(&format!("\"{key}\""))? + key.len() + 2..];
    let rest = rest
        .trim_start()
        .strip_prefix(':')?
        .trim_start()
        .strip_prefix('"')?;
    let value = &rest[..rest.find('"')?];
    (!value.is_empty() && value.bytes().all(|b| b.is_ascii_hexdigit())).then_some(value)
}

/// Every generated file, by path relative to the assets directory.
fn assets(cmd: clap::Command) -> io::Result<Vec<(PathBuf, Vec<u8>)>> {
    let mut cmd = cmd.bin_name(BIN).disable_help_subcommand(true);
    cmd.build();
    let mut files = Vec::new();

    // Every page's footer: "kplink-agent 0.2.0 (<commit>)".
    let source = format!("{BIN} {}", cmd.get_version().unwrap_or(VERSION));
    let mut page = Vec::new();
    let man = Man::new(cmd.clone()).source(&source);
    man.render_title(&mut page)?;
    man.render_name_section(&mut page)?;
    man.render_synopsis_section(&mut page)?;
    man.render_description_section(&mut page)?;
    man.render_options_section(&mut page)?;
    man.render_subcommands_section(&mut page)?;
    man.render_version_section(&mut page)?;
    extra_sections().to_writer(&mut page)?;
    files.push((PathBuf::from(format!("man/{BIN}.1.gz")), gzip(&page)?));
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        // The page of `kplink-agent run` is kplink-agent-run(1), as the main page's list names it.
        let name = format!("{BIN}-{}", sub.get_name());
        let mut page = Vec::new();
        Man::new(sub.clone().display_name(name.clone()))
            .source(&source)
            .render(&mut page)?;
        let mut roff = Roff::new();
        see_also(&mut roff, &[&format!("{BIN}(1)")]);
        roff.to_writer(&mut page)?;
        files.push((PathBuf::from(format!("man/{name}.1.gz")), gzip(&page)?));
    }

    for (shell, file) in [
        (Shell::Bash, format!("{BIN}.bash")),
        (Shell::Zsh, format!("_{BIN}")),
        (Shell::Fish, format!("{BIN}.fish")),
    ] {
        let mut script = Vec::new();
        clap_complete::generate(shell, &mut cmd, BIN, &mut script);
        if shell == Shell::Bash {
            script = fix_bash_hyphenated_bin(script);
        }
        files.push((PathBuf::from("completions").join(file), script));
    }
    Ok(files)
}

/// clap_complete's bash script spells the state of a subcommand of a hyphenated binary two ways
/// (clap-rs/clap#6421, open): the dispatch loop sets `kplink__agent__subcmd__run`, the case arms
/// match `kplink__subcmd__agent__subcmd__run`, so nothing completes after a subcommand. Spell the
/// arms as the loop does; a no-op once clap_complete is fixed. tests/cli_meta.rs checks the result.
fn fix_bash_hyphenated_bin(script: Vec<u8>) -> Vec<u8> {
    let sep = "__subcmd__";
    let wrong = format!("{}{sep}", BIN.replace('-', sep));
    let right = format!("{}{sep}", BIN.replace('-', "__"));
    String::from_utf8(script)
        .expect("clap_complete writes UTF-8")
        .replace(&wrong, &right)
        .into_bytes()
}

/// EXIT STATUS, ENVIRONMENT, FILES and SEE ALSO of kplink-agent(1): what clap does not describe.
fn extra_sections() -> Roff {
    let mut roff = Roff::new();
    let item = |roff: &mut Roff, term: &str, text: &str| {
        roff.control("TP", [])
            .text([bold(term)])
            .text([roman(text)]);
    };
    roff.control("SH", ["EXIT STATUS"]);
    item(&mut roff, "0", "Success: run --once wired the broker fully; plan has nothing to do; check-config found the file valid; check-properties found that Kafka would accept the file's listener settings; consumer-dns has nothing to do or applied its changes.");
    item(
        &mut roff,
        "1",
        "An error, or run --once left the broker not fully wired, or check-properties found a listener setting Kafka would refuse.",
    );
    item(
        &mut roff,
        "2",
        "plan, consumer-dns without --apply: changes are pending.",
    );
    item(
        &mut roff,
        "64",
        "A usage error: an unknown option, an invalid value, decommission without --yes (EX_USAGE).",
    );
    item(
        &mut roff,
        "78",
        "The configuration file is invalid or not yet configured (EX_CONFIG).",
    );
    roff.control("SH", ["ENVIRONMENT"]);
    item(
        &mut roff,
        "KPLINK_CONFIG",
        "Configuration file, as --config.",
    );
    item(
        &mut roff,
        "KPLINK_LOG",
        "Log filter (tracing EnvFilter syntax), default info.",
    );
    roff.control("SH", ["FILES"]);
    item(
        &mut roff,
        "/etc/kplink/agent.toml",
        "The configuration (mode 0640: it may hold Kafka admin secrets).",
    );
    item(&mut roff, "kplink-agent.service", "The systemd unit that runs the daemon (kplink-agent run); systemctl cat kplink-agent shows it.");
    item(
        &mut roff,
        "/usr/share/doc/kplink-agent/",
        "README.md (configuration, operations, metrics) and iam-policy.json.",
    );
    let pages: Vec<String> = [
        "run",
        "plan",
        "check-config",
        "check-properties",
        "status",
        "decommission",
        "consumer-dns",
    ]
    .iter()
    .map(|s| format!("{BIN}-{s}(1)"))
    .collect();
    let mut refs: Vec<&str> = pages.iter().map(String::as_str).collect();
    refs.push("systemctl(1)");
    see_also(&mut roff, &refs);
    roff
}

fn see_also(roff: &mut Roff, pages: &[&str]) {
    roff.control("SH", ["SEE ALSO"])
        .text([roman(pages.join(", "))]);
}

/// gzip with no file name and mtime 0, like `gzip -n`: the same input gives the same bytes.
fn gzip(data: &[u8]) -> io::Result<Vec<u8>> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::best());
    encoder.write_all(data)?;
    encoder.finish()
}

/// `<target-dir>/<profile>/assets` from `OUT_DIR` = `<target-dir>/<profile>/build/<pkg>-<hash>/out`.
fn stable_assets_dir(out_dir: &Path) -> Option<PathBuf> {
    let build = out_dir.parent()?.parent()?;
    (out_dir.file_name()? == "out" && build.file_name()? == "build")
        .then(|| build.parent().map(|profile| profile.join("assets")))
        .flatten()
}

/// Writes through a temporary file and a rename: a concurrent build (e.g. clippy and build of the
/// same profile) or a packager reading the file never sees half of it.
fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().expect("asset path has a directory");
    fs::create_dir_all(dir)?;
    if fs::read(path).is_ok_and(|old| old == bytes) {
        return Ok(());
    }
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name().expect("asset file name").to_string_lossy(),
        std::process::id()
    ));
    fs::write(&tmp, bytes)?;
    fs::rename(&tmp, path)
}

/// Removes man pages of subcommands that no longer exist (the packages take `man/*.1.gz`).
fn remove_stale_man_pages(man_dir: &Path, files: &[(PathBuf, Vec<u8>)]) -> io::Result<()> {
    for entry in fs::read_dir(man_dir)? {
        let path = entry?.path();
        let is_page = path.extension().is_some_and(|e| e == "gz");
        let generated = files
            .iter()
            .any(|(rel, _)| rel.file_name() == path.file_name());
        if is_page && !generated {
            fs::remove_file(&path)?;
        }
    }
    Ok(())
}
