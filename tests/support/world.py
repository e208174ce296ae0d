#!/usr/bin/env python3
"""Seed moto with a realistic kplink test world, and inspect the NLB wiring.

Purpose
-------
kplink-agent runs on each Kafka broker host. It finds its own identity
through IMDSv2 and then creates per-broker NLB listeners and target groups.
This module builds what the agent expects to find in AWS, inside a moto
server (usually one started by ``moto_launcher.py``):

* a VPC ``10.0.0.0/16`` with three subnets (``10.0.1.0/24``, ``10.0.2.0/24``,
  ``10.0.3.0/24``) in ``<region>a``, ``<region>b``, ``<region>c``. The zone
  ids are read with DescribeAvailabilityZones; moto's us-east-1 mapping is
  1a=use1-az6, 1b=use1-az1, 1c=use1-az2;
* an internal network load balancer (``Type=network``, ``Scheme=internal``)
  named ``<cluster>-nlb`` that spans the three subnets;
* N broker instances (RunInstances, ``t3.large``, an AMI from moto's
  catalogue), placed round-robin across the subnets. Each is tagged
  ``kafka:broker-id=<1..N>`` and ``Name=<cluster>-broker-<id>``;
* optionally, one host per instance registered with ``imds_server.py``. Each
  host's identity (instance id, private IP, AZ, AZ id, MAC, VPC, subnet, tags)
  is copied from the real moto instance. ``tags_in_metadata`` is true except
  for the host indices listed in ``--no-metadata-tags``.

The world is written to ``world.json`` (and printed)::

    {"moto": URL, "region": ..., "cluster": ..., "imds": CONTROL_URL | null,
     "vpc_id": ..., "subnets": {"us-east-1a": {"subnet_id", "az_id", "cidr"}, ...},
     "load_balancer_arn": ..., "load_balancer_name": ...,
     "load_balancer_arns": [...],   # only after add_load_balancers(): all NLBs, seeded one first
     "hosts": [{"name": "host-1", "instance_id", "az", "az_id", "private_ip",
                "subnet_id", "mac", "broker_id": 1, "tags_in_metadata": true,
                "access_key_id": "AKIAKPLINK0000000001",
                "imds_endpoint": "http://127.0.0.1:P" | null}, ...]}

``access_key_id`` is a dummy key id for that host (the secret key can be
anything). Give the agent on that host this key and
``moto_launcher.py``'s ``GET /_kplink/calls?by=access_key`` will count its
calls separately.

Commands
--------
``world.py seed --moto URL --hosts N [--region us-east-1] [--cluster orders]
[--imds CONTROL_URL] [--no-metadata-tags 2,3] [--out world.json]``

``world.py add-host --world world.json --broker-id K [--az-index I]``
    Launches one more instance tagged ``kafka:broker-id=K`` (for example a
    replacement for broker K). By default it goes in the AZ that broker K
    would get under round-robin placement (``(K-1) % 3``). The instance is
    registered with the IMDS server if the world has one, and world.json is
    updated.

``world.py show --world world.json [--json]``
    Prints the NLB wiring as a table: each listener port, its target group,
    the registered targets (instance id:port and broker id), and the target
    group's tags. Target groups that no listener uses are listed as well.

Python API
----------
``seed(...) -> dict``, ``add_host(world, broker_id, az_index=None) -> dict``,
``add_load_balancers(world, count) -> list[str]`` (more NLBs in the same
subnets, for ``nlb.load_balancer_arns``), ``describe_wiring(world, lb_arn=None)
-> dict``, ``format_wiring(wiring) -> str``,
``load_world(path)``, ``save_world(world, path)``, ``clients(world_or_url,
region)``. The demo script and the Rust tests (which run this file as a
command) use these.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import urllib.error
import urllib.request
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

DUMMY_KEY = "testing"
SUBNET_CIDRS = ("10.0.1.0/24", "10.0.2.0/24", "10.0.3.0/24")
INSTANCE_TYPE = "t3.large"
BROKER_TAG = "kafka:broker-id"
_BOTO_CFG = Config(retries={"total_max_attempts": 3, "mode": "standard"}, connect_timeout=5, read_timeout=30)


def clients(moto_url: str, region: str, access_key: str = DUMMY_KEY) -> tuple[Any, Any]:
    """boto3 (ec2, elbv2) clients for the moto server at ``moto_url``."""
    kw = dict(
        endpoint_url=moto_url,
        region_name=region,
        aws_access_key_id=access_key,
        aws_secret_access_key=DUMMY_KEY,
        config=_BOTO_CFG,
    )
    return boto3.client("ec2", **kw), boto3.client("elbv2", **kw)


def _fnv1a(data: bytes) -> int:
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def group_stem(cluster: str, lb_arn: str) -> str:
    """The agent's ``registry::group_stem``: readable head + 4 hex of a hash of (cluster, NLB)."""
    head = ""
    for c in cluster:
        c = c.lower() if c.isascii() and c.isalnum() else "-"
        if not (c == "-" and (not head or head.endswith("-"))):
            head += c
    head = head[:12].strip("-") or "c"
    key = (cluster + "\n" + lb_arn).encode()
    return f"{head}-{_fnv1a(key) & 0xFFFF:04x}"


def group_name(cluster: str, lb_arn: str, broker_id: int) -> str:
    """Name of broker ``broker_id``'s dedicated target group on ``lb_arn``."""
    return f"kp-{group_stem(cluster, lb_arn)}-b{broker_id}"


def access_key_for(index: int) -> str:
    """The dummy access key id for host ``index``. 20 characters, like a real one."""
    return f"AKIAKPLINK{index:010d}"


def load_world(path: str) -> dict[str, Any]:
    with open(path) as fh:
        world = json.load(fh)
    world["_path"] = path
    return world


def save_world(world: dict[str, Any], path: str | None = None) -> None:
    path = path or world.get("_path")
    if not path:
        return
    data = {k: v for k, v in world.items() if not k.startswith("_")}
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(data, fh, indent=2, sort_keys=False)
        fh.write("\n")
    os.replace(tmp, path)


def _pick_ami(ec2: Any) -> str:
    for name in ("amzn2-ami-*", "al2023-ami-*", "*"):
        images = ec2.describe_images(Filters=[{"Name": "name", "Values": [name]}])["Images"]
        if images:
            return sorted(images, key=lambda i: i["ImageId"])[0]["ImageId"]
    raise RuntimeError("moto returned no AMIs")


def _register_imds(imds_url: str, host: dict[str, Any], vpc_id: str, tags: dict[str, str], region: str) -> str:
    body = {
        "name": host["name"],
        "instance_id": host["instance_id"],
        "region": region,
        "az": host["az"],
        "az_id": host["az_id"],
        "private_ip": host["private_ip"],
        "mac": host["mac"],
        "vpc_id": vpc_id,
        "subnet_id": host["subnet_id"],
        "tags": tags,
        "tags_in_metadata": host["tags_in_metadata"],
    }
    req = urllib.request.Request(
        imds_url.rstrip("/") + "/hosts",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.load(resp)["endpoint"]
    except urllib.error.HTTPError as exc:
        raise RuntimeError(f"IMDS registration of {host['name']} failed: {exc.code} {exc.read()!r}") from exc


def _launch(world: dict[str, Any], ec2: Any, name: str, index: int, broker_id: int, az_index: int, tags_in_metadata: bool) -> dict[str, Any]:
    azs = sorted(world["subnets"])
    az = azs[az_index % len(azs)]
    subnet = world["subnets"][az]
    tags = {BROKER_TAG: str(broker_id), "Name": f"{world['cluster']}-broker-{broker_id}"}
    resp = ec2.run_instances(
        ImageId=world["image_id"],
        MinCount=1,
        MaxCount=1,
        InstanceType=INSTANCE_TYPE,
        SubnetId=subnet["subnet_id"],
        TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}],
    )
    inst = resp["Instances"][0]
    enis = inst.get("NetworkInterfaces") or []
    mac = enis[0].get("MacAddress") if enis else None
    host = {
        "name": name,
        "instance_id": inst["InstanceId"],
        "az": inst["Placement"]["AvailabilityZone"],
        "az_id": subnet["az_id"],
        "private_ip": inst["PrivateIpAddress"],
        "subnet_id": inst["SubnetId"],
        "mac": mac or "0e:00:00:00:%02x:%02x" % (index // 256 % 256, index % 256),
        "broker_id": broker_id,
        "tags_in_metadata": tags_in_metadata,
        "access_key_id": access_key_for(index),
        "imds_endpoint": None,
    }
    if world.get("imds"):
        host["imds_endpoint"] = _register_imds(world["imds"], host, world["vpc_id"], tags, world["region"])
    return host


def seed(
    moto_url: str,
    hosts: int,
    region: str = "us-east-1",
    cluster: str = "orders",
    imds: str | None = None,
    no_metadata_tags: set[int] | frozenset[int] = frozenset(),
    out: str | None = None,
) -> dict[str, Any]:
    """Create the VPC, subnets, NLB and ``hosts`` broker instances. Returns the world dict."""
    if hosts < 0 or hosts > 500:
        raise ValueError("hosts must be within [0, 500]")
    if not re.fullmatch(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,26}[A-Za-z0-9])?", cluster):
        raise ValueError("cluster must be 1-28 alphanumerics/hyphens (it becomes part of the NLB name)")
    ec2, elbv2 = clients(moto_url, region)

    zones = {
        z["ZoneName"]: z["ZoneId"]
        for z in ec2.describe_availability_zones(Filters=[{"Name": "region-name", "Values": [region]}])["AvailabilityZones"]
    }
    wanted = [region + suffix for suffix in ("a", "b", "c")]
    missing = [z for z in wanted if z not in zones]
    if missing:
        raise RuntimeError(f"moto has no zones {missing} in {region}; it has {sorted(zones)}")

    vpc_id = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    ec2.create_tags(Resources=[vpc_id], Tags=[{"Key": "Name", "Value": f"{cluster}-vpc"}])
    subnets: dict[str, dict[str, str]] = {}
    for az, cidr in zip(wanted, SUBNET_CIDRS):
        sub = ec2.create_subnet(VpcId=vpc_id, CidrBlock=cidr, AvailabilityZone=az)["Subnet"]
        subnets[az] = {"subnet_id": sub["SubnetId"], "az_id": sub.get("AvailabilityZoneId") or zones[az], "cidr": cidr}

    lb = elbv2.create_load_balancer(
        Name=f"{cluster}-nlb",
        Subnets=[subnets[az]["subnet_id"] for az in wanted],
        Type="network",
        Scheme="internal",
        Tags=[{"Key": "kafka:cluster", "Value": cluster}],
    )["LoadBalancers"][0]

    world: dict[str, Any] = {
        "moto": moto_url,
        "region": region,
        "cluster": cluster,
        "imds": imds,
        "vpc_id": vpc_id,
        "image_id": _pick_ami(ec2),
        "subnets": subnets,
        "load_balancer_arn": lb["LoadBalancerArn"],
        "load_balancer_name": lb["LoadBalancerName"],
        "load_balancer_dns": lb.get("DNSName"),
        "hosts": [],
    }
    for i in range(1, hosts + 1):
        world["hosts"].append(
            _launch(world, ec2, f"host-{i}", i, broker_id=i, az_index=i - 1, tags_in_metadata=i not in no_metadata_tags)
        )
    if out:
        save_world(world, out)
        world["_path"] = out
    return world


def add_host(world: dict[str, Any], broker_id: int, az_index: int | None = None, tags_in_metadata: bool = True) -> dict[str, Any]:
    """Launch one more broker instance (for example a replacement for ``broker_id``).

    The host is appended to ``world["hosts"]`` and, if the world was loaded
    from a file, the file is rewritten. Returns the new host entry.
    """
    if broker_id < 1:
        raise ValueError("broker_id must be >= 1")
    ec2, _ = clients(world["moto"], world["region"])
    index = max((int(h["name"].rsplit("-", 1)[-1]) for h in world["hosts"] if h["name"].rsplit("-", 1)[-1].isdigit()), default=0) + 1
    if az_index is None:
        az_index = (broker_id - 1) % len(world["subnets"])
    host = _launch(world, ec2, f"host-{index}", index, broker_id, az_index, tags_in_metadata)
    world["hosts"].append(host)
    save_world(world)
    return host


def add_load_balancers(world: dict[str, Any], count: int) -> list[str]:
    """Create ``count`` more internal NLBs in the world's subnets: ``<cluster>-nlb-b``, ``-c``, ...

    Sets ``world["load_balancer_arns"]`` to every NLB in fill order (the seeded one first, as
    ``nlb.load_balancer_arns`` would list them), rewrites world.json if the world came from a
    file, and returns that list.
    """
    if count < 0 or count > 24:
        raise ValueError("count must be within [0, 24]")
    _, elbv2 = clients(world["moto"], world["region"])
    arns = list(world.get("load_balancer_arns") or [world["load_balancer_arn"]])
    subnets = [world["subnets"][az]["subnet_id"] for az in sorted(world["subnets"])]
    for _ in range(count):
        name = f"{world['cluster']}-nlb-{chr(ord('a') + len(arns))}"
        lb = elbv2.create_load_balancer(
            Name=name,
            Subnets=subnets,
            Type="network",
            Scheme="internal",
            Tags=[{"Key": "kafka:cluster", "Value": world["cluster"]}],
        )["LoadBalancers"][0]
        arns.append(lb["LoadBalancerArn"])
    world["load_balancer_arns"] = arns
    save_world(world)
    return arns


def _paginate(client: Any, op: str, key: str, **kw: Any) -> list[Any]:
    out: list[Any] = []
    for page in client.get_paginator(op).paginate(**kw):
        out.extend(page.get(key, []))
    return out


def describe_wiring(world: dict[str, Any], lb_arn: str | None = None) -> dict[str, Any]:
    """Read an NLB's listeners, target groups, targets and tags back from moto.

    ``lb_arn`` defaults to the seeded NLB (``world["load_balancer_arn"]``). Target groups that
    none of *this* NLB's listeners use count as unattached.
    """
    ec2, elbv2 = clients(world["moto"], world["region"])
    lb_arn = lb_arn or world["load_balancer_arn"]
    listeners = _paginate(elbv2, "describe_listeners", "Listeners", LoadBalancerArn=lb_arn)
    tgs = {tg["TargetGroupArn"]: tg for tg in _paginate(elbv2, "describe_target_groups", "TargetGroups")}
    tags: dict[str, dict[str, str]] = {}
    arns = list(tgs)
    for start in range(0, len(arns), 20):
        for desc in elbv2.describe_tags(ResourceArns=arns[start : start + 20])["TagDescriptions"]:
            tags[desc["ResourceArn"]] = {t["Key"]: t["Value"] for t in desc.get("Tags", [])}
    broker_of: dict[str, str] = {}
    for res in _paginate(ec2, "describe_instances", "Reservations", Filters=[{"Name": "vpc-id", "Values": [world["vpc_id"]]}]):
        for inst in res["Instances"]:
            t = {x["Key"]: x["Value"] for x in inst.get("Tags", [])}
            broker_of[inst["InstanceId"]] = t.get(BROKER_TAG, "?")

    def tg_info(arn: str) -> dict[str, Any]:
        tg = tgs.get(arn, {})
        health = elbv2.describe_target_health(TargetGroupArn=arn)["TargetHealthDescriptions"] if tg else []
        return {
            "arn": arn,
            "name": tg.get("TargetGroupName", "<missing>"),
            "protocol": tg.get("Protocol"),
            "port": tg.get("Port"),
            "tags": tags.get(arn, {}),
            "targets": [
                {
                    "id": h["Target"]["Id"],
                    "port": h["Target"].get("Port"),
                    "az": h["Target"].get("AvailabilityZone"),
                    "broker_id": broker_of.get(h["Target"]["Id"], "?"),
                    "state": h.get("TargetHealth", {}).get("State"),
                }
                for h in health
            ],
        }

    used: set[str] = set()
    out_listeners = []
    for lst in sorted(listeners, key=lambda x: int(x["Port"])):
        tg_arns: list[str] = []
        for action in lst.get("DefaultActions", []):
            if action.get("TargetGroupArn"):
                tg_arns.append(action["TargetGroupArn"])
            for fwd in (action.get("ForwardConfig") or {}).get("TargetGroups", []):
                if fwd["TargetGroupArn"] not in tg_arns:
                    tg_arns.append(fwd["TargetGroupArn"])
        used.update(tg_arns)
        out_listeners.append(
            {"port": int(lst["Port"]), "protocol": lst.get("Protocol"), "arn": lst["ListenerArn"], "target_groups": [tg_info(a) for a in tg_arns]}
        )
    unattached = [
        tg_info(arn)
        for arn, tg in sorted(tgs.items(), key=lambda kv: kv[1]["TargetGroupName"])
        if arn not in used and tg.get("VpcId") == world["vpc_id"]
    ]
    return {"load_balancer_arn": lb_arn, "listeners": out_listeners, "unattached_target_groups": unattached}


def format_wiring(wiring: dict[str, Any]) -> str:
    """A human-readable table of ``describe_wiring``'s result."""
    rows: list[tuple[str, str, str, str, str]] = []

    def add(port: str, proto: str, tg: dict[str, Any] | None) -> None:
        if tg is None:
            rows.append((port, proto, "<no target group>", "", ""))
            return
        targets = ", ".join(f"{t['id']}:{t['port']} (broker {t['broker_id']})" for t in tg["targets"]) or "<none>"
        tag_s = ", ".join(f"{k}={v}" for k, v in sorted(tg["tags"].items())) or "<none>"
        rows.append((port, proto, tg["name"], targets, tag_s))

    for lst in wiring["listeners"]:
        if not lst["target_groups"]:
            add(str(lst["port"]), lst["protocol"] or "", None)
        for i, tg in enumerate(lst["target_groups"]):
            add(str(lst["port"]) if i == 0 else "", (lst["protocol"] or "") if i == 0 else "", tg)
    for tg in wiring["unattached_target_groups"]:
        add("-", "-", tg)

    header = ("PORT", "PROTO", "TARGET GROUP", "TARGETS", "TAGS")
    widths = [max(len(header[c]), *(len(r[c]) for r in rows)) if rows else len(header[c]) for c in range(5)]
    lines = [f"load balancer: {wiring['load_balancer_arn']}"]
    lines.append("  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip())
    lines.append("  ".join("-" * w for w in widths))
    for r in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    if not rows:
        lines.append("(no listeners, no target groups)")
    lines.append(f"{len(wiring['listeners'])} listener(s), {len(wiring['unattached_target_groups'])} unattached target group(s)")
    return "\n".join(lines)


def _parse_indices(text: str | None) -> set[int]:
    if not text:
        return set()
    try:
        return {int(x) for x in text.split(",") if x.strip()}
    except ValueError as exc:
        raise argparse.ArgumentTypeError("--no-metadata-tags takes comma-separated integers, e.g. 2,3") from exc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Seed moto with a VPC, an internal NLB and Kafka broker instances; show the NLB wiring.")
    sub = parser.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("seed", help="create the VPC, subnets, NLB and broker instances")
    p.add_argument("--moto", required=True, help="moto server URL, e.g. http://127.0.0.1:PORT")
    p.add_argument("--hosts", type=int, required=True, help="number of broker instances")
    p.add_argument("--region", default="us-east-1")
    p.add_argument("--cluster", default="orders", help="cluster name (NLB is <cluster>-nlb)")
    p.add_argument("--imds", help="imds_server.py control URL; if given each instance is registered as a host")
    p.add_argument("--no-metadata-tags", default="", help="comma-separated 1-based host indices whose IMDS does not expose tags")
    p.add_argument("--out", default="world.json", help="where to write the world (default world.json)")

    p = sub.add_parser("add-host", help="launch one more broker instance (e.g. a replacement)")
    p.add_argument("--world", required=True)
    p.add_argument("--broker-id", type=int, required=True)
    p.add_argument("--az-index", type=int, help="0-based subnet index (default: (broker_id-1) %% 3)")
    p.add_argument("--no-metadata-tags", action="store_true", help="the new host's IMDS does not expose tags")

    p = sub.add_parser("show", help="print listener -> target group -> targets wiring")
    p.add_argument("--world", required=True)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")

    args = parser.parse_args(argv)
    try:
        if args.cmd == "seed":
            world = seed(
                args.moto,
                args.hosts,
                region=args.region,
                cluster=args.cluster,
                imds=args.imds,
                no_metadata_tags=_parse_indices(args.no_metadata_tags),
                out=args.out,
            )
            print(json.dumps({k: v for k, v in world.items() if not k.startswith("_")}, indent=2))
        elif args.cmd == "add-host":
            world = load_world(args.world)
            host = add_host(world, args.broker_id, args.az_index, tags_in_metadata=not args.no_metadata_tags)
            print(json.dumps(host, indent=2))
        elif args.cmd == "show":
            wiring = describe_wiring(load_world(args.world))
            print(json.dumps(wiring, indent=2) if args.json else format_wiring(wiring))
    except (RuntimeError, ValueError, OSError, KeyError, argparse.ArgumentTypeError, BotoCoreError, ClientError) as exc:
        print(f"world.py: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
