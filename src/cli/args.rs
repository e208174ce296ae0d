// The command line's clap definition, and nothing else: this file depends only on std, clap and
// humantime, because build.rs includes it too (`#[path = "src/cli/args.rs"] mod args;`) to
// generate the man pages and the bash/zsh/fish completions from it at build time. The includer
// provides `VERSION` (`use super::VERSION` below): src/cli.rs the version with the git commit;
// build.rs sets the same string on the command it renders.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum, ValueHint};

use super::VERSION;

/// Default configuration file (the same as `config::DEFAULT_PATH`; a unit test in src/cli.rs
/// keeps them equal).
pub(crate) const DEFAULT_CONFIG_PATH: &str = "/etc/kplink/agent.toml";

/// Wires this Kafka broker into the cluster's AWS PrivateLink NLB.
#[derive(Debug, Parser)]
#[command(name = "kplink-agent", version = VERSION, about)]
pub struct Cli {
    /// Configuration file.
    #[arg(short, long, global = true, default_value = DEFAULT_CONFIG_PATH, env = "KPLINK_CONFIG",
          value_hint = ValueHint::FilePath)]
    pub config: PathBuf,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Reconcile: with --once a single pass.
    Run {
        /// Run one pass and exit: 0 when the broker is fully wired, 1 otherwise.
        #[arg(long)]
        once: bool,
        /// Print the pass report as JSON on stdout.
        #[arg(long)]
        json: bool,
        /// How long to wait for instance metadata before giving up.
        #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
        metadata_timeout: Duration,
    },
    /// Show what a pass would change, changing nothing: exit 0 nothing to do, 2 changes pending, 1 error.
    Plan {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
        /// How long to wait for instance metadata before giving up.
        #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
        metadata_timeout: Duration,
    },
    /// Validate the configuration file without touching AWS, and the managed TLS listener's
    /// certificate (it covers the advertised names, valid now): exit 0, 1 the certificate is
    /// refused, or 78.
    CheckConfig,
    /// Check a server.properties against Kafka's start-up listener rules: exit 0 Kafka would start, 1 it would refuse.
    ///
    /// The rules Kafka checks before it opens a port (distinct ports, unique listener names,
    /// every name mapped to a protocol, the inter-broker and controller listeners among the
    /// listeners, advertised names among the listeners, …), the same the agent applies before it
    /// writes. Without PATH, the file of broker.server_properties in the configuration. One line
    /// per violation on stderr: the file, the setting to change, and why.
    CheckProperties {
        /// The file to check (default: broker.server_properties of the configuration; with PATH
        /// no configuration is read).
        #[arg(value_hint = ValueHint::FilePath)]
        path: Option<PathBuf>,
    },
    /// Show identity, claim, target health, the advertised listener and the last pass.
    Status {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
        /// How long to wait for instance metadata before giving up.
        #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
        metadata_timeout: Duration,
    },
    /// Remove this broker from the NLB and its listener from server.properties.
    Decommission {
        /// Required: confirms that clients will lose this broker's port.
        #[arg(long)]
        yes: bool,
        /// Leave server.properties as it is.
        #[arg(long)]
        keep_config: bool,
        /// Print the steps it would take and change nothing (no --yes needed): exit 0 nothing to
        /// remove, 2 steps pending.
        #[arg(long)]
        dry_run: bool,
        /// How long to wait for instance metadata before giving up.
        #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
        metadata_timeout: Duration,
    },
    /// Consumer account: CNAMEs for its interface endpoint in a private zone: exit 0 nothing to do, 2 changes pending, 1 error.
    ///
    /// Run once per consumer VPC and endpoint, with the consumer account's credentials and
    /// Region (standard AWS chain; no agent.toml). One CNAME per AZ ID of the Region,
    /// --host-template with {az_id} -> the endpoint's zonal DNS name in the AZ with that ID, or
    /// its Regional name when the endpoint has no subnet there (a warning: that needs cross-zone
    /// load balancing on the provider's NLB); --bootstrap-host -> the Regional name. Sharded
    /// clusters (one NLB and endpoint service per shard): one invocation per endpoint, with the
    /// shard written into the template (kafka-{az_id}-s1.orders.example.internal). Prints the
    /// plan (or, with --apply, writes it and waits for Route 53 to report INSYNC) and the
    /// clients' bootstrap.servers.
    ConsumerDns(ConsumerDnsArgs),
}

/// Options of `consumer-dns`.
#[derive(Debug, Clone, clap::Args)]
pub struct ConsumerDnsArgs {
    /// The interface VPC endpoint to the cluster's endpoint service (vpce-...).
    #[arg(long, value_name = "VPCE_ID")]
    pub endpoint: String,
    /// The private hosted zone associated with the endpoint's VPC (Z...).
    #[arg(long, value_name = "ZONE_ID")]
    pub zone_id: String,
    /// The brokers' advertised name with {az_id}, e.g. kafka-{az_id}.orders.example.internal.
    #[arg(long, value_name = "TEMPLATE")]
    pub host_template: String,
    /// A bootstrap name for clients, pointed at the endpoint's Regional name.
    #[arg(long, value_name = "HOST")]
    pub bootstrap_host: Option<String>,
    /// The NLB's bootstrap listener port (nlb.bootstrap_port), for the printed bootstrap.servers.
    #[arg(long, value_name = "PORT", default_value_t = 10000)]
    pub bootstrap_port: u16,
    /// Write the changes (UPSERT) and wait until Route 53 reports them INSYNC.
    #[arg(long)]
    pub apply: bool,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
    /// How long --apply waits for INSYNC before giving up (exit 1; the records stay written).
    #[arg(long, default_value = "120s", value_parser = humantime::parse_duration)]
    pub insync_timeout: Duration,
    /// The brokers' PrivateLink listener uses TLS: print ssl.endpoint.identification.algorithm=https
    /// (the certificates must name the broker and bootstrap names).
    #[arg(long)]
    pub tls: bool,
    /// The provider's NLB TCP idle timeout in seconds (60-6000; AWS's default 350 unless the
    /// provider says otherwise), for the printed connections.max.idle.ms.
    #[arg(long, value_name = "SECONDS", default_value_t = 350)]
    pub nlb_idle_timeout: u64,
}
