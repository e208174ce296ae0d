//! The README's "From an empty account to a producing client", run as written.
//!
//! The commands are read from the README: every ```sh block of that section comes right after an
//! `<!-- walkthrough: STEP -->` comment, and the steps are run in order against moto
//! (`moto_cfn_launcher.py`, through `AWS_ENDPOINT_URL`, which awscli v1 honours), the IMDSv2 test
//! server and tansu. A block's commands run one at a time (`bash -c`, continuation lines and
//! heredocs kept whole); each must exit 0, or the code its `# exit N` comment names. The only
//! changes to a command's text are the substitutions written next to each step below (the
//! README's placeholder ids and paths → what earlier commands printed or the test made; each
//! must occur in the command, else the test fails), and each command is printed as run.
//!
//! Where a command cannot run here as written:
//! - `aws cloudformation deploy`: moto's CloudFormation cannot create
//!   `AWS::EC2::VPCEndpointService(Permissions)`; the command deploys the template without them
//!   (`provider_stack.py variant`, the same variant as tests/provider_stack.rs) and the test then
//!   creates them through the EC2 API (`provider_stack.py stand-ins`). The stack therefore has
//!   no `EndpointServiceName` output: its `describe-stacks` runs and prints nothing, and the
//!   service name is the stand-in's (what the output computes, as tests/provider_stack.rs shows).
//! - `apt install ./kplink-agent_….deb` is not run and `systemctl enable --now kplink-agent` is
//!   run as `kplink-agent run --once` (the daemon's first pass): tests/systemd.rs proves the
//!   package and the unit in a real systemd. `sudo` is dropped; `/etc/kplink/agent.toml` is the
//!   host's directory (`KPLINK_CONFIG`), and the test points the installed file's
//!   `server_properties` there too and sets `restart.bootstrap_servers` to the host's tansu.
//! - The client and the producer say `"security.protocol": "PLAINTEXT"` where the README says
//!   `SSL`: tansu cannot serve TLS.
//! - Both run in a private mount namespace whose `/etc/hosts` serves the records
//!   `consumer-dns` wrote, followed to `privatelink.py`'s endpoint on loopback (as in
//!   tests/e2e_privatelink.rs); where no mount namespace is allowed (not root, no unprivileged
//!   user namespaces) those two steps print SKIPPED (never as root, so never in CI).

use crate::common;

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use common::privatelink::*;
use common::*;
use serde_json::Value;

const SECTION: &str = "## From an empty account to a producing client";
const STEPS: [&str; 8] = [
    "provider-stack",
    "stack-outputs",
    "launch-brokers",
    "broker-host",
    "consumer-endpoint",
    "consumer-dns",
    "client",
    "produce",
];
const TEMPLATE: &str = "deploy/cloudformation/provider.yaml";
const BOOTSTRAP_HOST: &str = "kafka.orders.example.internal";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The marked blocks of the section, in order: (step, text).
fn walkthrough(readme: &str) -> Vec<(String, String)> {
    let start = readme.find(SECTION).expect("README section");
    let rest = &readme[start + SECTION.len()..];
    let section = &rest[..rest.find("\n## ").unwrap_or(rest.len())];
    let mut blocks = Vec::new();
    let mut lines = section.lines().peekable();
    let mut unmarked = 0;
    let mut marked_next = None;
    while let Some(line) = lines.next() {
        if let Some(step) = line
            .strip_prefix("<!-- walkthrough: ")
            .and_then(|l| l.strip_suffix(" -->"))
        {
            marked_next = Some(step.to_string());
            assert_eq!(
                lines.peek().copied(),
                Some("```sh"),
                "{step}: the marker must stand right above a ```sh block"
            );
        } else if line.starts_with("```sh") {
            let mut text = String::new();
            for l in lines.by_ref() {
                if l == "```" {
                    break;
                }
                text.push_str(l);
                text.push('\n');
            }
            match marked_next.take() {
                Some(step) => blocks.push((step, text)),
                None => unmarked += 1,
            }
        }
    }
    assert_eq!(unmarked, 0, "every ```sh block of the section is a step");
    blocks
}

/// A block's commands: continuation lines joined, a heredoc kept with its command, blank and
/// comment-only lines dropped.
fn commands(block: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut lines = block.lines();
    while let Some(line) = lines.next() {
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let mut cmd = line.to_string();
        while cmd.ends_with('\\') {
            cmd.push('\n');
            cmd.push_str(lines.next().expect("continuation"));
        }
        if let Some(tag) = cmd.split("<<'").nth(1).and_then(|t| t.split('\'').next()) {
            let tag = tag.to_string();
            for l in lines.by_ref() {
                cmd.push('\n');
                cmd.push_str(l);
                if l == tag {
                    break;
                }
            }
        }
        out.push(cmd);
    }
    out
}

/// The exit code a command's `# exit N` comment promises, else 0.
fn expected_exit(cmd: &str) -> i32 {
    cmd.lines()
        .next()
        .and_then(|l| l.split("# exit ").nth(1))
        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
        .map_or(0, |n| n.parse().unwrap())
}

/// `cmd` with each (placeholder, value) replaced; each placeholder must occur.
fn substitute(cmd: &str, subs: &[(&str, &str)]) -> String {
    let mut out = cmd.to_string();
    for (from, to) in subs {
        assert!(out.contains(from), "`{from}` is not in the command:\n{cmd}");
        out = out.replace(from, to);
    }
    out
}

/// Where and how commands run: the environment and an optional wrapper (`unshare …`).
struct Shell {
    cwd: PathBuf,
    env: Vec<(String, String)>,
    wrapper: Vec<String>,
}

impl Shell {
    /// Runs `cmd` after `subs`; asserts its exit code; its stdout, trimmed.
    fn run(&self, step: &str, cmd: &str, subs: &[(&str, &str)]) -> String {
        let text = substitute(cmd, subs);
        eprintln!("[{step}] $ {text}");
        let mut command = match self.wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg("bash");
                c
            }
            None => Command::new("bash"),
        };
        command.args(["-c", &text]).current_dir(&self.cwd);
        for var in [
            "AWS_PROFILE",
            "AWS_REGION",
            "KPLINK_CONFIG",
            "AWS_SESSION_TOKEN",
        ] {
            command.env_remove(var);
        }
        for (k, v) in &self.env {
            command.env(k, v);
        }
        let out = command.output().expect("run bash");
        let want = expected_exit(cmd);
        assert_eq!(
            out.status.code(),
            Some(want),
            "[{step}] `{text}` exited {:?}, the README says {want}:\nstdout: {}\nstderr: {}",
            out.status.code(),
            stdout(&out),
            stderr(&out)
        );
        eprint!("{}", stdout(&out));
        stdout(&out).trim().to_string()
    }
}

#[test]
fn readme_walkthrough_runs_as_written() {
    let started = Instant::now();
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let blocks = walkthrough(&readme);
    let steps: Vec<&str> = blocks.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(steps, STEPS, "the section's steps, in order");
    let block = |step: &str| commands(&blocks.iter().find(|(s, _)| s == step).unwrap().1);

    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let moto = start_server("moto_cfn_launcher.py", &["--port", "0"]);
    let imds = start_server("imds_server.py", &["--control-port", "0"]);

    // `aws` is awscli v1 from tests/support/requirements.txt, for the python3 it was installed
    // for; `kplink-agent` is the binary under test.
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::write(
        bin.join("aws"),
        "#!/bin/sh\nexec python3 -m awscli \"$@\"\n",
    )
    .unwrap();
    std::fs::set_permissions(bin.join("aws"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}:{}",
        bin.display(),
        Path::new(BIN).parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let aws_env = |key: &str| -> Vec<(String, String)> {
        [
            ("PATH", path.as_str()),
            ("AWS_ENDPOINT_URL", moto.url.as_str()),
            ("AWS_ACCESS_KEY_ID", key),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("AWS_DEFAULT_REGION", "us-east-1"),
            ("AWS_CONFIG_FILE", "/dev/null"),
            ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
            ("KPLINK_LOG", "warn"),
            ("NO_COLOR", "1"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    };
    let provider = Shell {
        cwd: dir.to_path_buf(),
        env: aws_env("AKIAPROVIDERWALK0001"),
        wrapper: vec![],
    };
    let step = |what: &str| eprintln!("== {what} after {:.1?}", started.elapsed());

    // 1. The provider stack. The account's VPC, subnets and AMI (placeholders vpc-0abc,
    // subnet-0aaa/0bbb, ami-0abc) come from `provider_stack.py seed-vpc`.
    let base: Value = serde_json::from_str(&python_ok(
        "provider_stack.py",
        &["seed-vpc", "--moto", &moto.url],
    ))
    .unwrap();
    let subnet = |az: &str| {
        base["subnets"][az]["subnet_id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (subnet_a, subnet_b) = (subnet("us-east-1a"), subnet("us-east-1b"));
    let variant = dir.join("provider-moto.json");
    let template = repo().join(TEMPLATE);
    python_ok(
        "provider_stack.py",
        &[
            "variant",
            "--template",
            template.to_str().unwrap(),
            "--out",
            variant.to_str().unwrap(),
        ],
    );
    let deploy = block("provider-stack");
    assert_eq!(deploy.len(), 1, "{deploy:?}");
    assert_parameters_exist(&deploy[0], &variant);
    let subnets = format!("{subnet_a},{subnet_b}");
    provider.run(
        "provider-stack",
        &deploy[0],
        &[
            (TEMPLATE, variant.to_str().unwrap()),
            ("vpc-0abc", base["vpc_id"].as_str().unwrap()),
            ("subnet-0aaa,subnet-0bbb", &subnets),
            ("ami-0abc", base["image_id"].as_str().unwrap()),
        ],
    );
    let stand_ins: Value = serde_json::from_str(&python_ok(
        "provider_stack.py",
        &[
            "stand-ins",
            "--moto",
            &moto.url,
            "--template",
            template.to_str().unwrap(),
            "--stack",
            "kplink-orders",
        ],
    ))
    .unwrap();
    let service_name = stand_ins["endpoint_services"][0]["service_name"]
        .as_str()
        .unwrap()
        .to_string();
    step("provider stack");

    // 2. Its outputs: agent.toml in the working directory, the launch template's id, and the
    // endpoint service name (empty here: see the module docs).
    let outputs = block("stack-outputs");
    assert_eq!(outputs.len(), 3, "{outputs:?}");
    assert_eq!(provider.run("stack-outputs", &outputs[0], &[]), "");
    let agent_toml = std::fs::read_to_string(dir.join("agent.toml")).unwrap();
    assert!(
        agent_toml.contains("load_balancer_arn = \"arn:"),
        "{agent_toml}"
    );
    let launch_template = provider.run("stack-outputs", &outputs[1], &[]);
    assert!(launch_template.starts_with("lt-"), "{launch_template}");
    assert_eq!(provider.run("stack-outputs", &outputs[2], &[]), "");
    let lb_arn = agent_toml
        .lines()
        .find_map(|l| l.strip_prefix("load_balancer_arn = \""))
        .unwrap()
        .trim_end_matches('"')
        .to_string();

    // 3. Two brokers from the launch template (lt-0abc), in subnet-0aaa and subnet-0bbb;
    // registered with the IMDS test server as the instances they are.
    let launches = block("launch-brokers");
    assert_eq!(launches.len(), 2, "{launches:?}");
    let instance_ids: Vec<String> = launches
        .iter()
        .zip([&subnet_a, &subnet_b])
        .map(|(cmd, subnet)| {
            let placeholder = if cmd.contains("subnet-0aaa") {
                "subnet-0aaa"
            } else {
                "subnet-0bbb"
            };
            provider.run(
                "launch-brokers",
                cmd,
                &[("lt-0abc", &launch_template), (placeholder, subnet)],
            )
        })
        .collect();
    let hosts_dir = dir.join("hosts");
    let mut register = vec![
        "register-hosts",
        "--moto",
        &moto.url,
        "--imds",
        &imds.url,
        "--out",
        hosts_dir.to_str().unwrap(),
    ];
    for id in &instance_ids {
        register.extend(["--instance-id", id]);
    }
    let registered: Value =
        serde_json::from_str(&python_ok("provider_stack.py", &register)).unwrap();
    let hosts = registered["hosts"].as_array().unwrap().clone();
    assert_eq!(hosts.len(), 2);
    let azs: Vec<&str> = hosts.iter().map(|h| h["az"].as_str().unwrap()).collect();
    assert_eq!(azs, ["us-east-1a", "us-east-1b"]);
    step("brokers launched");

    // 4. On each broker host. Host i runs on 127.N.2.i (the endpoint's ENIs on 127.N.1.k).
    let net = loopback_net();
    let host_address = |i: usize| format!("127.{net}.2.{}", i + 1);
    let on_host = block("broker-host");
    assert_eq!(on_host.len(), 6, "{on_host:?}");
    assert!(
        on_host[0].starts_with("sudo apt install ./kplink-agent_"),
        "the package step (proved by tests/systemd.rs): {}",
        on_host[0]
    );
    let mut advertised = BTreeSet::new();
    for (i, host) in hosts.iter().enumerate() {
        let host_dir = hosts_dir.join(host["name"].as_str().unwrap());
        std::fs::create_dir_all(&host_dir).unwrap();
        let properties = host_dir.join("server.properties");
        std::fs::write(&properties, SERVER_PROPERTIES).unwrap();
        let config = host_dir.join("agent.toml");
        let mut env = aws_env(host["access_key_id"].as_str().unwrap());
        // A broker host: credentials from its role (here its own key), region and identity from
        // instance metadata.
        env.retain(|(k, _)| k != "AWS_EC2_METADATA_DISABLED" && k != "AWS_DEFAULT_REGION");
        env.push((
            "AWS_EC2_METADATA_SERVICE_ENDPOINT".into(),
            host["imds_endpoint"].as_str().unwrap().into(),
        ));
        env.push(("KPLINK_CONFIG".into(), config.display().to_string()));
        let shell = Shell {
            cwd: dir.to_path_buf(),
            env,
            wrapper: vec![],
        };
        let config_path = config.display().to_string();
        for cmd in &on_host[1..] {
            let cmd = cmd.strip_prefix("sudo ").unwrap_or(cmd);
            if cmd.starts_with("systemctl enable --now kplink-agent") {
                shell.run(
                    "broker-host",
                    cmd,
                    &[(
                        "systemctl enable --now kplink-agent",
                        "kplink-agent run --once",
                    )],
                );
            } else if cmd.starts_with("install ") {
                shell.run(
                    "broker-host",
                    cmd,
                    &[("/etc/kplink/agent.toml", &config_path)],
                );
                let mode = std::fs::metadata(&config).unwrap().permissions().mode() & 0o777;
                assert_eq!(mode, 0o640);
                // This host's paths and Kafka address in the installed file.
                let text = std::fs::read_to_string(&config).unwrap();
                let text = substitute(
                    &text,
                    &[(
                        "/etc/kafka/server.properties",
                        &properties.display().to_string(),
                    )],
                ) + &format!(
                    "\n[restart]\nbootstrap_servers = \"{}:9094\"\n",
                    host_address(i)
                );
                std::fs::write(&config, text).unwrap();
            } else {
                shell.run("broker-host", cmd, &[]);
            }
        }
        let written = std::fs::read_to_string(&properties).unwrap();
        let entry = advertised_entry(&written, "PRIVATELINK")
            .unwrap_or_else(|| panic!("no PRIVATELINK listener written:\n{written}"));
        assert!(
            entry.starts_with(&format!(
                "kafka-{}.orders.example.internal:",
                host["az_id"].as_str().unwrap()
            )),
            "{entry}"
        );
        advertised.insert(entry);
    }
    assert_eq!(advertised.len(), 2, "{advertised:?}");
    python_ok(
        "privatelink.py",
        &["bucket", "--moto", &moto.url, "--name", "tansu"],
    );
    let brokers: Vec<Tansu> = hosts
        .iter()
        .enumerate()
        .map(|(i, host)| {
            let host_dir = hosts_dir.join(host["name"].as_str().unwrap());
            start_tansu(
                &moto.url,
                &host_dir.join("server.properties"),
                &host_address(i),
                host_dir.join("tansu.pid"),
            )
        })
        .collect();
    step("agents wired, brokers started");

    // 5. The consumer account: its VPC (vpc-0consumer) with subnets (subnet-0ccc, subnet-0ddd)
    // in the brokers' AZs, from `consumer_world.py vpc`.
    let consumer_vpc: Value = serde_json::from_str(&python_ok(
        "consumer_world.py",
        &["vpc", "--moto", &moto.url, "--azs", &azs.join(",")],
    ))
    .unwrap();
    let vpc = consumer_vpc["vpc_id"].as_str().unwrap();
    let subnet_c = consumer_vpc["subnets"][azs[0]].as_str().unwrap();
    let subnet_d = consumer_vpc["subnets"][azs[1]].as_str().unwrap();
    let consumer = Shell {
        cwd: dir.to_path_buf(),
        env: aws_env("AKIACONSUMERWALK0001"),
        wrapper: vec![],
    };
    let endpoint_cmds = block("consumer-endpoint");
    assert_eq!(endpoint_cmds.len(), 4, "{endpoint_cmds:?}");
    let sg = consumer.run(
        "consumer-endpoint",
        &endpoint_cmds[0],
        &[("vpc-0consumer", vpc)],
    );
    assert!(sg.starts_with("sg-"), "{sg}");
    consumer.run(
        "consumer-endpoint",
        &endpoint_cmds[1],
        &[("sg-0endpoint", &sg)],
    );
    let endpoint_id = consumer.run(
        "consumer-endpoint",
        &endpoint_cmds[2],
        &[
            ("vpc-0consumer", vpc),
            ("com.amazonaws.vpce.us-east-1.vpce-svc-0abc", &service_name),
            ("subnet-0ccc", subnet_c),
            ("subnet-0ddd", subnet_d),
            ("sg-0endpoint", &sg),
        ],
    );
    assert!(endpoint_id.starts_with("vpce-"), "{endpoint_id}");
    let zone_id = consumer.run(
        "consumer-endpoint",
        &endpoint_cmds[3],
        &[("vpc-0consumer", vpc)],
    );
    assert!(zone_id.starts_with("/hostedzone/"), "{zone_id}");
    step("consumer endpoint");

    // 6. consumer-dns --apply with the endpoint and zone ids printed above.
    let dns = block("consumer-dns");
    assert_eq!(dns.len(), 1, "{dns:?}");
    let said = consumer.run(
        "consumer-dns",
        &dns[0],
        &[
            ("vpce-0abc1234def567890", &endpoint_id),
            ("Z0123456789ABCDEFGHIJ", &zone_id),
        ],
    );
    assert!(
        said.contains(&format!("bootstrap.servers={BOOTSTRAP_HOST}:10000")),
        "{said}"
    );
    step("consumer DNS");

    // 7. The client, in the consumer VPC as the test plays it: the endpoint's data path from
    // moto's state, names as consumer-dns wrote them.
    let probe = dir.join("probe-hosts");
    std::fs::write(&probe, std::fs::read("/etc/hosts").unwrap_or_default()).unwrap();
    let Some(unshare) = private_hosts_flags(&probe) else {
        assert!(
            !running_as_root(),
            "as root, `unshare -m` must give the client its own /etc/hosts"
        );
        eprintln!(
            "SKIPPED the client and produce steps: no private /etc/hosts here (see \
             tests/e2e_privatelink.rs)"
        );
        return;
    };
    let log = dir.join("connections.jsonl");
    let private_ips: Vec<&str> = hosts
        .iter()
        .map(|h| h["private_ip"].as_str().unwrap())
        .collect();
    let (endpoint, _, endpoint_dns) = start_endpoint(
        &moto.url,
        &lb_arn,
        &endpoint_id,
        net,
        &log,
        &private_ips,
        host_address,
    );
    let records: Vec<Value> = serde_json::from_str(&python_ok(
        "privatelink.py",
        &[
            "records",
            "--moto",
            &moto.url,
            "--zone-id",
            zone_id.trim_start_matches("/hostedzone/"),
        ],
    ))
    .unwrap();
    let mut hosts_file = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
    hosts_file.push_str("\n# served by tests/readme_walkthrough.rs\n");
    for r in records.iter().filter(|r| r["type"] == "CNAME") {
        let name = r["name"].as_str().unwrap();
        for a in resolve(name, &records, &endpoint_dns).1 {
            hosts_file.push_str(&format!("{a} {name}\n"));
        }
    }
    let served = dir.join("client-hosts");
    std::fs::write(&served, hosts_file).unwrap();
    let mut wrapper: Vec<String> = vec!["unshare".into()];
    wrapper.extend(unshare.iter().map(|s| s.to_string()));
    wrapper.extend(["--", "sh", "-c", MOUNT_HOSTS_AND_EXEC].map(String::from));
    wrapper.push(served.display().to_string());
    let client = Shell {
        cwd: dir.to_path_buf(),
        env: vec![("PATH".into(), path.clone())],
        wrapper,
    };
    let client_cmds = block("client");
    assert_eq!(client_cmds.len(), 1, "{client_cmds:?}");
    // tansu cannot serve TLS (its CLI rejects --cert with --key): the client speaks PLAINTEXT.
    let listing = client.run(
        "client",
        &client_cmds[0],
        &[(
            "\"security.protocol\": \"SSL\"",
            "\"security.protocol\": \"PLAINTEXT\"",
        )],
    );
    // kcat -L's shape; tansu lists itself only: one of the brokers the agents wired, on the
    // zonal name and port its agent advertised.
    let lines: Vec<&str> = listing.lines().collect();
    assert!(
        lines[0].starts_with("Metadata for all topics (from broker 111: "),
        "{listing}"
    );
    assert_eq!(lines.get(1).copied(), Some(" 1 brokers:"), "{listing}");
    let told = lines
        .get(2)
        .and_then(|l| l.strip_prefix("  broker 111 at "))
        .unwrap_or_else(|| panic!("{listing}"));
    assert!(
        advertised.contains(told),
        "{told} is not one of {advertised:?}"
    );
    let forwarded: Vec<Value> = log_lines(&log, 0);
    assert!(
        forwarded
            .iter()
            .any(|l| l["port"] == 10000 && l["result"] == "forwarded"),
        "the bootstrap connection went through the endpoint: {forwarded:?}"
    );

    // 8. The producer: delivered, and its connections to a broker's port went through the ENI
    // in that broker's AZ (the zonal name its agent advertised).
    let produce = block("produce");
    assert_eq!(produce.len(), 1, "{produce:?}");
    let before = forwarded.len();
    let delivered = client.run(
        "produce",
        &produce[0],
        &[(
            "\"security.protocol\": \"SSL\"",
            "\"security.protocol\": \"PLAINTEXT\"",
        )],
    );
    assert_eq!(delivered, "delivered to walkthrough [0] at offset 0");
    let lines = log_lines(&log, before);
    let zonal: Vec<&Value> = lines.iter().filter(|l| l["port"] != 10000).collect();
    assert!(
        !zonal.is_empty(),
        "no connection to a broker's port: {lines:?}"
    );
    for l in lines.iter() {
        assert_eq!(l["result"], "forwarded", "{l}");
    }
    for l in zonal {
        let via = format!(
            "kafka-{}.orders.example.internal:{}",
            l["az_id"].as_str().unwrap(),
            l["port"]
        );
        assert!(advertised.contains(&via), "{l} is not {advertised:?}");
    }

    drop(endpoint);
    drop(brokers);
    eprintln!("walkthrough took {:.1?}", started.elapsed());
}

/// Every `Key=` of `--parameter-overrides` is a parameter of the template (`aws cloudformation
/// deploy` drops unknown ones silently).
fn assert_parameters_exist(cmd: &str, variant: &Path) {
    let template: Value = serde_json::from_str(&std::fs::read_to_string(variant).unwrap()).unwrap();
    let overrides = cmd
        .split("--parameter-overrides")
        .nth(1)
        .expect("--parameter-overrides");
    let keys: Vec<&str> = overrides
        .split_whitespace()
        .filter(|t| *t != "\\")
        .map(|t| t.split('=').next().unwrap())
        .collect();
    assert!(!keys.is_empty());
    for key in keys {
        assert!(
            template["Parameters"].get(key).is_some(),
            "--parameter-overrides {key}=… is not a parameter of {TEMPLATE}"
        );
    }
}
