//! The `kplink-agent` binary: parse arguments, set up logging, hand over to the library.

use std::process::ExitCode;

use clap::Parser;
use kplink_agent::cli::{self, Cli, LogFormat};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

#[tokio::main]
async fn main() -> ExitCode {
    // Usage errors exit 64 (EX_USAGE) as documented, not clap's 2, which is `plan`'s
    // "changes pending"; --help and --version still print and exit 0.
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(cli::EXIT_USAGE);
        }
    };
    let filter = EnvFilter::try_from_env("KPLINK_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    // Under systemd, log to journald natively so fields (BROKER_ID, PORT, ARNs) stay structured.
    let journald = std::env::var_os("JOURNAL_STREAM")
        .filter(|_| cli.log_format == LogFormat::Text)
        .and_then(|_| tracing_journald::layer().ok())
        // Journal fields as documented (BROKER_ID, PORT, …), not tracing-journald's F_ default.
        .map(|layer| layer.with_field_prefix(None));
    let stderr = match (&journald, cli.log_format) {
        (Some(_), _) => None,
        (None, LogFormat::Json) => Some(
            tracing_subscriber::fmt::layer()
                .json()
                .with_writer(std::io::stderr)
                .boxed(),
        ),
        (None, LogFormat::Text) => Some(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .boxed(),
        ),
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(journald)
        .with(stderr)
        .init();
    cli::run(cli).await
}
