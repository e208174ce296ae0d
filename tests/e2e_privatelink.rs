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
//! Not shown here: TLS (tansu cannot serve it), a real multi-broker Kafka cluster (see above),
//! PrivateLink's source NAT and proxy protocol, and Route 53's own resolution (the test follows
//! the CNAMEs itself).

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::privatelink::*;
use common::*;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use serde_json::{json, Value};

const ZONE: &str = "orders.example.internal";
const BOOTSTRAP_HOST: &str = "kafka.orders.example.internal";
const BOOTSTRAP_PORT: u16 = 10000;
const HOST_TEMPLATE: &str = "kafka-{az_id}.orders.example.internal";
const LISTENER_PORT: u16 = 9094;
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

#[test]
fn produce_and_consume_through_privatelink() {
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
        return;
    };

    // Loopback plan: 127.N.1.k are the endpoint's ENIs, 127.N.2.k the broker hosts.
    let net = loopback_net();
    let host_address = |i: usize| format!("127.{net}.2.{}", i + 1);
    let world = World::start(Options {
        hosts: 2,
        ..Options::default()
    });

    let zonal = wire(&world, &host_address);
    let step = |what: &str| eprintln!("{what} after {:?}", started.elapsed());
    step("agents wired");
    let brokers = start_brokers(&world, &host_address);
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
    let bootstrap = consumer_dns(&world, endpoint_id, zone_id);
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
    let served: BTreeMap<&str, Vec<String>> = records
        .iter()
        .filter(|r| r["type"] == "CNAME" && r["name"] != BOOTSTRAP_HOST)
        .map(|r| {
            let name = r["name"].as_str().unwrap();
            (name, resolve(name, &records, &endpoint_dns).1)
        })
        .collect();
    let (chain, regional) = resolve(BOOTSTRAP_HOST, &records, &endpoint_dns);
    assert_eq!(
        regional.iter().collect::<BTreeSet<_>>(),
        eni_address.values().collect::<BTreeSet<_>>(),
        "{BOOTSTRAP_HOST} must reach every ENI (the regional name; chain {chain:?})"
    );
    let system_hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
    let hosts_file = |bootstrap: &[String]| {
        let mut text = format!("{system_hosts}\n# served by tests/e2e_privatelink.rs\n");
        for (name, addresses) in &served {
            for a in addresses {
                text.push_str(&format!("{a} {name}\n"));
            }
        }
        for a in bootstrap {
            text.push_str(&format!("{a} {BOOTSTRAP_HOST}\n"));
        }
        text
    };
    step("DNS served");

    // Client sessions. Route 53 answers the regional name with every ENI and librdkafka picks
    // one at random: a session per AZ is served only that AZ's ENI for it, so its broker is known
    // in advance; a last session is served the full answer.
    let mut sessions: Vec<Option<&String>> = zonal.keys().map(Some).collect();
    sessions.push(None);
    let mut produced = Vec::new();
    for (round, pinned) in sessions.into_iter().enumerate() {
        let label = pinned.map_or("regional".to_string(), |az| format!("in {az}"));
        let bootstrap_enis = match pinned {
            Some(az_id) => vec![eni_address[az_id].clone()],
            None => regional.clone(),
        };
        let messages: Vec<String> = (0..MESSAGES).map(|n| format!("{round}-{n}")).collect();
        produced.extend(messages.iter().cloned());
        let before = log_lines(&log, 0).len();
        let result = run_session(
            scratch.path(),
            unshare,
            &format!("session-{round}"),
            &hosts_file(&bootstrap_enis),
            &json!({
                "bootstrap": bootstrap,
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
        let lines = log_lines(&log, before);
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
            let backend = format!("{}:{LISTENER_PORT}", host_address(broker.host));
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
        step(&format!(
            "session {label} ({} connections, {to_zonal} to broker ports, told {}:{})",
            lines.len(),
            told_broker.name,
            told_broker.port
        ));
    }

    // Cross-zone load balancing is off: a broker's port through the other AZ's ENI is reset.
    let (az_a, broker_a) = zonal.iter().next().unwrap();
    let other_eni = eni_address.iter().find(|(az, _)| *az != az_a).unwrap().1;
    let before = log_lines(&log, 0).len();
    if let Ok(mut s) = std::net::TcpStream::connect((other_eni.as_str(), broker_a.port)) {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = s.read(&mut [0u8; 1]);
    }
    wait_until(
        "the reset connection in the log",
        Duration::from_secs(5),
        || !log_lines(&log, before).is_empty(),
    );
    let reset = &log_lines(&log, before)[0];
    assert!(
        reset["result"].as_str().unwrap().starts_with(&format!(
            "no target in {}",
            reset["az_id"].as_str().unwrap()
        )),
        "{reset}"
    );

    drop(endpoint);
    drop(brokers);
    // Printed, not asserted: speed targets live in benches/ (each wait above is bounded).
    eprintln!("end to end took {:?}", started.elapsed());
}

/// Runs the agent once on each host (before Kafka's first start); checks what it wrote against
/// the NLB it wired. Returns each AZ ID's broker.
fn wire(world: &World, host_address: &dyn Fn(usize) -> String) -> BTreeMap<String, Zonal> {
    for (i, host) in world.hosts.iter().enumerate() {
        let config = format!(
            "cluster = \"orders\"\n\n[broker]\nserver_properties = \"{}\"\n\n\
             [listener]\nname = \"PRIVATELINK\"\nport = {LISTENER_PORT}\n\
             advertised_host = \"{HOST_TEMPLATE}\"\nsecurity_protocol = \"PLAINTEXT\"\n\n\
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
/// the agent wrote into its `server.properties`.
fn start_brokers(world: &World, host_address: &dyn Fn(usize) -> String) -> Vec<Tansu> {
    python_ok(
        "privatelink.py",
        &["bucket", "--moto", &world.moto.url, "--name", "tansu"],
    );
    let mut brokers = Vec::new();
    for (i, host) in world.hosts.iter().enumerate() {
        brokers.push(start_tansu(
            &world.moto.url,
            &host.properties(),
            &host_address(i),
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
/// config file); returns the `bootstrap.servers` it tells clients to use.
fn consumer_dns(world: &World, endpoint_id: &str, zone_id: &str) -> String {
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
        .output()
        .expect("run kplink-agent consumer-dns");
    assert_ok(&out);
    let report: Value = serde_json::from_slice(&out.stdout).expect("consumer-dns --json");
    assert_eq!(report["applied"]["status"], "INSYNC", "{report:#}");
    report["bootstrap_servers"].as_str().unwrap().to_string()
}

/// The client half of [`produce_and_consume_through_privatelink`]: run by it, in its own mount
/// namespace, with the spec in `$KPLINK_E2E_SESSION`; does nothing otherwise.
#[test]
#[ignore = "the client half of produce_and_consume_through_privatelink, which runs it"]
fn client_session() {
    let Ok(spec_path) = std::env::var(SESSION_ENV) else {
        eprintln!("{SESSION_ENV} not set: nothing to do");
        return;
    };
    let spec: Value = serde_json::from_str(&std::fs::read_to_string(spec_path).unwrap()).unwrap();
    let result = block_on(client(&spec));
    std::fs::write(spec["result"].as_str().unwrap(), result.to_string()).unwrap();
}

async fn client(spec: &Value) -> Value {
    let bootstrap = spec["bootstrap"].as_str().unwrap();
    let topic = spec["topic"].as_str().unwrap();
    let config = |extra: &[(&str, &str)]| {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", bootstrap)
            .set("broker.address.family", "v4")
            .set("socket.timeout.ms", "10000");
        for (k, v) in extra {
            c.set(*k, *v);
        }
        c
    };
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
