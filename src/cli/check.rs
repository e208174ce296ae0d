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

/// `check-config`: the config's warnings, then the certificate pre-flight; 0, or 1 when the
/// certificate refuses (one error line).
pub(super) fn check_config(config: &Config, path: &std::path::Path) -> ExitCode {
    for w in warnings(config) {
        eprintln!("warning: {w}");
    }
    match certificate(config) {
        Err(line) => {
            eprintln!("error: {line}");
            return ExitCode::FAILURE;
        }
        Ok(Some(outcome)) => {
            if let crate::tls::Outcome::Checked(summary) = &outcome {
                println!("{}", summary.line());
            }
            for w in outcome.warnings() {
                eprintln!("warning: {w}");
            }
        }
        Ok(None) => {}
    }
    println!("config OK: {}", path.display());
    ExitCode::SUCCESS
}

/// The certificate pre-flight without the instance (`check-config` needs neither AWS nor
/// instance metadata): the host templates with `{cluster}` and `{shard}` filled in and the
/// other placeholders kept, which a wildcard covers and a list of zonal names covers in part
/// (see [`crate::tls::check::coverage`]). `None` when `server.properties` cannot be read or
/// parsed (other commands report that).
pub(super) fn certificate(config: &Config) -> Result<Option<crate::tls::Outcome>, String> {
    let Ok(text) = std::fs::read_to_string(&config.broker.server_properties) else {
        return Ok(None);
    };
    let Ok(props) = crate::properties::Properties::parse(&text) else {
        return Ok(None);
    };
    let templates = [
        Some(&config.listener.advertised_host),
        config.listener.bootstrap_host.as_ref(),
    ];
    let mut hosts: Vec<String> = Vec::new();
    for shard in config.nlb.load_balancers() {
        for template in templates.iter().flatten() {
            let host = template
                .as_str()
                .replace("{cluster}", &config.cluster)
                .replace("{shard}", &shard.index.to_string());
            if !hosts.contains(&host) {
                hosts.push(host);
            }
        }
    }
    crate::tls::preflight(&crate::tls::Request {
        properties: &props,
        listener: &config.listener.name,
        default_protocol: config.listener.security_protocol.as_str(),
        hosts,
        now: crate::clock::unix_now() as i64,
    })
    .map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A config whose `server.properties` (in `dir`) maps the listener to SSL with a PEM
    /// keystore for `names`.
    fn config(dir: &std::path::Path, names: &[&str], listener: &str) -> Config {
        let key = rcgen::KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let cert = rcgen::CertificateParams::new(names)
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let pem = dir.join("broker.pem");
        std::fs::write(&pem, format!("{}{}", key.serialize_pem(), cert.pem())).unwrap();
        let props = dir.join("server.properties");
        std::fs::write(
            &props,
            format!(
                "listener.security.protocol.map=PRIVATELINK:SSL\nssl.keystore.type=PEM\nssl.keystore.location={}\n",
                pem.display()
            ),
        )
        .unwrap();
        let text = format!(
            "cluster = \"orders\"\n[broker]\nserver_properties = \"{}\"\n[listener]\n{listener}\n[nlb]\n\
             load_balancer_arn = \"arn:aws:elasticloadbalancing:us-east-1:1:loadbalancer/net/k/1\"\n",
            props.display()
        );
        Config::parse(&text, std::path::Path::new("/test/agent.toml")).unwrap()
    }

    #[test]
    fn check_config_checks_the_templates_with_what_it_knows() {
        let dir = tempfile::tempdir().unwrap();
        // {cluster} is filled in; {az_id} stands for any label, which the wildcard covers.
        let c = config(
            dir.path(),
            &["*.orders.example.internal", "boot.example.internal"],
            "advertised_host = \"kafka-{az_id}.{cluster}.example.internal\"\nbootstrap_host = \"boot.example.internal\"",
        );
        let Ok(Some(crate::tls::Outcome::Checked(s))) = certificate(&c) else {
            panic!("{:?}", certificate(&c));
        };
        assert_eq!(
            s.hosts,
            [
                "kafka-{az_id}.orders.example.internal",
                "boot.example.internal"
            ]
        );
        // The bootstrap name is checked too.
        let c = config(
            dir.path(),
            &["*.orders.example.internal"],
            "advertised_host = \"kafka-{az_id}.orders.example.internal\"\nbootstrap_host = \"bootstrap.{cluster}.other.internal\"",
        );
        let refused = certificate(&c).unwrap_err();
        assert!(
            refused.contains("does not cover bootstrap.orders.other.internal; it names *.orders.example.internal"),
            "{refused}"
        );
    }
}
