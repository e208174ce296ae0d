//! Shared by tests/e2e_privatelink.rs and tests/readme_walkthrough.rs: the consumer side of the
//! emulated PrivateLink path (`tests/support/privatelink.py`), tansu brokers started from what
//! the agent wrote, and a client process with its own `/etc/hosts`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

use super::{start_server, stderr, stdout, support, Server};

/// `sh -c` script: bind-mount `$0` over /etc/hosts, then run the rest.
pub const MOUNT_HOSTS_AND_EXEC: &str = "mount --bind \"$0\" /etc/hosts && exec \"$@\"";

/// Runs a support script; panics unless it succeeds; its stdout.
pub fn python_ok(script: &str, args: &[&str]) -> String {
    let out = Command::new("python3")
        .arg(support(script))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {script}: {e}"));
    assert!(out.status.success(), "{script} {args:?}: {}", stderr(&out));
    stdout(&out)
}

/// A tansu broker started by tests/support/tansu.py, stopped on drop.
pub struct Tansu {
    pub pidfile: PathBuf,
}

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = Command::new("python3")
            .arg(support("tansu.py"))
            .args(["stop", "--pidfile"])
            .arg(&self.pidfile)
            .status();
    }
}

/// A tansu on `address`, advertising and listening as the `PRIVATELINK` entry of `properties`
/// says (never computed by the test), storing into the S3 bucket `tansu` of `moto` (shared by
/// every tansu of the test: each is a stateless broker over the same topics). Started only if
/// real Kafka would start on `properties` (tansu.py checks it with `kplink-agent check-properties`).
pub fn start_tansu(moto: &str, properties: &Path, address: &str, pidfile: PathBuf) -> Tansu {
    start_tansu_on_port(moto, properties, address, None, pidfile)
}

/// [`start_tansu`], listening on `port` instead of the listener's port when given (behind a TLS
/// terminator that holds the listener's port: tests/common/tls.rs).
pub fn start_tansu_on_port(
    moto: &str,
    properties: &Path,
    address: &str,
    port: Option<u16>,
    pidfile: PathBuf,
) -> Tansu {
    let mut command = Command::new("python3");
    command
        .arg(support("tansu.py"))
        .args(["start", "--from-properties"])
        .arg(properties)
        .args(["--check-with", env!("CARGO_BIN_EXE_kplink-agent")])
        .args(["--listener-name", "PRIVATELINK", "--host", address]);
    if let Some(port) = port {
        command.args(["--port", &port.to_string()]);
    }
    let out = command
        .args(["--storage", "s3://tansu/", "--pidfile"])
        .arg(&pidfile)
        .env("AWS_ENDPOINT", moto)
        .env("AWS_ALLOW_HTTP", "true")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .output()
        .unwrap();
    assert!(out.status.success(), "tansu.py start: {}", stderr(&out));
    Tansu { pidfile }
}

/// The `unshare` flags that give a process its own `/etc/hosts`: a mount namespace as root, else
/// inside an unprivileged user namespace. None when neither works.
pub fn private_hosts_flags(probe_hosts: &Path) -> Option<&'static [&'static str]> {
    [&["-m"][..], &["-r", "-m"][..]].into_iter().find(|flags| {
        Command::new("unshare")
            .args(*flags)
            .args(["--", "sh", "-c", MOUNT_HOSTS_AND_EXEC])
            .arg(probe_hosts)
            .arg("true")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

pub fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1).map(|euid| euid == "0"))
        .unwrap_or(false)
}

/// The `advertised.listeners` entry named `name` in a `server.properties` text (the agent writes
/// the property on one line).
pub fn advertised_entry(properties: &str, name: &str) -> Option<String> {
    let line = properties
        .lines()
        .find(|l| l.trim_start().starts_with("advertised.listeners="))?;
    line.split_once('=')?
        .1
        .split(',')
        .map(str::trim)
        .find_map(|e| e.strip_prefix(&format!("{name}://")).map(str::to_string))
}

/// Follows `name`'s CNAME records in `records` (`privatelink.py records`) down to one of the
/// endpoint's DNS names; the chain and the ENI addresses it ends at.
pub fn resolve(
    name: &str,
    records: &[Value],
    endpoint_dns: &BTreeMap<String, Vec<String>>,
) -> (Vec<String>, Vec<String>) {
    let mut chain = vec![name.to_string()];
    while chain.len() < 8 {
        let current = chain.last().unwrap();
        if let Some(addresses) = endpoint_dns.get(current) {
            return (chain, addresses.clone());
        }
        let cname = records
            .iter()
            .find(|r| r["name"] == current.as_str() && r["type"] == "CNAME")
            .unwrap_or_else(|| {
                panic!("{current} has no CNAME and is no endpoint DNS name; chain {chain:?}")
            });
        chain.push(cname["values"][0].as_str().unwrap().to_string());
    }
    panic!("{name}: CNAME chain too long: {chain:?}");
}

/// The endpoint's connection log, from line `from` on.
pub fn log_lines(log: &Path, from: usize) -> Vec<Value> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .skip(from)
        .map(|l| serde_json::from_str(l).expect("log line is JSON"))
        .collect()
}

/// The endpoint's data path (`privatelink.py nlb`), started: ENIs on `127.<net>.1.k`, forwarding
/// as moto says (listener → group → target), each target's private IP mapped to
/// `host_address(i)` for the i-th of `private_ips`. Returns the server and its `READY` view
/// (`enis`, `ports`, `dns`) with what the endpoint's DNS names resolve to.
pub fn start_endpoint(
    moto_url: &str,
    lb_arn: &str,
    endpoint_id: &str,
    net: u32,
    log: &Path,
    private_ips: &[&str],
    host_address: impl Fn(usize) -> String,
) -> (Server, Value, BTreeMap<String, Vec<String>>) {
    let mut args: Vec<String> = [
        "nlb",
        "--moto",
        moto_url,
        "--lb-arn",
        lb_arn,
        "--endpoint-id",
        endpoint_id,
        "--eni-net",
        &format!("127.{net}.1"),
        "--log",
        log.to_str().unwrap(),
    ]
    .map(String::from)
    .into();
    for (i, ip) in private_ips.iter().enumerate() {
        args.push("--address".into());
        args.push(format!("{ip}={}", host_address(i)));
    }
    let endpoint = start_server(
        "privatelink.py",
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    // privatelink.py prints `READY <json>`: the ENIs and what its DNS names resolve to.
    let view: Value = serde_json::from_str(&endpoint.url).expect("READY <json>");
    let dns: BTreeMap<String, Vec<String>> = serde_json::from_value(view["dns"].clone()).unwrap();
    (endpoint, view, dns)
}

/// The `N` of a test's loopback plan (`127.N.1.k` the endpoint's ENIs, `127.N.2.k` the broker
/// hosts): spread by the process id (other test processes on the machine), and distinct for each
/// call within this process, since the suite is one process whose tests run in parallel and every
/// test's emulated NLB listens on the same ports (three users today: two in
/// tests/e2e_privatelink.rs, one in tests/readme_walkthrough.rs; more than `SLOTS` share nets).
pub fn loopback_net() -> u32 {
    const SLOTS: u32 = 4;
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let slot = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % SLOTS;
    100 + (std::process::id() % 37) * SLOTS + slot
}
