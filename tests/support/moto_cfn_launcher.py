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

The template's ``Rules`` are checked, as AWS checks them before it creates or changes anything
("Rules", https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/rules-section-structure.html;
rule functions, https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/intrinsic-function-reference-rules.html):
CreateStack, UpdateStack and CreateChangeSet evaluate each rule's ``RuleCondition`` and, when it
holds, its ``Assertions`` against the parameters (given, previous or default); a failed
assertion answers ``ValidationError`` with the assertion's ``AssertDescription`` and creates
nothing. moto 5.2.5 ignores ``Rules``. Rule functions emulated: ``Ref`` (a
``CommaDelimitedList`` or ``List<…>`` parameter is its list of values), ``Fn::Equals``,
``Fn::Not``, ``Fn::And``, ``Fn::Or``, ``Fn::Contains``, ``Fn::EachMemberEquals``,
``Fn::EachMemberIn``; any other fails loudly.

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


def _rule_value(node: Any, params: dict[str, Any]) -> Any:
    if isinstance(node, dict) and set(node) == {"Ref"}:
        return params[node["Ref"]]
    if isinstance(node, list):
        return [_rule_value(n, params) for n in node]
    if isinstance(node, dict):
        raise RuntimeError(f"moto_cfn_launcher: no rule function {sorted(node)}")
    return node


def _rule_truth(node: Any, params: dict[str, Any]) -> bool:
    (op, args), = node.items()
    v = lambda n: _rule_value(n, params)  # noqa: E731
    if op == "Fn::Equals":
        return str(v(args[0])) == str(v(args[1]))
    if op == "Fn::Not":
        return not _rule_truth(args[0], params)
    if op == "Fn::And":
        return all(_rule_truth(a, params) for a in args)
    if op == "Fn::Or":
        return any(_rule_truth(a, params) for a in args)
    if op == "Fn::Contains":
        return str(v(args[1])) in [str(x) for x in v(args[0])]
    if op == "Fn::EachMemberEquals":
        return all(str(m) == str(v(args[1])) for m in v(args[0]))
    if op == "Fn::EachMemberIn":
        allowed = [str(x) for x in v(args[1])]
        return all(str(m) in allowed for m in v(args[0]))
    raise RuntimeError(f"moto_cfn_launcher: no rule function {op}")


def check_rules(template_body: str, given: dict[str, Any]) -> None:
    """Raise moto's ValidationError for the first failed assertion of the template's Rules."""
    from cfnlint.decode import cfn_json, cfn_yaml
    from moto.cloudformation.exceptions import ValidationError

    try:
        template = cfn_json.loads(template_body)
    except Exception:
        template = cfn_yaml.loads(template_body)
    rules = template.get("Rules") or {}
    if not rules:
        return
    params: dict[str, Any] = {}
    for name, decl in (template.get("Parameters") or {}).items():
        raw = str(given.get(name, decl.get("Default", "")))
        kind = str(decl.get("Type", "String"))
        params[name] = raw.split(",") if kind == "CommaDelimitedList" or kind.startswith("List<") else raw
    for name, rule in rules.items():
        if "RuleCondition" in rule and not _rule_truth(rule["RuleCondition"], params):
            continue
        for assertion in rule.get("Assertions", []):
            if not _rule_truth(assertion["Assert"], params):
                raise ValidationError(message=str(assertion.get("AssertDescription") or f"Rule {name} failed"))


def patch_rules() -> None:
    from moto.cloudformation.models import CloudFormationBackend

    create_stack, update_stack = CloudFormationBackend.create_stack, CloudFormationBackend.update_stack
    create_change_set = CloudFormationBackend.create_change_set

    def checked_create_stack(self: Any, name: str, template: str, parameters: dict[str, Any], *a: Any, **kw: Any) -> Any:
        check_rules(template, parameters)
        return create_stack(self, name, template, parameters, *a, **kw)

    def checked_update_stack(self: Any, name: str, template: str, role_arn: Any, parameters: Any, tags: Any) -> Any:
        resolved = self._resolve_update_parameters(instance=self.get_stack(name), incoming_params=parameters)
        check_rules(template, resolved)
        return update_stack(self, name, template, role_arn, parameters, tags)

    def checked_create_change_set(self: Any, stack_name: str, change_set_name: str, template: str, parameters: dict[str, str], *a: Any, **kw: Any) -> Any:
        check_rules(template, parameters)
        return create_change_set(self, stack_name, change_set_name, template, parameters, *a, **kw)

    CloudFormationBackend.create_stack = checked_create_stack  # type: ignore[method-assign]
    CloudFormationBackend.update_stack = checked_update_stack  # type: ignore[method-assign]
    CloudFormationBackend.create_change_set = checked_create_change_set  # type: ignore[method-assign]


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
    patch_rules()
    patch_change_sets()
    sys.exit(moto_launcher.main())
