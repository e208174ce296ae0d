//! The emulator must be as strict as AWS. Every other integration test runs the agent against moto
//! (`tests/support/moto_launcher.py`), and a green test against a lenient emulator proves little:
//! plain moto 5.2.5 accepts a 51st listener on a Network Load Balancer, a second listener on one
//! port, a target group shared by two load balancers, and refuses an identical CreateTargetGroup
//! and an 11th tag, so the agent's handling of AWS's real answers would never be exercised (or be
//! exercised against answers AWS never gives).
//!
//! This test runs `tests/support/test_moto_rules.py`, which starts the launcher's moto in-process
//! and proves each rule with boto3: `TooManyListeners` at 51 (idempotent repeats still succeed,
//! and the quota holds under concurrent calls), `TargetGroupAssociationLimit`, idempotent
//! CreateTargetGroup / `DuplicateTargetGroupName` (for the restart lock group: Port and a numeric
//! HealthCheckPort compared, tags of the repeat not applied), DescribeTags of a deleted group
//! answering `TargetGroupNotFound`, `TooManyTags` at 51, `unused`/`Target.NotInUse` targets of
//! a group no listener uses, and the moto details the agent relies on (NLB `AvailabilityZones`,
//! `traffic-port`, `LoadBalancerArns`, DescribeInstances of an unknown id failing with
//! `InvalidInstanceID.NotFound`). It also checks the launcher's optional AWS behaviours, which
//! are off unless a test turns them on: account API throttling with AWS's token buckets
//! (`Throttling` / `RequestLimitExceeded`) and ELBv2 eventual consistency (a lag after
//! DeleteListener, tag changes and CreateListener). The script fails against unpatched moto. It
//! prints one `ok`/`FAIL` line per rule.

use std::path::Path;
use std::process::Command;

#[test]
fn moto_enforces_awss_elbv2_rules() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/test_moto_rules.py");
    let out = Command::new("python3")
        .arg(&script)
        .env_remove("KPLINK_MOTO_MAX_LISTENERS") // the script checks AWS's real quota of 50
        .output()
        .unwrap_or_else(|e| panic!("cannot run python3 {}: {e}", script.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{} failed ({}):\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
        script.display(),
        out.status
    );
    print!("{stdout}");
}
