//! `deploy/cloudformation/provider.yaml`, the provider stack (one per cluster): lint-clean, and
//! deployed into moto, then used by agents.
//!
//! What moto cannot deploy, and how this file covers it:
//! - `AWS::EC2::VPCEndpointService` and `AWS::EC2::VPCEndpointServicePermissions`: moto 5.2.5's
//!   CloudFormation has no model for them (it would skip them silently). `provider_stack.py`
//!   deploys the template minus those resources (and minus the two outputs naming them), then
//!   creates each removed resource through the EC2 API exactly as the template declares it
//!   (its Condition evaluated, its Refs resolved); the tests below assert which resources were
//!   removed, so a new unsupported type cannot slip through unnoticed.
//! - moto's CloudFormation drops an NLB's `Type`, `Tags` and `LoadBalancerAttributes`: the
//!   test server is `moto_cfn_launcher.py`, which passes them through as CloudFormation does.
//! - `EnforceSecurityGroupInboundRulesOnPrivateLinkTraffic` is not modelled by moto; cfn-lint
//!   validates it against AWS's schema.
//! - moto's RunInstances takes the launch template's security groups but not its instance
//!   profile or metadata options: those are asserted on the launch template itself.
//! - The user data is not run by moto: the test runs it with `/etc/kplink` redirected into a
//!   temporary directory and stubs for the download, the package manager and systemctl.

use crate::common;

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

use common::*;
use serde_json::{json, Value};

const TEMPLATE_DIR: &str = "deploy/cloudformation";
const TEMPLATE: &str = "deploy/cloudformation/provider.yaml";
const POLICY: &str = "packaging/iam-policy.json";
const PACKAGE_URL: &str = "https://packages.example.com/kplink-agent_0.2.0-1_amd64.deb";
/// What the stub `curl` downloads, and its SHA-256 (`printf 'fake kplink package\n' | sha256sum`).
const FAKE_PACKAGE: &str = "fake kplink package\n";
const FAKE_PACKAGE_SHA256: &str =
    "790a69dacc611c848df2ada7817156c94dcefa5e97c19c40d46deafea7d7a371";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

// ---- cfn-lint ----

#[test]
fn cfn_lint_finds_nothing() {
    let mut templates: Vec<PathBuf> = std::fs::read_dir(repo().join(TEMPLATE_DIR))
        .expect("deploy/cloudformation")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    templates.sort();
    assert!(!templates.is_empty(), "no templates in {TEMPLATE_DIR}");
    // `cfn-lint FILES`, through the python3 that `.ci/run` installed it for (its console script
    // may not be on PATH).
    let out = Command::new("python3")
        .args([
            "-c",
            "import sys; from cfnlint.runner import main; sys.argv[0] = 'cfn-lint'; sys.exit(main())",
        ])
        .args(&templates)
        .output()
        .unwrap_or_else(|e| {
            panic!("cfn-lint: {e} (pip install -r tests/support/requirements.txt)")
        });
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "cfn-lint {templates:?} exited {:?}:\n{}{}",
        out.status.code(),
        stdout(&out),
        stderr(&out)
    );
}

// ---- deploying into moto ----

fn start_servers() -> (Server, Server) {
    (
        start_server("moto_cfn_launcher.py", &["--port", "0"]),
        start_server("imds_server.py", &["--control-port", "0"]),
    )
}

/// `provider_stack.py deploy` (see its docstring) into `dir`, its output as it is.
fn try_deploy(moto: &Server, imds: &Server, dir: &Path, params: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new("python3");
    cmd.arg(support("provider_stack.py"))
        .args(["deploy", "--moto", &moto.url, "--imds", &imds.url])
        .args(["--stack", "kplink-orders", "--hosts", "0", "--template"])
        .arg(repo().join(TEMPLATE))
        .arg("--out")
        .arg(dir);
    for (k, v) in params {
        cmd.args(["--param", &format!("{k}={v}")]);
    }
    cmd.output().expect("run provider_stack.py")
}

/// `provider_stack.py deploy` (see its docstring) into a fresh directory.
fn deploy(
    moto: &Server,
    imds: &Server,
    stack: &str,
    hosts: usize,
    params: &[(&str, &str)],
) -> (tempfile::TempDir, Value) {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new("python3");
    cmd.arg(support("provider_stack.py"))
        .args([
            "deploy", "--moto", &moto.url, "--imds", &imds.url, "--stack", stack,
        ])
        .arg("--template")
        .arg(repo().join(TEMPLATE))
        .arg("--out")
        .arg(dir.path())
        .args(["--hosts", &hosts.to_string()]);
    for (k, v) in params {
        cmd.args(["--param", &format!("{k}={v}")]);
    }
    let out = cmd.output().expect("run provider_stack.py");
    assert!(
        out.status.success(),
        "provider_stack.py deploy: {}",
        stderr(&out)
    );
    let facts: Value = serde_json::from_slice(&out.stdout).expect("provider_stack.py JSON");
    (dir, facts)
}

/// `provider_stack.py update`: UpdateStack of the stack deployed into `dir` with changed
/// parameters (and the endpoint-service stand-ins that follow from them).
fn update(moto: &Server, dir: &Path, params: &[(&str, &str)]) -> Value {
    let mut cmd = Command::new("python3");
    cmd.arg(support("provider_stack.py"))
        .args(["update", "--moto", &moto.url])
        .arg("--template")
        .arg(repo().join(TEMPLATE))
        .arg("--out")
        .arg(dir);
    for (k, v) in params {
        cmd.args(["--param", &format!("{k}={v}")]);
    }
    let out = cmd.output().expect("run provider_stack.py");
    assert!(
        out.status.success(),
        "provider_stack.py update: {}",
        stderr(&out)
    );
    serde_json::from_slice(&out.stdout).expect("provider_stack.py JSON")
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v}"))
}

fn output<'a>(facts: &'a Value, key: &str) -> &'a str {
    facts["outputs"][key]
        .as_str()
        .unwrap_or_else(|| panic!("no output {key}: {}", facts["outputs"]))
}

fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::String(x) => vec![x.clone()],
        Value::Array(a) => a.iter().map(|x| s(x).to_string()).collect(),
        other => panic!("neither a string nor a list: {other}"),
    }
}

/// The NLB ARNs of the stack, by shard: `Nlb0`, `Nlb1`, ...
fn nlb_arns(facts: &Value) -> Vec<String> {
    let nlbs = facts["nlbs"].as_object().unwrap();
    (0..nlbs.len())
        .map(|i| {
            s(&nlbs
                .get(&format!("Nlb{i}"))
                .unwrap_or_else(|| panic!("no Nlb{i} in {:?}", nlbs.keys()))["arn"])
            .to_string()
        })
        .collect()
}

/// `packaging/iam-policy.json` with its placeholders substituted as `iam-policy.md` says, for a
/// list of NLBs: PARTITION, REGION and ACCOUNT_ID from the first NLB's ARN, CLUSTER from the
/// cluster, and every resource naming `net/NLB_NAME/NLB_ID` once per NLB (in shard order),
/// with that NLB's `<type>/<name>/<id>` from its ARN. `Action` and `Resource` as lists.
fn expected_policy(arns: &[String], cluster: &str) -> Value {
    let text = std::fs::read_to_string(repo().join(POLICY)).unwrap();
    let mut policy: Value = serde_json::from_str(&text).unwrap();
    let fields: Vec<&str> = arns[0].splitn(6, ':').collect();
    let (partition, region, account) = (fields[1], fields[3], fields[4]);
    let full_name = |arn: &str| arn.split_once(":loadbalancer/").unwrap().1.to_string();
    let sub = |r: &str| {
        r.replace("arn:PARTITION:", &format!("arn:{partition}:"))
            .replace(":REGION:", &format!(":{region}:"))
            .replace(":ACCOUNT_ID:", &format!(":{account}:"))
    };
    for st in policy["Statement"].as_array_mut().unwrap() {
        let mut resources = Vec::new();
        for r in strings(&st["Resource"]) {
            if r.contains("net/NLB_NAME/NLB_ID") {
                for arn in arns {
                    resources.push(sub(&r.replace("net/NLB_NAME/NLB_ID", &full_name(arn))));
                }
            } else {
                resources.push(sub(&r));
            }
        }
        st["Resource"] = json!(resources);
        st["Action"] = json!(strings(&st["Action"]));
        replace_cluster(st.get_mut("Condition").unwrap_or(&mut Value::Null), cluster);
    }
    policy
}

fn replace_cluster(v: &mut Value, cluster: &str) {
    match v {
        Value::String(x) if x == "CLUSTER" => *x = cluster.to_string(),
        Value::Array(a) => a.iter_mut().for_each(|x| replace_cluster(x, cluster)),
        Value::Object(o) => o.values_mut().for_each(|x| replace_cluster(x, cluster)),
        _ => {}
    }
}

fn normalized(policy: &Value) -> Value {
    let mut p = policy.clone();
    for st in p["Statement"].as_array_mut().unwrap() {
        st["Resource"] = json!(strings(&st["Resource"]));
        st["Action"] = json!(strings(&st["Action"]));
    }
    p
}

/// The deployed role's one inline policy equals `packaging/iam-policy.json`, statement for
/// statement, modulo the placeholders (see [`expected_policy`]).
fn assert_role_policy(facts: &Value, cluster: &str) {
    let policies = facts["role_policies"].as_object().unwrap();
    assert_eq!(
        policies.keys().collect::<Vec<_>>(),
        ["kplink-agent"],
        "the role has exactly one inline policy"
    );
    assert_eq!(
        facts["role_attached_policies"],
        json!([]),
        "no managed policies on the agent's role"
    );
    let actual = normalized(&policies["kplink-agent"]);
    let expected = expected_policy(&nlb_arns(facts), cluster);
    let sids = |p: &Value| -> Vec<String> {
        p["Statement"]
            .as_array()
            .unwrap()
            .iter()
            .map(|st| st["Sid"].as_str().unwrap_or("?").to_string())
            .collect()
    };
    assert_eq!(
        sids(&actual),
        sids(&expected),
        "statements of the stack's policy vs {POLICY}"
    );
    assert_eq!(actual["Version"], expected["Version"]);
    for (a, e) in actual["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .zip(expected["Statement"].as_array().unwrap())
    {
        assert_eq!(
            a, e,
            "statement {} of the stack's policy vs {POLICY}",
            e["Sid"]
        );
    }
    assert_eq!(actual, expected);
    // IAM counts an inline policy's characters without white space; a role's inline policies
    // may hold 10,240 in all ("IAM and AWS STS quotas",
    // https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_iam-quotas.html). moto does not
    // check it; six shards must still fit.
    let size = serde_json::to_string(&policies["kplink-agent"])
        .unwrap()
        .len();
    assert!(
        size <= 10_240,
        "the role's inline policy has {size} characters, IAM allows 10,240"
    );
    eprintln!(
        "{} NLB(s): inline policy {size} characters",
        nlb_arns(facts).len()
    );
    let trust = &facts["role_trust"]["Statement"][0];
    assert_eq!(trust["Principal"]["Service"], "ec2.amazonaws.com");
    assert_eq!(trust["Action"], "sts:AssumeRole");
}

/// The endpoint services the test made for the template's removed resources: one per NLB, in
/// shard order, each for exactly its NLB; the name is what the EndpointServiceName(s) outputs
/// compute, `com.amazonaws.vpce.<region>.<service id>` (AWS PrivateLink guide, "Create a
/// service powered by AWS PrivateLink",
/// https://docs.aws.amazon.com/vpc/latest/privatelink/create-endpoint-service.html; moto names
/// services the same way).
fn assert_endpoint_services(facts: &Value, acceptance: bool, principals: &[&str]) {
    let arns = nlb_arns(facts);
    let removed: BTreeSet<&str> = facts["removed_resources"]
        .as_object()
        .unwrap()
        .values()
        .map(s)
        .collect();
    assert_eq!(
        removed,
        BTreeSet::from([
            "AWS::EC2::VPCEndpointService",
            "AWS::EC2::VPCEndpointServicePermissions"
        ]),
        "the only resource types moto cannot deploy (and this test creates through the EC2 API)"
    );
    assert_eq!(
        facts["removed_outputs"],
        json!(["EndpointServiceName", "EndpointServiceNames"])
    );
    let services = facts["endpoint_services"].as_array().unwrap();
    assert_eq!(
        services.len(),
        arns.len(),
        "one endpoint service per NLB: {services:?}"
    );
    for (i, (svc, arn)) in services.iter().zip(&arns).enumerate() {
        assert_eq!(svc["logical_id"], format!("EndpointService{i}"));
        assert_eq!(svc["load_balancer_arns"], json!([arn]));
        assert_eq!(svc["acceptance_required"], json!(acceptance));
        assert_eq!(svc["allowed_principals"], json!(principals));
        assert_eq!(
            svc["service_name"],
            format!("com.amazonaws.vpce.us-east-1.{}", s(&svc["service_id"]))
        );
        assert_eq!(svc["tags"]["kplink:shard"], i.to_string());
    }
    let permissions = facts["stand_ins"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["type"] == "AWS::EC2::VPCEndpointServicePermissions")
        .count();
    let want = if principals.is_empty() { 0 } else { arns.len() };
    assert_eq!(permissions, want, "permissions only with AllowedPrincipals");
}

/// NLBs, security groups, instance profile and launch template as the stack made them.
fn assert_network_and_launch_template(
    facts: &Value,
    cross_zone: &str,
    shards: usize,
    more_sgs: &[&str],
) {
    let arns = nlb_arns(facts);
    assert_eq!(arns.len(), shards, "NLBs: {}", facts["nlbs"]);
    assert_eq!(output(facts, "LoadBalancerArn"), arns[0]);
    assert_eq!(output(facts, "LoadBalancerArns"), arns.join(","));
    let sgs = &facts["security_groups"];
    let nlb_sg = s(&sgs["NlbSecurityGroup"]["id"]);
    let broker_sg = s(&sgs["BrokerSecurityGroup"]["id"]);
    assert_eq!(output(facts, "NlbSecurityGroupId"), nlb_sg);
    assert_eq!(output(facts, "BrokerSecurityGroupId"), broker_sg);
    for (i, arn) in arns.iter().enumerate() {
        let nlb = &facts["nlbs"][format!("Nlb{i}")];
        assert_eq!(nlb["type"], "network", "{arn}");
        assert_eq!(nlb["scheme"], "internal", "{arn}");
        assert_eq!(
            nlb["zones"],
            json!(["us-east-1a", "us-east-1b", "us-east-1c"]),
            "one subnet per broker AZ"
        );
        assert_eq!(nlb["security_groups"], json!([nlb_sg]));
        assert_eq!(
            nlb["attributes"]["load_balancing.cross_zone.enabled"],
            cross_zone
        );
        assert_eq!(nlb["tags"]["kplink:cluster"], "orders");
        assert_eq!(nlb["tags"]["kplink:shard"], i.to_string());
    }
    // Only the NLBs reach the brokers' PrivateLink listener (9094): client traffic and the
    // target groups' health checks on `traffic-port`. The NLB group admits nothing itself:
    // PrivateLink traffic skips its inbound rules (EnforceSecurityGroupInbound...: off).
    assert_eq!(
        sgs["BrokerSecurityGroup"]["ingress"],
        json!([{"protocol": "tcp", "from": 9094, "to": 9094, "groups": [nlb_sg], "cidrs": []}])
    );
    assert_eq!(sgs["NlbSecurityGroup"]["ingress"], json!([]));

    let profile = &facts["instance_profile"];
    assert_eq!(output(facts, "InstanceProfileArn"), s(&profile["arn"]));
    assert_eq!(
        profile["roles"],
        json!([s(&facts["resources"]["AgentRole"])])
    );
    let lt = &facts["launch_template"];
    assert_eq!(
        output(facts, "LaunchTemplateId"),
        s(&facts["resources"]["BrokerLaunchTemplate"])
    );
    assert_eq!(lt["IamInstanceProfile"]["Arn"], profile["arn"]);
    let mut lt_sgs = vec![broker_sg];
    lt_sgs.extend(more_sgs);
    assert_eq!(
        lt["SecurityGroupIds"],
        json!(lt_sgs),
        "AdditionalSecurityGroupIds after it"
    );
    assert_eq!(
        lt["MetadataOptions"]["HttpTokens"], "required",
        "IMDSv2 only"
    );
    assert_eq!(lt["MetadataOptions"]["InstanceMetadataTags"], "enabled");
    // The user data writes exactly the AgentToml output (a heredoc adds the final newline).
    let user_data = s(&lt["UserData"]);
    let toml = output(facts, "AgentToml");
    let heredoc = format!("<<'KPLINK_AGENT_TOML'\n{toml}\nKPLINK_AGENT_TOML\n");
    assert!(
        user_data.contains(&heredoc),
        "the user data does not write the AgentToml output:\n{user_data}"
    );
    assert!(
        user_data.ends_with("systemctl enable --now kplink-agent\n"),
        "{user_data}"
    );
    for inst in facts["instances"].as_array().unwrap() {
        assert_eq!(
            inst["security_groups"],
            json!(lt_sgs),
            "launched from the template"
        );
    }
}

/// The stack's agent.toml, as a host under test uses it: only `broker.server_properties`
/// points into the host's directory.
fn host_config(toml: &str, host: &Host) -> String {
    let line = "server_properties = \"/etc/kafka/server.properties\"";
    assert_eq!(toml.matches(line).count(), 1, "{toml}");
    toml.replace(
        line,
        &format!("server_properties = \"{}\"", host.properties().display()),
    )
}

/// The test harness's [`World`] over the deployed stack: its servers, the hosts
/// `provider_stack.py` launched from the launch template, and the stack's first NLB.
fn world_from(moto: Server, imds: Server, dir: tempfile::TempDir, facts: &Value) -> World {
    let world_file = PathBuf::from(s(&facts["world"]));
    let json: Value = serde_json::from_str(&std::fs::read_to_string(&world_file).unwrap()).unwrap();
    let mut hosts = Vec::new();
    for h in json["hosts"].as_array().unwrap() {
        let name = s(&h["name"]).to_string();
        let host_dir = dir.path().join(&name);
        std::fs::create_dir_all(&host_dir).unwrap();
        hosts.push(Host {
            name,
            instance_id: s(&h["instance_id"]).into(),
            az: s(&h["az"]).into(),
            az_id: s(&h["az_id"]).into(),
            broker_id: h["broker_id"].as_i64().unwrap(),
            access_key: s(&h["access_key_id"]).into(),
            imds: s(&h["imds_endpoint"]).into(),
            dir: host_dir,
        });
    }
    World {
        elbv2: elbv2_client(&moto.url),
        lb_arn: s(&json["load_balancer_arn"]).to_string(),
        moto,
        imds,
        dir,
        world_file,
        hosts,
    }
}

#[test]
fn one_shard_stack_wires_agents_on_its_nlb() {
    let started = Instant::now();
    let (moto, imds) = start_servers();
    let (dir, facts) = deploy(
        &moto,
        &imds,
        "kplink-orders",
        3,
        &[
            ("ClusterName", "orders"),
            ("AdvertisedHost", "kafka-{az_id}.orders.example.internal"),
            ("PackageUrl", PACKAGE_URL),
            ("PackageSha256", FAKE_PACKAGE_SHA256),
            ("AllowedPrincipals", "arn:aws:iam::111122223333:root"),
        ],
    );
    let deployed_in = started.elapsed();
    assert_network_and_launch_template(&facts, "false", 1, &[]);
    assert_endpoint_services(&facts, true, &["arn:aws:iam::111122223333:root"]);
    assert_role_policy(&facts, "orders");

    // The rendered agent.toml: one NLB, so `load_balancer_arn`, as today.
    let toml_text = output(&facts, "AgentToml").to_string();
    let parsed: toml::Value = toml::from_str(&toml_text).expect("AgentToml is TOML");
    assert_eq!(
        parsed["nlb"]["load_balancer_arn"].as_str(),
        Some(output(&facts, "LoadBalancerArn"))
    );
    assert!(parsed["nlb"].get("load_balancer_arns").is_none());
    assert_eq!(parsed["listener"]["port"].as_integer(), Some(9094));
    assert_eq!(parsed["nlb"]["port_range"].as_str(), Some("10001-10048"));
    let world = world_from(moto, imds, dir, &facts);
    assert_eq!(world.lb_arn, output(&facts, "LoadBalancerArn"));
    let path = world.dir.path().join("agent.toml");
    std::fs::write(&path, &toml_text).unwrap();
    let out = Command::new(BIN)
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_ok(&out);
    assert!(
        !stderr(&out).contains("warning"),
        "check-config warns on the stack's agent.toml: {}",
        stderr(&out)
    );

    // Three hosts launched from the stack's launch template, each running the agent once with
    // the stack's agent.toml.
    assert_eq!(world.hosts.len(), 3);
    for host in &world.hosts {
        std::fs::write(host.properties(), SERVER_PROPERTIES).unwrap();
        std::fs::write(host.config(), host_config(&toml_text, host)).unwrap();
        let out = world.run(host, &["run", "--once"]);
        assert_ok(&out);
    }
    let wiring = world.wiring();
    let boot = world.boot_group();
    assert_eq!(
        wiring.listeners.get(&10000),
        Some(&boot),
        "bootstrap listener: {wiring:?}"
    );
    let all: BTreeSet<(String, u16)> = world
        .hosts
        .iter()
        .map(|h| (h.instance_id.clone(), 9094))
        .collect();
    assert_eq!(
        wiring.groups[&boot].targets, all,
        "every broker in the bootstrap group, on 9094"
    );
    assert_eq!(
        wiring.listeners.len(),
        4,
        "bootstrap + one per broker: {wiring:?}"
    );
    for host in &world.hosts {
        let group = world.group(host.broker_id);
        let port = wiring
            .port_of(&group)
            .unwrap_or_else(|| panic!("no listener for {group}"));
        assert!((10001..=10048).contains(&port), "{group} on {port}");
        let g = &wiring.groups[&group];
        assert_eq!(
            g.targets,
            BTreeSet::from([(host.instance_id.clone(), 9094)])
        );
        assert_eq!(
            g.tags.get("kplink:cluster").map(String::as_str),
            Some("orders")
        );
        assert_eq!(
            host.read_properties(),
            expected_properties(&host.az_id, port)
        );
    }

    run_user_data(&facts, &toml_text);
    eprintln!(
        "deployed in {:.1?}, whole test {:.1?}",
        deployed_in,
        started.elapsed()
    );
}

#[test]
fn sharded_stacks_render_every_nlb_in_shard_order() {
    let (moto, imds) = start_servers();
    for (shards, cross_zone, more_sgs) in [
        (3usize, "true", vec!["sg-0kafka", "sg-0ssh"]),
        (6, "false", vec![]),
    ] {
        let n = shards.to_string();
        let more = more_sgs.join(",");
        let (_dir, facts) = deploy(
            &moto,
            &imds,
            &format!("kplink-orders-{shards}"),
            0,
            &[
                ("ClusterName", "orders"),
                ("ShardCount", &n),
                ("CrossZoneLoadBalancing", cross_zone),
                ("AcceptanceRequired", "false"),
                ("AdditionalSecurityGroupIds", &more),
                (
                    "AdvertisedHost",
                    "kafka-{az_id}-s{shard}.orders.example.internal",
                ),
                ("PackageUrl", PACKAGE_URL),
            ],
        );
        assert_network_and_launch_template(&facts, cross_zone, shards, &more_sgs);
        assert_endpoint_services(&facts, false, &[]);
        assert_role_policy(&facts, "orders");
        let parsed: toml::Value = toml::from_str(output(&facts, "AgentToml")).unwrap();
        let listed: Vec<String> = parsed["nlb"]["load_balancer_arns"]
            .as_array()
            .unwrap_or_else(|| panic!("no load_balancer_arns: {parsed}"))
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect();
        assert_eq!(
            listed,
            nlb_arns(&facts),
            "index in the list = {{shard}} = NLB's shard"
        );
        assert!(
            parsed["nlb"].get("load_balancer_arn").is_none(),
            "exactly one of the two keys"
        );
        assert_eq!(
            parsed["listener"]["advertised_host"].as_str(),
            Some("kafka-{az_id}-s{shard}.orders.example.internal")
        );
    }
}

/// Raising `ShardCount` is a stack update that adds an NLB and its endpoint service and leaves
/// the first NLB, its endpoint service and the agents' wiring on it alone; the agent.toml it
/// renders switches to `load_balancer_arns` with the same first NLB. (AWS updates only the
/// resources whose definitions change, "Update behaviors of stack resources",
/// https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/using-cfn-updating-stacks-update-behaviors.html;
/// moto's UpdateStack keeps unchanged resources too. Lowering `ShardCount` is not tested: moto
/// keeps a resource whose Condition turned false, where AWS deletes it.)
#[test]
fn adding_a_shard_keeps_the_first_nlb_and_its_wiring() {
    let (moto, imds) = start_servers();
    let (dir, before) = deploy(
        &moto,
        &imds,
        "kplink-orders",
        1,
        &[
            ("ClusterName", "orders"),
            ("AdvertisedHost", "kafka-{az_id}.orders.example.internal"),
            ("PackageUrl", PACKAGE_URL),
        ],
    );
    let toml_text = output(&before, "AgentToml").to_string();
    let world = world_from(moto, imds, dir, &before);
    let host = &world.hosts[0];
    std::fs::write(host.properties(), SERVER_PROPERTIES).unwrap();
    std::fs::write(host.config(), host_config(&toml_text, host)).unwrap();
    assert_ok(&world.run(host, &["run", "--once"]));
    let wired = world.wiring();
    assert_eq!(wired.listeners.len(), 2, "bootstrap + broker 1: {wired:?}");

    let after = update(
        &world.moto,
        world.dir.path(),
        &[
            ("ShardCount", "2"),
            (
                "AdvertisedHost",
                "kafka-{az_id}-s{shard}.orders.example.internal",
            ),
        ],
    );
    let arns = nlb_arns(&after);
    assert_eq!(arns.len(), 2);
    assert_eq!(arns[0], world.lb_arn, "the first NLB is kept");
    assert_eq!(
        after["endpoint_services"][0]["service_id"], before["endpoint_services"][0]["service_id"],
        "and its endpoint service"
    );
    assert_eq!(output(&after, "LoadBalancerArns"), arns.join(","));
    assert_endpoint_services(&after, true, &[]);
    // Not re-checked here: the role's policy and the launch template. moto's UpdateStack only
    // updates a resource whose text changed or that Refs a changed parameter (not one that
    // depends on it through a Condition or Fn::Sub), and its role update ignores policies; AWS
    // re-evaluates every resource. The stacks created with 3 and 6 shards show what they
    // render to.
    let parsed: toml::Value = toml::from_str(output(&after, "AgentToml")).unwrap();
    assert_eq!(
        parsed["nlb"]["load_balancer_arns"],
        toml::Value::try_from(&arns).unwrap()
    );
    let rewired = world.wiring();
    assert_eq!(
        rewired.listeners, wired.listeners,
        "the agents' listeners on the first NLB"
    );
    assert_eq!(
        rewired.groups[&world.boot_group()].targets,
        wired.groups[&world.boot_group()].targets
    );
}

/// The agent accepts what a sharded stack renders (`[nlb] load_balancer_arns`, `{shard}`).
#[test]
fn sharded_agent_toml_passes_check_config() {
    let (moto, imds) = start_servers();
    let (dir, facts) = deploy(
        &moto,
        &imds,
        "kplink-orders",
        0,
        &[
            ("ClusterName", "orders"),
            ("ShardCount", "2"),
            (
                "AdvertisedHost",
                "kafka-{az_id}-s{shard}.orders.example.internal",
            ),
            ("PackageUrl", PACKAGE_URL),
        ],
    );
    let path = dir.path().join("agent.toml");
    std::fs::write(&path, output(&facts, "AgentToml")).unwrap();
    let out = Command::new(BIN)
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_ok(&out);
}

// ---- the launch template's user data ----

fn write_exe(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Runs the launch template's user data as cloud-init would (bash, as root), with
/// `/etc/kplink` redirected into a temporary directory and stubs on PATH: `curl` (writes
/// [`FAKE_PACKAGE`]), `apt-get` (empty package lists), `chown` and `systemctl` (log their
/// arguments), `kplink-agent`
/// (the real binary, reading the redirected config). Then once more with a wrong SHA-256.
fn run_user_data(facts: &Value, toml_text: &str) {
    let user_data = s(&facts["launch_template"]["UserData"]);
    let tmp = tempfile::tempdir().unwrap();
    let etc = tmp.path().join("etc/kplink");
    let bin = tmp.path().join("bin");
    let log = tmp.path().join("calls.log");
    std::fs::create_dir_all(&bin).unwrap();
    let logger = |name: &str| format!("#!/bin/bash\necho \"{name} $*\" >> '{}'\n", log.display());
    write_exe(
        &bin.join("curl"),
        &format!(
            "{}while [ $# -gt 0 ]; do if [ \"$1\" = -o ]; then printf '{}' > \"$2\"; fi; shift; done\n",
            logger("curl"),
            FAKE_PACKAGE.replace('\n', "\\n")
        ),
    );
    // apt-get: like a host whose package lists are empty: `install` fails until `update` ran.
    let updated = tmp.path().join("apt-updated");
    write_exe(
        &bin.join("apt-get"),
        &format!(
            "{0}if [ \"$1\" = update ]; then touch '{1}'; exit 0; fi\n[ -e '{1}' ]\n",
            logger("apt-get"),
            updated.display()
        ),
    );
    write_exe(&bin.join("chown"), &logger("chown"));
    write_exe(&bin.join("systemctl"), &logger("systemctl"));
    write_exe(
        &bin.join("kplink-agent"),
        &format!(
            "{}exec '{BIN}' --config '{}/agent.toml' \"$@\"\n",
            logger("kplink-agent"),
            etc.display()
        ),
    );
    // Redirect the commands' paths, not the heredoc's text (its comment names the real path).
    let (head, rest) = user_data.split_once("<<'KPLINK_AGENT_TOML'\n").unwrap();
    let (body, tail) = rest.split_once("\nKPLINK_AGENT_TOML\n").unwrap();
    let redirect = |t: &str| t.replace("/etc/kplink", &etc.display().to_string());
    let script = format!(
        "{}<<'KPLINK_AGENT_TOML'\n{body}\nKPLINK_AGENT_TOML\n{}",
        redirect(head),
        redirect(tail)
    );
    assert_ne!(script, user_data);
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let run = |script: &str| {
        std::fs::write(tmp.path().join("user-data"), script).unwrap();
        let _ = std::fs::remove_file(&log);
        Command::new("bash")
            .arg(tmp.path().join("user-data"))
            .env("PATH", &path)
            .output()
            .unwrap()
    };

    let out = run(&script);
    assert!(
        out.status.success(),
        "user data failed: {}{}",
        stdout(&out),
        stderr(&out)
    );
    let calls: Vec<String> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| l.replace(&tmp.path().display().to_string(), "TMP"))
        .collect();
    assert!(
        calls[0].starts_with("curl ") && calls[0].ends_with(&format!(" {PACKAGE_URL}")),
        "{calls:?}"
    );
    let pkg = calls[0]
        .split(" -o ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .to_string();
    assert!(
        pkg.ends_with("/kplink-agent.deb"),
        "the host has apt-get: {pkg}"
    );
    assert_eq!(
        calls[1..],
        [
            format!("apt-get install -y {pkg}"),
            "apt-get update".to_string(),
            format!("apt-get install -y {pkg}"),
            "chown root:root TMP/etc/kplink/agent.toml.new".to_string(),
            "kplink-agent check-config".to_string(),
            "systemctl enable --now kplink-agent".to_string(),
        ],
        "install (refreshing the package lists when needed), write the config, check it, start \
         the agent"
    );
    let written = etc.join("agent.toml");
    assert_eq!(
        std::fs::read_to_string(&written).unwrap(),
        format!("{toml_text}\n")
    );
    let mode = std::fs::metadata(&written).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o640, "agent.toml may hold secrets");

    // A download that is not the published package: nothing installed, nothing written.
    std::fs::remove_file(&written).unwrap();
    let bad = script.replace(FAKE_PACKAGE_SHA256, &"0".repeat(64));
    assert_ne!(bad, script);
    let out = run(&bad);
    assert!(
        !out.status.success(),
        "a wrong SHA-256 must stop the user data"
    );
    let calls = std::fs::read_to_string(&log).unwrap();
    assert!(
        !calls.contains("apt-get") && !calls.contains("systemctl"),
        "{calls}"
    );
    assert!(!written.exists());
}

/// Consumers in other Regions: `SupportedRegions` reaches every endpoint service, and the rule
/// `CrossRegionNeedsCrossZone` refuses it without cross-zone load balancing (CloudFormation
/// checks rules before it creates anything; `moto_cfn_launcher.py` does as AWS does).
#[test]
fn supported_regions_need_cross_zone_load_balancing() {
    let (moto, imds) = start_servers();
    let base = [
        ("ClusterName", "orders"),
        (
            "AdvertisedHost",
            "kafka-{az_id}-{shard}.orders.example.internal",
        ),
        ("PackageUrl", PACKAGE_URL),
        ("ShardCount", "2"),
        ("SupportedRegions", "us-west-2,eu-west-1"),
    ];
    let refused_dir = tempfile::tempdir().unwrap();
    let refused = try_deploy(&moto, &imds, refused_dir.path(), &base);
    assert!(!refused.status.success(), "deployed: {}", stdout(&refused));
    let err = stderr(&refused);
    assert!(
        err.contains("ValidationError")
            && err.contains("SupportedRegions needs CrossZoneLoadBalancing=true"),
        "{err}"
    );
    let lbs = block_on(elbv2_client(&moto.url).describe_load_balancers().send()).unwrap();
    assert!(lbs.load_balancers().is_empty(), "nothing created: {lbs:?}");

    let mut params = base.to_vec();
    params.push(("CrossZoneLoadBalancing", "true"));
    let (dir, facts) = deploy(&moto, &imds, "kplink-orders-x", 1, &params);
    let services = facts["endpoint_services"].as_array().unwrap();
    assert_eq!(services.len(), 2);
    for svc in services {
        assert_eq!(
            svc["supported_regions"],
            json!(["us-west-2", "eu-west-1"]),
            "{svc}"
        );
    }
    for nlb in facts["nlbs"].as_object().unwrap().values() {
        assert_eq!(
            nlb["attributes"]["load_balancing.cross_zone.enabled"],
            "true"
        );
    }

    // `status` on a broker: quiet while cross-zone is on, a warning once someone turns it off.
    let toml_text = output(&facts, "AgentToml").to_string();
    let world = world_from(moto, imds, dir, &facts);
    let host = &world.hosts[0];
    std::fs::write(host.properties(), SERVER_PROPERTIES).unwrap();
    std::fs::write(host.config(), host_config(&toml_text, host)).unwrap();
    let status = |json: bool| {
        let args: &[&str] = if json {
            &["status", "--json"]
        } else {
            &["status"]
        };
        let out = world.run(host, args);
        assert_ok(&out);
        out
    };
    let quiet: Value = serde_json::from_slice(&status(true).stdout).unwrap();
    assert_eq!(quiet["cross_region_warnings"], json!([]), "{quiet:#}");
    let first = nlb_arns(&facts)[0].clone();
    let off = aws_sdk_elasticloadbalancingv2::types::LoadBalancerAttribute::builder()
        .key("load_balancing.cross_zone.enabled")
        .value("false")
        .build();
    let call = world.elbv2.modify_load_balancer_attributes();
    block_on(call.load_balancer_arn(&first).attributes(off).send()).unwrap();
    let loud: Value = serde_json::from_slice(&status(true).stdout).unwrap();
    let warnings = loud["cross_region_warnings"].as_array().unwrap();
    assert_eq!(
        warnings.len(),
        1,
        "only the NLB with cross-zone off: {warnings:?}"
    );
    let want = format!("the endpoint service of {first} accepts consumers from us-west-2, eu-west-1 but the NLB has cross-zone load balancing off");
    assert!(s(&warnings[0]).starts_with(&want), "{warnings:?}");
    let text = stdout(&status(false));
    assert!(
        text.contains(&format!("cross-region  WARNING: {want}")),
        "{text}"
    );

    // Back to one Region (allowed with cross-zone either way): the services drop the Regions.
    let after = update(
        &world.moto,
        world.dir.path(),
        &[
            ("SupportedRegions", ""),
            ("CrossZoneLoadBalancing", "false"),
        ],
    );
    for svc in after["endpoint_services"].as_array().unwrap() {
        assert_eq!(svc["supported_regions"], json!([]), "{svc}");
    }
    let quiet: Value = serde_json::from_slice(&status(true).stdout).unwrap();
    assert_eq!(quiet["cross_region_warnings"], json!([]), "{quiet:#}");
    // And an update that adds Regions without cross-zone is refused too.
    let mut cmd = Command::new("python3");
    cmd.arg(support("provider_stack.py"))
        .args(["update", "--moto", &world.moto.url, "--template"])
        .arg(repo().join(TEMPLATE))
        .arg("--out")
        .arg(world.dir.path())
        .args(["--param", "SupportedRegions=us-west-2"]);
    let out = cmd.output().unwrap();
    assert!(!out.status.success(), "updated: {}", stdout(&out));
    assert!(stderr(&out).contains("SupportedRegions needs CrossZoneLoadBalancing=true"));
}
