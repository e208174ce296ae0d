//! Guards `packaging/iam-policy.json`, the instance role policy operators install, against drifting
//! from the code: the actions it allows must be exactly the AWS operations `src/` calls (each is
//! counted with `calls.record("Op")`; `src/ec2.rs` calls `ec2`, every other file
//! `elasticloadbalancing`), every ARN must carry the `PARTITION` placeholder, `CreateListener` and
//! `CreateTargetGroup` must require the `kplink:cluster` request tag, and `AddTags`/`RemoveTags` on
//! existing resources must be limited to named tag keys. No AWS, no network: it reads files only.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;

const POLICY: &str = "packaging/iam-policy.json";
const EC2_FILE: &str = "src/ec2.rs";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn policy() -> Value {
    let path = repo().join(POLICY);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{POLICY} is not valid JSON: {e}"))
}

/// A string or a list of strings (IAM's `Action` and `Resource`).
fn strings(v: &Value, what: &str, sid: &str) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items
            .iter()
            .map(|i| {
                i.as_str()
                    .unwrap_or_else(|| panic!("statement {sid}: {what} entry {i} is not a string"))
                    .to_string()
            })
            .collect(),
        other => panic!("statement {sid}: {what} is neither a string nor a list: {other}"),
    }
}

struct Statement<'a> {
    sid: String,
    actions: Vec<String>,
    resources: Vec<String>,
    condition: Option<&'a serde_json::Map<String, Value>>,
}

/// The policy's `Allow` statements (it has no others; a `Deny` would need its own review).
fn statements(policy: &Value) -> Vec<Statement<'_>> {
    let list = policy["Statement"]
        .as_array()
        .unwrap_or_else(|| panic!("{POLICY}: Statement is not a list"));
    list.iter()
        .enumerate()
        .map(|(i, s)| {
            let sid = s["Sid"]
                .as_str()
                .map_or_else(|| format!("#{i}"), str::to_string);
            assert_eq!(
                s["Effect"].as_str(),
                Some("Allow"),
                "statement {sid}: only Allow statements are expected"
            );
            for key in ["NotAction", "NotResource", "Principal", "NotPrincipal"] {
                assert!(s.get(key).is_none(), "statement {sid}: unexpected {key}");
            }
            let actions = strings(
                s.get("Action")
                    .unwrap_or_else(|| panic!("statement {sid}: no Action")),
                "Action",
                &sid,
            );
            let resources = strings(
                s.get("Resource")
                    .unwrap_or_else(|| panic!("statement {sid}: no Resource")),
                "Resource",
                &sid,
            );
            let condition = s.get("Condition").map(|c| {
                c.as_object()
                    .unwrap_or_else(|| panic!("statement {sid}: Condition is not an object"))
            });
            Statement {
                sid,
                actions,
                resources,
                condition,
            }
        })
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries =
        std::fs::read_dir(dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Operation names in `record("Op")` and `send("Op", …)` calls (the counted, paced AWS calls of
/// `src/backoff.rs`) of one source text, skipping `//` comment lines.
fn recorded_ops(text: &str) -> Vec<String> {
    const NEEDLES: [&str; 2] = ["record(\"", "send(\""];
    let mut ops = Vec::new();
    for line in text.lines() {
        let code = line.trim_start();
        if code.starts_with("//") {
            continue;
        }
        for needle in NEEDLES {
            let mut rest = code;
            while let Some(at) = rest.find(needle) {
                // `record(` itself, not e.g. `try_record(`.
                let standalone = !matches!(
                    rest[..at].chars().next_back(),
                    Some(c) if c.is_alphanumeric() || c == '_'
                );
                let after = &rest[at + needle.len()..];
                if standalone {
                    let end = after
                        .find('"')
                        .unwrap_or_else(|| panic!("unterminated {needle} in: {line}"));
                    let op = &after[..end];
                    assert!(
                        !op.is_empty() && op.chars().all(|c| c.is_ascii_alphanumeric()),
                        "{needle}{op}\") is not an AWS operation name, in: {line}"
                    );
                    ops.push(op.to_string());
                }
                rest = after;
            }
        }
    }
    ops
}

/// `service:Operation` for every operation the code records.
fn code_actions() -> BTreeSet<String> {
    let root = repo();
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    let ec2 = root.join(EC2_FILE);
    let mut actions = BTreeSet::new();
    for file in files {
        let text = std::fs::read_to_string(&file)
            .unwrap_or_else(|e| panic!("reading {}: {e}", file.display()));
        let service = if file == ec2 {
            "ec2"
        } else {
            "elasticloadbalancing"
        };
        for op in recorded_ops(&text) {
            actions.insert(format!("{service}:{op}"));
        }
    }
    actions
}

/// The values a condition operator gives a key, e.g. `("StringEquals", "aws:RequestTag/x")`.
fn condition_values(st: &Statement, operator: &str, key: &str) -> Option<Vec<String>> {
    let block = st.condition?.get(operator)?;
    let value = block.get(key)?;
    Some(strings(
        value,
        &format!("Condition {operator} {key}"),
        &st.sid,
    ))
}

fn has_condition_key(st: &Statement, pred: impl Fn(&str, &str) -> bool) -> bool {
    st.condition.is_some_and(|c| {
        c.iter().any(|(op, block)| {
            block
                .as_object()
                .is_some_and(|b| b.keys().any(|k| pred(op, k)))
        })
    })
}

#[test]
fn allowed_actions_are_exactly_the_recorded_calls() {
    let policy = policy();
    let allowed: BTreeSet<String> = statements(&policy)
        .iter()
        .flat_map(|s| s.actions.iter().cloned())
        .collect();
    for a in &allowed {
        assert!(
            !a.contains('*') && !a.contains('?'),
            "{POLICY} allows a wildcard action {a}: name each operation"
        );
    }
    let called = code_actions();
    assert!(
        called.iter().any(|a| a.starts_with("ec2:"))
            && called.iter().any(|a| a.starts_with("elasticloadbalancing:")),
        "found no record(\"Op\") or send(\"Op\", …) calls for EC2 or ELBv2 under src/: the scan is broken ({called:?})"
    );
    let missing: Vec<&String> = called.difference(&allowed).collect();
    let unused: Vec<&String> = allowed.difference(&called).collect();
    assert!(
        missing.is_empty() && unused.is_empty(),
        "{POLICY} and src/ disagree.\n  called by src/ but not allowed by the policy: {missing:?}\n  \
         allowed by the policy but never called by src/: {unused:?}\n  (src/ calls: {called:?})"
    );
}

#[test]
fn every_arn_has_the_partition_placeholder() {
    let policy = policy();
    for st in statements(&policy) {
        for r in &st.resources {
            assert!(
                r == "*" || r.starts_with("arn:PARTITION:"),
                "statement {}: resource {r} must be \"*\" or start with arn:PARTITION: \
                 (operators substitute aws, aws-cn or aws-us-gov)",
                st.sid
            );
        }
    }
}

#[test]
fn creating_requires_the_cluster_request_tag() {
    let policy = policy();
    let statements = statements(&policy);
    for action in [
        "elasticloadbalancing:CreateListener",
        "elasticloadbalancing:CreateTargetGroup",
    ] {
        let granting: Vec<&Statement> = statements
            .iter()
            .filter(|s| s.actions.iter().any(|a| a == action))
            .collect();
        assert!(!granting.is_empty(), "no statement allows {action}");
        for st in granting {
            assert_eq!(
                condition_values(st, "StringEquals", "aws:RequestTag/kplink:cluster"),
                Some(vec!["CLUSTER".to_string()]),
                "statement {} allows {action} without \
                 StringEquals aws:RequestTag/kplink:cluster = CLUSTER",
                st.sid
            );
        }
    }
}

#[test]
fn tagging_existing_resources_is_limited_to_named_keys() {
    let policy = policy();
    let statements = statements(&policy);
    let tagging = [
        "elasticloadbalancing:AddTags",
        "elasticloadbalancing:RemoveTags",
    ];
    let mut seen = 0;
    for st in &statements {
        if !st.actions.iter().any(|a| tagging.contains(&a.as_str())) {
            continue;
        }
        seen += 1;
        let on_create = has_condition_key(st, |_, k| k == "elasticloadbalancing:CreateAction");
        let key_limited = has_condition_key(st, |op, k| {
            op.starts_with("ForAllValues:") && k == "aws:TagKeys"
        });
        assert!(
            on_create || key_limited,
            "statement {} allows {:?} on existing resources without a ForAllValues aws:TagKeys \
             restriction or an elasticloadbalancing:CreateAction condition",
            st.sid,
            st.actions
        );
        if !on_create {
            let keys = st
                .condition
                .unwrap()
                .iter()
                .filter(|(op, _)| op.starts_with("ForAllValues:"))
                .filter_map(|(op, _)| condition_values(st, op, "aws:TagKeys"))
                .flatten()
                .collect::<Vec<_>>();
            assert!(
                keys.iter().all(|k| k.starts_with("kplink:")),
                "statement {}: aws:TagKeys must name kplink: keys only, got {keys:?}",
                st.sid
            );
            assert_eq!(
                condition_values(st, "StringEquals", "aws:ResourceTag/kplink:cluster"),
                Some(vec!["CLUSTER".to_string()]),
                "statement {}: tagging existing resources needs \
                 StringEquals aws:ResourceTag/kplink:cluster = CLUSTER",
                st.sid
            );
        }
    }
    assert!(seen > 0, "no statement allows AddTags or RemoveTags");
}

#[test]
fn record_scan_finds_calls_and_skips_comments() {
    let text = r#"
        self.calls.record("AddTags");
        // self.calls.record("Commented");
        let x = 1; self.calls.record("DescribeTags"); calls.record("RemoveTags");
        self.try_record("NotThis");
        pub fn record(&self, operation: &'static str) {}
    "#;
    assert_eq!(
        recorded_ops(text),
        vec!["AddTags", "DescribeTags", "RemoveTags"]
    );
}

/// IAM's `*` (any run of characters, `/` included) and `?` (one character).
fn arn_matches(pattern: &str, arn: &str) -> bool {
    let (p, a): (Vec<char>, Vec<char>) = (pattern.chars().collect(), arn.chars().collect());
    // Classic two-pointer wildcard match with backtracking to the last `*`.
    let (mut i, mut j, mut star, mut mark) = (0, 0, None, 0);
    while j < a.len() {
        if i < p.len() && (p[i] == '?' || p[i] == a[j]) {
            i += 1;
            j += 1;
        } else if i < p.len() && p[i] == '*' {
            star = Some(i);
            mark = j;
            i += 1;
        } else if let Some(s) = star {
            i = s + 1;
            mark += 1;
            j = mark;
        } else {
            return false;
        }
    }
    p[i..].iter().all(|c| *c == '*')
}

/// The restart lock is a target group (`src/restart/lock.rs`): the policy must let the role
/// create it (with the cluster request tag), delete it (break, release), renew its lease tags and
/// remove waiting tags on it, by its ARN pattern; and it needs no listener for it.
#[test]
fn the_restart_lock_group_is_covered() {
    let name = kplink_agent::registry::lock_group_name("CLUSTER");
    let arn = format!(
        "arn:PARTITION:elasticloadbalancing:REGION:ACCOUNT_ID:targetgroup/{name}/0123456789abcdef"
    );
    let policy = policy();
    let statements = statements(&policy);
    let granting = |action: &str| -> Vec<&Statement> {
        statements
            .iter()
            .filter(|s| s.actions.iter().any(|a| a == action))
            .filter(|s| s.resources.iter().any(|r| arn_matches(r, &arn)))
            .collect()
    };
    for action in [
        "elasticloadbalancing:CreateTargetGroup",
        "elasticloadbalancing:DeleteTargetGroup",
        "elasticloadbalancing:AddTags",
        "elasticloadbalancing:RemoveTags",
    ] {
        assert!(
            !granting(action).is_empty(),
            "no statement allows {action} on the restart lock group {arn}"
        );
    }
    // Renewal on an existing lock: the lease keys, and a waiter's tag; removal: waiting tags.
    let renew_keys: Vec<String> = granting("elasticloadbalancing:AddTags")
        .iter()
        .filter_map(|s| condition_values(s, "ForAllValues:StringLike", "aws:TagKeys"))
        .flatten()
        .collect();
    for key in [
        "kplink:lock-holder",
        "kplink:lock-expires",
        "kplink:lock-phase",
        "kplink:waiting-3",
        "kplink:cluster",
    ] {
        assert!(
            renew_keys.iter().any(|p| arn_matches(p, key)),
            "AddTags on the lock group does not allow tag key {key}: {renew_keys:?}"
        );
    }
    let remove_keys: Vec<String> = granting("elasticloadbalancing:RemoveTags")
        .iter()
        .filter_map(|s| condition_values(s, "ForAllValues:StringLike", "aws:TagKeys"))
        .flatten()
        .collect();
    assert!(
        remove_keys
            .iter()
            .any(|p| arn_matches(p, "kplink:waiting-3")),
        "{remove_keys:?}"
    );
    assert!(
        !remove_keys
            .iter()
            .any(|p| arn_matches(p, "kplink:lock-holder")),
        "{remove_keys:?}"
    );
    // The lock group's name fits the `kp-*-lock` pattern and nothing else's does.
    assert!(arn_matches("kp-*-lock", &name), "{name}");
    assert!(!arn_matches("kp-*-lock", "kp-cluster-a2cd-b3"));
}

#[test]
fn arn_patterns_match_like_iam() {
    assert!(arn_matches("a*c", "abbbc"));
    assert!(arn_matches("a*", "a/b/c"));
    assert!(arn_matches("a?c", "abc"));
    assert!(!arn_matches("a?c", "ac"));
    assert!(!arn_matches("a*d", "abc"));
    assert!(arn_matches("*", ""));
}
