#!/usr/bin/env python3
"""Deploy deploy/cloudformation/provider.yaml into moto, as far as moto can, for tests/provider_stack.rs.

``provider_stack.py deploy --moto URL --template PATH --out DIR [--imds CONTROL_URL]
[--stack NAME] [--hosts N] [--param Key=Value ...]``

1. Seeds a VPC ``10.0.0.0/16`` with one subnet in each of ``us-east-1a``, ``1b``, ``1c`` (as
   ``world.py seed`` does) and picks an AMI from moto's catalogue; ``VpcId``, ``SubnetIds``
   and ``ImageId`` default to them.
2. Makes the variant moto can deploy: the template (YAML, read with cfn-lint's decoder, which
   turns ``!Ref`` and friends into their long forms) minus every resource whose type moto's
   CloudFormation has no model for (moto would skip them silently: ``AWS::EC2::VPCEndpointService``
   and ``AWS::EC2::VPCEndpointServicePermissions`` in moto 5.2.5), minus the outputs that refer
   to them. Nothing else changes.
3. CreateStack with that variant; the stack must reach ``CREATE_COMPLETE``.
4. Creates each removed resource through the EC2 API, as the template declares it: its
   ``Condition`` is evaluated from the template's Conditions and the parameters, ``Ref``s are
   resolved to parameters, the stack's resources and the resources made here.
   ``VPCEndpointService`` -> CreateVpcEndpointServiceConfiguration,
   ``VPCEndpointServicePermissions`` -> ModifyVpcEndpointServicePermissions. Any other removed
   type is an error (give it a stand-in here).
5. Launches ``--hosts`` broker instances from the stack's launch template (one per subnet,
   round-robin, tagged ``kafka:broker-id=<1..N>``) and registers each with the IMDS test server,
   like ``world.py``.

``provider_stack.py update --moto URL --template PATH --out DIR [--param Key=Value ...]``

UpdateStack of the stack deployed into ``DIR`` with its parameters plus the given ones (for
example a higher ``ShardCount``), then step 4 again: stand-ins whose Condition now holds are
created, those whose Condition no longer holds are deleted, the others are kept as they are.
No hosts are launched.

For tests/readme_walkthrough.rs, which deploys with the README's own ``aws cloudformation
deploy`` (AWS_ENDPOINT_URL pointing at moto):

``provider_stack.py seed-vpc --moto URL``
    Step 1 alone; prints ``{"vpc_id", "subnets": {az: {"subnet_id", "az_id", "cidr"}}, "image_id"}``.
``provider_stack.py variant --template PATH --out FILE``
    Writes step 2's variant (JSON) to FILE: the template the walkthrough deploys.
``provider_stack.py stand-ins --moto URL --template PATH --stack NAME``
    Step 4 for a stack deployed from that variant; prints ``{"endpoint_services": [...]}``.
``provider_stack.py register-hosts --moto URL --imds CONTROL_URL --out DIR --instance-id ID ...``
    Step 5's registration for instances launched elsewhere (by ``aws ec2 run-instances``): each
    instance's ``kafka:broker-id`` tag is its broker id. Writes ``DIR/world.json``.

``deploy`` and ``update`` write ``DIR/world.json`` (``world.py``'s format; ``load_balancer_arn`` is the stack's first NLB)
and prints, and writes to ``DIR/stack.json``, what the test asserts on: parameters, outputs,
removed resources and outputs, the stand-ins made, every NLB (attributes, tags, security
groups, zones), the security groups, the role's inline policies, the instance profile, the
launch template's data (user data decoded) and the instances.
"""

from __future__ import annotations

import argparse
import ast
import base64
import json
import os
import sys
from typing import Any

import boto3

import world as worldlib

REGION = "us-east-1"
AZS = ("us-east-1a", "us-east-1b", "us-east-1c")


def client(moto: str, service: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=moto,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def load_template(path: str) -> dict[str, Any]:
    from cfnlint.decode import decode

    template, matches = decode(path)
    if matches:
        raise RuntimeError(f"{path}: {[str(m) for m in matches]}")
    return json.loads(json.dumps(template))  # plain dicts and lists


def moto_supported(resource_type: str) -> bool:
    from moto.cloudformation.parsing import NULL_MODELS, get_model_map

    return resource_type in NULL_MODELS or resource_type in get_model_map()


def refers_to(node: Any, names: set[str]) -> bool:
    """Whether ``node`` refers to one of ``names`` (Ref, Fn::GetAtt, or ${Name} in Fn::Sub)."""
    if isinstance(node, dict):
        if node.get("Ref") in names:
            return True
        if "Fn::GetAtt" in node and node["Fn::GetAtt"][0] in names:
            return True
        if "Fn::Sub" in node:
            text = node["Fn::Sub"][0] if isinstance(node["Fn::Sub"], list) else node["Fn::Sub"]
            if any("${" + n + "}" in text or "${" + n + "." in text for n in names):
                return True
        return any(refers_to(v, names) for v in node.values())
    if isinstance(node, list):
        return any(refers_to(v, names) for v in node)
    return False


def moto_variant(template: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    removed = {k: v for k, v in template["Resources"].items() if not moto_supported(v["Type"])}
    variant = dict(template)
    variant["Resources"] = {k: v for k, v in template["Resources"].items() if k not in removed}
    names = set(removed)
    removed_outputs = sorted(k for k, v in template.get("Outputs", {}).items() if refers_to(v, names))
    variant["Outputs"] = {k: v for k, v in template.get("Outputs", {}).items() if k not in removed_outputs}
    for k, v in variant["Resources"].items():
        if refers_to(v, names):
            raise RuntimeError(f"resource {k} refers to a resource moto cannot deploy: {sorted(names)}")
    return variant, removed, removed_outputs


NO_VALUE = object()  # Ref AWS::NoValue: the property is left out


class Evaluator:
    """Conditions and Refs of the removed resources, from parameters and deployed resources."""

    def __init__(self, template: dict[str, Any], params: dict[str, str], physical: dict[str, str]) -> None:
        self.template = template
        self.params = params
        self.physical = physical

    def value(self, node: Any) -> Any:
        if node == {"Ref": "AWS::NoValue"}:
            return NO_VALUE
        if isinstance(node, dict) and "Fn::If" in node:
            cond, yes, no = node["Fn::If"]
            return self.value(yes if self.condition(cond) else no)
        if isinstance(node, dict) and "Ref" in node:
            name = node["Ref"]
            if name in self.params:
                decl = self.template["Parameters"][name]
                raw = self.params[name]
                if decl["Type"] == "CommaDelimitedList" or decl["Type"].startswith("List<"):
                    return [] if raw == "" else raw.split(",")
                return raw
            if name in self.physical:
                return self.physical[name]
            raise RuntimeError(f"cannot resolve Ref {name}")
        if isinstance(node, dict) and "Fn::Join" in node:
            sep, items = node["Fn::Join"]
            items = self.value(items)
            return sep.join(str(self.value(i)) for i in items)
        if isinstance(node, list):
            return [self.value(item) for item in node]
        if isinstance(node, dict):
            raise RuntimeError(f"no evaluator for {node}")
        return node

    def condition(self, name: str) -> bool:
        return self.truth(self.template["Conditions"][name])

    def truth(self, node: Any) -> bool:
        if "Condition" in node:
            return self.condition(node["Condition"])
        (op, args), = node.items()
        if op == "Fn::Equals":
            return str(self.value(args[0])) == str(self.value(args[1]))
        if op == "Fn::Not":
            return not self.truth(args[0])
        if op == "Fn::Or":
            return any(self.truth(a) for a in args)
        if op == "Fn::And":
            return all(self.truth(a) for a in args)
        raise RuntimeError(f"no evaluator for condition {op}")


def update_supported_regions(ec2: Any, service_id: str, props: dict[str, Any], ev: Evaluator) -> None:
    """A stack update changing SupportedRegions: ModifyVpcEndpointServiceConfiguration."""
    want = ev.value(props.get("SupportedRegions", {"Ref": "AWS::NoValue"}))
    want = [] if want is NO_VALUE else list(want)
    cfg = ec2.describe_vpc_endpoint_service_configurations(ServiceIds=[service_id])["ServiceConfigurations"][0]
    have = [r["Region"] for r in cfg.get("SupportedRegions", [])]
    add = [r for r in want if r not in have]
    remove = [r for r in have if r not in want and r != REGION]
    if add or remove:
        ec2.modify_vpc_endpoint_service_configuration(
            ServiceId=service_id, AddSupportedRegions=add, RemoveSupportedRegions=remove
        )


def reconcile_stand_ins(
    ec2: Any, removed: dict[str, Any], ev: Evaluator, previous: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Create the removed resources whose Condition holds and that do not exist yet, delete the
    ones made earlier whose Condition no longer holds (a stack update). Returns what exists."""
    kept = {m["logical_id"]: m for m in previous}
    for m in previous:
        ev.physical.setdefault(m["logical_id"], m["service_id"])
    made: list[dict[str, Any]] = []
    # Endpoint services first: permissions refer to them (and go first on deletion).
    order = sorted(removed, key=lambda k: (removed[k]["Type"] != "AWS::EC2::VPCEndpointService", k))
    for logical in reversed(order):
        res = removed[logical]
        if logical in kept and "Condition" in res and not ev.condition(res["Condition"]):
            old = kept.pop(logical)
            if res["Type"] == "AWS::EC2::VPCEndpointService":
                ec2.delete_vpc_endpoint_service_configurations(ServiceIds=[old["service_id"]])
            elif res["Type"] == "AWS::EC2::VPCEndpointServicePermissions":
                ec2.modify_vpc_endpoint_service_permissions(
                    ServiceId=old["service_id"], RemoveAllowedPrincipals=old["principals"]
                )
    for logical in order:
        res = removed[logical]
        if logical in kept:
            if res["Type"] == "AWS::EC2::VPCEndpointService":
                update_supported_regions(ec2, kept[logical]["service_id"], res.get("Properties", {}), ev)
            made.append(kept[logical])
            continue
        if "Condition" in res and not ev.condition(res["Condition"]):
            continue
        props = res.get("Properties", {})
        if res["Type"] == "AWS::EC2::VPCEndpointService":
            kwargs: dict[str, Any] = {
                "NetworkLoadBalancerArns": ev.value(props["NetworkLoadBalancerArns"]),
                "AcceptanceRequired": str(ev.value(props["AcceptanceRequired"])).lower() == "true",
            }
            regions = ev.value(props.get("SupportedRegions", {"Ref": "AWS::NoValue"}))
            if regions is not NO_VALUE:
                kwargs["SupportedRegions"] = regions
            if props.get("Tags"):
                tags = [{"Key": t["Key"], "Value": str(ev.value(t["Value"]))} for t in props["Tags"]]
                kwargs["TagSpecifications"] = [{"ResourceType": "vpc-endpoint-service", "Tags": tags}]
            svc = ec2.create_vpc_endpoint_service_configuration(**kwargs)["ServiceConfiguration"]
            ev.physical[logical] = svc["ServiceId"]
            made.append({"logical_id": logical, "type": res["Type"], "service_id": svc["ServiceId"]})
        elif res["Type"] == "AWS::EC2::VPCEndpointServicePermissions":
            service_id = ev.value(props["ServiceId"])
            principals = ev.value(props["AllowedPrincipals"])
            ec2.modify_vpc_endpoint_service_permissions(ServiceId=service_id, AddAllowedPrincipals=principals)
            made.append({"logical_id": logical, "type": res["Type"], "service_id": service_id, "principals": principals})
        else:
            raise RuntimeError(f"{logical}: moto cannot deploy {res['Type']} and this script has no stand-in for it")
    return made


def seed_vpc(ec2: Any) -> dict[str, Any]:
    zones = {z["ZoneName"]: z["ZoneId"] for z in ec2.describe_availability_zones()["AvailabilityZones"]}
    vpc_id = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnets = {}
    for az, cidr in zip(AZS, worldlib.SUBNET_CIDRS):
        sub = ec2.create_subnet(VpcId=vpc_id, CidrBlock=cidr, AvailabilityZone=az)["Subnet"]
        subnets[az] = {"subnet_id": sub["SubnetId"], "az_id": sub.get("AvailabilityZoneId") or zones[az], "cidr": cidr}
    return {"vpc_id": vpc_id, "subnets": subnets, "image_id": worldlib._pick_ami(ec2)}


def launch_hosts(ec2: Any, world: dict[str, Any], template_id: str, count: int) -> None:
    for i in range(1, count + 1):
        az = AZS[(i - 1) % len(AZS)]
        subnet = world["subnets"][az]
        tags = {worldlib.BROKER_TAG: str(i), "Name": f"{world['cluster']}-broker-{i}"}
        inst = ec2.run_instances(
            LaunchTemplate={"LaunchTemplateId": template_id},
            SubnetId=subnet["subnet_id"],
            MinCount=1,
            MaxCount=1,
            TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}],
        )["Instances"][0]
        add_host(world, inst, subnet["az_id"], i, tags)


def add_host(world: dict[str, Any], inst: dict[str, Any], az_id: str, i: int, tags: dict[str, str]) -> None:
    """Adds instance ``inst`` as host ``i`` (broker id ``i``) to ``world``, registered with the IMDS test server."""
    enis = inst.get("NetworkInterfaces") or []
    host = {
        "name": f"host-{i}",
        "instance_id": inst["InstanceId"],
        "az": inst["Placement"]["AvailabilityZone"],
        "az_id": az_id,
        "private_ip": inst["PrivateIpAddress"],
        "subnet_id": inst["SubnetId"],
        "mac": (enis[0].get("MacAddress") if enis else None) or "0e:00:00:00:00:%02x" % i,
        "broker_id": i,
        "tags_in_metadata": True,
        "access_key_id": worldlib.access_key_for(i),
        "imds_endpoint": None,
    }
    if world.get("imds"):
        host["imds_endpoint"] = worldlib._register_imds(world["imds"], host, world["vpc_id"], tags, REGION)
    world["hosts"].append(host)


def facts(moto: str, physical: dict[str, str], types: dict[str, str], instance_ids: list[str]) -> dict[str, Any]:
    ec2, elbv2, iam = client(moto, "ec2"), client(moto, "elbv2"), client(moto, "iam")
    out: dict[str, Any] = {}
    nlbs = {}
    for logical, arn in physical.items():
        if types[logical] != "AWS::ElasticLoadBalancingV2::LoadBalancer":
            continue
        lb = elbv2.describe_load_balancers(LoadBalancerArns=[arn])["LoadBalancers"][0]
        attrs = elbv2.describe_load_balancer_attributes(LoadBalancerArn=arn)["Attributes"]
        tags = elbv2.describe_tags(ResourceArns=[arn])["TagDescriptions"][0]["Tags"]
        nlbs[logical] = {
            "arn": arn,
            "type": lb["Type"],
            "scheme": lb["Scheme"],
            "vpc_id": lb["VpcId"],
            "security_groups": lb.get("SecurityGroups", []),
            "zones": sorted(z["ZoneName"] for z in lb["AvailabilityZones"]),
            "subnets": sorted(z["SubnetId"] for z in lb["AvailabilityZones"]),
            "attributes": {a["Key"]: a["Value"] for a in attrs},
            "tags": {t["Key"]: t["Value"] for t in tags},
        }
    out["nlbs"] = nlbs
    sgs = {}
    for logical, gid in physical.items():
        if types[logical] != "AWS::EC2::SecurityGroup":
            continue
        sg = ec2.describe_security_groups(GroupIds=[gid])["SecurityGroups"][0]
        sgs[logical] = {
            "id": gid,
            "vpc_id": sg.get("VpcId"),
            "ingress": [
                {
                    "protocol": p["IpProtocol"],
                    "from": p.get("FromPort"),
                    "to": p.get("ToPort"),
                    "groups": [g["GroupId"] for g in p.get("UserIdGroupPairs", [])],
                    "cidrs": [r["CidrIp"] for r in p.get("IpRanges", [])],
                }
                for p in sg.get("IpPermissions", [])
            ],
            "tags": {t["Key"]: t["Value"] for t in sg.get("Tags", [])},
        }
    out["security_groups"] = sgs
    role = physical["AgentRole"]
    out["role_policies"] = {}
    for name in iam.list_role_policies(RoleName=role)["PolicyNames"]:
        doc = iam.get_role_policy(RoleName=role, PolicyName=name)["PolicyDocument"]
        if isinstance(doc, str):
            # moto's CloudFormation stores an inline policy given as a mapping as str(dict).
            doc = ast.literal_eval(doc)
        out["role_policies"][name] = doc
    out["role_attached_policies"] = iam.list_attached_role_policies(RoleName=role)["AttachedPolicies"]
    trust = iam.get_role(RoleName=role)["Role"]["AssumeRolePolicyDocument"]
    out["role_trust"] = json.loads(trust) if isinstance(trust, str) else trust
    profile = iam.get_instance_profile(InstanceProfileName=physical["AgentInstanceProfile"])["InstanceProfile"]
    out["instance_profile"] = {"arn": profile["Arn"], "roles": [r["RoleName"] for r in profile["Roles"]]}
    versions = ec2.describe_launch_template_versions(LaunchTemplateId=physical["BrokerLaunchTemplate"])["LaunchTemplateVersions"]
    lt = max(versions, key=lambda v: v["VersionNumber"])
    data = lt["LaunchTemplateData"]
    if "UserData" in data:
        data["UserData"] = base64.b64decode(data["UserData"]).decode()
    out["launch_template"] = data
    instances = []
    if instance_ids:
        for res in ec2.describe_instances(InstanceIds=instance_ids)["Reservations"]:
            for inst in res["Instances"]:
                instances.append(
                    {
                        "id": inst["InstanceId"],
                        "image_id": inst["ImageId"],
                        "security_groups": [g["GroupId"] for g in inst.get("SecurityGroups", [])],
                        "instance_profile": (inst.get("IamInstanceProfile") or {}).get("Arn"),
                        "metadata_options": inst.get("MetadataOptions", {}),
                    }
                )
    out["instances"] = instances
    return out


def apply(args: argparse.Namespace, params: dict[str, str], previous: list[dict[str, Any]], create: bool) -> dict[str, Any]:
    """CreateStack or UpdateStack with the moto variant, then the stand-ins (see the docstring)."""
    ec2, cfn = client(args.moto, "ec2"), client(args.moto, "cloudformation")
    template = load_template(args.template)
    for name, decl in template["Parameters"].items():
        params.setdefault(name, str(decl["Default"]) if "Default" in decl else "")
    variant, removed, removed_outputs = moto_variant(template)
    call = cfn.create_stack if create else cfn.update_stack
    call(
        StackName=args.stack,
        TemplateBody=json.dumps(variant),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in params.items()],
        Capabilities=["CAPABILITY_IAM"],
    )
    stack = cfn.describe_stacks(StackName=args.stack)["Stacks"][0]
    want = "CREATE_COMPLETE" if create else "UPDATE_COMPLETE"
    if stack["StackStatus"] != want:
        raise RuntimeError(f"stack {args.stack}: {stack['StackStatus']} {stack.get('StackStatusReason')}")
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    # moto lists resources whose Condition is false as entries with empty ids: skipped.
    resources = [
        r for r in cfn.list_stack_resources(StackName=args.stack)["StackResourceSummaries"] if r.get("LogicalResourceId")
    ]
    physical = {r["LogicalResourceId"]: r.get("PhysicalResourceId", "") for r in resources}
    types = {r["LogicalResourceId"]: r["ResourceType"] for r in resources}
    ev = Evaluator(template, params, dict(physical))
    stand_ins = reconcile_stand_ins(ec2, removed, ev, previous)
    services = []
    for made in stand_ins:
        if made["type"] != "AWS::EC2::VPCEndpointService":
            continue
        cfg = ec2.describe_vpc_endpoint_service_configurations(ServiceIds=[made["service_id"]])["ServiceConfigurations"][0]
        perms = ec2.describe_vpc_endpoint_service_permissions(ServiceId=made["service_id"])["AllowedPrincipals"]
        services.append(
            {
                "logical_id": made["logical_id"],
                "service_id": cfg["ServiceId"],
                "service_name": cfg["ServiceName"],
                "load_balancer_arns": cfg.get("NetworkLoadBalancerArns", []),
                "acceptance_required": cfg.get("AcceptanceRequired"),
                "supported_regions": [r["Region"] for r in cfg.get("SupportedRegions", [])],
                "allowed_principals": sorted(p["Principal"] for p in perms),
                "tags": {t["Key"]: t["Value"] for t in cfg.get("Tags", [])},
            }
        )
    return {
        "stack_name": args.stack,
        "parameters": params,
        "outputs": outputs,
        "resources": physical,
        "resource_types": types,
        "removed_resources": {k: v["Type"] for k, v in removed.items()},
        "removed_outputs": removed_outputs,
        "stand_ins": stand_ins,
        "endpoint_services": services,
    }


def finish(args: argparse.Namespace, result: dict[str, Any], world: dict[str, Any]) -> dict[str, Any]:
    world_file = os.path.join(args.out, "world.json")
    worldlib.save_world(world, world_file)
    result["world"] = world_file
    instance_ids = [h["instance_id"] for h in world["hosts"]]
    result.update(facts(args.moto, result["resources"], result["resource_types"], instance_ids))
    with open(os.path.join(args.out, "stack.json"), "w") as fh:
        json.dump(result, fh, indent=2, default=str)
    return result


def overrides(args: argparse.Namespace) -> dict[str, str]:
    return dict(p.partition("=")[::2] for p in args.param)


def deploy(args: argparse.Namespace) -> dict[str, Any]:
    ec2 = client(args.moto, "ec2")
    os.makedirs(args.out, exist_ok=True)
    base = seed_vpc(ec2)
    params = {
        "VpcId": base["vpc_id"],
        "SubnetIds": ",".join(s["subnet_id"] for s in base["subnets"].values()),
        "ImageId": base["image_id"],
        **overrides(args),
    }
    result = apply(args, params, [], create=True)
    world: dict[str, Any] = {
        "moto": args.moto,
        "region": REGION,
        "cluster": params.get("ClusterName", ""),
        "imds": args.imds,
        "vpc_id": base["vpc_id"],
        "image_id": base["image_id"],
        "subnets": base["subnets"],
        "load_balancer_arn": result["outputs"].get("LoadBalancerArn"),
        "load_balancer_name": None,
        "hosts": [],
    }
    launch_hosts(ec2, world, result["resources"]["BrokerLaunchTemplate"], args.hosts)
    return finish(args, result, world)


def update(args: argparse.Namespace) -> dict[str, Any]:
    with open(os.path.join(args.out, "stack.json")) as fh:
        previous = json.load(fh)
    args.stack = previous["stack_name"]
    params = {**previous["parameters"], **overrides(args)}
    result = apply(args, params, previous["stand_ins"], create=False)
    world = worldlib.load_world(os.path.join(args.out, "world.json"))
    world["load_balancer_arn"] = result["outputs"].get("LoadBalancerArn")
    return finish(args, result, world)


def write_variant(args: argparse.Namespace) -> dict[str, Any]:
    variant, removed, removed_outputs = moto_variant(load_template(args.template))
    with open(args.out, "w") as fh:
        json.dump(variant, fh, indent=1)
    return {"removed_resources": {k: v["Type"] for k, v in removed.items()}, "removed_outputs": removed_outputs}


def stack_parameters(stack: dict[str, Any]) -> dict[str, str]:
    """A stack's parameters as given (moto shows a list parameter as a Python list's repr)."""
    out = {}
    for p in stack.get("Parameters", []):
        value = p.get("ParameterValue", "")
        if value.startswith("[") and value.endswith("]"):
            value = ",".join(ast.literal_eval(value))
        out[p["ParameterKey"]] = value
    return out


def stand_ins(args: argparse.Namespace) -> dict[str, Any]:
    ec2, cfn = client(args.moto, "ec2"), client(args.moto, "cloudformation")
    template = load_template(args.template)
    _, removed, removed_outputs = moto_variant(template)
    stack = cfn.describe_stacks(StackName=args.stack)["Stacks"][0]
    resources = [r for r in cfn.list_stack_resources(StackName=args.stack)["StackResourceSummaries"] if r.get("LogicalResourceId")]
    physical = {r["LogicalResourceId"]: r.get("PhysicalResourceId", "") for r in resources}
    ev = Evaluator(template, stack_parameters(stack), physical)
    made = reconcile_stand_ins(ec2, removed, ev, [])
    services = []
    for m in made:
        if m["type"] == "AWS::EC2::VPCEndpointService":
            cfg = ec2.describe_vpc_endpoint_service_configurations(ServiceIds=[m["service_id"]])["ServiceConfigurations"][0]
            services.append({"logical_id": m["logical_id"], "service_id": cfg["ServiceId"], "service_name": cfg["ServiceName"]})
    return {"removed_resources": {k: v["Type"] for k, v in removed.items()}, "removed_outputs": removed_outputs, "stand_ins": made, "endpoint_services": services}


def register_hosts(args: argparse.Namespace) -> dict[str, Any]:
    ec2 = client(args.moto, "ec2")
    zones = {z["ZoneName"]: z["ZoneId"] for z in ec2.describe_availability_zones()["AvailabilityZones"]}
    instances = [i for r in ec2.describe_instances(InstanceIds=args.instance_id)["Reservations"] for i in r["Instances"]]
    instances.sort(key=lambda i: args.instance_id.index(i["InstanceId"]))
    vpc_id = instances[0]["VpcId"]
    world: dict[str, Any] = {"moto": args.moto, "region": REGION, "cluster": "", "imds": args.imds, "vpc_id": vpc_id, "hosts": []}
    for inst in instances:
        tags = {t["Key"]: t["Value"] for t in inst.get("Tags", [])}
        broker_id = int(tags[worldlib.BROKER_TAG])
        add_host(world, inst, zones[inst["Placement"]["AvailabilityZone"]], broker_id, tags)
    os.makedirs(args.out, exist_ok=True)
    world_file = os.path.join(args.out, "world.json")
    worldlib.save_world(world, world_file)
    return {"world": world_file, "hosts": world["hosts"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Deploy provider.yaml into moto (what moto supports; the rest through the EC2 API).")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("deploy")
    p.add_argument("--moto", required=True)
    p.add_argument("--imds")
    p.add_argument("--template", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--stack", default="kplink-orders")
    p.add_argument("--hosts", type=int, default=0)
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE")
    p = sub.add_parser("update", help="UpdateStack of a stack deployed into --out, with changed parameters")
    p.add_argument("--moto", required=True)
    p.add_argument("--template", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE")
    p = sub.add_parser("seed-vpc", help="a provider VPC with a subnet per AZ, and an AMI")
    p.add_argument("--moto", required=True)
    p = sub.add_parser("variant", help="write the template moto can deploy (JSON)")
    p.add_argument("--template", required=True)
    p.add_argument("--out", required=True)
    p = sub.add_parser("stand-ins", help="create what moto could not deploy for a stack made from the variant")
    p.add_argument("--moto", required=True)
    p.add_argument("--template", required=True)
    p.add_argument("--stack", required=True)
    p = sub.add_parser("register-hosts", help="register instances launched elsewhere with the IMDS test server")
    p.add_argument("--moto", required=True)
    p.add_argument("--imds", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--instance-id", action="append", required=True)
    args = parser.parse_args(argv)
    commands = {"deploy": deploy, "update": update, "variant": write_variant, "stand-ins": stand_ins, "register-hosts": register_hosts, "seed-vpc": lambda a: seed_vpc(client(a.moto, "ec2"))}
    try:
        result = commands[args.cmd](args)
    except Exception as exc:  # noqa: BLE001 - one line for the Rust test's assertion message
        print(f"provider_stack.py: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
