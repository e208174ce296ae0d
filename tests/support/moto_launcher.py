#!/usr/bin/env python3
"""Run moto server with the changes kplink-agent's tests need.

Purpose
-------
kplink-agent's integration tests run the real agent binary against an
in-process moto server (moto[server]==5.2.5). This launcher starts that server
on 127.0.0.1 and makes four changes to it:

1. AWS's documented ELBv2 rules, which moto 5.2.5 does not enforce
   (monkeypatches of ``moto.elbv2.models.ELBv2Backend`` methods, installed by
   ``patch_moto()``). moto server handles each request in its own thread, so
   every check below runs under one global lock, ``LISTENER_LOCK``, together
   with the change it guards: two concurrent calls can never both pass a check
   that only one of them may pass. ``tests/support/test_moto_rules.py`` proves
   each rule against this server (and fails against plain moto).

   a. One listener per port (``create_listener``, ``modify_listener``).

      AWS's documented rule (CreateListener / ModifyListener API reference,
      error ``DuplicateListener``: "A listener with the specified port already
      exists."): a load balancer cannot have two listeners on the same port.
      CreateListener on a port that is already in use fails with
      ``DuplicateListener`` (HTTP 400). The exception is a call whose settings
      are identical to the existing listener's: CreateListener is idempotent,
      so AWS returns the existing listener and reports no error.

      moto's bug: in 5.2.5 the check is ``if port in balancer.listeners``. But
      ``balancer.listeners`` is keyed by listener *ARN*, so the check never
      matches. moto accepts any number of listeners on one port and never
      reports DuplicateListener. The patch looks at the load balancer's
      existing listeners (ports compared as integers) and does this:

      * same port, same protocol, and the same default actions (for
        ``forward``: the same target group ARN(s)), plus the same certificate:
        the existing listener is returned (idempotent success, and no new ARN);
      * same port, any other settings: ``DuplicateListenerError`` is raised
        (wire code ``DuplicateListener``, HTTP 400);
      * otherwise the checks b, c and f run, then moto's original
        implementation.

      ModifyListener that moves a listener onto the port of another listener
      of the same load balancer fails with ``DuplicateListener`` too (moto
      does not check).

   b. 50 listeners per load balancer (``create_listener``).

      AWS "Quotas for your Network Load Balancers": "Listeners per Network
      Load Balancer: 50", Adjustable: No ("Quotas for your Application Load
      Balancers" also says 50). A CreateListener that would create a 51st
      listener fails with ``TooManyListeners`` (HTTP 400, "You've reached the
      limit on the number of listeners per load balancer"). An idempotent
      CreateListener (rule a) creates nothing and still succeeds on a full
      load balancer. moto has no limit at all.

      The limit is read from the environment variable
      ``KPLINK_MOTO_MAX_LISTENERS`` on every call (default and normal value:
      50), so a test can lower it; it applies to every load balancer type.

   c. A target group serves one load balancer (``create_listener``,
      ``modify_listener``, ``create_rule``, ``modify_rule``).

      AWS "Quotas for your Application Load Balancers", Target groups: "Load
      balancers per target group: 1" (target-group quotas are shared with
      Network Load Balancers). The API error is ``TargetGroupAssociationLimit``
      ("You've reached the limit on the number of load balancers per target
      group"); AWS's message names the groups: "The following target groups
      cannot be associated with more than one load balancer: <arn>". A forward
      action (``TargetGroupArn`` or ``ForwardConfig``) naming a group that a
      listener or rule of a *different* load balancer forwards to fails with
      that error (HTTP 400). Another listener of the same load balancer may
      use the group. moto lets any number of load balancers share a group.

   d. DescribeTargetGroups ``LoadBalancerArns`` (``describe_target_groups``,
      and after every change of listeners, rules or load balancers).

      AWS lists each load balancer whose listeners or rules forward to the
      group, once. moto appends the load balancer's ARN on every
      CreateListener/CreateRule (two listeners: the ARN twice), never removes
      it on DeleteListener/DeleteRule/DeleteLoadBalancer, and never updates
      it on ModifyListener/ModifyRule; DescribeTargetGroups with
      ``LoadBalancerArn`` filters on that stale list. The patch recomputes
      every group's list from the current listeners and rules.

   e. CreateTargetGroup is idempotent (``create_target_group``).

      AWS (CreateTargetGroup API reference): "This operation is idempotent,
      which means that it completes at most one time. If you attempt to create
      multiple target groups with the same settings, each call succeeds." It
      returns the existing group. The same name with different settings fails
      with ``DuplicateTargetGroupName`` (HTTP 400). moto raises
      DuplicateTargetGroupName for every existing name.

      The patch runs moto's own validation and defaulting for the request
      against an empty scratch view of the backend (nothing is stored), then
      compares the resulting settings with the existing group's: protocol,
      protocol version, port (as an integer; moto may hold int or str), VPC,
      target type, IP address type, and the health check (protocol, port --
      ``traffic-port`` or a number --, path, interval, timeout, enabled,
      healthy and unhealthy threshold, matcher). Fields the request leaves
      out therefore take the defaults moto applies, which are AWS's. Tags are
      not compared, and the idempotent call adds none: the existing group is
      returned unchanged (AWS documents no tag update on that path). The name
      check and the insert run under the lock, so concurrent identical calls
      create one group. kplink-agent's restart lock relies on exactly this:
      its group's Port and numeric HealthCheckPort encode the holder, so a
      competitor gets ``DuplicateTargetGroupName`` and the holder its group
      back, tags unchanged.

   f. 50 tags per resource (``add_tags``, ``create_load_balancer``,
      ``create_target_group``, ``create_listener``, ``create_rule``).

      AWS ("Tag a target group for your Network Load Balancer", "Tag an
      Application Load Balancer", Restrictions): "Maximum number of tags per
      resource—50", and tags with the ``aws:`` prefix "do not count against
      your tags per resource limit". AddTags that would leave any named
      resource with more than 50 distinct tag keys (keys it already has count
      once; ``aws:`` keys not at all) fails with ``TooManyTags`` (HTTP 400)
      and tags none of them; so does a Create* call whose ``Tags`` hold more
      than 50 distinct keys. moto 5.2.5 is wrong both ways: AddTags refuses an
      11th tag (limit 10, the Classic Load Balancer's), and Create* calls take
      any number.

   g. A deleted resource has no tags (``describe_tags``).

      AWS (DescribeTags API reference, Errors): a resource ARN that does not
      exist fails with its NotFound error (``TargetGroupNotFound``,
      ``ListenerNotFound``, ``LoadBalancerNotFound``, ...). moto 5.2.5 keeps
      the tags of deleted target groups and listeners and returns them. The
      patch looks every ARN up first (moto's own lookup raises the NotFound
      errors). The restart lock's compare-and-delete needs it: a holder whose
      lock was broken must find its ARN gone, not its old tags.

   Checked and already correct in moto 5.2.5, so not patched (the rules test
   checks them): DescribeLoadBalancers returns ``AvailabilityZones``
   (``ZoneName`` + ``SubnetId``) of a network load balancer created with
   ``Subnets``; CreateTargetGroup accepts ``HealthCheckPort="traffic-port"``
   and DescribeTargetGroups returns ``traffic-port``.

   Known differences left alone: moto gives a network load balancer an
   ``.../loadbalancer/app/<name>/<id>`` ARN (AWS: ``/net/``), and so its
   listeners ``.../listener/app/...``.

   The consumer side of PrivateLink (``tests/support/moto_privatelink.py``,
   installed by ``patch_moto()`` too): interface endpoints list AWS's DNS
   entries (the Regional one, then one zonal ``vpce-…-<az-name>.vpce-svc-…``
   per subnet AZ), and Route 53 changes start ``PENDING`` and turn ``INSYNC``
   (``GetChange``), each with its own change id.

2. A call counter on the server side (WSGI middleware). Every SigV4-signed
   request is counted once as (service, action), before any fault is injected:
   a request that gets a fault still counts.
   The service comes from the credential scope of the Authorization header
   (``Credential=AKID/20240101/us-east-1/elasticloadbalancing/aws4_request``).
   The action comes from the ``Action`` query or form parameter; for JSON
   protocols it comes from the ``X-Amz-Target`` header instead; for Route 53
   (REST) from the method and path (``moto_privatelink.route53_action``). Each request is
   also counted under its access key id. The agent cannot add headers, so tests
   give each simulated host its own dummy access key id; the server can then
   count calls per host.

3. Fault injection for reliability tests (see the control API below).
   Each eligible request is faulted with probability ``rate``. The kind of
   fault is chosen at random from ``kinds``:

   * ``throttle``: the error body of the real service.
     ELBv2 answers HTTP 400 ``<ErrorResponse>`` with ``Sender``/``Throttling``
     and "Rate exceeded".
     EC2 answers ``<Response><Errors>`` with ``RequestLimitExceeded``. Real EC2
     sends this with HTTP 503 (SDK logs show
     "Status Code: 503; Error Code: RequestLimitExceeded"), so this launcher
     does too. Set ``"ec2_throttle_status": 400`` to get a 400 instead.
   * ``500`` / ``503``: that HTTP status with a body in AWS's format.
     ELBv2 uses the codes ``InternalFailure`` / ``ServiceUnavailable``.
     EC2 uses ``InternalError`` / ``Unavailable``, the codes real EC2 uses
     (its documented server error codes).
   * ``drop``: the TCP connection is closed and no response is sent. How: the
     middleware has already read the whole request body. It calls
     ``shutdown(SHUT_RDWR)`` on the client socket, which werkzeug exposes as
     ``environ["werkzeug.socket"]``; the client receives a FIN and zero
     response bytes. The middleware then raises ``ConnectionResetError``.
     werkzeug treats that as a dropped connection: it writes nothing, logs no
     traceback, and ends the keep-alive loop because the socket returns EOF.
     The client sees a closed connection (botocore: ``ConnectionClosedError``;
     hyper: "connection closed before message completed"). No sleeping is
     involved.
   * ``latency``: sleep ``latency_ms`` and then serve the request normally.

   Injected faults are counted under ``"_faults"`` in ``GET /_kplink/calls``.

4. Control endpoints. They live under ``/_kplink/``; requests there are never
   counted or faulted. moto's own ``/moto-api/...`` endpoints (for example
   ``POST /moto-api/reset``) keep working.

Control API
-----------
``GET  /_kplink/calls``
    ``{"elasticloadbalancing": {"DescribeListeners": 3, ...}, "ec2": {...},
    "_faults": {"throttle": n, ...}}``
``GET  /_kplink/calls?by=access_key``
    ``{"AKID1": {"elasticloadbalancing:CreateListener": 1, ...}, ...,
    "_faults": {...}}``
``POST /_kplink/calls/reset``
    Clears every counter, fault counters included.
``POST /_kplink/faults``
    JSON ``{"rate": 0.1, "kinds": ["throttle", "500", "503", "drop",
    "latency"], "latency_ms": 200, "seed": 1, "actions": [...] (optional),
    "services": [...] (optional), "limit": N (optional: stop after N injected
    faults), "ec2_throttle_status": 503 (optional)}``.
    Replaces the current fault configuration.
``GET  /_kplink/faults``
    The current configuration and how many faults have been injected.
``DELETE /_kplink/faults``
    Turns fault injection off.
``GET  /_kplink/health``
    ``{"ok": true}``

CLI
---
``moto_launcher.py [--host 127.0.0.1] [--port 0] [--ready-file PATH] [--quiet]``

With ``--port 0`` the OS picks a free port. Once the socket accepts
connections, the first stdout line is ``READY http://127.0.0.1:PORT``
(flushed), and the same URL is written to ``--ready-file`` if given. The server
runs until SIGTERM or SIGINT, then shuts down and exits 0.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import random
import re
import signal
import socket
import sys
import threading
import time
import uuid
from typing import Any, Callable, Iterable
from urllib.parse import parse_qs

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from moto_privatelink import patch_moto_privatelink, route53_action  # noqa: E402

FAULT_KINDS = ("throttle", "500", "503", "drop", "latency")
ELB_NS = "http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/"
_CRED_RE = re.compile(r"Credential=([^/,\s]+)/\d{8}/([^/,\s]+)/([^/,\s]+)/aws4_request")

# --------------------------------------------------------------------------
# 1. ELBv2 rules (see the module docstring, items 1a-1f)
# --------------------------------------------------------------------------

LISTENER_LOCK = threading.RLock()
_PATCHED = False

MAX_LISTENERS_ENV = "KPLINK_MOTO_MAX_LISTENERS"
DEFAULT_MAX_LISTENERS = 50  # AWS: "Listeners per Network Load Balancer: 50", not adjustable
MAX_TAGS_PER_RESOURCE = 50  # AWS: "Maximum number of tags per resource—50"


def max_listeners() -> int:
    """The listener quota per load balancer: ``$KPLINK_MOTO_MAX_LISTENERS``, default 50."""
    raw = os.environ.get(MAX_LISTENERS_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_LISTENERS
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 0:
        raise ValueError(f"{MAX_LISTENERS_ENV} must be a non-negative integer, not {raw!r}")
    return value


def _port_key(port: Any) -> str:
    try:
        return str(int(port))
    except (TypeError, ValueError):
        return str(port)


def _action_data(action: Any) -> Any:
    """The request dict of an action: a moto ``FakeAction`` or the raw dict."""
    return getattr(action, "data", action)


def _forward_arns(backend: Any, actions: Iterable[Any] | None) -> list[str]:
    """Target group ARNs the ``forward`` actions among ``actions`` name, in order, once each."""
    out: list[str] = []
    for action in actions or []:
        data = _action_data(action)
        if not isinstance(data, dict) or str(data.get("Type", "")).lower() != "forward":
            continue
        for arn in backend._get_target_group_arns_from(action_data=data):
            if str(arn) not in out:
                out.append(str(arn))
    return out


def _normalise_actions(backend: Any, actions: Iterable[Any]) -> list[tuple]:
    """Reduce default actions to something we can compare.

    ``forward`` actions become ``("forward", sorted target group ARNs)``.
    Any other action becomes its type plus its data serialised as sorted JSON.
    """
    out: list[tuple] = []
    for action in actions or []:
        data = _action_data(action)
        if not isinstance(data, dict):
            out.append(("?", repr(data)))
            continue
        kind = data.get("Type")
        if kind == "forward":
            arns = backend._get_target_group_arns_from(action_data=data)
            out.append(("forward", tuple(sorted(str(a) for a in arns))))
        else:
            out.append((str(kind), json.dumps(data, sort_keys=True, default=str)))
    return out


def _target_group_users(backend: Any) -> dict[str, list[str]]:
    """Target group ARN -> ARNs of the load balancers whose listeners or rules forward to it."""
    users: dict[str, list[str]] = {}
    for balancer in list(backend.load_balancers.values()):
        for listener in list(balancer.listeners.values()):
            for rule in list(listener.rules.values()):
                for tg_arn in _forward_arns(backend, getattr(rule, "actions", None)):
                    lbs = users.setdefault(tg_arn, [])
                    if balancer.arn not in lbs:
                        lbs.append(balancer.arn)
    return users


def _sync_load_balancer_arns(backend: Any) -> None:
    """Rule 1d: recompute every target group's ``load_balancer_arns`` from the listeners."""
    users = _target_group_users(backend)
    for tg in list(backend.target_groups.values()):
        tg.load_balancer_arns = list(users.get(tg.arn, []))


def _check_target_group_association(backend: Any, load_balancer_arn: str, actions: Iterable[Any] | None) -> None:
    """Rule 1c: a target group may be used by one load balancer only."""
    from moto.elbv2.exceptions import ELBClientError

    users = _target_group_users(backend)
    taken = [arn for arn in _forward_arns(backend, actions) if any(lb != load_balancer_arn for lb in users.get(arn, []))]
    if taken:
        raise ELBClientError(
            "TargetGroupAssociationLimit",
            "The following target groups cannot be associated with more than one load balancer: " + ", ".join(taken),
        )


def _counted_tag_keys(keys: Iterable[Any]) -> set[str]:
    """Distinct tag keys that count against the quota (``aws:`` keys do not)."""
    return {str(k) for k in keys if k is not None and not str(k).startswith("aws:")}


def _request_tag_keys(tags: Any) -> set[str]:
    if isinstance(tags, dict):
        return _counted_tag_keys(tags.keys())
    return _counted_tag_keys(t.get("Key") for t in (tags or []) if isinstance(t, dict))


def _too_many_tags() -> Exception:
    from moto.elbv2.exceptions import TooManyTagsError

    return TooManyTagsError("You've reached the limit on the number of tags for this resource.")


def _check_request_tags(tags: Any) -> None:
    """Rule 1f for Create* calls: at most 50 distinct tag keys in the request."""
    if len(_request_tag_keys(tags)) > MAX_TAGS_PER_RESOURCE:
        raise _too_many_tags()


def _load_balancer_of_listener(backend: Any, listener_arn: str) -> tuple[Any, Any] | tuple[None, None]:
    for balancer in list(backend.load_balancers.values()):
        listener = balancer.listeners.get(listener_arn)
        if listener is not None:
            return balancer, listener
    return None, None


def _load_balancer_of_rule(backend: Any, rule_arn: str) -> Any:
    for balancer in list(backend.load_balancers.values()):
        for listener in list(balancer.listeners.values()):
            if rule_arn in listener.rules:
                return balancer
    return None


def _num(value: Any) -> Any:
    """An int where the value is a number (moto keeps some as str, some as int)."""
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return value


def _flag(value: Any) -> Any:
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return value


def _target_group_settings(tg: Any) -> tuple:
    """What rule 1e compares: every setting of a target group, normalised."""
    matcher = getattr(tg, "matcher", None)
    return (
        (tg.protocol or "").upper() or None,
        getattr(tg, "protocol_version", None),
        _num(tg.port),
        tg.vpc_id,
        tg.target_type,
        getattr(tg, "ip_address_type", None),
        (tg.health_check_protocol or "").upper() or None,
        _port_key(tg.health_check_port) if tg.health_check_port is not None else None,
        tg.health_check_path,
        _num(tg.health_check_interval_seconds),
        _num(tg.health_check_timeout_seconds),
        _flag(tg.health_check_enabled),
        _num(tg.healthy_threshold_count),
        _num(tg.unhealthy_threshold_count),
        json.dumps(matcher, sort_keys=True, default=str) if matcher else None,
    )


class _ScratchBackend:
    """The ELBv2 backend with an empty, private ``target_groups`` dict.

    moto's ``create_target_group`` run on it validates the request and applies
    the defaults, but stores the new group only in the scratch dict: nothing
    of the real backend changes.
    """

    def __init__(self, real: Any) -> None:
        self._real = real
        self.target_groups: dict[str, Any] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


def patch_moto() -> None:
    """Install the ELBv2 rules of the module docstring (items 1a-1g). Safe to call twice."""
    global _PATCHED
    if _PATCHED:
        return
    from moto.elbv2 import models as elbv2_models
    from moto.elbv2.exceptions import DuplicateListenerError, DuplicateTargetGroupName, ELBClientError

    max_listeners()  # a malformed KPLINK_MOTO_MAX_LISTENERS fails at start, not per request
    patch_moto_privatelink()  # interface endpoint DNS entries, Route 53 change status
    backend_cls = elbv2_models.ELBv2Backend
    orig = {
        name: getattr(backend_cls, name)
        for name in (
            "create_listener",
            "modify_listener",
            "delete_listener",
            "create_rule",
            "modify_rule",
            "delete_rule",
            "delete_load_balancer",
            "create_load_balancer",
            "create_target_group",
            "describe_target_groups",
            "add_tags",
            "describe_tags",
        )
    }

    def create_listener(  # type: ignore[no-untyped-def]
        self,
        load_balancer_arn,
        protocol,
        port,
        ssl_policy,
        certificate,
        actions,
        alpn_policy=None,
        tags=None,
    ):
        with LISTENER_LOCK:
            balancer = self.load_balancers.get(load_balancer_arn)
            if balancer is not None:
                # 1a: same port -> idempotent return or DuplicateListener
                wanted_port = _port_key(port)
                for existing in list(balancer.listeners.values()):
                    if _port_key(existing.port) != wanted_port:
                        continue
                    same = (
                        (existing.protocol or "").upper() == (protocol or "").upper()
                        and _normalise_actions(self, existing.default_actions)
                        == _normalise_actions(self, actions)
                        and (existing.certificate or None) == (certificate or None)
                    )
                    if same:
                        return existing  # AWS: idempotent for identical settings
                    raise DuplicateListenerError()
                _check_request_tags(tags)  # 1f
                # 1b: listener quota
                limit = max_listeners()
                if len(balancer.listeners) >= limit:
                    raise ELBClientError(
                        "TooManyListeners",
                        f"You've reached the limit on the number of listeners per load balancer ({limit})",
                    )
                _check_target_group_association(self, load_balancer_arn, actions)  # 1c
            listener = orig["create_listener"](
                self,
                load_balancer_arn,
                protocol,
                port,
                ssl_policy,
                certificate,
                actions,
                alpn_policy,
                tags,
            )
            _sync_load_balancer_arns(self)  # 1d
            return listener

    def modify_listener(  # type: ignore[no-untyped-def]
        self, arn, port=None, protocol=None, ssl_policy=None, certificates=None, actions=None
    ):
        with LISTENER_LOCK:
            balancer, listener = _load_balancer_of_listener(self, arn)
            if balancer is not None:
                if port is not None and _port_key(port) != _port_key(listener.port):
                    for other in list(balancer.listeners.values()):
                        if other.arn != arn and _port_key(other.port) == _port_key(port):
                            raise DuplicateListenerError()  # 1a
                if actions:
                    self._validate_actions([elbv2_models.FakeAction(dict(a)) for a in actions])
                    _check_target_group_association(self, balancer.arn, actions)  # 1c
            result = orig["modify_listener"](self, arn, port, protocol, ssl_policy, certificates, actions)
            _sync_load_balancer_arns(self)  # 1d
            return result

    def create_rule(self, listener_arn, conditions, priority, actions, tags=None):  # type: ignore[no-untyped-def]
        with LISTENER_LOCK:
            balancer, _ = _load_balancer_of_listener(self, listener_arn)
            if balancer is not None:
                _check_request_tags(tags)  # 1f
                _check_target_group_association(self, balancer.arn, actions)  # 1c
            rule = orig["create_rule"](self, listener_arn, conditions, priority, actions, tags)
            _sync_load_balancer_arns(self)  # 1d
            return rule

    def modify_rule(self, rule_arn, conditions, actions):  # type: ignore[no-untyped-def]
        with LISTENER_LOCK:
            balancer = _load_balancer_of_rule(self, rule_arn)
            if balancer is not None and actions:
                _check_target_group_association(self, balancer.arn, actions)  # 1c
            rule = orig["modify_rule"](self, rule_arn, conditions, actions)
            _sync_load_balancer_arns(self)  # 1d
            return rule

    def _mutation_then_sync(name: str) -> Callable:
        original = orig[name]

        def wrapper(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            with LISTENER_LOCK:
                result = original(self, *args, **kwargs)
                _sync_load_balancer_arns(self)  # 1d
                return result

        wrapper.__name__ = name
        wrapper.__doc__ = (original.__doc__ or "") + "\n(kplink: LoadBalancerArns kept in sync)"
        return wrapper

    def describe_target_groups(self, load_balancer_arn, target_group_arns, names):  # type: ignore[no-untyped-def]
        with LISTENER_LOCK:
            _sync_load_balancer_arns(self)  # 1d
            return orig["describe_target_groups"](self, load_balancer_arn, target_group_arns, names)

    def create_load_balancer(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        _check_request_tags(kwargs.get("tags"))  # 1f (moto's responses pass tags by keyword)
        return orig["create_load_balancer"](self, *args, **kwargs)

    def create_target_group(self, name, **kwargs):  # type: ignore[no-untyped-def]
        with LISTENER_LOCK:
            _check_request_tags(kwargs.get("tags"))  # 1f
            existing = next((tg for tg in list(self.target_groups.values()) if tg.name == name), None)
            if existing is None:
                return orig["create_target_group"](self, name, **kwargs)
            # 1e: validate and default the request without storing it, then compare.
            request = {k: v for k, v in kwargs.items() if k != "tags"}
            candidate = orig["create_target_group"](_ScratchBackend(self), name, **request)
            if _target_group_settings(candidate) != _target_group_settings(existing):
                raise DuplicateTargetGroupName()
            _sync_load_balancer_arns(self)
            return existing  # AWS: idempotent for identical settings; tags are not added

    def add_tags(self, resource_arns, tags):  # type: ignore[no-untyped-def]
        with LISTENER_LOCK:
            new_keys = _request_tag_keys(tags)
            for arn in resource_arns:
                self._get_resource_by_arn(arn)  # the NotFound errors moto raises
                have = _counted_tag_keys(self.tagging_service.get_tag_dict_for_resource(arn).keys())
                if len(have | new_keys) > MAX_TAGS_PER_RESOURCE:  # 1f
                    raise _too_many_tags()
            for arn in resource_arns:
                self.tagging_service.tag_resource(arn, tags)

    def describe_tags(self, resource_arns):  # type: ignore[no-untyped-def]
        with LISTENER_LOCK:
            for arn in resource_arns:
                self._get_resource_by_arn(arn)  # 1g: the NotFound errors AWS answers
            return orig["describe_tags"](self, resource_arns)

    patched = {
        "create_listener": create_listener,
        "modify_listener": modify_listener,
        "delete_listener": _mutation_then_sync("delete_listener"),
        "create_rule": create_rule,
        "modify_rule": modify_rule,
        "delete_rule": _mutation_then_sync("delete_rule"),
        "delete_load_balancer": _mutation_then_sync("delete_load_balancer"),
        "create_load_balancer": create_load_balancer,
        "create_target_group": create_target_group,
        "describe_target_groups": describe_target_groups,
        "add_tags": add_tags,
        "describe_tags": describe_tags,
    }
    for name, func in patched.items():
        if not func.__doc__:
            func.__doc__ = (orig[name].__doc__ or "") + "\n(kplink: AWS ELBv2 rules, see moto_launcher.py)"
        setattr(backend_cls, name, func)
    _PATCHED = True


# --------------------------------------------------------------------------
# 2. + 3. Counting and fault injection middleware
# --------------------------------------------------------------------------


class CallCounter:
    """Thread-safe request counters."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.by_service: dict[str, dict[str, int]] = {}
            self.by_key: dict[str, dict[str, int]] = {}
            self.faults: dict[str, int] = {}

    def record(self, service: str, action: str, access_key: str) -> None:
        with self._lock:
            svc = self.by_service.setdefault(service, {})
            svc[action] = svc.get(action, 0) + 1
            key = self.by_key.setdefault(access_key, {})
            name = f"{service}:{action}"
            key[name] = key.get(name, 0) + 1

    def record_fault(self, kind: str) -> None:
        with self._lock:
            self.faults[kind] = self.faults.get(kind, 0) + 1

    def snapshot(self, by: str | None) -> dict[str, Any]:
        with self._lock:
            src = self.by_key if by == "access_key" else self.by_service
            out: dict[str, Any] = {k: dict(v) for k, v in src.items()}
            out["_faults"] = dict(self.faults)
            return out


class FaultConfig:
    """The current fault-injection settings. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cfg: dict[str, Any] | None = None
        self._rng = random.Random()
        self._injected = 0

    @staticmethod
    def validate(body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise ValueError("body must be a JSON object")
        rate = float(body.get("rate", 0.0))
        if not 0.0 <= rate <= 1.0:
            raise ValueError("rate must be within [0, 1]")
        kinds = body.get("kinds", list(FAULT_KINDS))
        if not isinstance(kinds, list) or not kinds:
            raise ValueError("kinds must be a non-empty list")
        kinds = [str(k) for k in kinds]
        bad = [k for k in kinds if k not in FAULT_KINDS]
        if bad:
            raise ValueError(f"unknown fault kinds {bad}; known: {list(FAULT_KINDS)}")
        latency_ms = int(body.get("latency_ms", 200))
        if not 0 <= latency_ms <= 600_000:
            raise ValueError("latency_ms must be within [0, 600000]")
        actions = body.get("actions")
        services = body.get("services")
        for name, val in (("actions", actions), ("services", services)):
            if val is not None and not isinstance(val, list):
                raise ValueError(f"{name} must be a list")
        limit = body.get("limit")
        if limit is not None:
            limit = int(limit)
            if limit < 0:
                raise ValueError("limit must be >= 0")
        ec2_status = int(body.get("ec2_throttle_status", 503))
        if ec2_status not in (400, 503):
            raise ValueError("ec2_throttle_status must be 400 or 503")
        return {
            "rate": rate,
            "kinds": kinds,
            "latency_ms": latency_ms,
            "seed": body.get("seed"),
            "actions": [str(a) for a in actions] if actions is not None else None,
            "services": [str(s) for s in services] if services is not None else None,
            "limit": limit,
            "ec2_throttle_status": ec2_status,
        }

    def set(self, cfg: dict[str, Any] | None) -> None:
        with self._lock:
            self._cfg = cfg
            self._injected = 0
            seed = cfg.get("seed") if cfg else None
            self._rng = random.Random(seed)

    def get(self) -> dict[str, Any]:
        with self._lock:
            return {"config": self._cfg, "injected": self._injected}

    def pick(self, service: str, action: str) -> tuple[str, dict[str, Any]] | None:
        with self._lock:
            cfg = self._cfg
            if not cfg or cfg["rate"] <= 0.0:
                return None
            if cfg["actions"] is not None and action not in cfg["actions"]:
                return None
            if cfg["services"] is not None and service not in cfg["services"]:
                return None
            if cfg["limit"] is not None and self._injected >= cfg["limit"]:
                return None
            if self._rng.random() >= cfg["rate"]:
                return None
            self._injected += 1
            return self._rng.choice(cfg["kinds"]), cfg


def _xml_error(service: str, status: int, code: str, message: str) -> tuple[int, bytes]:
    request_id = str(uuid.uuid4())
    if service == "ec2":
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Response><Errors><Error><Code>{code}</Code><Message>{message}</Message>"
            f"</Error></Errors><RequestID>{request_id}</RequestID></Response>"
        )
    else:
        kind = "Sender" if status < 500 else "Receiver"
        body = (
            f'<ErrorResponse xmlns="{ELB_NS}"><Error><Type>{kind}</Type>'
            f"<Code>{code}</Code><Message>{message}</Message></Error>"
            f"<RequestId>{request_id}</RequestId></ErrorResponse>"
        )
    return status, body.encode()


def fault_response(kind: str, service: str, cfg: dict[str, Any]) -> tuple[int, bytes]:
    is_ec2 = service == "ec2"
    if kind == "throttle":
        if is_ec2:
            return _xml_error(
                "ec2",
                cfg.get("ec2_throttle_status", 503),
                "RequestLimitExceeded",
                "Request limit exceeded.",
            )
        return _xml_error(service, 400, "Throttling", "Rate exceeded")
    if kind == "500":
        if is_ec2:
            return _xml_error("ec2", 500, "InternalError", "An internal error has occurred.")
        return _xml_error(
            service, 500, "InternalFailure", "The request processing has failed because of an unknown error, exception or failure."
        )
    if kind == "503":
        if is_ec2:
            return _xml_error("ec2", 503, "Unavailable", "The server is overloaded and can't handle the request.")
        return _xml_error(service, 503, "ServiceUnavailable", "The request has failed due to a temporary failure of the server.")
    raise ValueError(kind)


_STATUS_TEXT = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 500: "Internal Server Error", 503: "Service Unavailable"}


class KplinkMiddleware:
    """WSGI middleware: the control endpoints, call counting and fault injection."""

    def __init__(self, app: Callable) -> None:
        self.app = app
        self.counter = CallCounter()
        self.faults = FaultConfig()

    # -- helpers ----------------------------------------------------------
    @staticmethod
    def _respond(start_response: Callable, status: int, body: bytes, ctype: str, extra: list | None = None) -> list[bytes]:
        headers = [("Content-Type", ctype), ("Content-Length", str(len(body)))]
        headers += extra or []
        start_response(f"{status} {_STATUS_TEXT.get(status, 'Status')}", headers)
        return [body]

    def _json(self, start_response: Callable, status: int, obj: Any) -> list[bytes]:
        return self._respond(start_response, status, json.dumps(obj, sort_keys=True).encode(), "application/json")

    @staticmethod
    def _read_body(environ: dict) -> bytes:
        """Read the whole request body and put back a replayable copy for moto."""
        stream = environ.get("wsgi.input")
        if stream is None:
            return b""
        length = environ.get("CONTENT_LENGTH") or ""
        if length.strip().isdigit():
            body = stream.read(int(length)) if int(length) > 0 else b""
        elif environ.get("wsgi.input_terminated"):
            body = stream.read()
        else:
            body = b""
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        return body

    def _identify(self, environ: dict) -> tuple[str, str, str] | None:
        auth = environ.get("HTTP_AUTHORIZATION", "")
        m = _CRED_RE.search(auth)
        if not m:
            # Presigned query auth (X-Amz-Credential=...) is possible too.
            qs = parse_qs(environ.get("QUERY_STRING", ""))
            cred = (qs.get("X-Amz-Credential") or [""])[0]
            parts = cred.split("/")
            if len(parts) != 5:
                return None
            access_key, service = parts[0], parts[3]
        else:
            access_key, service = m.group(1), m.group(3)
        action = None
        qs = parse_qs(environ.get("QUERY_STRING", ""))
        if qs.get("Action"):
            action = qs["Action"][0]
        body = self._read_body(environ)
        if action is None:
            target = environ.get("HTTP_X_AMZ_TARGET", "")
            if target:
                action = target.rsplit(".", 1)[-1]
        if action is None and service == "route53":  # REST: the action is in method and path
            action = route53_action(environ.get("REQUEST_METHOD", ""), environ.get("PATH_INFO", ""))
        if action is None and body:
            ctype = environ.get("CONTENT_TYPE", "")
            if "x-www-form-urlencoded" in ctype or body[:7] == b"Action=" or b"&Action=" in body:
                form = parse_qs(body.decode("utf-8", "replace"))
                if form.get("Action"):
                    action = form["Action"][0]
        return service, action or "_unknown", access_key

    # -- control API ------------------------------------------------------
    def _control(self, environ: dict, start_response: Callable) -> list[bytes]:
        method = environ.get("REQUEST_METHOD", "GET").upper()
        path = environ.get("PATH_INFO", "").rstrip("/")
        qs = parse_qs(environ.get("QUERY_STRING", ""))
        if path == "/_kplink/health":
            return self._json(start_response, 200, {"ok": True})
        if path == "/_kplink/calls" and method == "GET":
            by = (qs.get("by") or [None])[0]
            if by not in (None, "service", "access_key"):
                return self._json(start_response, 400, {"error": "by must be 'service' or 'access_key'"})
            return self._json(start_response, 200, self.counter.snapshot(by))
        if path == "/_kplink/calls/reset" and method == "POST":
            self.counter.reset()
            return self._json(start_response, 200, {"ok": True})
        if path == "/_kplink/faults":
            if method == "DELETE":
                self.faults.set(None)
                return self._json(start_response, 200, {"ok": True})
            if method == "GET":
                return self._json(start_response, 200, self.faults.get())
            if method in ("POST", "PUT"):
                raw = self._read_body(environ)
                try:
                    cfg = FaultConfig.validate(json.loads(raw or b"{}"))
                except (ValueError, TypeError) as exc:
                    return self._json(start_response, 400, {"error": str(exc)})
                self.faults.set(cfg)
                return self._json(start_response, 200, {"ok": True, "config": cfg})
            return self._json(start_response, 405, {"error": "method not allowed"})
        return self._json(start_response, 404, {"error": f"unknown control path {path}"})

    # -- WSGI entry ---------------------------------------------------------
    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path.startswith("/_kplink/") or path == "/_kplink":
            return self._control(environ, start_response)
        if path.startswith("/moto-api"):
            return self.app(environ, start_response)
        info = self._identify(environ)
        if info is None:
            return self.app(environ, start_response)
        service, action, access_key = info
        self.counter.record(service, action, access_key)
        picked = self.faults.pick(service, action)
        if picked is not None:
            kind, cfg = picked
            self.counter.record_fault(kind)
            if kind == "latency":
                time.sleep(cfg["latency_ms"] / 1000.0)
            elif kind == "drop":
                sock = environ.get("werkzeug.socket")
                if sock is not None:
                    try:
                        sock.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                # werkzeug treats ConnectionError as "client went away": it sends
                # nothing and ends the connection quietly.
                raise ConnectionResetError("kplink fault injection: dropped connection")
            else:
                status, body = fault_response(kind, service, cfg)
                rid = str(uuid.uuid4())
                return self._respond(
                    start_response,
                    status,
                    body,
                    "text/xml",
                    [("x-amzn-RequestId", rid)],
                )
        return self.app(environ, start_response)


# --------------------------------------------------------------------------
# Server
# --------------------------------------------------------------------------


class MotoServer:
    """moto's WSGI app wrapped in KplinkMiddleware, served by werkzeug in a thread."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        from werkzeug.serving import make_server

        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,
            MotoRequestHandler,
            create_backend_app,
        )

        patch_moto()
        self.middleware = KplinkMiddleware(DomainDispatcherApplication(create_backend_app))
        self._server = make_server(host, port, self.middleware, threaded=True, request_handler=MotoRequestHandler)
        self._server.daemon_threads = True  # type: ignore[attr-defined]
        self.host, self.port = self._server.server_address[:2]
        os.environ["MOTO_PORT"] = str(self.port)  # moto builds some URLs from it
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2}, name="moto", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> "MotoServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Start moto server for the kplink-agent tests: AWS's ELBv2 rules, call counter, fault injection.",
        epilog="The first stdout line is 'READY http://HOST:PORT'. Control API: /_kplink/calls, /_kplink/faults (see the module docstring).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port to bind; 0 = pick a free port (default)")
    parser.add_argument("--ready-file", help="also write the URL to this file once ready")
    parser.add_argument("--quiet", action="store_true", help="do not log each request to stderr")
    args = parser.parse_args(argv)

    if args.quiet:
        logging.getLogger("werkzeug").setLevel(logging.ERROR)

    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    server = MotoServer(args.host, args.port).start()
    print(f"READY {server.url}", flush=True)
    if args.ready_file:
        tmp = args.ready_file + ".tmp"
        with open(tmp, "w") as fh:
            fh.write(server.url + "\n")
        os.replace(tmp, args.ready_file)

    while not stop.wait(0.2):
        pass
    server.stop()
    try:
        print("STOPPED", flush=True)
    except (BrokenPipeError, OSError):
        pass  # the parent may have closed our stdout after reading READY
    return 0


if __name__ == "__main__":
    sys.exit(main())
