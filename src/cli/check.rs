//! `check-properties` (would Kafka start on the file?) and the warnings `check-config` and
//! `plan` print.

use std::process::ExitCode;

use crate::config::Config;

/// `check-properties`: 0 when Kafka would start on the file's listener settings; 1 with one line
/// per violation (or the read or parse error) on stderr.
pub(super) fn check_properties(path: &std::path::Path) -> ExitCode {
    let parsed = crate::properties::read(path).and_then(|text| {
        crate::properties::Properties::parse(&text)
            .map_err(|e| crate::properties::PropertiesError::from_edit(path, e))
    });
    let props = match parsed {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let violations = crate::kafka_rules::check(&props);
    if violations.is_empty() {
        println!(
            "Kafka would accept the listener settings of {}",
            path.display()
        );
        return ExitCode::SUCCESS;
    }
    for v in &violations {
        eprintln!(
            "error: {}: Kafka would refuse to start: {v}",
            path.display()
        );
    }
    ExitCode::FAILURE
}

/// Config warnings plus what `server.properties` says about the managed listener's TLS (when
/// the file can be read; `check-config` needs neither AWS nor the file).
pub(super) fn warnings(config: &Config) -> Vec<String> {
    let mut out = config.warnings();
    let path = &config.broker.server_properties;
    if let Ok(text) = std::fs::read_to_string(path) {
        if let Ok(Some(w)) = crate::properties::missing_keystore(
            &text,
            &config.listener.name,
            config.listener.security_protocol.as_str(),
        ) {
            out.push(format!("{}: {w}", path.display()));
        }
    }
    out
}
