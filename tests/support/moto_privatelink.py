"""The consumer side of PrivateLink as AWS does it, for moto 5.2.5 (used by moto_launcher.py).

``kplink-agent consumer-dns`` reads an interface endpoint's DNS entries and writes CNAMEs into a
private hosted zone, then waits for Route 53 to report the change ``INSYNC``. moto differs from
AWS in both places the command relies on; ``patch_moto_privatelink()`` (called by
``moto_launcher.patch_moto()``) makes it behave like AWS. ``tests/consumer_dns.rs`` checks both
shapes against the launcher.

1. Interface endpoint DNS entries (``VPCEndPoint.dns_entries``).

   AWS ("Share your services through AWS PrivateLink", section "DNS hostnames", PrivateLink
   guide, and the same text on the "VPC endpoint DNS names" page): when a consumer creates an
   interface endpoint, AWS creates a Regional DNS name and a zonal DNS name per Availability
   Zone of the endpoint's subnets. Regional names have the syntax
   ``endpoint_id.endpoint_service_id.region.vpce.amazonaws.com``, zonal names
   ``endpoint_id-zone.endpoint_service_id.region.vpce.amazonaws.com``, where ``endpoint_id`` is
   the endpoint id plus a random suffix (``vpce-0123456789abcdef0-mmzfdbs8``) and ``zone`` the
   AZ *name* of the consumer's account (``us-east-1a``). DescribeVpcEndpoints lists the Regional
   entry first, then the zonal ones, each with the same ``HostedZoneId`` (the
   ``vpce.amazonaws.com`` zone of the Region).

   moto returns a single entry ``<endpoint id>-<suffix>.<service name>`` (the whole
   ``com.amazonaws.vpce.<region>.vpce-svc-…`` service name, no ``vpce.amazonaws.com``). The patch
   computes the entries on every read from the endpoint's current subnets (so
   ModifyVpcEndpoint ``AddSubnetIds``/``RemoveSubnetIds`` change them, as on AWS): the Regional
   entry, then one zonal entry per distinct subnet AZ in subnet order, all with moto's suffix and
   hosted zone id. The service id is the last label of ``com.amazonaws.vpce.<region>.<id>``
   (endpoint services) or the part after the Region of ``com.amazonaws.<region>.<service>`` (AWS
   services, ``s3``). Gateway endpoints keep moto's (empty) list, as on AWS. Private DNS names
   of a service are not added.

2. Route 53 change status (``ChangeResourceRecordSets``, ``GetChange``).

   AWS (ChangeResourceRecordSets and GetChange API reference): the status of a change batch is
   ``PENDING`` at first, "the initial status of all change batch requests", then ``INSYNC`` once
   the change has propagated to all Route 53 DNS servers managing the zone; each batch has its
   own change id; GetChange of an id that does not exist fails with ``NoSuchChange`` (HTTP 404).

   moto answers ``INSYNC`` at once with a fixed id (``/change/C2682N5HXP0BZ4``) and GetChange
   answers ``INSYNC`` for any id. The patch gives each ChangeResourceRecordSets a new id
   (``/change/C`` + 13 upper-case hex digits) and status ``PENDING``; GetChange answers
   ``PENDING`` until ``$KPLINK_MOTO_ROUTE53_INSYNC_SECONDS`` (read per call, default 0.3) have
   passed since the change, ``INSYNC`` after, and ``NoSuchChange`` for an unknown id. The records
   themselves are changed at once, as moto does (AWS's authoritative data changes at once too;
   only propagation to the name servers takes time).

3. Cross-Region endpoints (``CreateVpcEndpoint`` ``ServiceRegion``; ``VpcEndpoint.ServiceRegion``).

   AWS (AWS PrivateLink guide, "Share your services through AWS PrivateLink", cross-Region
   access,
   https://docs.aws.amazon.com/vpc/latest/privatelink/privatelink-share-your-services.html#endpoint-service-cross-region;
   CreateVpcEndpoint and VpcEndpoint API reference): a consumer creates an interface endpoint to
   a service in another Region by naming that Region in ``ServiceRegion``; the service must list
   the consumer's Region in its supported Regions (``SupportedRegions`` of
   CreateVpcEndpointServiceConfiguration, ``AddSupportedRegions`` of
   ModifyVpcEndpointServiceConfiguration), else the endpoint is refused. DescribeVpcEndpoints
   returns ``ServiceRegion``, "the Region where the service is hosted", and the endpoint's DNS
   names carry that Region: ``endpoint_id.endpoint_service_id.service_region.vpce.amazonaws.com``.

   moto 5.2.5 records a service configuration's ``SupportedRegions`` (and returns them as
   ``SupportedRegions[].Region`` with ``ServiceState`` ``Available``) but ignores
   ``ServiceRegion``. The patch reads it: a ``ServiceRegion`` other than the endpoint's own
   Region needs an endpoint service of that name in that Region (any account) whose supported
   Regions include the endpoint's Region, else ``InvalidServiceName``, nothing created; the
   endpoint keeps it and DescribeVpcEndpoints returns it (the endpoint's own Region for an
   interface endpoint created without it), and item 1's DNS entries use it.

Checked in moto 5.2.5 and AWS-like already, so not patched: GetHostedZone returns ``VPCs``
(``VPCId``, ``VPCRegion``) for a private zone and none for a public one, with
``HostedZone.Config.PrivateZone``; an unknown zone is ``NoSuchHostedZone``; DescribeVpcEndpoints
of an unknown id is ``InvalidVpcEndpointId.NotFound``; DescribeAvailabilityZones in us-east-1
maps ``us-east-1a``/``1b``/``1c`` to ``use1-az6``/``use1-az1``/``use1-az2`` (and ``1d``-``1f`` to
``use1-az4``/``az3``/``az5``), in eu-west-1 ``eu-west-1a``/``1b``/``1c`` to
``euw1-az3``/``az1``/``az2``.
"""

from __future__ import annotations

import os
import re
import threading
import time
import uuid
from typing import Any

INSYNC_ENV = "KPLINK_MOTO_ROUTE53_INSYNC_SECONDS"
DEFAULT_INSYNC_SECONDS = 0.3

_CHANGES: dict[str, float] = {}  # change id (without "/change/") -> submitted (monotonic)
_CHANGES_LOCK = threading.Lock()
_PATCHED = False


def insync_seconds() -> float:
    raw = os.environ.get(INSYNC_ENV, "").strip()
    return float(raw) if raw else DEFAULT_INSYNC_SECONDS


def _service_id(service_name: str, region: str) -> str:
    """``vpce-svc-…`` for ``com.amazonaws.vpce.<region>.vpce-svc-…``; ``s3`` for ``com.amazonaws.<region>.s3``."""
    for prefix in (f"com.amazonaws.vpce.{region}.", f"com.amazonaws.{region}."):
        if service_name.startswith(prefix):
            return service_name[len(prefix):]
    return service_name.rsplit(".", 1)[-1]


def _interface_dns_entries(endpoint: Any, stored: list[dict[str, str]]) -> list[dict[str, str]]:
    """Item 1: the Regional entry, then one zonal entry per subnet AZ (item 3: in the service's Region)."""
    backend = endpoint.ec2_backend
    region = endpoint.__dict__.get("_kplink_service_region") or backend.region_name
    first = stored[0]
    suffix = endpoint.__dict__.get("_kplink_dns_suffix")
    if suffix is None:
        label = first["dns_name"].split(".", 1)[0]  # "<endpoint id>-<suffix>"
        suffix = label[len(endpoint.id) + 1:] or uuid.uuid4().hex[:8]
        endpoint.__dict__["_kplink_dns_suffix"] = suffix
    domain = f"{_service_id(endpoint.service_name, region)}.{region}.vpce.amazonaws.com"
    zone_id = first["hosted_zone_id"]
    entries = [{"dns_name": f"{endpoint.id}-{suffix}.{domain}", "hosted_zone_id": zone_id}]
    seen: list[str] = []
    for subnet_id in endpoint.subnet_ids or []:
        az = backend.get_subnet(subnet_id).availability_zone
        if az in seen:
            continue
        seen.append(az)
        entries.append({"dns_name": f"{endpoint.id}-{suffix}-{az}.{domain}", "hosted_zone_id": zone_id})
    return entries


def _patch_endpoint_dns_entries() -> None:
    from moto.ec2.models.vpcs import VPCEndPoint

    def getter(self: Any) -> list[dict[str, str]]:
        stored = self.__dict__.get("_kplink_dns_entries") or []
        if (self.vpc_endpoint_type or "").lower() != "interface" or not stored:
            return stored
        return _interface_dns_entries(self, stored)

    def setter(self: Any, value: list[dict[str, str]] | None) -> None:
        self.__dict__["_kplink_dns_entries"] = value

    VPCEndPoint.dns_entries = property(getter, setter, doc="kplink: AWS's DnsEntries shape")  # type: ignore[assignment]


def _service_supports(service_name: str, service_region: str, consumer_region: str) -> bool:
    from moto.ec2.models import ec2_backends

    for account in list(ec2_backends.keys()):
        backend = ec2_backends[account].get(service_region) if hasattr(ec2_backends[account], "get") else None
        if backend is None:
            continue
        for config in backend.configurations.values():
            if config.service_name == service_name:
                return consumer_region in config._supported_region_names
    return False


def _patch_service_region() -> None:
    """Item 3."""
    from moto.ec2.exceptions import EC2ClientError
    from moto.ec2.models.vpcs import VPCEndPoint
    from moto.ec2.responses.vpcs import VPCs

    orig_create = VPCs.create_vpc_endpoint

    def create_vpc_endpoint(self: Any) -> Any:
        region = self.ec2_backend.region_name
        service_region = self._get_param("ServiceRegion") or None
        service_name = self._get_param("ServiceName")
        if service_region and service_region != region and not _service_supports(service_name, service_region, region):
            raise EC2ClientError(
                "InvalidServiceName",
                f"The Vpc Endpoint Service '{service_name}' does not exist in {service_region} or does not support {region}",
            )
        result = orig_create(self)
        endpoint = result.result["VpcEndpoint"]  # type: ignore[attr-defined]
        if (endpoint.vpc_endpoint_type or "").lower() == "interface":
            endpoint.__dict__["_kplink_service_region"] = service_region or region
        return result

    def service_region(self: Any) -> str | None:
        return self.__dict__.get("_kplink_service_region")

    VPCs.create_vpc_endpoint = create_vpc_endpoint  # type: ignore[method-assign]
    VPCEndPoint.service_region = property(service_region, doc="kplink: ServiceRegion")  # type: ignore[attr-defined]


def _patch_route53_changes() -> None:
    from moto.route53.exceptions import Route53ClientError
    from moto.route53.responses import Route53

    orig_change = Route53.change_resource_record_sets

    def change_resource_record_sets(self: Any) -> Any:
        result = orig_change(self)
        change_id = "C" + uuid.uuid4().hex[:13].upper()
        with _CHANGES_LOCK:
            _CHANGES[change_id] = time.monotonic()
        info = result.result["ChangeInfo"]  # type: ignore[attr-defined]
        info["Id"] = f"/change/{change_id}"
        info["Status"] = "PENDING"
        return result

    def get_change(self: Any) -> Any:
        from moto.core.responses import ActionResult
        from moto.core.utils import utcnow

        change_id = str(self._get_param("Id") or "").removeprefix("/change/")
        with _CHANGES_LOCK:
            submitted = _CHANGES.get(change_id)
        if submitted is None:
            # moto finds the error's service from the exception class's module: raise route53's.
            raise Route53ClientError("NoSuchChange", f"A change with the specified change ID does not exist: {change_id}")
        status = "INSYNC" if time.monotonic() - submitted >= insync_seconds() else "PENDING"
        return ActionResult({"ChangeInfo": {"Id": f"/change/{change_id}", "Status": status, "SubmittedAt": utcnow()}})

    Route53.change_resource_record_sets = change_resource_record_sets  # type: ignore[method-assign]
    Route53.get_change = get_change  # type: ignore[method-assign]


_ROUTE53_ACTIONS = (
    # (method, path pattern after /2013-04-01/, action): Route 53 API reference request syntax.
    ("POST", re.compile(r"hostedzone/[^/]+/rrset/?"), "ChangeResourceRecordSets"),
    ("GET", re.compile(r"hostedzone/[^/]+/rrset/?"), "ListResourceRecordSets"),
    ("POST", re.compile(r"hostedzone/[^/]+/associatevpc/?"), "AssociateVPCWithHostedZone"),
    ("GET", re.compile(r"hostedzone/[^/]+/?"), "GetHostedZone"),
    ("POST", re.compile(r"hostedzone/?"), "CreateHostedZone"),
    ("GET", re.compile(r"hostedzone/?"), "ListHostedZones"),
    ("GET", re.compile(r"change/[^/]+/?"), "GetChange"),
)


def route53_action(method: str, path: str) -> str | None:
    """The Route 53 action of a REST request (for the launcher's call counter), else None."""
    rest = path.split("/2013-04-01/", 1)[-1]
    for verb, pattern, action in _ROUTE53_ACTIONS:
        if method.upper() == verb and pattern.fullmatch(rest):
            return action
    return None


def patch_moto_privatelink() -> None:
    """Install items 1 to 3 of the module docstring. Safe to call twice."""
    global _PATCHED
    if _PATCHED:
        return
    insync_seconds()  # a malformed value fails at start, not per request
    _patch_endpoint_dns_entries()
    _patch_service_region()
    _patch_route53_changes()
    _PATCHED = True
