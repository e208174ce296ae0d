#!/usr/bin/env python3
"""The consumer side of AWS PrivateLink, emulated from moto's state, for tests/e2e_privatelink.rs.

A Kafka client in a consumer VPC reaches the provider's NLB through an interface endpoint: the
endpoint has one network interface (ENI) per endpoint subnet, and each ENI forwards every NLB
listener port to the NLB node in its own AZ. consumer_world.py creates the endpoint in moto; this
script plays its data path on loopback.

``privatelink.py bucket --moto URL --name tansu``
    Creates an S3 bucket (tansu's shared storage).

``privatelink.py records --moto URL --zone-id Z``
    Prints the zone's record sets (Route 53 ListResourceRecordSets) as JSON:
    ``[{"name", "type", "ttl", "values": [...]}]``, names without the trailing dot.

``privatelink.py nlb --moto URL --lb-arn ARN --endpoint-id VPCE --eni-net 127.X.Y
--address PRIVATE_IP=LOOPBACK_IP ... --log FILE``
    The data path: for each ENI of the endpoint (in DescribeNetworkInterfaces order) it takes the
    loopback address ``<eni-net>.<n>`` (n = 1, 2, ...) and listens there on every port the NLB
    has a listener on. A connection to ENI e, port p is routed the way AWS routes it, from
    moto's state at the time of the connection:

        listener on p → its target group → registered targets (DescribeTargetHealth) →
        only targets in e's AZ (by AZ ID) unless the NLB has cross-zone load balancing
        (``load_balancing.cross_zone.enabled``, off by default for NLBs) → round robin →
        the target instance's private IP (DescribeInstances) mapped to loopback by
        ``--address`` → TCP to that address on the target's port.

    A connection that cannot be routed (no listener, no target in the zone, backend refusing)
    is reset. Every connection is appended to ``--log`` as one JSON line:
    ``{"t_ms", "eni", "az_id", "listen": "ADDR:PORT", "port", "client", "target_group",
    "target", "target_port", "backend", "result"}`` where ``result`` is ``forwarded`` or why
    not. The first stdout line is ``READY <json>`` (``ERROR <why>`` when it cannot start), the
    JSON being ``{"enis": [{"id", "az", "az_id", "private_ip", "address"}], "ports": [...],
    "dns": {ENDPOINT_DNS_NAME: [ADDRESS, ...]}}``: ``dns`` is what the consumer VPC's resolver
    answers for the endpoint's DNS entries (the regional entry: every ENI's address; a zonal
    entry, ``vpce-…-<az>.vpce-svc-…``: the ENI in that AZ), in loopback terms.

boto3 from tests/support/requirements.txt; the dummy credentials are what moto accepts.
"""

from __future__ import annotations

import argparse
import itertools
import json
import socket
import struct
import sys
import threading
import time
from typing import Any

import boto3
from botocore.config import Config

REGION = "us-east-1"
# Calls made by this emulator are counted under their own key in moto_launcher.py's counters.
ACCESS_KEY = "AKIAKPLINKPRIVLINK00"
_CFG = Config(retries={"total_max_attempts": 3, "mode": "standard"}, connect_timeout=5, read_timeout=30)


def client(service: str, moto: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=moto,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key="testing",
        config=_CFG,
    )


def enis(ec2: Any, endpoint_id: str) -> list[dict[str, Any]]:
    endpoint = ec2.describe_vpc_endpoints(VpcEndpointIds=[endpoint_id])["VpcEndpoints"][0]
    ids = endpoint.get("NetworkInterfaceIds") or []
    found = ec2.describe_network_interfaces(NetworkInterfaceIds=ids)["NetworkInterfaces"] if ids else []
    by_id = {n["NetworkInterfaceId"]: n for n in found}
    return [
        {"id": i, "az": by_id[i]["AvailabilityZone"], "private_ip": by_id[i]["PrivateIpAddress"]}
        for i in ids
        if i in by_id
    ]


def records(moto: str, zone_id: str) -> list[dict[str, Any]]:
    route53 = client("route53", moto)
    out = []
    for page in route53.get_paginator("list_resource_record_sets").paginate(HostedZoneId=zone_id):
        for rrs in page["ResourceRecordSets"]:
            out.append(
                {
                    "name": rrs["Name"].rstrip("."),
                    "type": rrs["Type"],
                    "ttl": rrs.get("TTL"),
                    "values": [r["Value"].rstrip(".") for r in rrs.get("ResourceRecords", [])],
                }
            )
    return out


class Nlb:
    """The endpoint's ENIs and the NLB behind them (see the module docstring)."""

    def __init__(self, moto: str, lb_arn: str, endpoint_id: str, eni_net: str, addresses: dict[str, str], log: str) -> None:
        self.ec2 = client("ec2", moto)
        self.elbv2 = client("elbv2", moto)
        self.lb_arn = lb_arn
        self.addresses = addresses
        self.log_path = log
        self.log_lock = threading.Lock()
        self.round_robin: dict[int, itertools.count] = {}
        self.az_ids = {
            z["ZoneName"]: z["ZoneId"] for z in self.ec2.describe_availability_zones()["AvailabilityZones"]
        }
        self.enis = []
        for n, eni in enumerate(enis(self.ec2, endpoint_id), start=1):
            eni["az_id"] = self.az_ids[eni["az"]]
            eni["address"] = f"{eni_net}.{n}"
            self.enis.append(eni)
        if not self.enis:
            raise RuntimeError(f"endpoint {endpoint_id} has no network interfaces")
        endpoint = self.ec2.describe_vpc_endpoints(VpcEndpointIds=[endpoint_id])["VpcEndpoints"][0]
        self.dns: dict[str, list[str]] = {}
        for entry in endpoint.get("DnsEntries", []):
            name = entry["DnsName"].rstrip(".")
            zonal = [e["address"] for e in self.enis if f"-{e['az']}." in name]
            self.dns[name] = zonal or [e["address"] for e in self.enis]
        self.ports = sorted(int(listener["Port"]) for listener in self.listeners())
        self.servers = []
        for eni in self.enis:
            for port in self.ports:
                srv = socket.create_server((eni["address"], port))
                self.servers.append((srv, eni, port))

    def listeners(self) -> list[dict[str, Any]]:
        out = []
        for page in self.elbv2.get_paginator("describe_listeners").paginate(LoadBalancerArn=self.lb_arn):
            out.extend(page["Listeners"])
        return out

    def cross_zone(self) -> bool:
        attrs = self.elbv2.describe_load_balancer_attributes(LoadBalancerArn=self.lb_arn)["Attributes"]
        return any(a["Key"] == "load_balancing.cross_zone.enabled" and a["Value"] == "true" for a in attrs)

    def route(self, eni: dict[str, Any], port: int, entry: dict[str, Any]) -> tuple[str, int] | None:
        """The backend for a connection to ``eni`` on ``port``, or None (``entry["result"]`` says why)."""
        listener = next((x for x in self.listeners() if int(x["Port"]) == port), None)
        if listener is None:
            entry["result"] = "no listener"
            return None
        arns = []
        for action in listener.get("DefaultActions", []):
            if action.get("TargetGroupArn"):
                arns.append(action["TargetGroupArn"])
            arns += [g["TargetGroupArn"] for g in (action.get("ForwardConfig") or {}).get("TargetGroups", [])]
        if not arns:
            entry["result"] = "listener has no target group"
            return None
        group = self.elbv2.describe_target_groups(TargetGroupArns=[arns[0]])["TargetGroups"][0]
        entry["target_group"] = group["TargetGroupName"]
        health = self.elbv2.describe_target_health(TargetGroupArn=arns[0])["TargetHealthDescriptions"]
        targets = [
            (h["Target"]["Id"], int(h["Target"].get("Port") or group["Port"]))
            for h in health
            if h.get("TargetHealth", {}).get("State") == "healthy"
        ]
        if not targets:
            entry["result"] = "no registered target"
            return None
        instances = {}
        reservations = self.ec2.describe_instances(InstanceIds=sorted({t[0] for t in targets}))["Reservations"]
        for res in reservations:
            for inst in res["Instances"]:
                instances[inst["InstanceId"]] = inst
        if not self.cross_zone():
            targets = [
                t
                for t in targets
                if t[0] in instances and self.az_ids.get(instances[t[0]]["Placement"]["AvailabilityZone"]) == eni["az_id"]
            ]
            if not targets:
                entry["result"] = f"no target in {eni['az_id']} (cross-zone load balancing is off)"
                return None
        counter = self.round_robin.setdefault(port, itertools.count())
        target_id, target_port = targets[next(counter) % len(targets)]
        entry["target"], entry["target_port"] = target_id, target_port
        private_ip = instances[target_id]["PrivateIpAddress"]
        address = self.addresses.get(private_ip)
        if address is None:
            entry["result"] = f"no loopback address for {target_id}'s private IP {private_ip}"
            return None
        entry["backend"] = f"{address}:{target_port}"
        return address, target_port

    def write(self, entry: dict[str, Any]) -> None:
        with self.log_lock, open(self.log_path, "a") as fh:
            fh.write(json.dumps(entry) + "\n")

    def handle(self, conn: socket.socket, peer: Any, eni: dict[str, Any], port: int) -> None:
        entry: dict[str, Any] = {
            "t_ms": time.time_ns() // 1_000_000,
            "eni": eni["id"],
            "az_id": eni["az_id"],
            "listen": f"{eni['address']}:{port}",
            "port": port,
            "client": f"{peer[0]}:{peer[1]}",
        }
        backend = None
        try:
            where = self.route(eni, port, entry)
            if where is not None:
                backend = socket.create_connection(where, timeout=5)
                backend.settimeout(None)
                entry["result"] = "forwarded"
        except OSError as err:
            entry["result"] = f"backend refused: {err}"
        except Exception as err:  # noqa: BLE001 - an AWS error must reset the connection, not kill the thread
            entry["result"] = f"error: {err}"
        self.write(entry)
        if backend is None:
            # RST, as a load balancer does when it cannot route the flow.
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()
            return
        threading.Thread(target=pipe, args=(conn, backend), daemon=True).start()
        threading.Thread(target=pipe, args=(backend, conn), daemon=True).start()

    def serve(self, srv: socket.socket, eni: dict[str, Any], port: int) -> None:
        while True:
            conn, peer = srv.accept()
            threading.Thread(target=self.handle, args=(conn, peer, eni, port), daemon=True).start()

    def start(self) -> None:
        for srv, eni, port in self.servers:
            threading.Thread(target=self.serve, args=(srv, eni, port), daemon=True).start()

    def describe(self) -> dict[str, Any]:
        return {"enis": self.enis, "ports": self.ports, "dns": self.dns}


def pipe(a: socket.socket, b: socket.socket) -> None:
    try:
        while data := a.recv(65536):
            b.sendall(data)
    except OSError:
        pass
    finally:
        try:
            b.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("bucket", help="create an S3 bucket")
    p.add_argument("--moto", required=True)
    p.add_argument("--name", required=True)
    p = sub.add_parser("records", help="a hosted zone's record sets as JSON")
    p.add_argument("--moto", required=True)
    p.add_argument("--zone-id", required=True)
    p = sub.add_parser("nlb", help="serve the endpoint's ENIs and the NLB's data path on loopback")
    p.add_argument("--moto", required=True)
    p.add_argument("--lb-arn", required=True)
    p.add_argument("--endpoint-id", required=True)
    p.add_argument("--eni-net", required=True, help="first three octets of the ENIs' loopback addresses")
    p.add_argument("--address", action="append", default=[], help="PRIVATE_IP=LOOPBACK_IP for a target instance")
    p.add_argument("--log", required=True)
    args = parser.parse_args(argv)

    if args.cmd == "bucket":
        client("s3", args.moto).create_bucket(Bucket=args.name)
    elif args.cmd == "records":
        print(json.dumps(records(args.moto, args.zone_id)))
    else:
        addresses = dict(a.split("=", 1) for a in args.address)
        try:
            nlb = Nlb(args.moto, args.lb_arn, args.endpoint_id, args.eni_net, addresses, args.log)
        except Exception as err:  # noqa: BLE001 - the first stdout line is what the test shows
            print(f"ERROR {type(err).__name__}: {err}", flush=True)
            return 1
        nlb.start()
        print("READY " + json.dumps(nlb.describe()), flush=True)
        threading.Event().wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
