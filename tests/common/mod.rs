//! Test harness: a moto server (through our launcher), the IMDSv2 test server, a seeded world,
//! and per-host directories with an agent config and a `server.properties`.
//!
//! Each test gets its own servers on ephemeral ports, so tests run in parallel without sharing
//! state. Observations go straight to moto through the SDK, never through the agent.

#![allow(dead_code)]

pub mod privatelink;
pub mod tls;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_elasticloadbalancingv2 as elbv2;
use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_kplink-agent");

pub fn support(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/support")
        .join(file)
}

/// A child process killed on drop.
pub struct Server {
    child: Child,
    pub url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts a support script that prints `READY <url>` as its first line.
pub fn start_server(script: &str, args: &[&str]) -> Server {
    let mut child = Command::new("python3")
        .arg(support(script))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {script}: {e}"));
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("read READY line");
    let url = line
        .trim()
        .strip_prefix("READY ")
        .unwrap_or_else(|| panic!("{script} did not print READY: {line:?}"))
        .to_string();
    Server { child, url }
}

pub struct Host {
    pub name: String,
    pub instance_id: String,
    pub az: String,
    pub az_id: String,
    pub broker_id: i64,
    pub access_key: String,
    pub imds: String,
    pub dir: PathBuf,
}

impl Host {
    pub fn config(&self) -> PathBuf {
        self.dir.join("agent.toml")
    }
    pub fn properties(&self) -> PathBuf {
        self.dir.join("server.properties")
    }
    pub fn read_properties(&self) -> String {
        std::fs::read_to_string(self.properties()).expect("read server.properties")
    }
}

pub const SERVER_PROPERTIES: &str = "# Kafka broker config managed by config management\n\
process.roles=broker,controller\n\
controller.listener.names=CONTROLLER\n\
listeners=PLAINTEXT://:9092,CONTROLLER://:9093\n\
advertised.listeners=PLAINTEXT://:9092\n\
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT\n\
\n\
# storage\n\
log.dirs=/nonexistent/kafka-logs\n\
num.partitions=3\n";

pub struct World {
    pub moto: Server,
    pub imds: Server,
    pub dir: tempfile::TempDir,
    pub world_file: PathBuf,
    pub lb_arn: String,
    pub hosts: Vec<Host>,
    pub elbv2: elbv2::Client,
}

pub struct Options {
    pub hosts: usize,
    pub no_metadata_tags: Vec<usize>,
    pub port_range: String,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            hosts: 3,
            no_metadata_tags: vec![],
            port_range: "10001-10049".into(),
        }
    }
}

impl World {
    pub fn start(opts: Options) -> World {
        let moto = start_server("moto_launcher.py", &["--port", "0"]);
        let imds = start_server("imds_server.py", &["--control-port", "0"]);
        let dir = tempfile::tempdir().expect("tempdir");
        let world_file = dir.path().join("world.json");
        let no_tags = opts
            .no_metadata_tags
            .iter()
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(",");
        let out = Command::new("python3")
            .arg(support("world.py"))
            .args([
                "seed",
                "--moto",
                &moto.url,
                "--hosts",
                &opts.hosts.to_string(),
                "--imds",
                &imds.url,
            ])
            .args(["--no-metadata-tags", &no_tags, "--out"])
            .arg(&world_file)
            .output()
            .expect("run world.py");
        assert!(
            out.status.success(),
            "world.py seed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let elbv2 = elbv2_client(&moto.url);
        let mut world = World {
            moto,
            imds,
            dir,
            world_file,
            lb_arn: String::new(),
            hosts: Vec::new(),
            elbv2,
        };
        world.load_hosts(&opts.port_range);
        world
    }

    fn load_hosts(&mut self, port_range: &str) {
        let json: Value =
            serde_json::from_str(&std::fs::read_to_string(&self.world_file).unwrap()).unwrap();
        self.lb_arn = json["load_balancer_arn"].as_str().unwrap().to_string();
        let known: BTreeSet<String> = self.hosts.iter().map(|h| h.name.clone()).collect();
        for h in json["hosts"].as_array().unwrap() {
            let name = h["name"].as_str().unwrap().to_string();
            if known.contains(&name) {
                continue;
            }
            let dir = self.dir.path().join(&name);
            std::fs::create_dir_all(&dir).unwrap();
            let host = Host {
                name,
                instance_id: h["instance_id"].as_str().unwrap().into(),
                az: h["az"].as_str().unwrap().into(),
                az_id: h["az_id"].as_str().unwrap().into(),
                broker_id: h["broker_id"].as_i64().unwrap(),
                access_key: h["access_key_id"].as_str().unwrap().into(),
                imds: h["imds_endpoint"].as_str().unwrap().into(),
                dir,
            };
            std::fs::write(host.properties(), SERVER_PROPERTIES).unwrap();
            std::fs::write(host.config(), self.config_text(&host, port_range, "")).unwrap();
            self.hosts.push(host);
        }
    }

    pub fn config_text(&self, host: &Host, port_range: &str, extra_broker: &str) -> String {
        format!(
            "cluster = \"orders\"\n\n[broker]\nserver_properties = \"{}\"\n{extra_broker}\n[listener]\n\
             advertised_host = \"kafka-{{az_id}}.orders.example.internal\"\n\n[nlb]\n\
             load_balancer_arn = \"{}\"\nport_range = \"{port_range}\"\n",
            host.properties().display(),
            self.lb_arn
        )
    }

    /// Launches a replacement (or extra) instance for `broker_id`; returns its index in `hosts`.
    pub fn add_host(&mut self, broker_id: i64) -> usize {
        let out = Command::new("python3")
            .arg(support("world.py"))
            .args(["add-host", "--world"])
            .arg(&self.world_file)
            .args(["--broker-id", &broker_id.to_string()])
            .output()
            .expect("world.py add-host");
        assert!(
            out.status.success(),
            "add-host: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.load_hosts("10001-10049");
        self.hosts.len() - 1
    }

    /// Name of broker `id`'s dedicated target group on this world's NLB.
    pub fn group(&self, id: i64) -> String {
        let id = i32::try_from(id).expect("broker id");
        kplink_agent::registry::dedicated_group_name("orders", &self.lb_arn, id)
    }

    /// Name of the bootstrap target group on this world's NLB.
    pub fn boot_group(&self) -> String {
        kplink_agent::registry::bootstrap_group_name("orders", &self.lb_arn)
    }

    pub fn agent(&self, host: &Host) -> Command {
        self.agent_with_config(host, &host.config())
    }

    pub fn run(&self, host: &Host, args: &[&str]) -> Output {
        self.agent(host).args(args).output().expect("run agent")
    }

    /// Server-side AWS call counts: (service:Action → n), for one host's key or all.
    pub fn calls(&self, access_key: Option<&str>) -> BTreeMap<String, u64> {
        let url = match access_key {
            Some(_) => format!("{}/_kplink/calls?by=access_key", self.moto.url),
            None => format!("{}/_kplink/calls", self.moto.url),
        };
        let json = http_json("GET", &url);
        let mut out = BTreeMap::new();
        match access_key {
            Some(key) => {
                if let Some(map) = json.get(key).and_then(Value::as_object) {
                    for (k, v) in map {
                        out.insert(k.clone(), v.as_u64().unwrap_or(0));
                    }
                }
            }
            None => {
                for (service, ops) in json.as_object().unwrap() {
                    if service.starts_with('_') {
                        continue;
                    }
                    for (op, n) in ops.as_object().unwrap() {
                        out.insert(format!("{service}:{op}"), n.as_u64().unwrap_or(0));
                    }
                }
            }
        }
        out
    }

    pub fn reset_calls(&self) {
        http_json("POST", &format!("{}/_kplink/calls/reset", self.moto.url));
    }

    pub fn imds_patch(&self, host: &Host, body: &str) {
        http_json_body(
            "PATCH",
            &format!("{}/hosts/{}", self.imds.url, host.name),
            body,
        );
    }

    /// The NLB as the agent left it.
    pub fn wiring(&self) -> Wiring {
        block_on(wiring(&self.elbv2, &self.lb_arn))
    }
}

pub fn http_json(method: &str, url: &str) -> Value {
    http_json_body(method, url, "")
}

pub fn http_json_body(method: &str, url: &str, body: &str) -> Value {
    let out = Command::new("python3")
        .args([
            "-c",
            "import sys,urllib.request as u\n\
             r=u.Request(sys.argv[2],method=sys.argv[1],data=(sys.argv[3].encode() if sys.argv[3] else None),headers={'Content-Type':'application/json'})\n\
             print(u.urlopen(r,timeout=10).read().decode() or 'null')",
            method,
            url,
            body,
        ])
        .output()
        .expect("python http");
    assert!(
        out.status.success(),
        "{method} {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

pub fn elbv2_client(url: &str) -> elbv2::Client {
    let creds = elbv2::config::Credentials::new("testing", "testing", None, None, "test");
    let conf = elbv2::Config::builder()
        .behavior_version(elbv2::config::BehaviorVersion::latest())
        .region(elbv2::config::Region::new("us-east-1"))
        .credentials_provider(creds)
        .endpoint_url(url)
        .build();
    elbv2::Client::from_conf(conf)
}

pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

#[derive(Debug, Clone)]
pub struct TargetGroup {
    pub arn: String,
    pub name: String,
    pub port: u16,
    pub tags: BTreeMap<String, String>,
    pub targets: BTreeSet<(String, u16)>,
}

#[derive(Debug, Clone)]
pub struct Wiring {
    /// port → target group name
    pub listeners: BTreeMap<u16, String>,
    /// every target group in the region, by name
    pub groups: BTreeMap<String, TargetGroup>,
}

impl Wiring {
    pub fn group_on(&self, port: u16) -> &TargetGroup {
        &self.groups[&self.listeners[&port]]
    }
    /// Port of the listener forwarding to `group`.
    pub fn port_of(&self, group: &str) -> Option<u16> {
        self.listeners
            .iter()
            .find(|(_, g)| *g == group)
            .map(|(p, _)| *p)
    }
}

pub async fn wiring(client: &elbv2::Client, lb_arn: &str) -> Wiring {
    let listeners = client
        .describe_listeners()
        .load_balancer_arn(lb_arn)
        .send()
        .await
        .unwrap();
    let groups = client.describe_target_groups().send().await.unwrap();
    let mut by_arn = BTreeMap::new();
    let mut out = Wiring {
        listeners: BTreeMap::new(),
        groups: BTreeMap::new(),
    };
    for g in groups.target_groups() {
        let arn = g.target_group_arn().unwrap().to_string();
        let name = g.target_group_name().unwrap().to_string();
        let tags = client
            .describe_tags()
            .resource_arns(&arn)
            .send()
            .await
            .unwrap();
        let tags = tags
            .tag_descriptions()
            .iter()
            .flat_map(|d| d.tags())
            .map(|t| {
                (
                    t.key().unwrap_or_default().to_string(),
                    t.value().unwrap_or_default().to_string(),
                )
            })
            .collect();
        let health = client
            .describe_target_health()
            .target_group_arn(&arn)
            .send()
            .await
            .unwrap();
        let targets = health
            .target_health_descriptions()
            .iter()
            .filter_map(|d| d.target())
            .map(|t| (t.id().unwrap().to_string(), t.port().unwrap_or(0) as u16))
            .collect();
        by_arn.insert(arn.clone(), name.clone());
        out.groups.insert(
            name.clone(),
            TargetGroup {
                arn,
                name,
                port: g.port().unwrap_or(0) as u16,
                tags,
                targets,
            },
        );
    }
    for l in listeners.listeners() {
        let tg = l.default_actions()[0]
            .target_group_arn()
            .unwrap_or_default();
        out.listeners.insert(
            l.port().unwrap() as u16,
            by_arn
                .get(tg)
                .cloned()
                .unwrap_or_else(|| format!("<unknown {tg}>")),
        );
    }
    out
}

/// Runs `run --once --json` on `hosts` at the same moment (hosts booting together); returns the
/// outputs in host order.
pub fn boot_at_once(world: &World, hosts: &[&Host]) -> Vec<Output> {
    let children: Vec<_> = hosts
        .iter()
        .map(|h| {
            world
                .agent(h)
                .args(["run", "--once", "--json"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn assert_ok(o: &Output) {
    assert!(
        o.status.success(),
        "agent failed ({:?}):\nstdout: {}\nstderr: {}",
        o.status.code(),
        stdout(o),
        stderr(o)
    );
}

pub fn wait_a_bit() {
    std::thread::sleep(Duration::from_millis(50));
}

// ---- Helpers for tests/reliability.rs and tests/fuzz_inputs.rs ----

/// `server.properties` after a successful pass on [`SERVER_PROPERTIES`], advertising `port`.
pub fn expected_properties(az_id: &str, port: u16) -> String {
    SERVER_PROPERTIES
        .replace(
            "listeners=PLAINTEXT://:9092,CONTROLLER://:9093\n",
            "listeners=PLAINTEXT://:9092,CONTROLLER://:9093,PRIVATELINK://:9094\n",
        )
        .replace(
            "advertised.listeners=PLAINTEXT://:9092\n",
            &format!(
                "advertised.listeners=PLAINTEXT://:9092,PRIVATELINK://kafka-{az_id}.orders.example.internal:{port}\n"
            ),
        )
        .replace(
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT\n",
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,PRIVATELINK:SSL\n",
        )
}

/// The last `error: ` line on stderr, if any.
pub fn last_error_line(o: &Output) -> Option<String> {
    stderr(o)
        .lines()
        .rfind(|l| l.starts_with("error: "))
        .map(str::to_string)
}

/// A plain HTTP/1.0 GET without spawning a process (fast enough to poll in a tight loop).
pub fn http_get_fast(url: &str) -> Value {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").expect("http:// URL");
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let mut stream = std::net::TcpStream::connect(authority).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {} HTTP/1.0\r\nHost: {authority}\r\nConnection: close\r\n\r\n",
        if path.is_empty() { "/" } else { path }
    )
    .unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read response");
    let text = String::from_utf8_lossy(&raw);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    serde_json::from_str(body).unwrap_or(Value::Null)
}

impl World {
    /// Like [`World::agent`], with another config file.
    pub fn agent_with_config(&self, host: &Host, config: &Path) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("AWS_ENDPOINT_URL", &self.moto.url)
            .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", &host.imds)
            .env("AWS_ACCESS_KEY_ID", &host.access_key)
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env(
                "KPLINK_LOG",
                std::env::var("KPLINK_TEST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .env("NO_COLOR", "1")
            .arg("--config")
            .arg(config);
        cmd
    }

    /// Replaces moto's fault configuration (see moto_launcher.py `POST /_kplink/faults`).
    pub fn set_faults(&self, body: &str) {
        http_json_body("POST", &format!("{}/_kplink/faults", self.moto.url), body);
    }

    pub fn clear_faults(&self) {
        http_json("DELETE", &format!("{}/_kplink/faults", self.moto.url));
    }

    /// Faults injected since the counters were last reset, by kind.
    pub fn faults_injected(&self) -> BTreeMap<String, u64> {
        let json = http_get_fast(&format!("{}/_kplink/calls", self.moto.url));
        json["_faults"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0)))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Server-side calls made with `access_key` so far (all operations), without spawning.
    pub fn calls_total_fast(&self, access_key: &str) -> u64 {
        let json = http_get_fast(&format!("{}/_kplink/calls?by=access_key", self.moto.url));
        json.get(access_key)
            .and_then(Value::as_object)
            .map_or(0, |m| m.values().filter_map(Value::as_u64).sum())
    }

    pub fn vpc_id(&self) -> String {
        let json: Value =
            serde_json::from_str(&std::fs::read_to_string(&self.world_file).unwrap()).unwrap();
        json["vpc_id"].as_str().unwrap().to_string()
    }
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Deletes the NLB listener on `port` behind the agent's back (drift).
pub fn delete_listener(world: &World, port: u16) {
    block_on(async {
        let ls = world
            .elbv2
            .describe_listeners()
            .load_balancer_arn(&world.lb_arn)
            .send()
            .await
            .unwrap();
        let arn = ls
            .listeners()
            .iter()
            .find(|l| l.port() == Some(i32::from(port)))
            .unwrap()
            .listener_arn()
            .unwrap()
            .to_string();
        world
            .elbv2
            .delete_listener()
            .listener_arn(arn)
            .send()
            .await
            .unwrap();
    });
}

/// `GET path` on 127.0.0.1:`port`: (status, body).
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let status = out.split_whitespace().nth(1)?.parse().ok()?;
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some((status, body))
}

/// A sample of the Prometheus exposition on 127.0.0.1:`port`.
pub fn metric(port: u16, name: &str) -> Option<f64> {
    let (_, body) = http_get(port, "/metrics")?;
    body.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Polls `f` every 100 ms until it holds; panics naming `what` after `limit`.
pub fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return start.elapsed();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out after {limit:?} waiting for {what}");
}

/// A TCP listener on 127.0.0.1 that accepts connections and never answers (a broker in log
/// recovery, or one the admin client cannot talk to); its address.
pub fn silent_listener() -> String {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = silent.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in silent.incoming().flatten() {
            held.push(conn);
        }
    });
    address
}

/// [`SERVER_PROPERTIES`] as a KRaft controller-only node's.
pub fn controller_only_properties() -> String {
    let props = SERVER_PROPERTIES.replace(
        "process.roles=broker,controller",
        "process.roles=controller",
    );
    assert_ne!(props, SERVER_PROPERTIES);
    props
}

/// More NLBs, named `names`, in the same subnets as the world's; their ARNs, in order.
pub fn more_nlbs(world: &World, names: &[&str]) -> Vec<String> {
    block_on(async {
        let lb = world
            .elbv2
            .describe_load_balancers()
            .load_balancer_arns(&world.lb_arn)
            .send()
            .await
            .unwrap();
        let subnets: Vec<String> = lb.load_balancers()[0]
            .availability_zones()
            .iter()
            .filter_map(|z| z.subnet_id().map(str::to_string))
            .collect();
        let mut arns = Vec::new();
        for name in names {
            let out = world
                .elbv2
                .create_load_balancer()
                .name(*name)
                .set_subnets(Some(subnets.clone()))
                .r#type(elbv2::types::LoadBalancerTypeEnum::Network)
                .scheme(elbv2::types::LoadBalancerSchemeEnum::Internal)
                .send()
                .await
                .unwrap();
            arns.push(
                out.load_balancers()[0]
                    .load_balancer_arn()
                    .unwrap()
                    .to_string(),
            );
        }
        arns
    })
}
