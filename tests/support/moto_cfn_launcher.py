#!/usr/bin/env python3
"""moto_launcher.py plus what deploying deploy/cloudformation/provider.yaml in moto needs.

Same command line, same READY line and control API as ``moto_launcher.py`` (whose AWS rules
all apply). On top, moto 5.2.5's CloudFormation model of
``AWS::ElasticLoadBalancingV2::LoadBalancer`` is made to honour what the template sets and
AWS's CloudFormation applies (resource reference "AWS::ElasticLoadBalancingV2::LoadBalancer",
https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-resource-elasticloadbalancingv2-loadbalancer.html):

* ``Type``: moto passes no type, so every load balancer a stack creates is an *application*
  load balancer, on which the agent's TCP listeners are refused (``InvalidProtocol``);
* ``Tags`` and ``LoadBalancerAttributes`` (cross-zone load balancing): moto drops both;
* ``SubnetMappings`` and ``IpAddressType``: passed through as well.

And its ExecuteChangeSet (what ``aws cloudformation deploy`` calls) creates the resources but
leaves the stack's outputs as they were before the change set (none for a new stack): the
outputs are computed again from the change set's template, as CreateStack and UpdateStack do.

Not emulated (moto has no model for them; the test says how it covers them):
``AWS::EC2::VPCEndpointService`` and ``AWS::EC2::VPCEndpointServicePermissions`` (moto skips
them silently), ``EnforceSecurityGroupInboundRulesOnPrivateLinkTraffic``.
"""

from __future__ import annotations

import sys
from typing import Any

import moto_launcher


def patch_cloudformation() -> None:
    from moto.elbv2.models import FakeLoadBalancer, elbv2_backends

    def create_from_cloudformation_json(  # type: ignore[no-untyped-def]
        cls, resource_name: str, cloudformation_json: Any, account_id: str, region_name: str, **kwargs: Any
    ):
        props = cloudformation_json["Properties"]
        backend = elbv2_backends[account_id][region_name]
        lb = backend.create_load_balancer(
            name=resource_name,
            security_groups=props.get("SecurityGroups") or [],
            subnet_ids=props.get("Subnets") or [],
            subnet_mappings=props.get("SubnetMappings"),
            scheme=props.get("Scheme", "internet-facing"),
            loadbalancer_type=props.get("Type", "application"),
            ip_address_type=props.get("IpAddressType", "ipv4"),
            tags=props.get("Tags"),
        )
        attrs = {a["Key"]: str(a["Value"]) for a in props.get("LoadBalancerAttributes") or []}
        if attrs:
            backend.modify_load_balancer_attributes(lb.arn, attrs)
        return lb

    FakeLoadBalancer.create_from_cloudformation_json = classmethod(create_from_cloudformation_json)  # type: ignore[method-assign]


def patch_change_sets() -> None:
    from moto.cloudformation.models import ChangeSet

    original = ChangeSet.apply

    def apply(self: Any) -> None:
        original(self)
        stack = self.stack
        stack.template = self.template
        stack._parse_template()
        stack.output_map = stack._create_output_map()

    ChangeSet.apply = apply  # type: ignore[method-assign]


if __name__ == "__main__":
    patch_cloudformation()
    patch_change_sets()
    sys.exit(moto_launcher.main())
