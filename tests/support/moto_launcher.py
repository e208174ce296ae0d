#!/usr/bin/env python3
"""Run moto server with the changes kplink-agent's tests need.

Purpose
-------
kplink-agent's integration tests run the real agent binary against an
in-process moto server (moto[server]==5.2.5). This launcher starts that server
on 127.0.0.1 and makes six changes to it (4 and 5 are off unless turned on, so
a test that does not ask for them sees none of their effects):

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

   h. Targets of a group no load balancer uses are ``unused``
      (``describe_target_health``; always on).

      AWS (DescribeTargetHealth API reference, ``TargetHealth``, Reason
      ``Target.NotInUse``: "The target group is not used by any load balancer
      or the target is in an Availability Zone that is not enabled for its
      load balancer"; the Description AWS sends is "Target group is not
      configured to receive traffic from the load balancer"): a registered
      target of a group that no listener or rule forwards to has State
      ``unused``. moto 5.2.5 reports every registered target ``healthy``,
      used or not. The patch rewrites each ``healthy`` entry of such a group
      to ``unused`` / ``Target.NotInUse`` / that description; moto's other
      answers (``Target.NotRegistered`` for a target asked for by id but not
      registered, ``Target.InvalidState`` for a stopped instance) are kept.
      Whether a group is used is decided from the current listeners and rules
      (as rule d), so once a listener forwards to the group its targets are
      ``healthy`` again (moto has no health checks: AWS would first say
      ``initial``). The other half of ``Target.NotInUse``, a target in an
      Availability Zone its load balancer does not have, is not emulated.

   i. A listener's TCP idle timeout is 60-6000 s, TCP listeners only
      (``modify_listener_attributes``).

      AWS (ListenerAttribute API reference: ``tcp.idle_timeout.seconds`` "The
      valid range is 60-6000 seconds. The default is 350 seconds"; "Update
      the TCP idle timeout for your Network Load Balancer listener": "The
      connection idle timeout for TLS listeners is 350 seconds and can't be
      modified"). moto 5.2.5 stores any key and value. The patch answers
      ``ValidationError`` (HTTP 400) for another key, a value that is not a
      whole number of seconds in range, or a listener whose protocol is not
      TCP, and changes nothing.

   Checked and already correct in moto 5.2.5, so not patched (the rules test
   checks them): DescribeLoadBalancers returns ``AvailabilityZones``
   (``ZoneName`` + ``SubnetId``) of a network load balancer created with
   ``Subnets``; CreateTargetGroup accepts ``HealthCheckPort="traffic-port"``
   and DescribeTargetGroups returns ``traffic-port``; EC2 DescribeInstances
   whose ``InstanceIds`` name an instance that does not exist fails as a whole
   (no partial result) with ``InvalidInstanceID.NotFound`` (HTTP 400, "The
   instance ID '<id>' does not exist"), as the EC2 API reference
   (DescribeInstances; "Error codes for the Amazon EC2 API") says, even when
   the other ids exist.

   Known differences left alone: moto gives a network load balancer an
   ``.../loadbalancer/app/<name>/<id>`` ARN (AWS: ``/net/``), and so its
   listeners ``.../listener/app/...``.

   The consumer side of PrivateLink (``tests/support/moto_privatelink.py``,
   installed by ``patch_moto()`` too): interface endpoints list AWS's DNS
   entries (the Regional one, then one zonal ``vpce-…-<az-name>.vpce-svc-…``
   per subnet AZ), and Route 53 changes start ``PENDING`` and turn ``INSYNC``
   (``GetChange``), each with its own change id; a cross-Region interface
   endpoint (``CreateVpcEndpoint`` ``ServiceRegion``) needs a service that
   supports the consumer's Region and is described with its ``ServiceRegion``.

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

4. Account API throttling: token buckets (off by default; middleware, class
   ``Throttle``).

   AWS throttles each account per Region with token buckets: every request
   takes one token from its bucket; a request that finds the bucket empty is
   refused and the bucket refills at a fixed rate up to its capacity. The
   buckets are the account's, not a caller's: every caller of this server
   (every simulated host, whatever its access key) shares them, one set per
   Region (the Region of the request's credential scope). Buckets:

   =================  ==========================================  ========  ========
   class              requests                                    capacity  refill/s
   =================  ==========================================  ========  ========
   ``elbv2_describe`` ELBv2 ``Describe*``                         40        10
   ``elbv2_register`` ELBv2 ``RegisterTargets``,                  20        4
                      ``DeregisterTargets``
   ``elbv2_other``    ELBv2, every other action (mutating)        40        10
   ``ec2_describe``   EC2 ``Describe*``: one bucket *per action*  100       20
   ``ec2_other``      EC2, every other action: one bucket per     200       10
                      action
   =================  ==========================================  ========  ========

   Sources. ELBv2 ``Describe*``: AWS "Request throttling for the ELB API"
   (docs.aws.amazon.com/elasticloadbalancing/latest/userguide/
   elb-api-throttling.html): ELB "throttles its API requests for each AWS
   account on a per-Region basis" with the token bucket algorithm, and "the
   token bucket size for non-mutating API actions is 40 tokens" with a "refill
   rate of 10 tokens per second"; ELB API version 2 has its own buckets
   (version 1, Classic, requests carry the same signing name and would share
   these; the agent makes none). The same page names the error
   ``ThrottlingException`` / "Rate exceeded"; the code on the wire from the
   ELBv2 Query API is ``Throttling`` (SDK logs in
   kubernetes-sigs/aws-load-balancer-controller issues #1871 and #3167:
   "Throttling: Rate exceeded ... status code: 400"), so that is what this
   launcher answers, as fault kind ``throttle`` does. ELBv2
   ``RegisterTargets|DeregisterTargets`` 20 / 4 per s and the other actions
   40 / 10 per s: the AWS Load Balancer Controller's client-side defaults,
   chosen to mirror the account's buckets (issue #2809, "Elastic Load
   Balancing v2:RegisterTargets|DeregisterTargets=4:20,Elastic Load
   Balancing v2:.*=10:40"). Its PR #4641 (March 2026) narrowed them to the
   ELB page's bucket table: ``Modify*`` 20 / 3 per s, ``Describe*`` 40 / 10,
   and the next commit (312f2be, "Describe call buckets have increased in
   the docs overnight") ``Describe*`` 200 / 50 per s. So the page's table may
   now say 200 / 50 for ``Describe*`` while its worked example says 40 / 10;
   this launcher keeps 40 / 10 (the stricter; set
   ``KPLINK_MOTO_THROTTLE_ELBV2_DESCRIBE=200/50`` for the other). 40 / 10 per
   s for the ELBv2 writes other than (De)RegisterTargets, ``Modify*``
   included, is an assumption (the controller's pre-#4641 ``.*`` rule).
   EC2: AWS "Request throttling for the
   Amazon EC2 API" (docs.aws.amazon.com/ec2/latest/devguide/
   ec2-api-throttling.html): "each API is evaluated individually, and you are
   throttled on the number of requests you make on a per-API basis"; its
   example, the non-mutating ``DescribeHosts``, has a bucket of 100 tokens
   refilled at 20 per second; this launcher gives every EC2 ``Describe*``
   action that bucket. 200 / 10 per s for each other EC2 action is an
   assumption. Route 53, STS and every other service are not throttled.

   What a throttled request gets is what AWS answers: ELBv2 HTTP 400
   ``<ErrorResponse>`` with ``Sender`` / ``Throttling`` / "Rate exceeded";
   EC2 HTTP 503 ``<Response><Errors>`` with ``RequestLimitExceeded`` /
   "Request limit exceeded." (the bodies of fault kind ``throttle``,
   ``fault_response``; ``"ec2_throttle_status": 400`` gives a 400 instead).
   A throttled request takes no token and never reaches moto (nothing
   changes). It is still counted as a call (item 2, which counts every
   request first), and as a throttled answer: under ``"_faults"`` as kind
   ``"throttle_bucket"`` in ``GET /_kplink/calls``, and per bucket and per
   action in ``GET /_kplink/throttle``. The bucket check runs before fault
   injection (item 3): only a request that got its token can be faulted.
   Refill is continuous: ``tokens = min(capacity, tokens + refill * elapsed)``
   with ``time.monotonic()``, under one lock; a request needs one whole
   token. A bucket is created full at its first request; a new configuration
   (``POST``) starts every bucket full again.

   Turned on at start by ``KPLINK_MOTO_THROTTLE=1`` (``1``/``true``/``yes``/
   ``on``; ``0``/``false``/``no``/``off`` or unset: off), with
   ``KPLINK_MOTO_THROTTLE_SCALE=<float>`` (default 1) multiplying every
   capacity and refill rate (``0.1``: ELBv2 ``Describe*`` 4 tokens, 1 per s),
   and per bucket ``KPLINK_MOTO_THROTTLE_<CLASS>=<capacity>/<refill per s>``,
   e.g. ``KPLINK_MOTO_THROTTLE_ELBV2_REGISTER=5/0.5``; a per-bucket value is
   absolute (the scale does not apply to it). These are read once, at start; a
   malformed value fails the start. At run time: ``POST /_kplink/throttle``
   (below) replaces the configuration, ``DELETE`` turns throttling off.

5. ELBv2 eventual consistency: lag (off by default; patches of the backend,
   like item 1, and of ``ELBV2Response.describe_listeners``).

   AWS's general statement, made for EC2 ("Eventual consistency in the Amazon
   EC2 API", docs.aws.amazon.com/ec2/latest/devguide/eventual-consistency.html):
   the API "follows an eventual consistency model, due to the distributed
   nature of the system supporting the API. This means that the result of an
   API command you run that affects your Amazon EC2 resources might not be
   immediately visible to all subsequent commands you run". The ELBv2 API
   reference has no such page, but its callers treat it alike:
   terraform-provider-aws's target group delete retries DeleteTargetGroup for
   as long as it answers ``ResourceInUse`` "... is currently in use by a
   listener or a rule", which it does for a while after the listener that
   used the group was deleted. The error codes are the ELBv2 API reference's
   (DeleteTargetGroup: ``ResourceInUse``; DescribeListeners:
   ``ListenerNotFound``). moto is strictly consistent. With a lag of ``L``
   seconds (``L > 0``):

   a. DeleteTargetGroup after DeleteListener. For ``L`` seconds after a
      DeleteListener, DeleteTargetGroup of any group that listener forwarded
      to (default actions and rules) fails with ``ResourceInUse`` (HTTP 400,
      "Target group '<arn>' is currently in use by a listener or a rule",
      the DeleteTargetGroup API reference's error and AWS's wording; moto's
      own check, for a group a current listener uses, keeps moto's wording
      "The target group '<arn>' is ...").
   b. DescribeTags after CreateTargetGroup / AddTags / RemoveTags. For ``L``
      seconds after a change of a resource's tags, DescribeTags of that
      resource returns its tags as they were ``L`` seconds ago: before a
      CreateTargetGroup's ``Tags`` (a just-created group: no tags), before an
      AddTags or a RemoveTags. Several changes within ``L``: each becomes
      visible ``L`` seconds after it was made. (The idempotent repeat of a
      CreateTargetGroup, rule e, changes no tags and records nothing.)
   c. DescribeListeners after CreateListener. For ``L`` seconds after its
      CreateListener, a new listener is not listed by DescribeListeners
      (``LoadBalancerArn``); naming it in ``ListenerArns`` fails with
      ``ListenerNotFound``. Everything else sees it at once: a CreateListener
      on its port by anyone else answers ``DuplicateListener`` (rule a), an
      identical CreateListener returns it (idempotent), and CreateRule,
      ModifyListener and DeleteListener find it (moto's backend is not
      filtered, only the DescribeListeners answer).

   Each change records a deadline (``time.monotonic() + L``) under
   ``LISTENER_LOCK`` together with the change, so a lag turned on or changed
   later applies to later changes only. Turned on at start by
   ``KPLINK_MOTO_LAG_S=<seconds>`` (a float; unset or 0: off; read once, a
   malformed value fails the start), at run time by ``POST /_kplink/lag``;
   ``DELETE /_kplink/lag`` turns it off and drops every pending deadline (all
   consistent at once).

7. NLB target health over time (off by default; a patch of the backend's
   ``register_targets``, ``deregister_targets`` and ``describe_target_health``
   and a checker thread).

   AWS ("Health checks for Network Load Balancer target groups"): a target
   registered in a group a listener uses is ``initial`` ("Elb.RegistrationIn
   Progress" while it registers, then "Elb.InitialHealthChecking") until the
   load balancer has seen ``HealthyThresholdCount`` consecutive successful
   health checks (TCP: the connection opens), ``HealthCheckIntervalSeconds``
   apart; then ``healthy``. ``UnhealthyThresholdCount`` consecutive failures
   make it ``unhealthy`` (``Target.FailedHealthChecks``, "Health checks
   failed"), from ``initial`` or ``healthy``; ``HealthyThresholdCount``
   successes make it ``healthy`` again. A TCP target group's defaults are
   30 s, 5 and 2: a registered broker takes 2.5 minutes to get traffic. A
   target whose instance is stopped or terminated and still listed is
   ``unused`` / ``Target.InvalidState`` ("Target is in the stopped or
   terminated state"; moto says so only for ``stopped``). moto 5.2.5 answers
   ``healthy`` at once. With the emulation on, every registered target of a
   used group is checked by a thread every ``interval × scale`` seconds (the
   group's own interval and thresholds; ``scale`` compresses time for tests):
   a TCP connect (0.2 s timeout) to the address the test maps its instance to
   (``addresses``: instance id -> ``host:port``), and an instance with no
   address passes every check (it has no real process to probe). Registering
   again resets a target to ``initial``; deregistering forgets it. Turned on
   by ``KPLINK_MOTO_HEALTH_SCALE=<scale>`` or ``POST /_kplink/target-health``;
   ``DELETE`` turns it off (moto's instant ``healthy`` again).

6. Control endpoints. They live under ``/_kplink/``; requests there are never
   counted, throttled or faulted. moto's own ``/moto-api/...`` endpoints (for
   example ``POST /moto-api/reset``) keep working and are never throttled.

Control API
-----------
``GET  /_kplink/calls``
    ``{"elasticloadbalancing": {"DescribeListeners": 3, ...}, "ec2": {...},
    "_faults": {"throttle": n, ...}}``
``GET  /_kplink/calls?by=access_key``
    ``{"AKID1": {"elasticloadbalancing:CreateListener": 1, ...}, ...,
    "_faults": {...}}``
``POST /_kplink/calls/reset``
    Clears every counter, fault counters and throttled counts included.
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
``POST /_kplink/throttle``
    JSON ``{"scale": 1.0, "buckets": {"elbv2_describe": {"capacity": 40,
    "refill_per_s": 10}, ...}, "ec2_throttle_status": 503}``, every field
    optional (``{}``: AWS's buckets as in item 4). A bucket's ``capacity``
    and ``refill_per_s`` default to the table's value times ``scale``; a
    value given is absolute. Bucket classes: ``elbv2_describe``,
    ``elbv2_register``, ``elbv2_other``, ``ec2_describe``, ``ec2_other``.
    Turns throttling on with that configuration (replacing the current one,
    environment included), every bucket full, throttled counts cleared.
    Answer: ``{"ok": true, "config": <the effective configuration>}``; a bad
    body: HTTP 400 ``{"error": "..."}``.
``GET  /_kplink/throttle``
    ``{"enabled": true, "config": {"scale": 1.0, "buckets":
    {"elbv2_describe": {"capacity": 40.0, "refill_per_s": 10.0}, ...},
    "ec2_throttle_status": 503}, "tokens": {"us-east-1/elbv2_describe": 12.5,
    "us-east-1/ec2_describe/DescribeInstances": 100.0, ...}, "throttled":
    {"total": 5, "buckets": {"us-east-1/elbv2_describe": 5}, "actions":
    {"elasticloadbalancing:DescribeListeners": 5}}}``. Off: ``"enabled":
    false, "config": null, "tokens": {}`` (the counts stay until the next
    ``POST`` or ``POST /_kplink/calls/reset``). Bucket names: ``<Region>/
    <class>`` for ELBv2, ``<Region>/<class>/<Action>`` for EC2.
``DELETE /_kplink/throttle``
    Turns throttling off (``{"ok": true}``).
``POST /_kplink/lag``
    JSON ``{"seconds": 2.0}`` (0 <= seconds <= 3600; 0 = off): the lag of
    item 5 for the changes from now on. Answer ``{"ok": true, "seconds":
    2.0}``.
``GET  /_kplink/lag``
    ``{"seconds": 2.0, "pending": {"target_groups_in_use": 1,
    "tag_changes": 0, "hidden_listeners": 2}}`` (deadlines not yet passed).
``DELETE /_kplink/lag``
    Lag off, every pending deadline dropped (``{"ok": true, "seconds": 0.0}``).
``POST /_kplink/target-health``
    JSON ``{"scale": 0.02, "addresses": {"i-0abc": "127.0.0.1:41234"}}``
    (``scale`` > 0, default 1; ``addresses`` optional, merged into the
    current map): item 7 on. Targets registered before count as registered
    now.
``GET  /_kplink/target-health``
    ``{"enabled": true, "scale": 0.02, "addresses": {...}, "targets":
    [{"target_group_arn": ..., "id": ..., "port": ..., "state": "initial",
    "reason": ..., "since": <unix time of the last state change>,
    "healthy_since": <unix time or null>}, ...]}``
``DELETE /_kplink/target-health``
    Item 7 off, every record and address dropped.
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
import math
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
# 1. ELBv2 rules (see the module docstring, items 1a-1h)
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


# --------------------------------------------------------------------------
# 5. ELBv2 eventual consistency: lag (see the module docstring, item 5)
# --------------------------------------------------------------------------

LAG_ENV = "KPLINK_MOTO_LAG_S"
MAX_LAG_S = 3600.0
NOT_IN_USE_DESCRIPTION = "Target group is not configured to receive traffic from the load balancer"


class _Lag:
    """The lag and the deadlines of item 5. Read and written under ``LISTENER_LOCK`` only."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.clear()

    def clear(self) -> None:
        # 5a: target group ARN -> monotonic time until which DeleteTargetGroup says ResourceInUse
        self.tg_in_use_until: dict[str, float] = {}
        # 5b: resource ARN -> [(monotonic time the change becomes visible, tags before the change)]
        self.tag_history: dict[str, list[tuple[float, dict[str, str]]]] = {}
        # 5c: listener ARN -> monotonic time until which DescribeListeners does not list it
        self.listener_hidden_until: dict[str, float] = {}

    def deadline(self) -> float | None:
        """When a change made now becomes visible, or None when there is no lag."""
        return time.monotonic() + self.seconds if self.seconds > 0 else None

    def prune(self, now: float) -> None:
        for table in (self.tg_in_use_until, self.listener_hidden_until):
            for key in [k for k, until in table.items() if until <= now]:
                del table[key]
        for arn in list(self.tag_history):
            pending = [entry for entry in self.tag_history[arn] if entry[0] > now]
            if pending:
                self.tag_history[arn] = pending
            else:
                del self.tag_history[arn]


LAG = _Lag()


def parse_lag(raw: Any, source: str) -> float:
    """A lag in seconds: a finite number within [0, 3600]."""
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise ValueError(f"{source} must be a number of seconds, not {raw!r}") from None
    if not math.isfinite(value) or not 0.0 <= value <= MAX_LAG_S:
        raise ValueError(f"{source} must be within [0, {MAX_LAG_S:g}] seconds, not {raw!r}")
    return value


def lag_from_env() -> float:
    """``$KPLINK_MOTO_LAG_S``: the lag at start (0 when unset or empty)."""
    raw = os.environ.get(LAG_ENV, "").strip()
    return parse_lag(raw, LAG_ENV) if raw else 0.0


def set_lag(seconds: float) -> None:
    """Item 5: the lag for changes from now on; 0 turns it off and drops every pending deadline."""
    with LISTENER_LOCK:
        LAG.seconds = float(seconds)
        if LAG.seconds <= 0:
            LAG.seconds = 0.0
            LAG.clear()


def lag_status() -> dict[str, Any]:
    with LISTENER_LOCK:
        LAG.prune(time.monotonic())
        return {
            "seconds": LAG.seconds,
            "pending": {
                "target_groups_in_use": len(LAG.tg_in_use_until),
                "tag_changes": sum(len(v) for v in LAG.tag_history.values()),
                "hidden_listeners": len(LAG.listener_hidden_until),
            },
        }


# --------------------------------------------------------------------------
# 7. NLB target health over time (see the module docstring, item 7)
# --------------------------------------------------------------------------

HEALTH_ENV = "KPLINK_MOTO_HEALTH_SCALE"
HEALTH_PROBE_TIMEOUT_S = 0.2
INVALID_STATE_DESCRIPTION = "Target is in the stopped or terminated state"
HEALTH_REASONS = {
    "initial": ("Elb.InitialHealthChecking", "Initial health checks in progress"),
    "unhealthy": ("Target.FailedHealthChecks", "Health checks failed"),
    "healthy": (None, None),
}


class _TargetRecord:
    """One registered target's health-check history (item 7)."""

    def __init__(self, now: float) -> None:
        self.state = "initial"
        self.passes = 0
        self.fails = 0
        self.next_check = now
        self.since = time.time()
        self.healthy_since: float | None = None

    def observe(self, ok: bool, healthy_threshold: int, unhealthy_threshold: int) -> None:
        if ok:
            self.passes, self.fails = self.passes + 1, 0
            if self.state != "healthy" and self.passes >= healthy_threshold:
                self.state, self.since = "healthy", time.time()
                self.healthy_since = self.since
        else:
            self.passes, self.fails = 0, self.fails + 1
            if self.state != "unhealthy" and self.fails >= unhealthy_threshold:
                self.state, self.since = "unhealthy", time.time()
                self.healthy_since = None


class _Health:
    """Item 7's state. Read and written under ``LISTENER_LOCK``; probes run outside it."""

    def __init__(self) -> None:
        self.scale: float | None = None
        self.addresses: dict[str, str] = {}
        # (target group ARN, instance id, port) -> record
        self.records: dict[tuple[str, str, int], _TargetRecord] = {}
        self.thread: threading.Thread | None = None

    def record(self, key: tuple[str, str, int], now: float, interval: float) -> _TargetRecord:
        rec = self.records.get(key)
        if rec is None:
            rec = self.records[key] = _TargetRecord(now + interval)
        return rec


HEALTH = _Health()


def parse_health_scale(raw: Any, source: str) -> float:
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise ValueError(f"{source} must be a number, not {raw!r}") from None
    if not math.isfinite(value) or not 0.0 < value <= 10.0:
        raise ValueError(f"{source} must be within (0, 10], not {raw!r}")
    return value


def _group_timing(group: Any, scale: float) -> tuple[float, int, int]:
    interval = float(getattr(group, "health_check_interval_seconds", 30) or 30) * scale
    healthy = int(getattr(group, "healthy_threshold_count", 5) or 5)
    unhealthy = int(getattr(group, "unhealthy_threshold_count", 2) or 2)
    return interval, healthy, unhealthy


def _probe(address: str | None) -> bool:
    if address is None:
        return True
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=HEALTH_PROBE_TIMEOUT_S):
            return True
    except (OSError, ValueError):
        return False


def _health_backends() -> list[Any]:
    from moto.elbv2.models import elbv2_backends

    out = []
    for account in list(elbv2_backends.keys()):
        for region in list(elbv2_backends[account].keys()):
            out.append(elbv2_backends[account][region])
    return out


def _health_checker() -> None:
    """Item 7's thread: checks every due target of every used group, then sleeps a little."""
    while True:
        due: list[tuple[tuple[str, str, int], str | None, int, int]] = []
        with LISTENER_LOCK:
            scale = HEALTH.scale
            if scale is None:
                HEALTH.thread = None
                return
            now = time.monotonic()
            live: set[tuple[str, str, int]] = set()
            for backend in _health_backends():
                users = _target_group_users(backend)
                for arn, group in list(backend.target_groups.items()):
                    if arn not in users:
                        continue
                    interval, healthy, unhealthy = _group_timing(group, scale)
                    for target in list(group.targets.values()):
                        key = (arn, target["Id"], int(target["Port"]))
                        live.add(key)
                        rec = HEALTH.record(key, now, interval)
                        if rec.next_check <= now:
                            rec.next_check = now + interval
                            due.append((key, HEALTH.addresses.get(target["Id"]), healthy, unhealthy))
            for key in [k for k in HEALTH.records if k not in live]:
                del HEALTH.records[key]
        results = [(key, _probe(address), healthy, unhealthy) for key, address, healthy, unhealthy in due]
        with LISTENER_LOCK:
            for key, ok, healthy, unhealthy in results:
                rec = HEALTH.records.get(key)
                if rec is not None:
                    rec.observe(ok, healthy, unhealthy)
        time.sleep(0.02)


def set_target_health(scale: float | None, addresses: dict[str, str] | None = None) -> None:
    """Item 7 on with ``scale`` (addresses merged), or off (``None``: records and addresses dropped)."""
    with LISTENER_LOCK:
        if scale is None:
            HEALTH.scale = None
            HEALTH.records.clear()
            HEALTH.addresses.clear()
            return
        HEALTH.scale = scale
        HEALTH.addresses.update(addresses or {})
        if HEALTH.thread is None:
            HEALTH.thread = threading.Thread(target=_health_checker, name="kplink-target-health", daemon=True)
            HEALTH.thread.start()


def target_health_status() -> dict[str, Any]:
    with LISTENER_LOCK:
        return {
            "enabled": HEALTH.scale is not None,
            "scale": HEALTH.scale,
            "addresses": dict(HEALTH.addresses),
            "targets": [
                {
                    "target_group_arn": arn,
                    "id": target_id,
                    "port": port,
                    "state": rec.state,
                    "reason": HEALTH_REASONS[rec.state][0],
                    "since": rec.since,
                    "healthy_since": rec.healthy_since,
                }
                for (arn, target_id, port), rec in sorted(HEALTH.records.items())
            ],
        }


def health_from_env() -> float | None:
    raw = os.environ.get(HEALTH_ENV, "").strip()
    return parse_health_scale(raw, HEALTH_ENV) if raw else None


def _record_tag_change(arn: str, before: dict[str, str]) -> None:
    """5b: DescribeTags of ``arn`` shows ``before`` until the lag has passed. Under LISTENER_LOCK."""
    deadline = LAG.deadline()
    if deadline is not None:
        LAG.tag_history.setdefault(arn, []).append((deadline, dict(before)))


def _lagged_tags(arn: str, current: dict[str, str], now: float) -> dict[str, str]:
    """5b: the tags of ``arn`` as a reader sees them now. Under LISTENER_LOCK."""
    for visible_at, before in LAG.tag_history.get(arn, []):
        if visible_at > now:
            return dict(before)  # the oldest change not yet visible: the state before it
    return current


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


def _emulated_health(backend: Any, group: Any, arn: str, status: Any) -> Any:
    """Item 7: moto's answer for one target of a used group, as AWS's health checks would have it."""
    from moto.elbv2 import models as elbv2_models

    if status.instance_id not in group.targets or status.status not in ("healthy", "unused"):
        return status
    instance = backend.ec2_backend.get_instance_by_id(status.instance_id)
    if instance is not None and instance.state in ("stopping", "stopped", "shutting-down", "terminated"):
        return elbv2_models.FakeHealthStatus(
            status.instance_id, status.port, status.health_check_port,
            "unused", "Target.InvalidState", INVALID_STATE_DESCRIPTION,
        )
    interval, _, _ = _group_timing(group, HEALTH.scale or 1.0)
    rec = HEALTH.record((arn, status.instance_id, int(status.port)), time.monotonic(), interval)
    reason, description = HEALTH_REASONS[rec.state]
    return elbv2_models.FakeHealthStatus(
        status.instance_id, status.port, status.health_check_port, rec.state, reason, description
    )


def patch_moto() -> None:
    """Install the ELBv2 rules and the lag of the module docstring (items 1a-1h, 5). Safe to call twice."""
    global _PATCHED
    if _PATCHED:
        return
    from moto.elbv2 import models as elbv2_models
    from moto.elbv2 import responses as elbv2_responses
    from moto.elbv2.exceptions import (
        DuplicateListenerError,
        DuplicateTargetGroupName,
        ELBClientError,
        ListenerNotFoundError,
        ResourceInUseError,
    )

    max_listeners()  # a malformed KPLINK_MOTO_MAX_LISTENERS fails at start, not per request
    lag_from_env()  # so does a malformed KPLINK_MOTO_LAG_S
    health_from_env()  # and KPLINK_MOTO_HEALTH_SCALE
    patch_moto_privatelink()  # interface endpoint DNS entries, ServiceRegion, Route 53 change status
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
            "remove_tags",
            "describe_tags",
            "delete_target_group",
            "describe_target_health",
            "register_targets",
            "deregister_targets",
            "modify_listener_attributes",
        )
    }
    orig_describe_listeners_response = elbv2_responses.ELBV2Response.describe_listeners

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
            deadline = LAG.deadline()
            if deadline is not None:
                LAG.listener_hidden_until[listener.arn] = deadline  # 5c
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

    def delete_listener(self, listener_arn):  # type: ignore[no-untyped-def]
        with LISTENER_LOCK:
            _, listener = _load_balancer_of_listener(self, listener_arn)
            forwarded: list[str] = []
            for rule in list(listener.rules.values()) if listener is not None else []:
                forwarded += [a for a in _forward_arns(self, getattr(rule, "actions", None)) if a not in forwarded]
            result = orig["delete_listener"](self, listener_arn)
            _sync_load_balancer_arns(self)  # 1d
            LAG.listener_hidden_until.pop(listener_arn, None)
            deadline = LAG.deadline()
            if deadline is not None:  # 5a
                for arn in forwarded:
                    LAG.tg_in_use_until[arn] = max(LAG.tg_in_use_until.get(arn, 0.0), deadline)
            return result

    def delete_target_group(self, target_group_arn):  # type: ignore[no-untyped-def]
        with LISTENER_LOCK:
            now = time.monotonic()
            if (
                target_group_arn in self.target_groups
                and not self._any_listener_using(target_group_arn)  # moto's own check answers that case
                and LAG.tg_in_use_until.get(target_group_arn, 0.0) > now
            ):
                raise ResourceInUseError(  # 5a, AWS's wording
                    f"Target group '{target_group_arn}' is currently in use by a listener or a rule"
                )
            result = orig["delete_target_group"](self, target_group_arn)
            LAG.tg_in_use_until.pop(target_group_arn, None)
            LAG.tag_history.pop(target_group_arn, None)
            return result

    def describe_target_health(self, target_group_arn, targets):  # type: ignore[no-untyped-def]
        with LISTENER_LOCK:
            statuses = orig["describe_target_health"](self, target_group_arn, targets)
            group = self.target_groups[target_group_arn]  # exists: moto raised TargetGroupNotFound otherwise
            if target_group_arn in _target_group_users(self):
                if HEALTH.scale is None:
                    return statuses
                return [_emulated_health(self, group, target_group_arn, st) for st in statuses]  # 7
            out = []
            for status in statuses:
                if status.status == "healthy" and status.instance_id in group.targets:  # 1h
                    status = elbv2_models.FakeHealthStatus(
                        status.instance_id,
                        status.port,
                        status.health_check_port,
                        "unused",
                        "Target.NotInUse",
                        NOT_IN_USE_DESCRIPTION,
                    )
                out.append(status)
            return out

    def modify_listener_attributes(self, listener_arn, attrs):  # type: ignore[no-untyped-def]
        listener = self.describe_listeners(load_balancer_arn=None, listener_arns=[listener_arn])[0]
        for attr in attrs:  # 1i: validate all before changing any
            key, value = attr.get("Key"), str(attr.get("Value", ""))
            if key != "tcp.idle_timeout.seconds":
                raise ELBClientError("ValidationError", f"Listener attribute '{key}' is not supported")
            if listener.protocol != "TCP":
                raise ELBClientError(
                    "ValidationError",
                    f"The idle timeout of a {listener.protocol} listener cannot be modified",
                )
            if not value.isdigit() or not 60 <= int(value) <= 6000:
                raise ELBClientError(
                    "ValidationError",
                    f"Listener attribute 'tcp.idle_timeout.seconds' must be between 60 and 6000, not '{value}'",
                )
        return orig["modify_listener_attributes"](self, listener_arn, attrs)

    def register_targets(self, target_group_arn, instances):  # type: ignore[no-untyped-def]
        with LISTENER_LOCK:
            result = orig["register_targets"](self, target_group_arn, instances)
            for target in instances:  # 7: registering (again) starts over at initial
                port = int(target.get("Port", self.target_groups[target_group_arn].port))
                HEALTH.records.pop((target_group_arn, target["Id"], port), None)
            return result

    def deregister_targets(self, target_group_arn, instances):  # type: ignore[no-untyped-def]
        with LISTENER_LOCK:
            result = orig["deregister_targets"](self, target_group_arn, instances)
            for key in [k for k in HEALTH.records if k[0] == target_group_arn and k[1] in {t["Id"] for t in instances}]:
                del HEALTH.records[key]  # 7
            return result

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
                # moto tags the new group through self.add_tags (patched below), which records the
                # change for 5b: a just-created group shows no tags within the lag.
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
                before = dict(self.tagging_service.get_tag_dict_for_resource(arn))
                self.tagging_service.tag_resource(arn, tags)
                _record_tag_change(arn, before)  # 5b

    def remove_tags(self, resource_arns, tag_keys):  # type: ignore[no-untyped-def]
        with LISTENER_LOCK:
            befores = {}
            for arn in resource_arns:
                self._get_resource_by_arn(arn)  # moto checks each ARN as it goes; check all first
                befores[arn] = dict(self.tagging_service.get_tag_dict_for_resource(arn))
            result = orig["remove_tags"](self, resource_arns, tag_keys)
            for arn, before in befores.items():
                _record_tag_change(arn, before)  # 5b
            return result

    def describe_tags(self, resource_arns):  # type: ignore[no-untyped-def]
        with LISTENER_LOCK:
            for arn in resource_arns:
                self._get_resource_by_arn(arn)  # 1g: the NotFound errors AWS answers
            result = orig["describe_tags"](self, resource_arns)
            if LAG.tag_history:
                now = time.monotonic()
                LAG.prune(now)
                result = {arn: _lagged_tags(arn, tags, now) for arn, tags in result.items()}  # 5b
            return result

    def describe_listeners_response(self):  # type: ignore[no-untyped-def]
        """5c: DescribeListeners does not list a listener until the lag after its CreateListener."""
        answer = orig_describe_listeners_response(self)
        with LISTENER_LOCK:
            if not LAG.listener_hidden_until:
                return answer
            LAG.prune(time.monotonic())
            hidden = set(LAG.listener_hidden_until)
        if any(arn in hidden for arn in self._get_param("ListenerArns", []) or []):
            raise ListenerNotFoundError()
        result = answer.result
        result["Listeners"] = [l for l in result["Listeners"] if l.arn not in hidden]
        return answer

    patched = {
        "create_listener": create_listener,
        "modify_listener": modify_listener,
        "delete_listener": delete_listener,
        "create_rule": create_rule,
        "modify_rule": modify_rule,
        "delete_rule": _mutation_then_sync("delete_rule"),
        "delete_load_balancer": _mutation_then_sync("delete_load_balancer"),
        "create_load_balancer": create_load_balancer,
        "create_target_group": create_target_group,
        "describe_target_groups": describe_target_groups,
        "add_tags": add_tags,
        "remove_tags": remove_tags,
        "describe_tags": describe_tags,
        "delete_target_group": delete_target_group,
        "describe_target_health": describe_target_health,
        "register_targets": register_targets,
        "modify_listener_attributes": modify_listener_attributes,
        "deregister_targets": deregister_targets,
    }
    for name, func in patched.items():
        if not func.__doc__:
            func.__doc__ = (orig[name].__doc__ or "") + "\n(kplink: AWS ELBv2 rules, see moto_launcher.py)"
        setattr(backend_cls, name, func)
    elbv2_responses.ELBV2Response.describe_listeners = describe_listeners_response
    _PATCHED = True


# --------------------------------------------------------------------------
# 2. + 3. Counting and fault injection
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


# --------------------------------------------------------------------------
# 4. Account API throttling (see the module docstring, item 4)
# --------------------------------------------------------------------------

THROTTLE_ENV = "KPLINK_MOTO_THROTTLE"
THROTTLE_SCALE_ENV = "KPLINK_MOTO_THROTTLE_SCALE"
# Bucket class -> (capacity in tokens, refill in tokens per second), before scaling.
THROTTLE_DEFAULTS: dict[str, tuple[float, float]] = {
    "elbv2_describe": (40.0, 10.0),  # AWS "Request throttling for the ELB API"
    "elbv2_register": (20.0, 4.0),  # AWS Load Balancer Controller defaults (#2809)
    "elbv2_other": (40.0, 10.0),  # assumption (the controller's pre-#4641 ".*" rule)
    "ec2_describe": (100.0, 20.0),  # AWS "Request throttling for the Amazon EC2 API", DescribeHosts; per action
    "ec2_other": (200.0, 10.0),  # assumption; per action
}
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("", "0", "false", "no", "off")


def throttle_bucket_env(cls: str) -> str:
    """The environment variable of one bucket class, e.g. ``KPLINK_MOTO_THROTTLE_ELBV2_DESCRIBE``."""
    return f"{THROTTLE_ENV}_{cls.upper()}"


def throttle_class(service: str, action: str) -> str | None:
    """The bucket class of a request, or None for a service that is not throttled."""
    if service == "elasticloadbalancing":
        if action.startswith("Describe"):
            return "elbv2_describe"
        if action in ("RegisterTargets", "DeregisterTargets"):
            return "elbv2_register"
        return "elbv2_other"
    if service == "ec2":
        return "ec2_describe" if action.startswith("Describe") else "ec2_other"
    return None


def _number(raw: Any, what: str) -> float:
    if isinstance(raw, bool):
        raise ValueError(f"{what} must be a number, not {raw!r}")
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a number, not {raw!r}") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{what} must be a finite number >= 0, not {raw!r}")
    return value


class Throttle:
    """Item 4: the account's token buckets, shared by every caller. Thread-safe."""

    def __init__(self, cfg: dict[str, Any] | None = None) -> None:
        self._lock = threading.Lock()
        self._cfg: dict[str, Any] | None = None
        self._buckets: dict[str, list[float]] = {}  # bucket -> [tokens, monotonic time of that count]
        self._by_bucket: dict[str, int] = {}
        self._by_action: dict[str, int] = {}
        self.set(cfg)

    @staticmethod
    def validate(body: Any) -> dict[str, Any]:
        """The effective configuration of a ``POST /_kplink/throttle`` body."""
        if not isinstance(body, dict):
            raise ValueError("body must be a JSON object")
        unknown = sorted(set(body) - {"scale", "buckets", "ec2_throttle_status"})
        if unknown:
            raise ValueError(f"unknown fields {unknown}; known: scale, buckets, ec2_throttle_status")
        scale = _number(body.get("scale", 1.0), "scale")
        if scale <= 0:
            raise ValueError("scale must be > 0")
        overrides = body.get("buckets") or {}
        if not isinstance(overrides, dict):
            raise ValueError("buckets must be an object")
        bad = sorted(set(overrides) - set(THROTTLE_DEFAULTS))
        if bad:
            raise ValueError(f"unknown bucket classes {bad}; known: {sorted(THROTTLE_DEFAULTS)}")
        buckets: dict[str, dict[str, float]] = {}
        for cls, (capacity, refill) in THROTTLE_DEFAULTS.items():
            o = overrides.get(cls) or {}
            if not isinstance(o, dict) or set(o) - {"capacity", "refill_per_s"}:
                raise ValueError(f"buckets.{cls} must be an object with capacity and/or refill_per_s")
            buckets[cls] = {
                "capacity": _number(o.get("capacity", capacity * scale), f"buckets.{cls}.capacity"),
                "refill_per_s": _number(o.get("refill_per_s", refill * scale), f"buckets.{cls}.refill_per_s"),
            }
        ec2_status = body.get("ec2_throttle_status", 503)
        if ec2_status not in (400, 503) or isinstance(ec2_status, bool):
            raise ValueError("ec2_throttle_status must be 400 or 503")
        return {"scale": scale, "buckets": buckets, "ec2_throttle_status": int(ec2_status)}

    @staticmethod
    def from_env(env: dict[str, str] | None = None) -> dict[str, Any] | None:
        """The configuration at start: None unless ``$KPLINK_MOTO_THROTTLE`` is on. Raises on bad values."""
        env = os.environ if env is None else env
        raw = env.get(THROTTLE_ENV, "").strip().lower()
        if raw in _FALSE:
            return None
        if raw not in _TRUE:
            raise ValueError(f"{THROTTLE_ENV} must be 1 or 0, not {env.get(THROTTLE_ENV)!r}")
        body: dict[str, Any] = {"buckets": {}}
        scale = env.get(THROTTLE_SCALE_ENV, "").strip()
        if scale:
            body["scale"] = scale
        for cls in THROTTLE_DEFAULTS:
            name = throttle_bucket_env(cls)
            value = env.get(name, "").strip()
            if not value:
                continue
            parts = value.split("/")
            if len(parts) != 2:
                raise ValueError(f"{name} must be CAPACITY/REFILL_PER_SECOND, e.g. 40/10, not {value!r}")
            body["buckets"][cls] = {"capacity": parts[0].strip(), "refill_per_s": parts[1].strip()}
        try:
            return Throttle.validate(body)
        except ValueError as exc:
            raise ValueError(f"{THROTTLE_ENV}*: {exc}") from None

    def set(self, cfg: dict[str, Any] | None) -> None:
        """A new configuration (None: off). Every bucket starts full; the throttled counts start at 0."""
        with self._lock:
            self._cfg = cfg
            self._buckets = {}
            if cfg is not None:
                self._by_bucket = {}
                self._by_action = {}

    def reset_counts(self) -> None:
        with self._lock:
            self._by_bucket = {}
            self._by_action = {}

    def get(self) -> dict[str, Any]:
        with self._lock:
            now = time.monotonic()
            tokens = {}
            if self._cfg is not None:
                for key, (count, since) in sorted(self._buckets.items()):
                    spec = self._cfg["buckets"][key.split("/")[1]]
                    tokens[key] = round(min(spec["capacity"], count + spec["refill_per_s"] * (now - since)), 3)
            return {
                "enabled": self._cfg is not None,
                "config": self._cfg,
                "tokens": tokens,
                "throttled": {
                    "total": sum(self._by_bucket.values()),
                    "buckets": dict(self._by_bucket),
                    "actions": dict(self._by_action),
                },
            }

    def take(self, service: str, region: str, action: str) -> tuple[str, int] | None:
        """Take one token for this request. None: go on. Else (bucket, ec2 status): refuse it."""
        with self._lock:
            cfg = self._cfg
            if cfg is None:
                return None
            cls = throttle_class(service, action)
            if cls is None:
                return None
            key = f"{region}/{cls}/{action}" if service == "ec2" else f"{region}/{cls}"
            spec = cfg["buckets"][cls]
            now = time.monotonic()
            state = self._buckets.get(key)
            if state is None:
                tokens = spec["capacity"]  # a bucket starts full
            else:
                tokens = min(spec["capacity"], state[0] + spec["refill_per_s"] * (now - state[1]))
            if tokens >= 1.0:
                self._buckets[key] = [tokens - 1.0, now]
                return None
            self._buckets[key] = [tokens, now]  # a refused request takes no token
            self._by_bucket[key] = self._by_bucket.get(key, 0) + 1
            name = f"{service}:{action}"
            self._by_action[name] = self._by_action.get(name, 0) + 1
            return key, cfg["ec2_throttle_status"]


# --------------------------------------------------------------------------
# The middleware: items 2, 3 and 4, and the control API (item 6)
# --------------------------------------------------------------------------

_STATUS_TEXT = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 500: "Internal Server Error", 503: "Service Unavailable"}


class KplinkMiddleware:
    """WSGI middleware: the control endpoints, call counting and fault injection."""

    def __init__(self, app: Callable) -> None:
        self.app = app
        self.counter = CallCounter()
        self.faults = FaultConfig()
        self.throttle = Throttle(Throttle.from_env())  # item 4; a malformed environment fails here

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

    def _identify(self, environ: dict) -> tuple[str, str, str, str] | None:
        """(service, action, access key id, Region) of a signed request, or None."""
        auth = environ.get("HTTP_AUTHORIZATION", "")
        m = _CRED_RE.search(auth)
        if not m:
            # Presigned query auth (X-Amz-Credential=...) is possible too.
            qs = parse_qs(environ.get("QUERY_STRING", ""))
            cred = (qs.get("X-Amz-Credential") or [""])[0]
            parts = cred.split("/")
            if len(parts) != 5:
                return None
            access_key, region, service = parts[0], parts[2], parts[3]
        else:
            access_key, region, service = m.group(1), m.group(2), m.group(3)
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
        return service, action or "_unknown", access_key, region

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
            self.throttle.reset_counts()
            return self._json(start_response, 200, {"ok": True})
        if path == "/_kplink/throttle":
            if method == "DELETE":
                self.throttle.set(None)
                return self._json(start_response, 200, {"ok": True})
            if method == "GET":
                return self._json(start_response, 200, self.throttle.get())
            if method in ("POST", "PUT"):
                raw = self._read_body(environ)
                try:
                    tcfg = Throttle.validate(json.loads(raw or b"{}"))
                except (ValueError, TypeError) as exc:
                    return self._json(start_response, 400, {"error": str(exc)})
                self.throttle.set(tcfg)
                return self._json(start_response, 200, {"ok": True, "config": tcfg})
            return self._json(start_response, 405, {"error": "method not allowed"})
        if path == "/_kplink/target-health":
            if method == "DELETE":
                set_target_health(None)
                return self._json(start_response, 200, {"ok": True})
            if method == "GET":
                return self._json(start_response, 200, target_health_status())
            if method in ("POST", "PUT"):
                raw = self._read_body(environ)
                try:
                    body = json.loads(raw or b"{}")
                    if not isinstance(body, dict):
                        raise ValueError('body must be {"scale": <float>, "addresses": {...}}')
                    scale = parse_health_scale(body.get("scale", 1.0), "scale")
                    addresses = body.get("addresses") or {}
                    if not isinstance(addresses, dict) or not all(
                        isinstance(k, str) and isinstance(v, str) and ":" in v for k, v in addresses.items()
                    ):
                        raise ValueError('addresses must map instance ids to "host:port"')
                except (ValueError, TypeError) as exc:
                    return self._json(start_response, 400, {"error": str(exc)})
                set_target_health(scale, addresses)
                return self._json(start_response, 200, target_health_status())
            return self._json(start_response, 405, {"error": "method not allowed"})
        if path == "/_kplink/lag":
            if method == "DELETE":
                set_lag(0.0)
                return self._json(start_response, 200, {"ok": True, "seconds": 0.0})
            if method == "GET":
                return self._json(start_response, 200, lag_status())
            if method in ("POST", "PUT"):
                raw = self._read_body(environ)
                try:
                    body = json.loads(raw or b"{}")
                    if not isinstance(body, dict) or "seconds" not in body:
                        raise ValueError('body must be {"seconds": <float>}')
                    seconds = parse_lag(body["seconds"], "seconds")
                except (ValueError, TypeError) as exc:
                    return self._json(start_response, 400, {"error": str(exc)})
                set_lag(seconds)
                return self._json(start_response, 200, {"ok": True, "seconds": seconds})
            return self._json(start_response, 405, {"error": "method not allowed"})
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
        service, action, access_key, region = info
        self.counter.record(service, action, access_key)
        refused = self.throttle.take(service, region, action)  # item 4, before any injected fault
        if refused is not None:
            self.counter.record_fault("throttle_bucket")
            status, body = fault_response("throttle", service, {"ec2_throttle_status": refused[1]})
            return self._respond(start_response, status, body, "text/xml", [("x-amzn-RequestId", str(uuid.uuid4()))])
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
        set_lag(lag_from_env())  # item 5 at start
        health_scale = health_from_env()
        if health_scale is not None:
            set_target_health(health_scale)  # item 7 at start
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
        description=(
            "Start moto server for the kplink-agent tests: AWS's ELBv2 rules, call counter, fault injection, "
            "and (off by default) account API throttling and ELBv2 eventual-consistency lag."
        ),
        epilog=(
            "The first stdout line is 'READY http://HOST:PORT'. Control API: /_kplink/calls, /_kplink/faults, "
            "/_kplink/throttle, /_kplink/lag; environment: KPLINK_MOTO_THROTTLE, KPLINK_MOTO_THROTTLE_SCALE, "
            "KPLINK_MOTO_THROTTLE_<CLASS>, KPLINK_MOTO_LAG_S (see the module docstring)."
        ),
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
