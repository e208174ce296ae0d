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
  ``Subnets``, ``HealthCheckPort="traffic-port"``; EC2 DescribeInstances with
  an unknown instance id fails as a whole with ``InvalidInstanceID.NotFound``;
* DescribeTargetHealth of a group no listener uses: ``unused`` /
  ``Target.NotInUse``; ``healthy`` once a listener forwards to it;
* listener idle timeout: ``tcp.idle_timeout.seconds`` 350 by default,
  60-6000 s only, another key -> ``ValidationError``;
* target health over time (off unless turned on): ``initial`` after
  registration, ``healthy`` after HealthyThresholdCount checks that open a TCP
  connection to the instance's mapped address (time-compressed), ``unhealthy``
  when it refuses, ``unused`` / ``Target.InvalidState`` for a stopped
  instance, ``initial`` again on re-registration;
* eventual consistency (lag, off unless turned on): within the lag,
  DeleteTargetGroup after DeleteListener -> ``ResourceInUse``, DescribeTags
  shows the tags from before CreateTargetGroup / AddTags / RemoveTags, and
  DescribeListeners does not list a new listener (while DuplicateListener and
  the idempotent CreateListener still see it); all gone after the lag;
* account throttling (off unless turned on): AWS's buckets by default, a
  burst of 45 ELBv2 Describe calls -> exactly 40 pass, then HTTP 400
  ``Throttling`` "Rate exceeded" (boto3 without retries); continuous refill
  and the capacity cap measured on a scaled-down bucket; throttled requests
  take no token and never reach moto; EC2 per-action buckets -> HTTP 503
  ``RequestLimitExceeded``; the counters; the environment variables.

Usage: ``python3 tests/support/test_moto_rules.py`` (no pytest needed). Prints
one line per rule; exit status 0 when every rule holds, 1 otherwise. Run by
``tests/emulator_rules.rs`` (``cargo test --test suite emulator_rules::``).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
import traceback
import urllib.request
from typing import Any, Callable

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True  # no __pycache__ in the source tree

import boto3  # noqa: E402
from botocore.config import Config  # noqa: E402
from botocore.exceptions import ClientError  # noqa: E402

import moto_launcher  # noqa: E402
from moto_launcher import MotoServer, Throttle  # noqa: E402

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


def outcome(fn: Callable[[], Any]) -> str | tuple[str, str, int]:
    """``"ok"``, or (code, message, HTTP status) of the ClientError ``fn`` raised."""
    try:
        fn()
        return "ok"
    except ClientError as e:
        err = e.response.get("Error", {})
        return err.get("Code", ""), err.get("Message", ""), e.response["ResponseMetadata"]["HTTPStatusCode"]


def expect_error(fn: Callable[[], Any], code: str) -> str:
    got, message, status = error_code(fn)
    assert got == code, f"expected error code {code!r}, got {got!r} ({message})"
    assert status == 400, f"expected HTTP 400 for {code}, got {status}"
    return message


def tags(n: int, prefix: str = "k") -> list[dict[str, str]]:
    return [{"Key": f"{prefix}{i}", "Value": f"v{i}"} for i in range(n)]


ELB_THROTTLED = ("Throttling", "Rate exceeded", 400)
EC2_THROTTLED = ("RequestLimitExceeded", "Request limit exceeded.", 503)


class Rules:
    def __init__(self, url: str) -> None:
        self.url = url
        # total_max_attempts=1: no retries. (botocore's {"max_attempts": 1} means one retry.)
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

    def control(self, method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method)
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read() or b"null")

    def _tags_of(self, arn: str) -> dict[str, str]:
        tag_list = self.elb.describe_tags(ResourceArns=[arn])["TagDescriptions"][0]["Tags"]
        return {t["Key"]: t["Value"] for t in tag_list}

    def _instance(self) -> str:
        subnet = self.subnets[f"{REGION}a"]
        res = self.ec2.run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1, SubnetId=subnet)
        return res["Instances"][0]["InstanceId"]

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

    # -- EC2 DescribeInstances with an unknown id -----------------------------
    def describe_unknown_instance(self) -> str:
        known = self._instance()
        unknown = "i-0123456789abcdef0"
        found = self.ec2.describe_instances(InstanceIds=[known])["Reservations"]
        assert [i["InstanceId"] for r in found for i in r["Instances"]] == [known], found
        for ids in ([unknown], [known, unknown]):
            got = outcome(lambda: self.ec2.describe_instances(InstanceIds=ids))
            assert got == ("InvalidInstanceID.NotFound", f"The instance ID '{unknown}' does not exist", 400), (ids, got)
        return "DescribeInstances with an unknown id (alone or with a known one) -> InvalidInstanceID.NotFound"

    # -- target health of an unused group -------------------------------------
    def target_not_in_use(self) -> str:
        tg = self._tg("rules-health", port=9300)
        instance = self._instance()
        self.elb.register_targets(TargetGroupArn=tg, Targets=[{"Id": instance, "Port": 9300}])

        def health(**extra: Any) -> list[tuple[str, str | None, str | None]]:
            descs = self.elb.describe_target_health(TargetGroupArn=tg, **extra)["TargetHealthDescriptions"]
            return [
                (d["Target"]["Id"], d["TargetHealth"]["State"], d["TargetHealth"].get("Reason"))
                for d in descs
            ]

        descs = self.elb.describe_target_health(TargetGroupArn=tg)["TargetHealthDescriptions"]
        assert len(descs) == 1, descs
        th = descs[0]["TargetHealth"]
        assert (descs[0]["Target"]["Id"], th["State"], th.get("Reason"), th.get("Description")) == (
            instance,
            "unused",
            "Target.NotInUse",
            "Target group is not configured to receive traffic from the load balancer",
        ), descs
        # moto's answer for a target that is not registered is kept.
        other = self._instance()
        got = health(Targets=[{"Id": other}])
        assert got == [(other, "unused", "Target.NotRegistered")], got
        # Forwarded to by a listener: in use (moto has no health checks: healthy at once).
        lb = self._nlb("rules-health")
        listener = self._listener(lb, 9300, tg)
        assert health() == [(instance, "healthy", None)], health()
        self.elb.delete_listener(ListenerArn=listener["ListenerArn"])
        assert health() == [(instance, "unused", "Target.NotInUse")], health()
        self.elb.delete_load_balancer(LoadBalancerArn=lb)
        return "unused group: registered target unused/Target.NotInUse; healthy while a listener forwards to it"

    def idle_timeout(self) -> str:
        lb = self._nlb("rules-idle")
        tg = self._tg("rules-idle", port=9500)
        arn = self._listener(lb, 9500, tg)["ListenerArn"]

        def idle() -> str:
            attrs = self.elb.describe_listener_attributes(ListenerArn=arn)["Attributes"]
            return {a["Key"]: a["Value"] for a in attrs}["tcp.idle_timeout.seconds"]

        assert idle() == "350", idle()
        for bad in ("59", "6001", "ten"):
            expect_error(
                lambda: self.elb.modify_listener_attributes(
                    ListenerArn=arn, Attributes=[{"Key": "tcp.idle_timeout.seconds", "Value": bad}]
                ),
                "ValidationError",
            )
        expect_error(
            lambda: self.elb.modify_listener_attributes(ListenerArn=arn, Attributes=[{"Key": "x.y", "Value": "1"}]),
            "ValidationError",
        )
        assert idle() == "350", idle()
        self.elb.modify_listener_attributes(
            ListenerArn=arn, Attributes=[{"Key": "tcp.idle_timeout.seconds", "Value": "660"}]
        )
        assert idle() == "660", idle()
        self.elb.delete_load_balancer(LoadBalancerArn=lb)
        return "listener idle timeout: 350 by default, 60-6000 s only (ValidationError otherwise), TCP only"

    # -- target health over time (item 7) --------------------------------------
    def target_health_over_time(self) -> str:
        import socket as _socket

        # A scale of 0.01: the 30 s interval is 0.3 s; 5 passes to healthy = 1.5 s, 2 fails = 0.6 s.
        scale = 0.01
        srv = _socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen(16)
        address = f"127.0.0.1:{srv.getsockname()[1]}"
        up, down, stopped = self._instance(), self._instance(), self._instance()
        tg = self._tg("rules-time", port=9400, HealthCheckProtocol="TCP", HealthCheckPort="traffic-port")
        lb = self._nlb("rules-time")
        self._listener(lb, 9400, tg)
        self.control("POST", "/_kplink/target-health", {"scale": scale, "addresses": {up: address, down: "127.0.0.1:1"}})
        try:
            self.elb.register_targets(TargetGroupArn=tg, Targets=[{"Id": i, "Port": 9400} for i in (up, down, stopped)])
            started = time.monotonic()

            def states() -> dict[str, tuple[str, str | None]]:
                descs = self.elb.describe_target_health(TargetGroupArn=tg)["TargetHealthDescriptions"]
                return {d["Target"]["Id"]: (d["TargetHealth"]["State"], d["TargetHealth"].get("Reason")) for d in descs}

            first = states()
            assert first[up] == ("initial", "Elb.InitialHealthChecking"), first
            assert first[down] == ("initial", "Elb.InitialHealthChecking"), first
            self.ec2.stop_instances(InstanceIds=[stopped])
            while states()[up][0] != "healthy":
                assert time.monotonic() - started < 10, states()
                time.sleep(0.05)
            took = time.monotonic() - started
            # 5 checks, the first one interval after registration: 5 x 0.3 s.
            assert took >= 5 * 30 * scale * 0.9, f"healthy after {took:.2f} s, before 5 intervals"
            now = states()
            assert now[down] == ("unhealthy", "Target.FailedHealthChecks"), now
            assert now[stopped] == ("unused", "Target.InvalidState"), now
            # The listener closes: unhealthy after 2 failed checks; open again: healthy after 5.
            srv.close()
            while states()[up][0] != "unhealthy":
                assert time.monotonic() - started < 20, states()
                time.sleep(0.05)
            status = self.control("GET", "/_kplink/target-health")
            assert status["enabled"] and status["addresses"][up] == address, status
            # Registering again starts over at initial.
            self.elb.register_targets(TargetGroupArn=tg, Targets=[{"Id": up, "Port": 9400}])
            assert states()[up][0] == "initial", states()
        finally:
            srv.close()
            self.control("DELETE", "/_kplink/target-health")
        # Off: moto's instant healthy again.
        assert states()[up] == ("healthy", None), states()
        return (
            f"target health over time (scale {scale}): initial -> healthy after {took:.2f} s (5 checks);"
            " closed port unhealthy; stopped instance unused/Target.InvalidState; re-registered initial"
        )

    # -- eventual consistency (lag) -------------------------------------------
    def lag(self) -> str:
        lag_s = 0.8
        assert self.control("GET", "/_kplink/lag")["seconds"] == 0.0, "lag is on by default"
        lb = self._nlb("rules-lag")
        tg_old = self._tg("rules-lag-old", port=9400, Tags=[{"Key": "a", "Value": "1"}])
        tg_kept = self._tg("rules-lag-kept", port=9401)
        tg_gone = self._tg("rules-lag-gone", port=9402)
        other = boto3.client("elbv2", **{**self.kw, "aws_access_key_id": "AKIAKPLINKRULES00002"})
        assert self.control("POST", "/_kplink/lag", {"seconds": lag_s}) == {"ok": True, "seconds": lag_s}
        try:
            t0 = time.monotonic()
            # b: tags of a just-created group, and of an AddTags / RemoveTags
            tg_new = self._tg("rules-lag-new", port=9403, Tags=[{"Key": "holder", "Value": "me"}])
            self.elb.add_tags(ResourceArns=[tg_old], Tags=[{"Key": "b", "Value": "2"}])
            self.elb.remove_tags(ResourceArns=[tg_old], TagKeys=["a"])
            # c: a new listener
            kept = self._listener(lb, 9401, tg_kept)
            # a: DeleteListener, then DeleteTargetGroup of its group
            gone = self._listener(lb, 9402, tg_gone)
            self.elb.delete_listener(ListenerArn=gone["ListenerArn"])
            t_last = time.monotonic()

            assert self._tags_of(tg_new) == {}, self._tags_of(tg_new)
            assert self._tags_of(tg_old) == {"a": "1"}, self._tags_of(tg_old)
            ports = [l["Port"] for l in self._listeners(lb)]
            assert ports == [], f"DescribeListeners lists {ports} within the lag"
            expect_error(lambda: self.elb.describe_listeners(ListenerArns=[kept["ListenerArn"]]), "ListenerNotFound")
            # Seen at once by everything but DescribeListeners:
            again = self._listener(lb, 9401, tg_kept)
            assert again["ListenerArn"] == kept["ListenerArn"], "identical CreateListener is not idempotent"
            expect_error(
                lambda: other.create_listener(
                    LoadBalancerArn=lb,
                    Protocol="TCP",
                    Port=9401,
                    DefaultActions=[{"Type": "forward", "TargetGroupArn": tg_new}],
                ),
                "DuplicateListener",
            )
            msg = expect_error(lambda: self.elb.delete_target_group(TargetGroupArn=tg_gone), "ResourceInUse")
            assert msg == f"Target group '{tg_gone}' is currently in use by a listener or a rule", msg
            pending = self.control("GET", "/_kplink/lag")["pending"]
            assert pending == {"target_groups_in_use": 1, "tag_changes": 3, "hidden_listeners": 1}, pending
            within = time.monotonic() - t0
            assert within < lag_s, f"the checks within the lag took {within:.2f} s, longer than the lag"

            time.sleep(max(0.0, t_last + lag_s + 0.05 - time.monotonic()))
            assert self._tags_of(tg_new) == {"holder": "me"}, self._tags_of(tg_new)
            assert self._tags_of(tg_old) == {"b": "2"}, self._tags_of(tg_old)
            listed = [l["ListenerArn"] for l in self._listeners(lb)]
            assert listed == [kept["ListenerArn"]], listed
            self.elb.describe_listeners(ListenerArns=[kept["ListenerArn"]])
            self.elb.delete_target_group(TargetGroupArn=tg_gone)
            # Turned off: changes are visible at once again.
            assert self.control("DELETE", "/_kplink/lag") == {"ok": True, "seconds": 0.0}
            self.elb.add_tags(ResourceArns=[tg_new], Tags=[{"Key": "c", "Value": "3"}])
            assert self._tags_of(tg_new) == {"holder": "me", "c": "3"}, self._tags_of(tg_new)
        finally:
            self.control("DELETE", "/_kplink/lag")
        return (
            f"lag {lag_s:g} s: DeleteTargetGroup after DeleteListener -> ResourceInUse, DescribeTags shows the tags "
            "from before CreateTargetGroup/AddTags/RemoveTags, DescribeListeners hides the new listener "
            "(DuplicateListener and idempotent CreateListener see it); all visible after the lag"
        )

    # -- account throttling (token buckets) -----------------------------------
    def _burst(self, fn: Callable[[], Any], n: int) -> list[Any]:
        return [outcome(fn) for _ in range(n)]

    def throttle_defaults(self) -> str:
        got = self.control("GET", "/_kplink/throttle")
        assert got["enabled"] is False and got["config"] is None, f"throttling is on by default: {got}"
        assert self._burst(self.elb.describe_load_balancers, 45) == ["ok"] * 45, "throttled while off"
        assert "throttle_bucket" not in self.control("GET", "/_kplink/calls")["_faults"]
        cfg = self.control("POST", "/_kplink/throttle", {})["config"]
        try:
            buckets = {k: (v["capacity"], v["refill_per_s"]) for k, v in cfg["buckets"].items()}
            assert buckets == {
                "elbv2_describe": (40, 10),
                "elbv2_register": (20, 4),
                "elbv2_other": (40, 10),
                "ec2_describe": (100, 20),
                "ec2_other": (200, 10),
            }, buckets
            # AWS's buckets as they are: 40 pass, then the refill of 10/s lets through what the burst's
            # own duration refilled (45 calls take ~0.2 s here: 40 + 1 or 2).
            start = time.monotonic()
            got_burst = self._burst(self.elb.describe_load_balancers, 45)
            elapsed = time.monotonic() - start
            passed = got_burst.count("ok")
            assert got_burst[:40] == ["ok"] * 40, got_burst[:40]
            assert set(got_burst[40:]) <= {"ok", ELB_THROTTLED}, got_burst[40:]
            assert passed <= 40 + int(10 * elapsed) + 1, f"{passed} passed in {elapsed:.3f} s"
            # The same with the refill held at 0: exactly 40, then AWS's answer, as boto3 sees it.
            self.control("POST", "/_kplink/throttle", {"buckets": {"elbv2_describe": {"refill_per_s": 0}}})
            before = self.control("GET", "/_kplink/calls")["_faults"].get("throttle_bucket", 0)
            got_burst = self._burst(self.elb.describe_load_balancers, 45)
            assert got_burst == ["ok"] * 40 + [ELB_THROTTLED] * 5, got_burst
            # Other buckets are untouched: a write and the EC2 API still pass; so do the control API and Route 53.
            assert outcome(lambda: self._tg("rules-throttle-w", port=9500)) == "ok"
            assert outcome(self.ec2.describe_vpcs) == "ok"
            r53 = boto3.client("route53", **self.kw)
            assert outcome(r53.list_hosted_zones) == "ok"
            state = self.control("GET", "/_kplink/throttle")
            assert state["throttled"] == {
                "total": 5,
                "buckets": {f"{REGION}/elbv2_describe": 5},
                "actions": {"elasticloadbalancing:DescribeLoadBalancers": 5},
            }, state["throttled"]
            assert state["tokens"][f"{REGION}/elbv2_describe"] < 1, state["tokens"]
            after = self.control("GET", "/_kplink/calls")["_faults"].get("throttle_bucket", 0)
            assert after - before == 5, (before, after)
        finally:
            self.control("DELETE", "/_kplink/throttle")
        assert outcome(self.elb.describe_load_balancers) == "ok", "throttled after DELETE"
        return (
            f"AWS's buckets: burst of 45 Describe -> 40 pass (+{passed - 40} refilled in {elapsed:.2f} s); "
            "refill 0 -> exactly 40, then HTTP 400 Throttling 'Rate exceeded'; other buckets unaffected; counted"
        )

    def throttle_refill(self) -> str:
        # scale 0.1: ELBv2 Describe* holds 4 tokens and refills 1 per second.
        cfg = self.control("POST", "/_kplink/throttle", {"scale": 0.1})["config"]
        try:
            spec = cfg["buckets"]["elbv2_describe"]
            assert abs(spec["capacity"] - 4) < 1e-9 and abs(spec["refill_per_s"] - 1) < 1e-9, spec
            describe = self.elb.describe_target_groups
            got = self._burst(describe, 7)
            assert got == ["ok"] * 4 + [ELB_THROTTLED] * 3, got
            # 1.1 s later: 1.1 tokens. The 3 refused calls took none, so exactly 1 passes.
            time.sleep(1.1)
            got = self._burst(describe, 2)
            assert got == ["ok", ELB_THROTTLED], got
            # The cap: capacity 2, refill 8/s; 0.45 s refills 3.6 tokens, the bucket holds 2.
            self.control("POST", "/_kplink/throttle", {"buckets": {"elbv2_describe": {"capacity": 2, "refill_per_s": 8}}})
            got = self._burst(describe, 3)
            assert got == ["ok", "ok", ELB_THROTTLED], got
            time.sleep(0.45)
            got = self._burst(describe, 3)
            assert got == ["ok", "ok", ELB_THROTTLED], got
        finally:
            self.control("DELETE", "/_kplink/throttle")
        return "scaled bucket 4 / 1 per s: 4 pass, 1.1 s later exactly 1 (refused calls take no token); capped at capacity"

    def throttle_ec2(self) -> str:
        # scale 0.1: each EC2 Describe* action has its own bucket of 10; writes: none at all.
        body = {"scale": 0.1, "buckets": {"ec2_other": {"capacity": 0, "refill_per_s": 0}}}
        self.control("POST", "/_kplink/throttle", body)
        try:
            got = self._burst(self.ec2.describe_instances, 11)
            assert got == ["ok"] * 10 + [EC2_THROTTLED], got
            assert outcome(self.ec2.describe_vpcs) == "ok", "EC2 buckets are per action"
            assert outcome(self.elb.describe_load_balancers) == "ok", "EC2 and ELBv2 buckets are separate"
            vpcs = len(self.ec2.describe_vpcs()["Vpcs"])
            got = outcome(lambda: self.ec2.create_vpc(CidrBlock="10.9.0.0/16"))
            assert got == EC2_THROTTLED, got
            assert len(self.ec2.describe_vpcs()["Vpcs"]) == vpcs, "a throttled CreateVpc reached moto"
            throttled = self.control("GET", "/_kplink/throttle")["throttled"]["buckets"]
            assert throttled == {f"{REGION}/ec2_describe/DescribeInstances": 1, f"{REGION}/ec2_other/CreateVpc": 1}, throttled
        finally:
            self.control("DELETE", "/_kplink/throttle")
        return "EC2: per-action buckets, HTTP 503 RequestLimitExceeded 'Request limit exceeded.'; a refused write changes nothing"

    def throttle_and_lag_env(self) -> str:
        env = {
            "KPLINK_MOTO_THROTTLE": "1",
            "KPLINK_MOTO_THROTTLE_SCALE": "0.5",
            "KPLINK_MOTO_THROTTLE_ELBV2_REGISTER": "5/0.5",
        }
        cfg = Throttle.from_env(env)
        assert cfg is not None and cfg["scale"] == 0.5, cfg
        assert cfg["buckets"]["elbv2_describe"] == {"capacity": 20.0, "refill_per_s": 5.0}, cfg
        assert cfg["buckets"]["elbv2_register"] == {"capacity": 5.0, "refill_per_s": 0.5}, cfg
        assert Throttle.from_env({}) is None and Throttle.from_env({"KPLINK_MOTO_THROTTLE": "0"}) is None
        for bad in ({"KPLINK_MOTO_THROTTLE": "maybe"}, {**env, "KPLINK_MOTO_THROTTLE_EC2_OTHER": "5"}):
            try:
                Throttle.from_env(bad)
            except ValueError:
                continue
            raise AssertionError(f"accepted {bad}")
        # At start, in a second server (moto's backends are shared; its lag is the process's).
        saved = {k: os.environ.get(k) for k in (*env, "KPLINK_MOTO_LAG_S")}
        os.environ.update(env, KPLINK_MOTO_LAG_S="0.25")
        try:
            second = MotoServer("127.0.0.1", 0).start()
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        try:
            url, self.url = self.url, second.url
            try:
                state = self.control("GET", "/_kplink/throttle")
                assert state["enabled"] and state["config"] == cfg, state
                assert self.control("GET", "/_kplink/lag")["seconds"] == 0.25
            finally:
                self.url = url
        finally:
            second.stop()
            moto_launcher.set_lag(0.0)
        return "KPLINK_MOTO_THROTTLE(_SCALE, _<CLASS>=cap/refill) and KPLINK_MOTO_LAG_S turn both on at start"

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
    # Throttling and lag are off unless a check turns them on.
    for name in [n for n in os.environ if n.startswith("KPLINK_MOTO_THROTTLE") or n in ("KPLINK_MOTO_LAG_S", "KPLINK_MOTO_HEALTH_SCALE")]:
        del os.environ[name]
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
            rules.describe_unknown_instance,
            rules.target_not_in_use,
            rules.target_health_over_time,
            rules.idle_timeout,
            rules.lag,
            rules.throttle_defaults,
            rules.throttle_refill,
            rules.throttle_ec2,
            rules.throttle_and_lag_env,
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
