#!/usr/bin/env python3
"""Seed moto with a PrivateLink consumer for ``kplink-agent consumer-dns``.

What it creates (in one Region of a moto server started by ``moto_launcher.py``, whose
``moto_privatelink.py`` gives interface endpoints AWS's DNS entries):

* the endpoint service: ``--service-name`` as given, else a VPC endpoint service configuration
  (CreateVpcEndpointServiceConfiguration) for ``--nlb-arn``, else for a new internal network load
  balancer ``provider-nlb`` in a provider VPC ``10.30.0.0/16`` with a subnet in each of the
  Region's first three AZs;
* with ``--service-region R`` (a cross-Region consumer): the provider VPC, its NLB and the
  endpoint service are made in Region ``R`` with ``SupportedRegions`` = the consumer's Region,
  and the interface endpoint names ``ServiceRegion`` ``R`` (``moto_privatelink.py`` item 3);
* the consumer VPC ``10.20.0.0/16`` with one subnet per AZ name in ``--azs`` (default: the
  Region's first two AZs), an interface endpoint to the service in those subnets, and a gateway
  endpoint to ``com.amazonaws.<region>.s3``;
* a private hosted zone ``--zone`` (default ``orders.example.internal``) associated with the
  consumer VPC; a public zone ``orders.example.com``; another VPC ``10.40.0.0/16`` with its own
  private zone of the same name (not associated with the consumer VPC).

The result is printed as JSON (and written to ``--out``)::

    {"moto": URL, "region": ..., "service_name": ..., "vpc_id": ..., "subnets": {az name: id},
     "azs": {az name: az id (the whole Region)}, "endpoint_id": ..., "dns_entries": [...],
     "gateway_endpoint_id": ..., "zone_id": "Z...", "zone_name": ..., "public_zone_id": ...,
     "other_vpc_id": ..., "other_zone_id": ...}

``consumer_world.py vpc --moto URL [--region us-east-1] --azs us-east-1a,us-east-1b`` creates
only the consumer VPC and its subnets and prints ``{"vpc_id", "cidr", "subnets": {az name: id}}``
(tests/readme_walkthrough.rs makes the rest with the README's commands).

Usage: ``consumer_world.py seed --moto URL [--region us-east-1] [--azs us-east-1a,us-east-1b]
[--service-name NAME | --nlb-arn ARN | --service-region REGION] [--zone orders.example.internal]
[--out PATH]``.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import boto3


def _clients(moto: str, region: str) -> tuple[Any, Any, Any]:
    kw = {"endpoint_url": moto, "region_name": region, "aws_access_key_id": "AKIACONSUMER0000001", "aws_secret_access_key": "testing"}
    return boto3.client("ec2", **kw), boto3.client("elbv2", **kw), boto3.client("route53", **kw)


def _vpc(ec2: Any, cidr: str, azs: list[str]) -> tuple[str, dict[str, str]]:
    vpc = ec2.create_vpc(CidrBlock=cidr)["Vpc"]["VpcId"]
    prefix = cidr.rsplit(".", 2)[0]  # "10.20"
    subnets = {}
    for i, az in enumerate(azs):
        subnet = ec2.create_subnet(VpcId=vpc, CidrBlock=f"{prefix}.{i + 1}.0/24", AvailabilityZone=az)
        subnets[az] = subnet["Subnet"]["SubnetId"]
    return vpc, subnets


def _service(ec2: Any, elbv2: Any, args: argparse.Namespace, all_azs: list[str]) -> str:
    if args.service_name:
        return args.service_name
    if args.service_region:
        ec2, elbv2, _ = _clients(args.moto, args.service_region)
        zones = ec2.describe_availability_zones(Filters=[{"Name": "zone-type", "Values": ["availability-zone"]}])
        all_azs = sorted(z["ZoneName"] for z in zones["AvailabilityZones"])
    nlb = args.nlb_arn
    if not nlb:
        _, subnets = _vpc(ec2, "10.30.0.0/16", all_azs[:3])
        lb = elbv2.create_load_balancer(Name="provider-nlb", Subnets=list(subnets.values()), Type="network", Scheme="internal")
        nlb = lb["LoadBalancers"][0]["LoadBalancerArn"]
    regions = {"SupportedRegions": [args.region]} if args.service_region else {}
    config = ec2.create_vpc_endpoint_service_configuration(NetworkLoadBalancerArns=[nlb], AcceptanceRequired=False, **regions)
    return config["ServiceConfiguration"]["ServiceName"]


def _private_zone(r53: Any, name: str, vpc: str, region: str, ref: str) -> str:
    zone = r53.create_hosted_zone(
        Name=name, CallerReference=ref, HostedZoneConfig={"PrivateZone": True}, VPC={"VPCRegion": region, "VPCId": vpc}
    )
    return zone["HostedZone"]["Id"].rsplit("/", 1)[-1]


def seed(args: argparse.Namespace) -> dict[str, Any]:
    ec2, elbv2, r53 = _clients(args.moto, args.region)
    zones = ec2.describe_availability_zones(Filters=[{"Name": "zone-type", "Values": ["availability-zone"]}])
    all_azs = {z["ZoneName"]: z["ZoneId"] for z in zones["AvailabilityZones"]}
    names = sorted(all_azs)
    azs = args.azs.split(",") if args.azs else names[:2]
    service = _service(ec2, elbv2, args, names)
    vpc, subnets = _vpc(ec2, "10.20.0.0/16", azs)
    cross = {"ServiceRegion": args.service_region} if args.service_region else {}
    endpoint = ec2.create_vpc_endpoint(
        VpcId=vpc, ServiceName=service, VpcEndpointType="Interface", SubnetIds=list(subnets.values()), **cross
    )
    endpoint = endpoint["VpcEndpoint"]
    gateway = ec2.create_vpc_endpoint(VpcId=vpc, ServiceName=f"com.amazonaws.{args.region}.s3", VpcEndpointType="Gateway")
    other_vpc, _ = _vpc(ec2, "10.40.0.0/16", names[:1])
    public = r53.create_hosted_zone(Name="orders.example.com", CallerReference="consumer-public")
    return {
        "moto": args.moto,
        "region": args.region,
        "service_region": args.service_region or args.region,
        "service_name": service,
        "vpc_id": vpc,
        "subnets": subnets,
        "azs": all_azs,
        "endpoint_id": endpoint["VpcEndpointId"],
        "dns_entries": [e["DnsName"] for e in endpoint["DnsEntries"]],
        "gateway_endpoint_id": gateway["VpcEndpoint"]["VpcEndpointId"],
        "zone_id": _private_zone(r53, args.zone, vpc, args.region, "consumer-private"),
        "zone_name": args.zone,
        "public_zone_id": public["HostedZone"]["Id"].rsplit("/", 1)[-1],
        "other_vpc_id": other_vpc,
        "other_zone_id": _private_zone(r53, args.zone, other_vpc, args.region, "consumer-other"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("seed", help="create the consumer side and print it as JSON")
    s.add_argument("--moto", required=True)
    s.add_argument("--region", default="us-east-1")
    s.add_argument("--azs", help="comma-separated AZ names of the endpoint's subnets")
    s.add_argument("--service-name")
    s.add_argument("--nlb-arn")
    s.add_argument("--service-region", help="the provider's Region (a cross-Region endpoint)")
    s.add_argument("--zone", default="orders.example.internal")
    s.add_argument("--out")
    v = sub.add_parser("vpc", help="create only the consumer VPC and its subnets")
    v.add_argument("--moto", required=True)
    v.add_argument("--region", default="us-east-1")
    v.add_argument("--azs", required=True, help="comma-separated AZ names of the subnets")
    args = parser.parse_args(argv)
    if args.command == "vpc":
        ec2, _, _ = _clients(args.moto, args.region)
        vpc, subnets = _vpc(ec2, "10.20.0.0/16", args.azs.split(","))
        print(json.dumps({"vpc_id": vpc, "cidr": "10.20.0.0/16", "subnets": subnets}))
        return 0
    world = seed(args)
    text = json.dumps(world, indent=2, sort_keys=True)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
