//! `consumer-dns`: runs [`crate::consumer_dns::run`] and prints its report (the settings
//! consumers paste, or JSON with `--json`); warnings and errors go to stderr.

use std::process::ExitCode;

use crate::consumer_dns::{render, run, Request};

/// Runs `req` and prints the outcome; the exit code (`CHANGES_PENDING` for a dry run with
/// records to change).
pub(crate) async fn main(req: &Request, json: bool) -> ExitCode {
    let report = match run(req).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(e.exit_code());
        }
    };
    for w in &report.warnings {
        eprintln!("warning: {w}");
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
    } else {
        print!("{}", render(&report));
    }
    match report.changes_pending && report.applied.is_none() {
        true => ExitCode::from(crate::exit::CHANGES_PENDING),
        false => ExitCode::SUCCESS,
    }
}
