#!/usr/bin/env python3
"""Prove that moto_launcher's moto is as strict as AWS's documented ELBv2 rules.

A green agent test against a lenient emulator proves little: if moto accepts a
51st listener, a second load balancer on a target group or an 11th... 51st
tag, the agent's handling of AWS's refusals is never exercised. This script
starts ``MotoServer`` (moto_launcher.py) in-process on a free port and checks
each rule of the launcher's module docstring with boto3:

* listener quota: 50 listeners per NLB, the 51st -> ``TooManyListeners``;
  an identical (idempotent) CreateListener still succeeds on a full NLB; a
  different one on a used port -> ``DuplicateListener``;
* a target group used by NLB A, given to a listener of NLB B (CreateListener or
  ModifyListener) -> ``TargetGroupAssociationLimit``;
* DescribeTargetGroups ``LoadBalancerArns``: each load balancer once, and gone
  after its listener is deleted;
* CreateTargetGroup: the same name and settings -> the same ARN (tags of the
  repeat are not added); another port or health check -> ``DuplicateTargetGroupName``;
* the restart lock's group: Port and a numeric HealthCheckPort decide identical
  vs ``DuplicateTargetGroupName``; the idempotent repeat leaves the tags alone;
  DescribeTags of a deleted group -> ``TargetGroupNotFound``; recreated, it
  has a new ARN and only its new tags;
* 50 tags per resource: AddTags to 50 works, the 51st key -> ``TooManyTags``;
  CreateTargetGroup / CreateListener with 51 tags -> ``TooManyTags``;
* the quota is atomic: two threads x 20 concurrent CreateListener calls on
  distinct ports against an NLB with 45 listeners -> exactly 5 succeed;
* moto details the agent relies on: ``AvailabilityZones`` of an NLB made from
  ``Subnets``, ``HealthCheckPort="traffic-port"``.

Usage: ``python3 tests/support/test_moto_rules.py`` (no pytest needed). Prints
one line per rule; exit status 0 when every rule holds, 1 otherwise. Run by
``tests/emulator_rules.rs`` (``cargo test --test emulator_rules``).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import traceback
from typing import Any, Callable

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True  # no __pycache__ in the source tree

import boto3  # noqa: E402
from botocore.config import Config  # noqa: E402
from botocore.exceptions import ClientError  # noqa: E402

from moto_launcher import MotoServer  # noqa: E402

REGION = "us-east-1"
QUOTA = 50


def error_code(fn: Callable[[], Any]) -> tuple[str, str, int]:
    """Run ``fn``; it must fail with a ClientError. Returns (code, message, HTTP status)."""
    try:
        fn()
    except ClientError as e:
        err = e.response.get("Error", {})
        return err.get("Code", ""), err.get("Message", ""), e.response["ResponseMetadata"]["HTTPStatusCode"]
    raise AssertionError("the call succeeded, but AWS refuses it with an error")


def expect_error(fn: Callable[[], Any], code: str) -> str:
    got, message, status = error_code(fn)
    assert got == code, f"expected error code {code!r}, got {got!r} ({message})"
    assert status == 400, f"expected HTTP 400 for {code}, got {status}"
    return message


def tags(n: int, prefix: str = "k") -> list[dict[str, str]]:
    return [{"Key": f"{prefix}{i}", "Value": f"v{i}"} for i in range(n)]


class Rules:
    def __init__(self, url: str) -> None:
        kw = dict(
            endpoint_url=url,
            region_name=REGION,
            aws_access_key_id="AKIAKPLINKRULES00001",
            aws_secret_access_key="dummy",
            config=Config(retries={"total_max_attempts": 1}, max_pool_connections=50),
        )
        self.kw = kw
        self.ec2 = boto3.client("ec2", **kw)
        self.elb = boto3.client("elbv2", **kw)
        vpc = self.ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        self.vpc = vpc
        self.subnets: dict[str, str] = {}
        for i, zone in enumerate("abc"):
            az = f"{REGION}{zone}"
            sub = self.ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{i + 1}.0/24", AvailabilityZone=az)
            self.subnets[az] = sub["Subnet"]["SubnetId"]
        self.nlb_a = self._nlb("rules-a")
        self.nlb_b = self._nlb("rules-b")
        self.tg_a = ""

    def _nlb(self, name: str) -> str:
        lb = self.elb.create_load_balancer(
            Name=name, Subnets=list(self.subnets.values()), Type="network", Scheme="internal"
        )["LoadBalancers"][0]
        return lb["LoadBalancerArn"]

    def _tg(self, name: str, port: int = 9092, **extra: Any) -> str:
        return self.elb.create_target_group(
            Name=name, Protocol="TCP", Port=port, VpcId=self.vpc, TargetType="instance", **extra
        )["TargetGroups"][0]["TargetGroupArn"]

    def _listener(self, lb: str, port: int, tg: str, **extra: Any) -> dict[str, Any]:
        return self.elb.create_listener(
            LoadBalancerArn=lb,
            Protocol="TCP",
            Port=port,
            DefaultActions=[{"Type": "forward", "TargetGroupArn": tg}],
            **extra,
        )["Listeners"][0]

    def _listeners(self, lb: str) -> list[dict[str, Any]]:
        pages = self.elb.get_paginator("describe_listeners").paginate(LoadBalancerArn=lb)
        return [l for page in pages for l in page["Listeners"]]

    def _lb_arns(self, tg: str) -> list[str]:
        group = self.elb.describe_target_groups(TargetGroupArns=[tg])["TargetGroups"][0]
        return list(group.get("LoadBalancerArns") or [])

    # -- moto details --------------------------------------------------------
    def availability_zones(self) -> str:
        lb = self.elb.describe_load_balancers(LoadBalancerArns=[self.nlb_a])["LoadBalancers"][0]
        assert lb["Type"] == "network" and lb["Scheme"] == "internal", lb
        zones = {z.get("ZoneName"): z.get("SubnetId") for z in lb.get("AvailabilityZones", [])}
        assert zones == self.subnets, f"AvailabilityZones {lb.get('AvailabilityZones')} != {self.subnets}"
        return "DescribeLoadBalancers: AvailabilityZones has ZoneName+SubnetId of the 3 subnets"

    def traffic_port(self) -> str:
        self.tg_a = self._tg("rules-tg-a", HealthCheckProtocol="TCP", HealthCheckPort="traffic-port")
        group = self.elb.describe_target_groups(TargetGroupArns=[self.tg_a])["TargetGroups"][0]
        assert group["HealthCheckPort"] == "traffic-port", group
        assert group["Port"] == 9092 and group["Protocol"] == "TCP", group
        return "CreateTargetGroup HealthCheckPort=traffic-port is returned as traffic-port"

    # -- listener quota ------------------------------------------------------
    def listener_quota(self) -> str:
        for port in range(1000, 1000 + QUOTA):
            self._listener(self.nlb_a, port, self.tg_a)
        count = len(self._listeners(self.nlb_a))
        assert count == QUOTA, f"NLB A has {count} listeners, want {QUOTA}"
        msg = expect_error(lambda: self._listener(self.nlb_a, 1000 + QUOTA, self.tg_a), "TooManyListeners")
        count = len(self._listeners(self.nlb_a))
        assert count == QUOTA, f"the refused listener was created anyway ({count} listeners)"
        return f"{QUOTA} listeners OK, the 51st -> TooManyListeners ({msg})"

    def idempotent_on_full(self) -> str:
        first = next(l for l in self._listeners(self.nlb_a) if l["Port"] == 1000)
        again = self._listener(self.nlb_a, 1000, self.tg_a)
        assert again["ListenerArn"] == first["ListenerArn"], (
            f"identical CreateListener made a new listener {again['ListenerArn']} (existing {first['ListenerArn']})"
        )
        other = self._tg("rules-tg-a2")
        expect_error(lambda: self._listener(self.nlb_a, 1000, other), "DuplicateListener")
        count = len(self._listeners(self.nlb_a))
        assert count == QUOTA, f"NLB A has {count} listeners, want {QUOTA}"
        return "identical CreateListener on a full NLB returns the existing ARN; other settings -> DuplicateListener"

    def load_balancer_arns(self) -> str:
        got = self._lb_arns(self.tg_a)
        assert got == [self.nlb_a], (
            f"LoadBalancerArns has {len(got)} entries, {len(set(got))} distinct; "
            f"want NLB A once (its {QUOTA} listeners all forward to the group)"
        )
        by_lb = self.elb.describe_target_groups(LoadBalancerArn=self.nlb_a)["TargetGroups"]
        assert [g["TargetGroupArn"] for g in by_lb] == [self.tg_a], by_lb
        return "DescribeTargetGroups LoadBalancerArns lists the forwarding NLB once"

    # -- one load balancer per target group ----------------------------------
    def target_group_association(self) -> str:
        msg = expect_error(lambda: self._listener(self.nlb_b, 9000, self.tg_a), "TargetGroupAssociationLimit")
        assert self.tg_a in msg, msg
        assert self._listeners(self.nlb_b) == [], "the refused listener was created anyway"
        tg_b = self._tg("rules-tg-b")
        listener = self._listener(self.nlb_b, 9000, tg_b)
        assert self._lb_arns(tg_b) == [self.nlb_b], self._lb_arns(tg_b)
        expect_error(
            lambda: self.elb.modify_listener(
                ListenerArn=listener["ListenerArn"],
                DefaultActions=[{"Type": "forward", "TargetGroupArn": self.tg_a}],
            ),
            "TargetGroupAssociationLimit",
        )
        assert self._lb_arns(self.tg_a) == [self.nlb_a], self._lb_arns(self.tg_a)
        self.elb.delete_listener(ListenerArn=listener["ListenerArn"])
        assert self._lb_arns(tg_b) == [], f"LoadBalancerArns after DeleteListener: {self._lb_arns(tg_b)}"
        return (
            "group of NLB A on a listener of NLB B -> TargetGroupAssociationLimit "
            "(CreateListener and ModifyListener); LoadBalancerArns emptied by DeleteListener"
        )

    # -- CreateTargetGroup idempotency ---------------------------------------
    def target_group_idempotent(self) -> str:
        first = self._tg(
            "rules-idem",
            HealthCheckProtocol="TCP",
            HealthCheckPort="traffic-port",
            HealthCheckIntervalSeconds=30,
            Tags=[{"Key": "owner", "Value": "first"}],
        )
        # AWS's defaults for the fields left out: the same group.
        again = self._tg("rules-idem", Tags=[{"Key": "second", "Value": "call"}])
        assert again == first, (again, first)
        found = self.elb.describe_target_groups(Names=["rules-idem"])["TargetGroups"]
        assert len(found) == 1, found
        tag_list = self.elb.describe_tags(ResourceArns=[first])["TagDescriptions"][0]["Tags"]
        assert {t["Key"]: t["Value"] for t in tag_list} == {"owner": "first"}, tag_list
        expect_error(lambda: self._tg("rules-idem", port=9093), "DuplicateTargetGroupName")
        expect_error(lambda: self._tg("rules-idem", HealthCheckIntervalSeconds=10), "DuplicateTargetGroupName")
        return "same-name identical CreateTargetGroup returns the same ARN; another port/health check -> DuplicateTargetGroupName"

    # -- the restart lock group ----------------------------------------------
    def lock_group(self) -> str:
        def lock(port: int, hc_port: str, holder: str) -> str:
            return self._tg(
                "rules-lock",
                port=port,
                HealthCheckProtocol="TCP",
                HealthCheckPort=hc_port,
                Tags=[{"Key": "kplink:lock-holder", "Value": holder}],
            )

        def holder_of(arn: str) -> str:
            tag_list = self.elb.describe_tags(ResourceArns=[arn])["TagDescriptions"][0]["Tags"]
            return {t["Key"]: t["Value"] for t in tag_list}["kplink:lock-holder"]

        first = lock(24855, "48631", "3/i-0abc")
        # Same settings (a holder hashing alike): the same group, its tags untouched.
        assert lock(24855, "48631", "9/i-other") == first
        assert holder_of(first) == "3/i-0abc"
        # Another holder: another port or another health check port.
        expect_error(lambda: lock(24855, "48632", "4/i-b"), "DuplicateTargetGroupName")
        expect_error(lambda: lock(24856, "48631", "4/i-b"), "DuplicateTargetGroupName")
        expect_error(lambda: lock(24855, "traffic-port", "4/i-b"), "DuplicateTargetGroupName")
        self.elb.delete_target_group(TargetGroupArn=first)
        expect_error(lambda: self.elb.describe_tags(ResourceArns=[first]), "TargetGroupNotFound")
        second = lock(1000, "2000", "4/i-b")
        assert second != first, "a recreated group must have a new ARN"
        assert holder_of(second) == "4/i-b"
        expect_error(lambda: self.elb.describe_tags(ResourceArns=[first]), "TargetGroupNotFound")
        return (
            "lock group: Port and numeric HealthCheckPort decide identical vs DuplicateTargetGroupName, "
            "repeat keeps tags; deleted -> DescribeTags TargetGroupNotFound; recreated -> new ARN"
        )

    # -- 50 tags per resource ------------------------------------------------
    def tag_quota(self) -> str:
        tg = self._tg("rules-tags", Tags=tags(10))
        try:
            self.elb.add_tags(ResourceArns=[tg], Tags=tags(40, prefix="more"))  # 50 in all
        except ClientError as e:
            raise AssertionError(f"AddTags up to 50 tags was refused: {e}") from e
        self.elb.add_tags(ResourceArns=[tg], Tags=[{"Key": "k0", "Value": "updated"}])  # existing key
        expect_error(lambda: self.elb.add_tags(ResourceArns=[tg], Tags=[{"Key": "k51", "Value": "x"}]), "TooManyTags")
        tag_list = self.elb.describe_tags(ResourceArns=[tg])["TagDescriptions"][0]["Tags"]
        assert len(tag_list) == 50, len(tag_list)
        expect_error(lambda: self._tg("rules-tags51", Tags=tags(51)), "TooManyTags")
        expect_error(lambda: self.elb.describe_target_groups(Names=["rules-tags51"]), "TargetGroupNotFound")
        tg_l = self._tg("rules-tags-l")
        expect_error(lambda: self._listener(self.nlb_b, 9100, tg_l, Tags=tags(51)), "TooManyTags")
        self._listener(self.nlb_b, 9100, tg_l, Tags=tags(50))
        return "50 tags OK, the 51st -> TooManyTags (AddTags, CreateTargetGroup, CreateListener)"

    # -- the quota under concurrency -----------------------------------------
    def concurrent_quota(self) -> str:
        for listener in self._listeners(self.nlb_a):
            if listener["Port"] >= 1000 + QUOTA - 5:
                self.elb.delete_listener(ListenerArn=listener["ListenerArn"])
        count = len(self._listeners(self.nlb_a))
        assert count == QUOTA - 5, f"NLB A has {count} listeners before the race, want {QUOTA - 5}"
        clients = [boto3.client("elbv2", **self.kw) for _ in range(2)]
        barrier = threading.Barrier(2)
        results: list[str] = []
        lock = threading.Lock()

        def worker(idx: int) -> None:
            client = clients[idx]
            barrier.wait()
            for port in range(2000 + idx * 1000, 2000 + idx * 1000 + 20):
                try:
                    client.create_listener(
                        LoadBalancerArn=self.nlb_a,
                        Protocol="TCP",
                        Port=port,
                        DefaultActions=[{"Type": "forward", "TargetGroupArn": self.tg_a}],
                    )
                    outcome = "ok"
                except ClientError as e:
                    outcome = e.response["Error"]["Code"]
                except Exception as e:  # noqa: BLE001 - reported below
                    outcome = f"{type(e).__name__}: {e}"
                with lock:
                    results.append(outcome)

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        counts = {k: results.count(k) for k in sorted(set(results))}
        assert len(results) == 40, counts
        assert counts.get("ok") == 5 and counts.get("TooManyListeners") == 35, f"outcomes {counts}"
        count = len(self._listeners(self.nlb_a))
        assert count == QUOTA, f"NLB A has {count} listeners after the race, want {QUOTA}"
        return "2 threads x 20 concurrent CreateListener on an NLB with 45 listeners: exactly 5 succeed"


def main() -> int:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    if os.environ.get("KPLINK_MOTO_MAX_LISTENERS", "").strip() not in ("", str(QUOTA)):
        print(f"FAIL KPLINK_MOTO_MAX_LISTENERS={os.environ['KPLINK_MOTO_MAX_LISTENERS']}: this script checks AWS's {QUOTA}")
        return 1
    server = MotoServer("127.0.0.1", 0).start()
    failures = 0
    try:
        rules = Rules(server.url)
        for check in (
            rules.availability_zones,
            rules.traffic_port,
            rules.listener_quota,
            rules.idempotent_on_full,
            rules.load_balancer_arns,
            rules.target_group_association,
            rules.target_group_idempotent,
            rules.lock_group,
            rules.tag_quota,
            rules.concurrent_quota,
        ):
            try:
                print(f"ok   {check.__name__}: {check()}", flush=True)
            except Exception as e:  # noqa: BLE001 - every failure is reported, then the next rule runs
                failures += 1
                print(f"FAIL {check.__name__}: {type(e).__name__}: {e}", flush=True)
                traceback.print_exc(file=sys.stderr)
    finally:
        server.stop()
    print(f"{'FAILED' if failures else 'PASSED'}: {failures} rule(s) failed", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
