//! End to end: a Kafka client in a consumer VPC produces and consumes through the emulated
//! PrivateLink path, on names and ports the agent wired.
//!
//! - Provider: moto as AWS (tests/common), two broker hosts in two AZs. `kplink-agent run --once`
//!   claims each broker's NLB port and writes `PRIVATELINK://kafka-<az_id>.orders.example.
//!   internal:<port>` into its `server.properties`. A tansu broker per host is then started from
//!   what the agent wrote (`tansu.py start --from-properties`: the advertised endpoint and the
//!   listener port are read back from the file, never computed here), listening on the host's
//!   own loopback address.
//!
//!   tansu is one broker per process, always node id 111, and its Metadata lists only itself, so
//!   two tansus cannot form one Kafka cluster. They share one storage (an S3 bucket in moto), so
//!   each is a stateless broker over the same topics: what is produced through one is consumed
//!   through the other. A client session therefore sees one broker, the one its bootstrap
//!   connection reached; the test runs a session per AZ to use both.
//!
//! - Consumer side: a consumer VPC with an interface endpoint to the NLB's endpoint service in
//!   both broker AZs and a private hosted zone (`tests/support/consumer_world.py`).
//!   `tests/support/privatelink.py` plays the endpoint's ENIs on loopback addresses; each
//!   listens on every NLB listener port and routes each connection as AWS does, from moto's
//!   state at that moment: listener → target group → registered target in the ENI's own AZ
//!   (cross-zone load balancing is off, the NLB default) → the instance's private IP mapped to
//!   its loopback address → the target port. Every connection is logged.
//!
//! - DNS: `kplink-agent consumer-dns --apply` writes the consumer's records into moto's Route 53;
//!   the test reads them back (ListResourceRecordSets), follows each CNAME to the endpoint's DNS
//!   entries and those to the ENIs' addresses, and serves the result as `/etc/hosts`.
//!
//! - Name resolution, the choice: rust-rdkafka 0.39 (Cargo.lock) has no resolver hook
//!   (`ClientContext` offers no address rewrite, and `rd_kafka_conf_set_resolve_cb` is neither
//!   bound by rdkafka-sys 4.10 nor reachable before rust-rdkafka creates its client), so the
//!   client resolves through getaddrinfo like any consumer does. It runs as a separate process (a
//!   re-exec of this test binary, running [`client_session`]) in a private mount namespace with
//!   the served hosts file bind-mounted over `/etc/hosts`: `unshare -m` as root (CI), else
//!   `unshare -r -m` in an unprivileged user namespace. Where neither is allowed the test says so
//!   and passes without running the sessions (nothing else on the machine sees the hosts file).
//!
//! - The client (rdkafka) bootstraps on `kafka.orders.example.internal:10000`, must be told the
//!   zonal name and port the agent wrote, creates the topic, produces and consumes back
//!   (assign(), no group membership: a group's first fetch is slow on tansu). The test asserts
//!   the messages and, from the endpoint's connection log, that the session's connections went
//!   to the bootstrap port and to its broker's zonal port through the ENI in the broker's AZ,
//!   and nowhere else.
//!
//! - TLS ([`produce_and_consume_over_tls_through_privatelink`]): the same path with the agent's
//!   listener on SSL. A test CA and broker keystores are made at test time (`openssl` CLI,
//!   tests/common/tls.rs); each broker's `server.properties` names its PEM keystore (KIP-651:
//!   `ssl.keystore.type=PEM`, `ssl.keystore.location`), which satisfies the agent's keystore
//!   check. tansu cannot serve TLS, so `tests/support/tls_terminator.py` takes the listener's
//!   port on the host's address (where the NLB's targets point), reading the port, the protocol
//!   and the keystore from `server.properties` as Kafka does, and forwards plaintext to tansu on
//!   another port; tansu still advertises the zonal name the agent wrote, so the client dials
//!   every broker by that name, through the endpoint, with TLS. The client uses what
//!   `consumer-dns --tls` printed (`ssl.endpoint.identification.algorithm=https`) and trusts the
//!   test CA. The terminators log every handshake with the name the client asked for (SNI):
//!   every connection the endpoint forwarded must be a completed handshake for the bootstrap or
//!   a zonal name. Then the failures: a client trusting another CA, and brokers serving a
//!   certificate (same CA) without the zonal names; each must consume nothing, with librdkafka
//!   reporting the failed verification and the broker's side hearing the client's alert.
//!
//! Not shown here: a real multi-broker Kafka cluster (see above), Kafka's own TLS stack (the
//! terminator is Python's OpenSSL), PrivateLink's source NAT and proxy protocol, and Route 53's
//! own resolution (the test follows the CNAMEs itself).

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::privatelink::*;
use common::tls::{self, Certs};
use common::*;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use serde_json::{json, Value};

const ZONE: &str = "orders.example.internal";
const BOOTSTRAP_HOST: &str = "kafka.orders.example.internal";
const BOOTSTRAP_PORT: u16 = 10000;
const HOST_TEMPLATE: &str = "kafka-{az_id}.orders.example.internal";
const LISTENER_PORT: u16 = 9094;
/// Where tansu listens behind the TLS terminator, which holds the listener's port.
const TANSU_BEHIND_TLS_PORT: u16 = 19094;
const TOPIC: &str = "orders";
const TANSU_NODE_ID: i32 = 111;
const MESSAGES: usize = 20;
/// The client session's spec file; set only in the re-executed test binary.
const SESSION_ENV: &str = "KPLINK_E2E_SESSION";

/// What the agent advertised for one broker, and where that broker runs.
#[derive(Debug)]
struct Zonal {
    host: usize,
    name: String,
    port: u16,
}

/// The whole path, provider to consumer, set up and checked by [`set_up`]: what a client
/// session needs.
struct Setup {
    started: Instant,
    // Dropped in this order: the endpoint, the TLS listeners, the brokers, moto, the files.
    _endpoint: Server,
    terminators: Vec<Server>,
    _brokers: Vec<Tansu>,
    world: World,
    scratch: tempfile::TempDir,
    unshare: &'static [&'static str],
    /// 127.N.1.k are the endpoint's ENIs, 127.N.2.k the broker hosts.
    net: u32,
    zonal: BTreeMap<String, Zonal>,
    /// The endpoint's connection log (privatelink.py).
    log: PathBuf,
    /// The TLS listeners' connection log (tls_terminator.py).
    tls_log: PathBuf,
    eni_address: BTreeMap<String, String>,
    /// What the bootstrap (regional) name resolves to: every ENI.
    regional: Vec<String>,
    /// Every other name of the zone, resolved.
    served: BTreeMap<String, Vec<String>>,
    system_hosts: String,
    /// The `bootstrap.servers` consumer-dns printed.
    bootstrap: String,
    /// The other client properties it printed (`client_settings.properties`).
    client_properties: Value,
}

impl Setup {
    fn host_address(&self, i: usize) -> String {
        host_address(self.net, i)
    }

    fn step(&self, what: &str) {
        eprintln!("{what} after {:?}", self.started.elapsed());
    }

    /// The client's `/etc/hosts`: the system's, the zone's names, the bootstrap name.
    fn hosts_file(&self, bootstrap: &[String]) -> String {
        let mut text = format!(
            "{}\n# served by tests/e2e_privatelink.rs\n",
            self.system_hosts
        );
        for (name, addresses) in &self.served {
            for a in addresses {
                text.push_str(&format!("{a} {name}\n"));
            }
        }
        for a in bootstrap {
            text.push_str(&format!("{a} {BOOTSTRAP_HOST}\n"));
        }
        text
    }

    /// (Re)starts each broker's TLS listener from its `server.properties` (the listener's port,
    /// the keystore it names), in front of its tansu.
    fn start_terminators(&mut self) {
        self.terminators.clear();
        for (i, host) in self.world.hosts.iter().enumerate() {
            let address = host_address(self.net, i);
            self.terminators.push(tls::start_terminator(
                &host.properties(),
                "PRIVATELINK",
                &address,
                &format!("{address}:{TANSU_BEHIND_TLS_PORT}"),
                &self.tls_log,
            ));
        }
    }
}

fn host_address(net: u32, i: usize) -> String {
    format!("127.{net}.2.{}", i + 1)
}

#[test]
fn produce_and_consume_through_privatelink() {
    let Some(setup) = set_up(None) else { return };
    run_sessions(&setup, &json!({}));

    // Cross-zone load balancing is off: a broker's port through the other AZ's ENI is reset.
    let (az_a, broker_a) = setup.zonal.iter().next().unwrap();
    let other_eni = setup
        .eni_address
        .iter()
        .find(|(az, _)| *az != az_a)
        .unwrap()
        .1;
    let before = log_lines(&setup.log, 0).len();
    if let Ok(mut s) = std::net::TcpStream::connect((other_eni.as_str(), broker_a.port)) {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = s.read(&mut [0u8; 1]);
    }
    wait_until(
        "the reset connection in the log",
        Duration::from_secs(5),
        || !log_lines(&setup.log, before).is_empty(),
    );
    let reset = &log_lines(&setup.log, before)[0];
    assert!(
        reset["result"].as_str().unwrap().starts_with(&format!(
            "no target in {}",
            reset["az_id"].as_str().unwrap()
        )),
        "{reset}"
    );

    // Printed, not asserted: speed targets live in benches/ (each wait above is bounded).
    eprintln!("end to end took {:?}", setup.started.elapsed());
}

/// The same path with the managed listener on SSL (`[listener] security_protocol = "SSL"`), the
/// brokers' `server.properties` naming a PEM keystore (KIP-651) for `*.<zone>` and the bootstrap
/// name, TLS terminated where the NLB's targets are (tests/support/tls_terminator.py, from what
/// each `server.properties` says, in front of tansu), and a client verifying the certificate and
/// the host name (`ssl.endpoint.identification.algorithm=https`, librdkafka's default since 2.0,
/// CONFIGURATION.md) against the test CA. Then the two ways it must fail: a client trusting
/// another CA, and brokers serving a certificate without the zonal names.
#[test]
fn produce_and_consume_over_tls_through_privatelink() {
    let certs_dir = tempfile::tempdir().unwrap();
    let wildcard = format!("*.{ZONE}");
    let certs = tls::make(
        certs_dir.path(),
        &[&wildcard, BOOTSTRAP_HOST],
        &["other.example.internal"],
    );
    let Some(mut setup) = set_up(Some(&certs)) else {
        return;
    };
    // What consumer-dns --tls told the client to set (the host name check among it), plus the
    // protocol and the CA to trust.
    assert_eq!(
        setup.client_properties["ssl.endpoint.identification.algorithm"], "https",
        "{:#}",
        setup.client_properties
    );
    let properties = setup.client_properties.clone();
    let settings = |ca: &Path| {
        let mut settings = properties.clone();
        settings["security.protocol"] = json!("ssl");
        settings["ssl.ca.location"] = json!(ca);
        settings
    };

    // 1. Every connection through the endpoint is TLS, by the names the agent and consumer-dns
    // wrote, and the messages go through.
    let tls_before = log_lines(&setup.tls_log, 0).len();
    let sessions = run_sessions(&setup, &settings(&certs.ca));
    let forwarded = log_lines(&setup.log, 0)
        .iter()
        .filter(|l| l["result"] == "forwarded")
        .count();
    wait_until(
        "a TLS handshake for every connection the endpoint forwarded",
        Duration::from_secs(5),
        || log_lines(&setup.tls_log, tls_before).len() >= forwarded,
    );
    let handshakes = log_lines(&setup.tls_log, tls_before);
    assert_eq!(handshakes.len(), forwarded, "{handshakes:#?}");
    let zonal_names: BTreeSet<&str> = setup.zonal.values().map(|b| b.name.as_str()).collect();
    for h in &handshakes {
        assert_eq!(h["result"], "tls", "{h}");
        let sni = h["sni"].as_str().unwrap_or_default();
        assert!(
            sni == BOOTSTRAP_HOST || zonal_names.contains(sni),
            "a TLS connection asked for {sni:?}: {h}"
        );
    }
    for (az_id, broker) in &setup.zonal {
        let listen = format!("{}:{LISTENER_PORT}", setup.host_address(broker.host));
        let names: BTreeSet<&str> = handshakes
            .iter()
            .filter(|h| h["listen"] == listen.as_str())
            .filter_map(|h| h["sni"].as_str())
            .collect();
        assert!(
            names.contains(broker.name.as_str()) && names.contains(BOOTSTRAP_HOST),
            "broker in {az_id} ({listen}): TLS by the names {names:?}, want {} and {BOOTSTRAP_HOST}",
            broker.name
        );
    }
    setup.step(&format!(
        "{} TLS sessions, {} handshakes",
        sessions,
        handshakes.len()
    ));

    // 2. A client that trusts another CA: certificate verification fails, nothing is consumed,
    // and the brokers' side of the handshake hears the client's `unknown ca` alert.
    let failure = failing_session(&setup, "wrong-ca", &settings(&certs.other_ca));
    assert_refused(&setup, &failure, "unknown ca");

    // 3. The brokers' certificate renewed without the zonal names (same CA, only
    // other.example.internal): the host name check fails, nothing is consumed, and the alert
    // is `bad certificate`. Kafka reads its keystore at start-up: the listeners are restarted.
    for host in &setup.world.hosts {
        std::fs::copy(&certs.bad_keystore, host.dir.join("keystore.pem")).unwrap();
    }
    setup.start_terminators();
    let failure = failing_session(&setup, "other-names", &settings(&certs.ca));
    assert_refused(&setup, &failure, "bad certificate");

    eprintln!("TLS end to end took {:?}", setup.started.elapsed());
}

/// Sets up the path (see the module docs); with `tls`, the managed listener is SSL and each
/// broker's `server.properties` names the good keystore of `tls`. None (after saying SKIPPED)
/// where the client cannot have its own `/etc/hosts`.
fn set_up(tls: Option<&Certs>) -> Option<Setup> {
    let started = Instant::now();
    let scratch = tempfile::tempdir().unwrap();
    let probe = scratch.path().join("probe-hosts");
    std::fs::write(&probe, std::fs::read("/etc/hosts").unwrap_or_default()).unwrap();
    let Some(unshare) = private_hosts_flags(&probe) else {
        // CI runs as root: there the path must be proven, never skipped.
        assert!(
            !running_as_root(),
            "as root, `unshare -m` must give the client its own /etc/hosts"
        );
        eprintln!(
            "SKIPPED: the client needs its own /etc/hosts (a mount namespace: root, or \
             unprivileged user namespaces); neither `unshare -m` nor `unshare -r -m` works here"
        );
        return None;
    };

    let net = loopback_net();
    let host_address = |i: usize| host_address(net, i);
    let world = World::start(Options {
        hosts: 2,
        ..Options::default()
    });

    let step = |what: &str| eprintln!("{what} after {:?}", started.elapsed());
    let protocol = if tls.is_some() { "SSL" } else { "PLAINTEXT" };
    let zonal = wire(&world, &host_address, protocol);
    step("agents wired");
    if let Some(certs) = tls {
        add_keystores(&world, certs);
    }
    let brokers = start_brokers(&world, &host_address, tls.is_some());
    step("brokers started");

    // The consumer VPC (tests/support/consumer_world.py): an interface endpoint to the NLB's
    // endpoint service with subnets in both broker AZs, a private zone.
    let azs: Vec<&str> = world.hosts.iter().map(|h| h.az.as_str()).collect();
    let consumer: Value = serde_json::from_str(&python_ok(
        "consumer_world.py",
        &[
            "seed",
            "--moto",
            &world.moto.url,
            "--nlb-arn",
            &world.lb_arn,
            "--azs",
            &azs.join(","),
            "--zone",
            ZONE,
        ],
    ))
    .unwrap();
    let endpoint_id = consumer["endpoint_id"].as_str().unwrap();
    let zone_id = consumer["zone_id"].as_str().unwrap();

    // The endpoint's data path: ENIs on 127.N.1.k, targets mapped to the hosts' addresses.
    let log = scratch.path().join("connections.jsonl");
    let world_json: Value =
        serde_json::from_str(&std::fs::read_to_string(&world.world_file).unwrap()).unwrap();
    let private_ips: Vec<&str> = world_json["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .map(|(i, host)| {
            assert_eq!(host["instance_id"], world.hosts[i].instance_id.as_str());
            host["private_ip"].as_str().unwrap()
        })
        .collect();
    let (endpoint, view, endpoint_dns) = start_endpoint(
        &world.moto.url,
        &world.lb_arn,
        endpoint_id,
        net,
        &log,
        &private_ips,
        host_address,
    );
    let eni_address: BTreeMap<String, String> = view["enis"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["az_id"].as_str().unwrap().into(),
                e["address"].as_str().unwrap().into(),
            )
        })
        .collect();
    step("endpoint up");

    // The consumer's DNS as consumer-dns wrote it into Route 53, followed to the ENIs.
    let (bootstrap, client_properties) = consumer_dns(&world, endpoint_id, zone_id, tls.is_some());
    assert_eq!(bootstrap, format!("{BOOTSTRAP_HOST}:{BOOTSTRAP_PORT}"));
    let records: Vec<Value> = serde_json::from_str(&python_ok(
        "privatelink.py",
        &["records", "--moto", &world.moto.url, "--zone-id", zone_id],
    ))
    .unwrap();
    for (az_id, broker) in &zonal {
        let (chain, addresses) = resolve(&broker.name, &records, &endpoint_dns);
        assert_eq!(
            addresses,
            [eni_address[az_id].clone()],
            "{} must reach the endpoint's ENI in {az_id} (chain {chain:?})",
            broker.name
        );
    }
    // Every name in the zone is served (the bootstrap name per session, below).
    let served: BTreeMap<String, Vec<String>> = records
        .iter()
        .filter(|r| r["type"] == "CNAME" && r["name"] != BOOTSTRAP_HOST)
        .map(|r| {
            let name = r["name"].as_str().unwrap();
            (name.to_string(), resolve(name, &records, &endpoint_dns).1)
        })
        .collect();
    let (chain, regional) = resolve(BOOTSTRAP_HOST, &records, &endpoint_dns);
    assert_eq!(
        regional.iter().collect::<BTreeSet<_>>(),
        eni_address.values().collect::<BTreeSet<_>>(),
        "{BOOTSTRAP_HOST} must reach every ENI (the regional name; chain {chain:?})"
    );
    let mut setup = Setup {
        started,
        _endpoint: endpoint,
        terminators: Vec::new(),
        _brokers: brokers,
        world,
        tls_log: scratch.path().join("tls.jsonl"),
        scratch,
        unshare,
        net,
        zonal,
        log,
        eni_address,
        regional,
        served,
        system_hosts: std::fs::read_to_string("/etc/hosts").unwrap_or_default(),
        bootstrap,
        client_properties,
    };
    if tls.is_some() {
        setup.start_terminators();
        setup.step("TLS listeners up");
    }
    setup.step("DNS served");
    Some(setup)
}

/// Client sessions, each with `settings` (librdkafka properties) on top of the bootstrap
/// server. Route 53 answers the regional name with every ENI and librdkafka picks one at random:
/// a session per AZ is served only that AZ's ENI for it, so its broker is known in advance; a
/// last session is served the full answer. Each produces, then consumes everything produced so
/// far; the endpoint's log must show exactly the connections the session should make. Returns
/// the number of sessions.
fn run_sessions(setup: &Setup, settings: &Value) -> usize {
    let zonal = &setup.zonal;
    let mut sessions: Vec<Option<&String>> = zonal.keys().map(Some).collect();
    sessions.push(None);
    let count = sessions.len();
    let mut produced = Vec::new();
    for (round, pinned) in sessions.into_iter().enumerate() {
        let label = pinned.map_or("regional".to_string(), |az| format!("in {az}"));
        let bootstrap_enis = match pinned {
            Some(az_id) => vec![setup.eni_address[az_id].clone()],
            None => setup.regional.clone(),
        };
        let messages: Vec<String> = (0..MESSAGES).map(|n| format!("{round}-{n}")).collect();
        produced.extend(messages.iter().cloned());
        let before = log_lines(&setup.log, 0).len();
        let result = run_session(
            setup.scratch.path(),
            setup.unshare,
            &format!("session-{round}"),
            &setup.hosts_file(&bootstrap_enis),
            &json!({
                "bootstrap": setup.bootstrap,
                "settings": settings,
                "topic": TOPIC,
                "create_topic": round == 0,
                "produce": messages,
                "expect": produced,
            }),
        );

        // It consumed everything produced so far (through this broker or the other one), and it
        // was told a zonal name and port the agent wrote: its AZ's, when pinned.
        let consumed: Vec<String> = serde_json::from_value(result["consumed"].clone()).unwrap();
        assert_eq!(consumed, produced, "session {label}");
        let told = &result["metadata_brokers"];
        let (told_az, told_broker) = zonal
            .iter()
            .find(|(_, b)| *told == json!([{"id": TANSU_NODE_ID, "host": b.name, "port": b.port}]))
            .unwrap_or_else(|| {
                panic!("session {label}: metadata {told} is not what the agent wrote: {zonal:?}")
            });
        if let Some(az_id) = pinned {
            assert_eq!(told_az, az_id, "session {label} was told {told}");
        }

        // Its connections: all forwarded; the bootstrap port through an ENI to the broker in that
        // ENI's AZ; a broker's port only through the ENI in the broker's AZ, to that broker.
        let lines = log_lines(&setup.log, before);
        for line in &lines {
            assert_eq!(line["result"], "forwarded", "session {label}: {line}");
            let eni_az = line["az_id"].as_str().unwrap();
            let port = u16::try_from(line["port"].as_u64().unwrap()).unwrap();
            let broker = if port == BOOTSTRAP_PORT {
                &zonal[eni_az]
            } else {
                let (az_id, broker) = zonal
                    .iter()
                    .find(|(_, b)| b.port == port)
                    .unwrap_or_else(|| panic!("session {label}: {line} is no broker's port"));
                assert_eq!(eni_az, az_id, "session {label}: {line}");
                broker
            };
            let backend = format!("{}:{LISTENER_PORT}", setup.host_address(broker.host));
            assert_eq!(line["backend"], backend.as_str(), "session {label}: {line}");
        }
        let ports: BTreeSet<u16> = lines
            .iter()
            .map(|l| u16::try_from(l["port"].as_u64().unwrap()).unwrap())
            .collect();
        assert!(
            ports.contains(&BOOTSTRAP_PORT) && ports.contains(&told_broker.port),
            "session {label}: connections to {ports:?}, want {BOOTSTRAP_PORT} and {}: {lines:#?}",
            told_broker.port
        );
        if pinned.is_some() {
            assert_eq!(ports.len(), 2, "session {label}: {lines:#?}");
        }
        let to_zonal = lines.iter().filter(|l| l["port"] != BOOTSTRAP_PORT).count();
        setup.step(&format!(
            "session {label} ({} connections, {to_zonal} to broker ports, told {}:{})",
            lines.len(),
            told_broker.name,
            told_broker.port
        ));
    }
    count
}

/// What a client that must fail reported, and the TLS listeners' log lines of its session.
struct Failure {
    label: String,
    result: Value,
    handshakes: Vec<Value>,
}

/// A session pinned to the first AZ whose client is expected to fail (see [`failing_client`]).
fn failing_session(setup: &Setup, label: &str, settings: &Value) -> Failure {
    let az_id = setup.zonal.keys().next().unwrap();
    let tls_before = log_lines(&setup.tls_log, 0).len();
    let result = run_session(
        setup.scratch.path(),
        setup.unshare,
        &format!("failing-{label}"),
        &setup.hosts_file(&[setup.eni_address[az_id].clone()]),
        &json!({
            "bootstrap": setup.bootstrap,
            "settings": settings,
            "topic": TOPIC,
            "expect_failure": true,
        }),
    );
    setup.step(&format!("failing session {label}"));
    let handshakes = log_lines(&setup.tls_log, tls_before);
    eprintln!(
        "failing session {label}: metadata {}; librdkafka's first report {}; {} handshakes, the \
         first {}",
        result["metadata_error"],
        result["reported"][0],
        handshakes.len(),
        handshakes
            .first()
            .map_or("none".into(), |h| h["result"].to_string())
    );
    Failure {
        label: label.to_string(),
        result,
        handshakes,
    }
}

/// The client got no metadata and consumed nothing from a topic that holds messages, librdkafka
/// reported a failed certificate verification, and every handshake of the session failed on the
/// brokers' side with the client's `alert` (OpenSSL's alert for the verification error: `unknown
/// ca` for an untrusted issuer, `bad certificate` for a host name mismatch).
fn assert_refused(setup: &Setup, failure: &Failure, alert: &str) {
    let Failure {
        label,
        result,
        handshakes,
    } = failure;
    assert_eq!(result["consumed"], json!([]), "{label}: {result:#}");
    assert!(
        result["metadata_error"].is_string(),
        "{label}: metadata must fail: {result:#}"
    );
    let reported = result["reported"].as_array().unwrap();
    assert!(
        reported
            .iter()
            .any(|r| r.as_str().unwrap().contains("certificate verify failed")),
        "{label}: librdkafka must report the failed verification: {result:#}"
    );
    assert!(
        !handshakes.is_empty(),
        "{label}: no TLS connection reached a broker"
    );
    let broker = &setup.zonal[setup.zonal.keys().next().unwrap()];
    for h in handshakes {
        let outcome = h["result"].as_str().unwrap();
        assert!(
            outcome.starts_with("handshake failed") && outcome.contains(alert),
            "{label}: want the client's `{alert}` alert: {h}"
        );
        let sni = h["sni"].as_str().unwrap_or_default();
        assert!(
            sni == BOOTSTRAP_HOST || sni == broker.name,
            "{label}: {sni:?}: {h}"
        );
    }
}
/// Runs the agent once on each host (before Kafka's first start); checks what it wrote against
/// the NLB it wired. Returns each AZ ID's broker.
fn wire(
    world: &World,
    host_address: &dyn Fn(usize) -> String,
    protocol: &str,
) -> BTreeMap<String, Zonal> {
    for (i, host) in world.hosts.iter().enumerate() {
        let config = format!(
            "cluster = \"orders\"\n\n[broker]\nserver_properties = \"{}\"\n\n\
             [listener]\nname = \"PRIVATELINK\"\nport = {LISTENER_PORT}\n\
             advertised_host = \"{HOST_TEMPLATE}\"\nsecurity_protocol = \"{protocol}\"\n\n\
             [nlb]\nload_balancer_arn = \"{}\"\n\
             port_range = \"10001-10049\"\nbootstrap_port = {BOOTSTRAP_PORT}\n\n[restart]\n\
             bootstrap_servers = \"{}:{LISTENER_PORT}\"\n",
            host.properties().display(),
            world.lb_arn,
            host_address(i),
        );
        std::fs::write(host.config(), config).unwrap();
        assert_ok(&world.run(host, &["run", "--once"]));
    }
    let wiring = world.wiring();
    let mut zonal = BTreeMap::new();
    for (i, host) in world.hosts.iter().enumerate() {
        let port = wiring.port_of(&world.group(host.broker_id)).unwrap();
        let written = advertised_entry(&host.read_properties(), "PRIVATELINK")
            .unwrap_or_else(|| panic!("{}: no PRIVATELINK listener", host.name));
        assert_eq!(written, format!("kafka-{}.{ZONE}:{port}", host.az_id));
        assert!(
            wiring
                .group_on(BOOTSTRAP_PORT)
                .targets
                .contains(&(host.instance_id.clone(), LISTENER_PORT)),
            "{} is not in the bootstrap group",
            host.name
        );
        let text = host.read_properties();
        let mapping = format!("PRIVATELINK:{protocol}");
        assert!(
            text.lines()
                .filter_map(|l| l.strip_prefix("listener.security.protocol.map="))
                .any(|map| map.split(',').any(|e| e.trim() == mapping)),
            "{}: PRIVATELINK must map to {protocol}:\n{text}",
            host.name
        );
        let (name, port) = written.rsplit_once(':').unwrap();
        let broker = Zonal {
            host: i,
            name: name.to_string(),
            port: port.parse().unwrap(),
        };
        assert!(zonal.insert(host.az_id.clone(), broker).is_none());
    }
    assert_eq!(zonal.len(), 2, "two brokers in two AZs: {zonal:?}");
    zonal
}

/// A tansu per host on the host's address, all on one S3 bucket in moto, each started from what
/// the agent wrote into its `server.properties`; `behind_tls`: on another port, the listener's
/// port being the TLS terminator's.
fn start_brokers(
    world: &World,
    host_address: &dyn Fn(usize) -> String,
    behind_tls: bool,
) -> Vec<Tansu> {
    python_ok(
        "privatelink.py",
        &["bucket", "--moto", &world.moto.url, "--name", "tansu"],
    );
    let mut brokers = Vec::new();
    for (i, host) in world.hosts.iter().enumerate() {
        brokers.push(start_tansu_on_port(
            &world.moto.url,
            &host.properties(),
            &host_address(i),
            behind_tls.then_some(TANSU_BEHIND_TLS_PORT),
            host.dir.join("tansu.pid"),
        ));
    }
    brokers
}

/// Runs [`client_session`] in a re-executed test binary with `hosts` as its `/etc/hosts`;
/// returns its result.
fn run_session(dir: &Path, unshare: &[&str], name: &str, hosts: &str, spec: &Value) -> Value {
    let hosts_path = dir.join(format!("{name}.hosts"));
    let spec_path = dir.join(format!("{name}.json"));
    let result_path = dir.join(format!("{name}.result.json"));
    std::fs::write(&hosts_path, hosts).unwrap();
    let mut spec = spec.clone();
    spec["result"] = json!(result_path);
    std::fs::write(&spec_path, spec.to_string()).unwrap();
    let started = Instant::now();
    let out = Command::new("unshare")
        .args(unshare)
        .args(["--", "sh", "-c", MOUNT_HOSTS_AND_EXEC])
        .arg(&hosts_path)
        .arg(std::env::current_exe().unwrap())
        .args([
            "--exact",
            // The suite is one crate (tests/suite.rs): test names carry their module's path.
            "e2e_privatelink::client_session",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(SESSION_ENV, &spec_path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{name} failed:\nstdout: {}\nstderr: {}",
        stdout(&out),
        stderr(&out)
    );
    eprintln!("{name} took {:?}", started.elapsed());
    let result = std::fs::read_to_string(&result_path).unwrap_or_else(|e| {
        panic!(
            "{name}: no result at {} ({e}); did the re-executed binary run client_session?\nstdout: {}",
            result_path.display(),
            stdout(&out)
        )
    });
    serde_json::from_str(&result).unwrap()
}

/// `kplink-agent consumer-dns --apply` with the consumer's credentials (no instance metadata, no
/// config file), `--tls` for a TLS listener; returns the `bootstrap.servers` and the client
/// properties (`client_settings.properties`) it tells clients to use.
fn consumer_dns(world: &World, endpoint_id: &str, zone_id: &str, tls: bool) -> (String, Value) {
    let out = Command::new(BIN)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AWS_ENDPOINT_URL", &world.moto.url)
        .env("AWS_ACCESS_KEY_ID", "AKIACONSUMERE2E00001")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("KPLINK_LOG", "warn")
        .env("NO_COLOR", "1")
        .args([
            "consumer-dns",
            "--endpoint",
            endpoint_id,
            "--zone-id",
            zone_id,
        ])
        .args([
            "--host-template",
            HOST_TEMPLATE,
            "--bootstrap-host",
            BOOTSTRAP_HOST,
        ])
        .args(["--bootstrap-port", &BOOTSTRAP_PORT.to_string()])
        .args(["--apply", "--json"])
        .args(tls.then_some("--tls"))
        .output()
        .expect("run kplink-agent consumer-dns");
    assert_ok(&out);
    let report: Value = serde_json::from_slice(&out.stdout).expect("consumer-dns --json");
    assert_eq!(report["applied"]["status"], "INSYNC", "{report:#}");
    (
        report["bootstrap_servers"].as_str().unwrap().to_string(),
        report["client_settings"]["properties"].clone(),
    )
}

/// After the agent made the listener SSL and before Kafka starts, as an operator prepares a TLS
/// broker: each `server.properties` names a PEM keystore (KIP-651; apache/kafka
/// `DefaultSslEngineFactory.createKeystore`: type `PEM` with a location holding the key and the
/// chain, no `ssl.keystore.password`), a copy of the good keystore in the host's directory. The
/// agent's own check agrees: `check-config` warns that Kafka would refuse the SSL listener
/// without a keystore, and no longer once one is named.
fn add_keystores(world: &World, certs: &Certs) {
    let refused = "Kafka would refuse to start";
    for host in &world.hosts {
        let out = world.run(host, &["check-config"]);
        assert_ok(&out);
        assert!(stderr(&out).contains(refused), "{}", stderr(&out));

        let keystore = host.dir.join("keystore.pem");
        std::fs::copy(&certs.good_keystore, &keystore).unwrap();
        let mut text = host.read_properties();
        text.push_str(&format!(
            "ssl.keystore.type=PEM\nssl.keystore.location={}\n",
            keystore.display()
        ));
        std::fs::write(host.properties(), text).unwrap();
        let out = world.run(host, &["check-config"]);
        assert_ok(&out);
        assert!(!stderr(&out).contains(refused), "{}", stderr(&out));
    }
}

/// The client half of the tests above: run by them, in its own mount
/// namespace, with the spec in `$KPLINK_E2E_SESSION`; does nothing otherwise.
#[test]
#[ignore = "the client half of the tests above, which run it"]
fn client_session() {
    let Ok(spec_path) = std::env::var(SESSION_ENV) else {
        eprintln!("{SESSION_ENV} not set: nothing to do");
        return;
    };
    let spec: Value = serde_json::from_str(&std::fs::read_to_string(spec_path).unwrap()).unwrap();
    let result = if spec["expect_failure"] == true {
        failing_client(&spec)
    } else {
        block_on(client(&spec))
    };
    std::fs::write(spec["result"].as_str().unwrap(), result.to_string()).unwrap();
}

/// The spec's client configuration: its bootstrap server and `settings`, then `extra`.
fn client_config(spec: &Value, extra: &[(&str, &str)]) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", spec["bootstrap"].as_str().unwrap())
        .set("broker.address.family", "v4")
        .set("socket.timeout.ms", "10000");
    if let Some(settings) = spec["settings"].as_object() {
        for (k, v) in settings {
            c.set(k, v.as_str().map_or_else(|| v.to_string(), str::to_string));
        }
    }
    for (k, v) in extra {
        c.set(*k, *v);
    }
    c
}

async fn client(spec: &Value) -> Value {
    let topic = spec["topic"].as_str().unwrap();
    let config = |extra: &[(&str, &str)]| client_config(spec, extra);
    let timeout = Duration::from_secs(10);

    if spec["create_topic"].as_bool().unwrap() {
        let admin: AdminClient<DefaultClientContext> = config(&[]).create().unwrap();
        let opts = AdminOptions::new().request_timeout(Some(timeout));
        for result in admin
            .create_topics(
                [&NewTopic::new(topic, 1, TopicReplication::Fixed(1))],
                &opts,
            )
            .await
            .expect("CreateTopics")
        {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((t, code)) => panic!("create {t}: {code:?}"),
            }
        }
    }

    let producer: FutureProducer = config(&[("message.timeout.ms", "10000")]).create().unwrap();
    let metadata = producer
        .client()
        .fetch_metadata(Some(topic), timeout)
        .expect("metadata");
    let brokers: Vec<Value> = metadata
        .brokers()
        .iter()
        .map(|b| json!({"id": b.id(), "host": b.host(), "port": b.port()}))
        .collect();
    for message in spec["produce"].as_array().unwrap() {
        let payload = message.as_str().unwrap();
        producer
            .send(
                FutureRecord::to(topic)
                    .partition(0)
                    .key(payload)
                    .payload(payload),
                timeout,
            )
            .await
            .unwrap_or_else(|(e, _)| panic!("produce {payload}: {e}"));
    }

    let expect = spec["expect"].as_array().unwrap().len();
    // assign(), no group membership (a group's first fetch is slow on tansu); librdkafka still
    // wants a group.id for assign().
    let consumer: BaseConsumer = config(&[
        ("group.id", "e2e-assign-only"),
        ("enable.auto.commit", "false"),
    ])
    .create()
    .unwrap();
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, 0, Offset::Beginning)
        .unwrap();
    consumer.assign(&assignment).unwrap();
    let mut consumed = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while consumed.len() < expect && Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                consumed.push(String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned())
            }
            Some(Err(e)) => eprintln!("consume: {e}"),
            None => {}
        }
    }
    json!({"metadata_brokers": brokers, "consumed": consumed})
}

/// What librdkafka reports (its error and log callbacks), kept for the result.
#[derive(Default)]
struct Recorder(Mutex<Vec<String>>);

impl ClientContext for Recorder {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        self.0
            .lock()
            .unwrap()
            .push(format!("log {level:?} {fac}: {message}"));
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.0
            .lock()
            .unwrap()
            .push(format!("error {error}: {reason}"));
    }
}

impl ConsumerContext for Recorder {}

/// A client expected to fail: asks for metadata, then consumes the topic from the beginning for
/// a few seconds; reports the metadata error, what librdkafka said, and what it consumed.
fn failing_client(spec: &Value) -> Value {
    let topic = spec["topic"].as_str().unwrap();
    let consumer: BaseConsumer<Recorder> = client_config(
        spec,
        &[
            ("group.id", "e2e-must-fail"),
            ("enable.auto.commit", "false"),
        ],
    )
    .create_with_context(Recorder::default())
    .unwrap();
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(4));
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, 0, Offset::Beginning)
        .unwrap();
    consumer.assign(&assignment).unwrap();
    let mut consumed = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                consumed.push(String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned())
            }
            Some(Err(e)) => consumer
                .context()
                .0
                .lock()
                .unwrap()
                .push(format!("poll {e}")),
            None => {}
        }
    }
    let reported = consumer.context().0.lock().unwrap().clone();
    json!({
        "metadata_error": metadata.err().map(|e| e.to_string()),
        "reported": reported,
        "consumed": consumed,
    })
}
