#!/usr/bin/env python3
"""kplink-agent benchmark: AWS calls, wall time and footprint against moto.

Usage (from the repository root)::

    python3 benches/bench.py [--hosts 49] [--burst 20] [--shard-hosts 150] [--release] [--no-build]
                             [--throttled | --skip-throttled] [--steady-daemons 30]
                             [--steady-default-daemons 10] [--steady-window 180]

It builds the binary if needed (``cargo build [--release] --bin kplink-agent`` in
``$CARGO_TARGET_DIR``, default ``$HOME/.cache/kplink/target``), then runs these scenarios, each
against a fresh moto server (``tests/support/moto_launcher.py``), the IMDSv2 test server
(``tests/support/imds_server.py``) and a world seeded by ``tests/support/world.py``:

1. first broker on an empty NLB: one ``run --once``;
2. a new broker on an NLB that already serves another broker: one ``run --once``;
3. steady state: ``run --once`` again on the converged first broker;
4. ``--burst`` hosts (default 20) and ``--hosts`` hosts (default 49) booting at once on one NLB:
   that many ``run --once --json`` processes started together (``port_range`` wide enough for
   all). 49 is what one NLB holds: 50 listeners (AWS's quota, enforced by the moto launcher), one
   of them the bootstrap; a 50th broker fails, as it would on AWS;
5. several NLBs (``nlb.load_balancer_arns``, three NLBs in the same subnets, ``port_range``
   10001-10049 on each, so 3 x 49 = 147 brokers fit): ``--shard-hosts`` hosts (default 150) booting
   at once. With 150, 147 must converge on unique (NLB, port) pairs, at most 50 listeners per NLB,
   and the other 3 must fail cleanly with the "all 3 NLBs ... are full" error (file unchanged,
   no target group left behind). Then, on that cluster: one broker of the last NLB is
   decommissioned (so NLBs 0 and 1 are full and NLB 2 has one free port) and one new host joins:
   one ``run --once``; then steady state: ``run --once`` on a converged broker of the last NLB;
6. the daemon (``kplink-agent run`` with ``[daemon] interval = "1s"`` and ``metrics_listen``):
   resident memory after 10 passes (``VmRSS`` from ``/proc/<pid>/status``) and CPU per pass
   (``utime + stime`` from ``/proc/<pid>/stat`` between two reads of ``kplink_passes_total`` on
   ``/metrics``). Printed as "n/a (daemon not available)" when the binary has no daemon mode;
7. a throttled account (``--throttled`` runs only this, ``--skip-throttled`` skips it): the moto
   launcher's token buckets at AWS's defaults (``POST /_kplink/throttle {"scale": 1}`` after the
   world is seeded, so every bucket is full at the first spawn: ELBv2 ``Describe*`` 40 / 10 per s,
   RegisterTargets|DeregisterTargets 20 / 4 per s, other ELBv2 40 / 10 per s, EC2 per action).
   Each row on a fresh launcher, broker ids 1..n, ``port_range`` 10001-10049 on every NLB:

   a. 147 brokers over 3 NLBs, then b. 300 over 7 NLBs (343 fit), all ``run --once --json`` at
      once. Measured: wall time from the first spawn to the last exit against the API-budget
      floor (2n - 20) / 4 s (RegisterTargets' bucket: two registrations per broker; target
      <= 1.5 x floor), first-run failures (none rerun), duplicate (NLB, port) claims (reports and
      the server's listeners and groups), whether each broker claimed where the spread says
      (NLB = id mod n, port = start + (id / n) mod size), throttled answers (``GET
      /_kplink/throttle``, by bucket and action), calls per host at the server (every request,
      throttled ones included; target mean <= 6), and what is left: n + NLBs target groups, no
      group without a listener. Also the peak number of live agents and their summed RSS.
   c. The steady state of the 300-broker world, throttling on again: daemons (``kplink-agent
      run``) on converged brokers of NLBs 1.. (not NLB 0, whose lowest instance is the
      stale-claims accountant, a separate <= 0.1 reads/s). ``--steady-daemons`` of them with
      ``[daemon] interval = "1s"`` and ``[aws] steady_reads_per_second = 10`` (the maximum), so
      each checks every cluster_size / 10 s (~30 s) x U[0.5, 1.5]: the mean gap between their
      reads (measured at the server, per access key, polled every 0.5 s) is checked against the
      formula; ``--steady-default-daemons`` with every default (60 s, 0.5 reads/s), whose first
      check is >= 301 s away, must make no read after their first pass in the window. The fleet
      rate at 300 brokers with the defaults is printed twice, distinctly labelled: the MODEL
      (sum of rate / cluster_size = 0.5 reads/s) and COMPUTED (the model scaled by formula gap /
      measured gap). Running 300 daemons for the ~10 minutes a default check needs is not done.

AWS calls are counted at the server (moto launcher's ``/_kplink/calls?by=access_key``; every
simulated host has its own access key), never taken from the agent's own report. Wall times are
per process (spawn to exit, so they include reading instance metadata). Nothing here is a test:
it prints a table of target vs measured with PASS/MISS and exits 0 unless a scenario could not run
at all (exit 1) or a hard invariant broke (duplicate ports, failed hosts: exit 1).

Needs the Python test support: ``python3 -m pip install -r tests/support/requirements.txt``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
SUPPORT = REPO / "tests" / "support"
sys.path.insert(0, str(SUPPORT))

import world as worldmod  # noqa: E402  (tests/support/world.py)

SERVER_PROPERTIES = (
    "# Kafka broker config managed by config management\n"
    "process.roles=broker,controller\n"
    "controller.listener.names=CONTROLLER\n"
    "listeners=PLAINTEXT://:9092,CONTROLLER://:9093\n"
    "advertised.listeners=PLAINTEXT://:9092\n"
    "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT\n"
    "\n"
    "# storage\n"
    "log.dirs=/nonexistent/kafka-logs\n"
    "num.partitions=3\n"
)

SHARD_TEMPLATE = "kafka-{az_id}-s{shard}.orders.example.internal"
BOOTSTRAP_PORT = 10000
MAX_LISTENERS = 50  # AWS: "Listeners per Network Load Balancer: 50", not adjustable

# Published for comparison in the README: a do-it-yourself aws-cli script.
DIY = {"one_host_calls": 9, "one_host_s": 5.8, "burst_calls_per_host": 17, "burst_s": 128.0, "burst_hosts": 20}


# --------------------------------------------------------------------------------------------
# servers, world, hosts
# --------------------------------------------------------------------------------------------


class Server:
    """A support script that prints ``READY <url>`` first; terminated on close."""

    def __init__(self, script: str, args: list[str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(SUPPORT / script), *args, "--quiet"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        line = self.proc.stdout.readline().strip() if self.proc.stdout else ""
        if not line.startswith("READY "):
            self.close()
            raise RuntimeError(f"{script} did not start: {line!r}")
        self.url = line.split(" ", 1)[1]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def http_json(method: str, url: str, body: Any = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, method=method, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        raw = resp.read()
    return json.loads(raw) if raw else None


class World:
    """moto + IMDS + a seeded world + one directory per host (agent.toml, server.properties)."""

    def __init__(self, binary: Path, hosts: int, port_range: str, nlbs: int = 1) -> None:
        self.binary = binary
        self.port_range = port_range
        self.tmp = Path(tempfile.mkdtemp(prefix="kplink-bench-"))
        self.moto = Server("moto_launcher.py", ["--port", "0"])
        try:
            self.imds = Server("imds_server.py", ["--control-port", "0"])
        except Exception:
            self.moto.close()
            raise
        self.world = worldmod.seed(self.moto.url, hosts, imds=self.imds.url, out=str(self.tmp / "world.json"))
        self.lb_arn = self.world["load_balancer_arn"]
        # More NLBs in the same subnets: nlb.load_balancer_arns, in fill order (seeded one first).
        self.lb_arns = worldmod.add_load_balancers(self.world, nlbs - 1) if nlbs > 1 else [self.lb_arn]
        self.hosts = self.world["hosts"]
        for h in self.hosts:
            self.write_host(h)

    def host_dir(self, h: dict[str, Any]) -> Path:
        return self.tmp / h["name"]

    def write_host(self, h: dict[str, Any], extra: str = "") -> Path:
        d = self.host_dir(h)
        d.mkdir(parents=True, exist_ok=True)
        props = d / "server.properties"
        if not props.exists():
            props.write_text(SERVER_PROPERTIES)
        cfg = d / "agent.toml"
        if len(self.lb_arns) > 1:
            template = SHARD_TEMPLATE
            nlb = "load_balancer_arns = [" + ", ".join(f'"{a}"' for a in self.lb_arns) + "]"
        else:
            template = "kafka-{az_id}.orders.example.internal"
            nlb = f'load_balancer_arn = "{self.lb_arn}"'
        cfg.write_text(
            'cluster = "orders"\n\n[broker]\n'
            f'server_properties = "{props}"\n\n[listener]\n'
            f'advertised_host = "{template}"\n\n[nlb]\n'
            f'{nlb}\nport_range = "{self.port_range}"\n' + extra
        )
        return cfg

    def env(self, h: dict[str, Any]) -> dict[str, str]:
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "AWS_ENDPOINT_URL": self.moto.url,
            "AWS_EC2_METADATA_SERVICE_ENDPOINT": h["imds_endpoint"],
            "AWS_ACCESS_KEY_ID": h["access_key_id"],
            "AWS_SECRET_ACCESS_KEY": "testing",
            "KPLINK_LOG": "warn",
            "NO_COLOR": "1",
        }

    def argv(self, h: dict[str, Any], *args: str) -> list[str]:
        return [str(self.binary), "--config", str(self.host_dir(h) / "agent.toml"), *args]

    def run_once(self, h: dict[str, Any]) -> tuple[int, float, dict[str, Any] | None, str]:
        """(exit code, wall seconds, JSON report or None, stderr)."""
        start = time.monotonic()
        p = subprocess.run(self.argv(h, "run", "--once", "--json"), env=self.env(h), capture_output=True, text=True)
        wall = time.monotonic() - start
        return p.returncode, wall, parse_report(p.stdout), p.stderr

    def calls_by_key(self) -> dict[str, dict[str, int]]:
        snap = http_json("GET", f"{self.moto.url}/_kplink/calls?by=access_key")
        return {k: v for k, v in snap.items() if not k.startswith("_")}

    def reset_calls(self) -> None:
        http_json("POST", f"{self.moto.url}/_kplink/calls/reset")

    def wiring(self) -> dict[str, Any]:
        return worldmod.describe_wiring(self.world)

    def close(self) -> None:
        self.moto.close()
        self.imds.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> "World":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def parse_report(stdout: str) -> dict[str, Any] | None:
    try:
        return json.loads(stdout)
    except ValueError:
        return None


def is_write(op: str) -> bool:
    return not op.split(":", 1)[-1].startswith("Describe")


def fmt_ops(ops: dict[str, int]) -> str:
    return ", ".join(f"{k.split(':', 1)[-1]}={v}" for k, v in sorted(ops.items())) or "-"


def pct(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    s = sorted(values)
    if not s:
        return float("nan")
    k = max(1, -(-len(s) * p // 100))  # ceil(n*p/100), at least 1
    return s[int(k) - 1]


def last_error(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.startswith("error: ")]
    return lines[-1] if lines else (stderr.strip().splitlines() or ["<no output>"])[-1]


# --------------------------------------------------------------------------------------------
# results table
# --------------------------------------------------------------------------------------------


class Table:
    def __init__(self) -> None:
        self.rows: list[tuple[str, str, str, str, str]] = []
        self.details: list[str] = []
        self.hard_failures: list[str] = []

    def row(self, scenario: str, metric: str, target: str, measured: str, ok: bool | None) -> None:
        verdict = "" if ok is None else ("PASS" if ok else "MISS")
        self.rows.append((scenario, metric, target, measured, verdict))

    def print(self) -> None:
        header = ("scenario", "metric", "target", "measured", "")
        widths = [max(len(header[i]), *(len(r[i]) for r in self.rows)) for i in range(5)]
        line = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()  # noqa: E731
        print(line(header))
        print("  ".join("-" * w for w in widths))
        prev = None
        for r in self.rows:
            shown = r if r[0] != prev else ("",) + r[1:]
            prev = r[0]
            print(line(shown))
        if self.details:
            print("\ndetails:")
            for d in self.details:
                print(f"  {d}")


# --------------------------------------------------------------------------------------------
# scenarios
# --------------------------------------------------------------------------------------------


def bench_single(binary: Path, t: Table) -> None:
    """First broker on an empty NLB, then a second broker on the serving NLB, then steady state."""
    with World(binary, 2, "10001-10049") as w:
        first, second = w.hosts
        # Each listener an agent creates costs one ModifyListenerAttributes (its idle timeout,
        # see src/idle.rs): the first broker creates two (bootstrap and claim), a new one one.
        for label, h, limit in (("first broker, empty NLB", first, 10), ("new broker, serving NLB", second, 7)):
            w.reset_calls()
            rc, wall, report, err = w.run_once(h)
            ops = w.calls_by_key().get(h["access_key_id"], {})
            total = sum(ops.values())
            if rc != 0:
                t.hard_failures.append(f"{label}: exit {rc}: {last_error(err)}")
            t.row(label, "AWS calls (server side)", f"<= {limit}", str(total), rc == 0 and total <= limit)
            t.row(label, "wall time", "-", f"{wall:.2f} s" + ("" if rc == 0 else f" (exit {rc})"), None)
            t.details.append(f"{label}: {fmt_ops(ops)}")

        w.reset_calls()
        rc, wall, report, err = w.run_once(first)
        ops = w.calls_by_key().get(first["access_key_id"], {})
        reads = sum(v for k, v in ops.items() if not is_write(k))
        writes = sum(v for k, v in ops.items() if is_write(k))
        if rc != 0:
            t.hard_failures.append(f"steady state: exit {rc}: {last_error(err)}")
        changed = len(report["changes"]) if report else "?"
        t.row("steady state (converged)", "AWS reads / writes", "<= 3 / 0", f"{reads} / {writes}", rc == 0 and reads <= 3 and writes == 0)
        t.row("steady state (converged)", "wall time", "-", f"{wall:.2f} s (changes: {changed})", None)
        t.details.append(f"steady state: {fmt_ops(ops)}")


def run_burst(w: World, hosts: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Start one `run --once --json` per host at the same moment; collect per-process results."""
    hosts = w.hosts if hosts is None else hosts
    results: list[dict[str, Any]] = [{} for _ in hosts]
    barrier = threading.Barrier(len(hosts))

    def one(i: int, h: dict[str, Any]) -> None:
        barrier.wait()
        start = time.monotonic()
        p = subprocess.run(w.argv(h, "run", "--once", "--json"), env=w.env(h), capture_output=True, text=True)
        results[i] = {
            "rc": p.returncode,
            "wall": time.monotonic() - start,
            "report": parse_report(p.stdout),
            "stderr": p.stderr,
        }

    threads = [threading.Thread(target=one, args=(i, h)) for i, h in enumerate(hosts)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return results


def bench_burst(binary: Path, n: int, t: Table) -> None:
    label = f"{n} hosts booting at once"
    hi = 10001 + max(n * 2, 49) - 1
    with World(binary, n, f"10001-{hi}") as w:
        w.reset_calls()
        started = time.monotonic()
        results = run_burst(w)
        batch_wall = time.monotonic() - started
        # A host whose pass failed is rerun, as systemd would restart it (at most 3 runs in all).
        reruns = 0
        for i, r in enumerate(results):
            runs = 1
            while r["rc"] != 0 and runs < 3:
                t.details.append(f"{label}: {w.hosts[i]['name']} exit {r['rc']}: {last_error(r['stderr'])}")
                rc, wall, report, err = w.run_once(w.hosts[i])
                r.update(rc=rc, wall=r["wall"] + wall, report=report, stderr=err)
                runs += 1
                reruns += 1
        calls = w.calls_by_key()
        failed = [w.hosts[i]["name"] for i, r in enumerate(results) if r["rc"] != 0]
        per_host = [sum(calls.get(h["access_key_id"], {}).values()) for h in w.hosts]
        totals: dict[str, int] = {}
        for h in w.hosts:
            for op, c in calls.get(h["access_key_id"], {}).items():
                totals[op] = totals.get(op, 0) + c
        ports = {r["report"]["port"] for r in results if r["report"]}
        collisions = sum(r["report"]["claim_collisions"] for r in results if r["report"])
        walls = [r["wall"] for r in results]
        wiring = w.wiring()
        listener_ports = sorted(lst["port"] for lst in wiring["listeners"])
        claim_listeners = [p for p in listener_ports if p != 10000]
        create_listener = totals.get("elasticloadbalancing:CreateListener", 0)
        # Each successful claim is one CreateListener, the bootstrap listener one per host that
        # tried it (an identical second CreateListener succeeds idempotently); the rest were
        # answered DuplicateListener (or were retries).
        boot_attempts = sum(
            1 for r in results if r["report"] and any(c.get("action") == "create_bootstrap" for c in r["report"]["changes"])
        )
        rejected = create_listener - len(claim_listeners) - boot_attempts
        mean = sum(per_host) / len(per_host)

        if failed:
            t.hard_failures.append(f"{label}: hosts still failing after 3 runs: {failed}")
        if len(ports) != n or len(claim_listeners) != n:
            t.hard_failures.append(f"{label}: {len(ports)} ports in reports, {len(claim_listeners)} claim listeners, want {n}")
        t.row(label, "unique ports", f"{n}", f"{len(ports)} (NLB: {len(claim_listeners)} claims + {len(listener_ports) - len(claim_listeners)} bootstrap)", len(ports) == n and len(claim_listeners) == n)
        t.row(label, "AWS calls per host, mean", "<= 9", f"{mean:.2f}", mean <= 9)
        t.row(label, "AWS calls per host, max", "-", str(max(per_host)), None)
        t.row(label, "AWS calls, total", "-", str(sum(per_host)), None)
        t.row(label, "claim collisions (agent report)", "-", str(collisions), None)
        t.row(label, "CreateListener rejected (server)", "-", f"{rejected} of {create_listener} CreateListener", None)
        t.row(label, "time to converged p50 / p99", "-", f"{pct(walls, 50):.2f} s / {pct(walls, 99):.2f} s", None)
        t.row(label, "wall time, all converged", "-", f"{batch_wall:.2f} s" + (f" (+{reruns} rerun(s))" if reruns else ""), None)
        t.row(label, "failed runs rerun", "0", str(reruns), reruns == 0)
        t.details.append(f"{label}: {fmt_ops(totals)}")


def median(values: list[float]) -> float:
    s = sorted(values)
    if not s:
        return float("nan")
    mid = len(s) // 2
    return s[mid] if len(s) % 2 else (s[mid - 1] + s[mid]) / 2


def histogram(values: list[int]) -> str:
    counts: dict[int, int] = {}
    for v in values:
        counts[v] = counts.get(v, 0) + 1
    return ", ".join(f"{k} calls: {c}" for k, c in sorted(counts.items())) or "-"


def range_size(port_range: str) -> int:
    lo, hi = (int(x) for x in port_range.split("-"))
    return hi - lo + 1


def nlb_state(w: World) -> dict[str, Any]:
    """Per NLB: port -> forwarded target group ARN; target groups forwarded by no listener of any
    NLB; the bootstrap group's members per NLB. Read with the bench's own key (not a host's)."""
    ec2, elbv2 = worldmod.clients(w.moto.url, w.world["region"])

    def pages(op: str, key: str, **kw: Any) -> list[Any]:
        return [x for page in elbv2.get_paginator(op).paginate(**kw) for x in page.get(key, [])]

    listeners: list[dict[int, str | None]] = []
    forwarded: set[str] = set()
    for arn in w.lb_arns:
        ports: dict[int, str | None] = {}
        for lst in pages("describe_listeners", "Listeners", LoadBalancerArn=arn):
            tgs = [a["TargetGroupArn"] for a in lst.get("DefaultActions", []) if a.get("TargetGroupArn")]
            for a in lst.get("DefaultActions", []):
                tgs += [f["TargetGroupArn"] for f in (a.get("ForwardConfig") or {}).get("TargetGroups", [])]
            ports[int(lst["Port"])] = tgs[0] if tgs else None
            forwarded.update(tgs)
        listeners.append(ports)
    groups = pages("describe_target_groups", "TargetGroups")
    orphans = sorted(g["TargetGroupName"] for g in groups if g["TargetGroupArn"] not in forwarded)
    boot_members: list[set[str]] = []
    for ports in listeners:
        tg = ports.get(BOOTSTRAP_PORT)
        health = elbv2.describe_target_health(TargetGroupArn=tg)["TargetHealthDescriptions"] if tg else []
        boot_members.append({d["Target"]["Id"] for d in health})
    return {"listeners": listeners, "orphans": orphans, "boot_members": boot_members, "groups": len(groups)}


def bench_shards(binary: Path, n: int, t: Table, nlbs: int = 3, port_range: str = "10001-10049") -> None:
    """n hosts at once over `nlbs` NLBs; then a host joining the full-ish cluster; then steady state."""
    per_nlb = min(range_size(port_range), MAX_LISTENERS - 1)  # one listener per NLB is the bootstrap
    capacity = nlbs * per_nlb
    fit = min(n, capacity)
    label = f"{n} hosts at once, {nlbs} NLBs (fit {capacity})"
    # One host more than the burst: the one that joins afterwards.
    with World(binary, n + 1, port_range, nlbs=nlbs) as w:
        burst_hosts, joiner = w.hosts[:n], w.hosts[n]
        t.details.append(
            f"{label}: port_range {port_range} on each NLB = {per_nlb} brokers + bootstrap per NLB, "
            f"{capacity} in all; {n} hosts, so {fit} must converge and {n - fit} must fail with "
            f"'all {nlbs} NLBs in nlb.load_balancer_arns are full'"
        )
        w.reset_calls()
        started = time.monotonic()
        results = run_burst(w, burst_hosts)
        batch_wall = time.monotonic() - started

        def is_full(r: dict[str, Any]) -> bool:
            return r["rc"] != 0 and f"all {nlbs} NLBs in nlb.load_balancer_arns are full" in last_error(r["stderr"])

        # A host whose pass failed for another reason is rerun, as systemd would (at most 3 runs).
        reruns = 0
        for i, r in enumerate(results):
            runs = 1
            while r["rc"] != 0 and not is_full(r) and runs < 3:
                t.details.append(f"{label}: {burst_hosts[i]['name']} exit {r['rc']}: {last_error(r['stderr'])}")
                rc, wall, report, err = w.run_once(burst_hosts[i])
                r.update(rc=rc, wall=r["wall"] + wall, report=report, stderr=err)
                runs += 1
                reruns += 1
        calls = w.calls_by_key()
        ok = [i for i, r in enumerate(results) if r["rc"] == 0 and r["report"]]
        full = [i for i, r in enumerate(results) if is_full(r)]
        other = [i for i in range(n) if i not in ok and i not in full]
        for i in other:
            t.details.append(f"{label}: {burst_hosts[i]['name']} still failing after 3 runs: {last_error(results[i]['stderr'])}")
        calls_of = lambda h: sum(calls.get(h["access_key_id"], {}).values())  # noqa: E731
        ok_calls = [calls_of(burst_hosts[i]) for i in ok]
        full_calls = [calls_of(burst_hosts[i]) for i in full]
        totals: dict[str, int] = {}
        for h in burst_hosts:
            for op, c in calls.get(h["access_key_id"], {}).items():
                totals[op] = totals.get(op, 0) + c

        reports = [results[i]["report"] for i in ok]
        pairs = {(r["shard"], r["port"]) for r in reports}
        wrong_arn = [r["broker_id"] for r in reports if r["load_balancer_arn"] != w.lb_arns[r["shard"]]]
        advertised_ok = 0
        for i in ok:
            r, h = results[i]["report"], burst_hosts[i]
            want = f"PRIVATELINK://kafka-{h['az_id']}-s{r['shard']}.orders.example.internal:{r['port']}"
            props = (w.host_dir(h) / "server.properties").read_text()
            advertised_ok += want in props
        untouched = sum((w.host_dir(burst_hosts[i]) / "server.properties").read_text() == SERVER_PROPERTIES for i in full)
        collisions = sum(r["claim_collisions"] for r in reports)
        state = nlb_state(w)
        counts = [len(ports) for ports in state["listeners"]]
        claims = sum(len([p for p in ports if p != BOOTSTRAP_PORT]) for ports in state["listeners"])
        boot_ok = 0
        for s, members in enumerate(state["boot_members"]):
            mine = {burst_hosts[i]["instance_id"] for i in ok if results[i]["report"]["shard"] == s}
            boot_ok += members == mine
        per_shard = [sum(1 for r in reports if r["shard"] == s) for s in range(nlbs)]
        create_listener = totals.get("elasticloadbalancing:CreateListener", 0)
        boot_attempts = sum(1 for r in reports if any(c.get("action") == "create_bootstrap" for c in r["changes"]))
        rejected = create_listener - claims - boot_attempts
        walls_ok = [results[i]["wall"] for i in ok]
        walls_full = [results[i]["wall"] for i in full]

        if len(ok) != fit or len(full) != n - fit or other:
            t.hard_failures.append(f"{label}: {len(ok)} converged, {len(full)} 'all full', {len(other)} other failures; want {fit} / {n - fit} / 0")
        if len(pairs) != len(ok) or claims != len(ok) or wrong_arn:
            t.hard_failures.append(f"{label}: {len(pairs)} (NLB, port) pairs in reports, {claims} claim listeners, {len(ok)} converged, wrong NLB in reports of brokers {wrong_arn}")
        if max(counts) > MAX_LISTENERS:
            t.hard_failures.append(f"{label}: listeners per NLB {counts}")
        if state["orphans"] or untouched != len(full):
            t.hard_failures.append(f"{label}: orphan groups {state['orphans']}; {len(full) - untouched} failed host(s) with a changed server.properties")

        t.row(label, "hosts converged / failed 'all NLBs full'", f"{fit} / {n - fit}", f"{len(ok)} / {len(full)}" + (f" (+{len(other)} other)" if other else ""), len(ok) == fit and len(full) == n - fit and not other)
        t.row(label, "unique (NLB, port)", f"{fit}", f"{len(pairs)} (brokers per NLB: {' / '.join(map(str, per_shard))})", len(pairs) == fit and claims == fit and not wrong_arn)
        t.row(label, "listeners per NLB (quota)", f"<= {MAX_LISTENERS} each", " / ".join(map(str, counts)), max(counts) <= MAX_LISTENERS)
        t.row(label, "file advertises own shard and port", f"{fit}", str(advertised_ok), advertised_ok == fit)
        t.row(label, "bootstrap group = its NLB's brokers", f"{nlbs} of {nlbs}", f"{boot_ok} of {nlbs}", boot_ok == nlbs)
        t.row(label, "left behind by 'full' hosts", "0 groups, 0 files", f"{len(state['orphans'])} groups, {len(full) - untouched} files", not state["orphans"] and untouched == len(full))
        t.row(label, "AWS calls per converged host, median", "<= 9", f"{median(ok_calls):g}", median(ok_calls) <= 9)
        t.row(label, "AWS calls per converged host, mean", "<= 9", f"{sum(ok_calls) / max(1, len(ok_calls)):.2f}", sum(ok_calls) / max(1, len(ok_calls)) <= 9)
        t.row(label, "AWS calls per converged host, max", "<= 10", str(max(ok_calls, default=0)), max(ok_calls, default=0) <= 10)
        t.row(label, "AWS calls per 'full' host", "-", ", ".join(map(str, sorted(full_calls))) or "-", None)
        t.row(label, "AWS calls, total", "-", str(sum(ok_calls) + sum(full_calls)), None)
        t.row(label, "claim collisions (agent report)", "-", str(collisions), None)
        t.row(label, "CreateListener rejected (server)", "-", f"{rejected} of {create_listener} CreateListener", None)
        t.row(label, "time to converged p50 / p99", "-", f"{pct(walls_ok, 50):.2f} s / {pct(walls_ok, 99):.2f} s", None)
        if walls_full:
            t.row(label, "time to 'all full' error, max", "-", f"{max(walls_full):.2f} s", None)
        t.row(label, "wall time, all done", "-", f"{batch_wall:.2f} s" + (f" (+{reruns} rerun(s))" if reruns else ""), None)
        t.row(label, "failed runs rerun", "0", str(reruns), reruns == 0)
        t.details.append(f"{label}: calls per converged host: {histogram(ok_calls)}")
        for s in range(nlbs):
            mine = [calls_of(burst_hosts[i]) for i in ok if results[i]["report"]["shard"] == s]
            ops_s: dict[str, int] = {}
            for i in ok:
                if results[i]["report"]["shard"] == s:
                    for op, c in calls.get(burst_hosts[i]["access_key_id"], {}).items():
                        ops_s[op] = ops_s.get(op, 0) + c
            per_op = ", ".join(f"{k.split(':', 1)[-1]}={v / max(1, len(mine)):.1f}" for k, v in sorted(ops_s.items()))
            t.details.append(
                f"{label}: brokers that claimed on NLB {s}: calls median {median(mine):g}, max {max(mine, default=0)}; per host: {per_op}"
            )
        t.details.append(f"{label}: {fmt_ops(totals)}")

        # (b) One host joins: every NLB but the last full, the last with room. If the last is full,
        # one of its brokers leaves (decommission frees its port).
        last = nlbs - 1
        on_last = [i for i in ok if results[i]["report"]["shard"] == last]
        if counts[last] >= per_nlb + 1 and on_last:  # claims + bootstrap: no free port left
            leaver = burst_hosts[on_last[-1]]
            p = subprocess.run(w.argv(leaver, "decommission", "--yes"), env=w.env(leaver), capture_output=True, text=True)
            if p.returncode != 0:
                t.hard_failures.append(f"decommission of {leaver['name']}: exit {p.returncode}: {last_error(p.stderr)}")
            on_last = on_last[:-1]
            t.details.append(f"join: {leaver['name']} (broker {leaver['broker_id']}, NLB {last}) decommissioned first to free a port")
        counts = [len(ports) for ports in nlb_state(w)["listeners"]]
        jlabel = f"1 host joins, NLB listeners {'/'.join(map(str, counts))}"
        w.reset_calls()
        rc, wall, report, err = w.run_once(joiner)
        ops = w.calls_by_key().get(joiner["access_key_id"], {})
        total = sum(ops.values())
        if rc != 0:
            t.hard_failures.append(f"{jlabel}: exit {rc}: {last_error(err)}")
        where = f"NLB {report['shard']}, port {report['port']}" if report else f"exit {rc}"
        expect = next((s for s, c in enumerate(counts) if c < per_nlb + 1), None)
        t.row(jlabel, "AWS calls (server side)", "<= 9", str(total), rc == 0 and total <= 9)
        t.row(jlabel, "claimed on", f"NLB {expect}", where, bool(report) and report["shard"] == expect)
        t.row(jlabel, "wall time", "-", f"{wall:.2f} s" + ("" if rc == 0 else f" (exit {rc})"), None)
        t.details.append(f"join: {fmt_ops(ops)}")

        # (c) Steady state on the last NLB: a converged broker reads its own NLB only.
        slabel = f"steady state, broker on NLB {last} of {nlbs}"
        if not on_last:
            t.row(slabel, "AWS reads / writes", "<= 3 / 0", "n/a (no converged broker on it)", None)
            return
        h = burst_hosts[on_last[0]]
        w.reset_calls()
        rc, wall, report, err = w.run_once(h)
        ops = w.calls_by_key().get(h["access_key_id"], {})
        reads = sum(v for k, v in ops.items() if not is_write(k))
        writes = sum(v for k, v in ops.items() if is_write(k))
        if rc != 0:
            t.hard_failures.append(f"{slabel}: exit {rc}: {last_error(err)}")
        changed = len(report["changes"]) if report else "?"
        t.row(slabel, "AWS reads / writes", "<= 3 / 0", f"{reads} / {writes}", rc == 0 and reads <= 3 and writes == 0)
        t.row(slabel, "wall time", "-", f"{wall:.2f} s (changes: {changed})", None)
        t.details.append(f"{slabel}: {fmt_ops(ops)}")


def read_proc(pid: int) -> tuple[int, int]:
    """(VmRSS in KiB, utime+stime in clock ticks) of a live process."""
    rss = 0
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
    with open(f"/proc/{pid}/stat") as fh:
        stat = fh.read()
    fields = stat[stat.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state); utime is field 14, stime field 15
    return rss, int(fields[11]) + int(fields[12])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bench_daemon(binary: Path, t: Table) -> str | None:
    """Idle RSS after 10 passes and CPU per pass. Returns why it is unavailable, or None."""
    label = "daemon, interval 1s"
    with World(binary, 1, "10001-10049") as w:
        h = w.hosts[0]
        port = free_port()
        w.write_host(h, f'\n[daemon]\ninterval = "1s"\nmetrics_listen = "127.0.0.1:{port}"\n')
        metrics = f"http://127.0.0.1:{port}/metrics"
        log = open(w.tmp / "daemon.stderr", "w+")
        proc = subprocess.Popen(w.argv(h, "run"), env=w.env(h), stdout=subprocess.DEVNULL, stderr=log)
        why = None
        try:
            deadline = time.monotonic() + 60
            first: tuple[float, int, float] | None = None  # (passes, ticks, t)
            last: tuple[float, int, float, int] | None = None
            while time.monotonic() < deadline:
                if proc.poll() is not None:
                    log.seek(0)
                    why = f"exit {proc.returncode}: {last_error(log.read())}"
                    break
                n = metric_value(metrics, "kplink_passes_total")
                if n is not None:
                    rss, ticks = read_proc(proc.pid)
                    if first is None and n >= 2:
                        first = (n, ticks, time.monotonic())
                    if n >= 12 or (first is None and n >= 10):
                        last = (n, ticks, time.monotonic(), rss)
                        if first is not None:
                            break
                time.sleep(0.2)
            else:
                why = "no kplink_passes_total >= 12 on /metrics within 60 s"
            if why is None and last is not None and first is not None:
                hz = os.sysconf("SC_CLK_TCK")
                rss_mib = last[3] / 1024
                per_pass_ms = (last[1] - first[1]) * 1000 / hz / max(1.0, last[0] - first[0])
                t.row(label, "idle RSS after 10+ passes", "<= 25 MiB", f"{rss_mib:.1f} MiB", rss_mib <= 25)
                t.row(label, "CPU per pass (user+sys)", "-", f"{per_pass_ms:.1f} ms (over {last[0] - first[0]:.0f} passes)", None)
                ops = w.calls_by_key().get(h["access_key_id"], {})
                t.details.append(f"{label}: {last[0]:.0f} passes, calls {fmt_ops(ops)}")
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            log.close()
        if why is not None:
            t.row(label, "idle RSS after 10+ passes", "<= 25 MiB", "n/a (daemon not available)", None)
            t.row(label, "CPU per pass (user+sys)", "-", "n/a (daemon not available)", None)
            t.details.append(f"{label}: not available: {why}")
        return why


# --------------------------------------------------------------------------------------------
# throttled account (the moto launcher's token buckets, AWS's defaults)
# --------------------------------------------------------------------------------------------


def register_floor(n: int) -> float:
    """The API-budget floor of n brokers booting at once: two registrations per broker
    (dedicated + bootstrap group) through RegisterTargets' bucket (20 tokens, 4 per second)."""
    return max(0.0, (2 * n - 20) / 4)


def mem_available_mib() -> float:
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def rss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def run_fleet(w: World, hosts: list[dict[str, Any]]) -> dict[str, Any]:
    """`run --once --json` on every host, all started together (one thread per host, released by
    one barrier). Returns the per-host results, the first spawn and last exit (monotonic), and
    the peak number of live agent processes and their summed RSS (sampled every 0.5 s)."""
    results: list[dict[str, Any]] = [{} for _ in hosts]
    pids: dict[int, int] = {}
    barrier = threading.Barrier(len(hosts) + 1)

    def one(i: int, h: dict[str, Any]) -> None:
        barrier.wait()
        start = time.monotonic()
        p = subprocess.Popen(w.argv(h, "run", "--once", "--json"), env=w.env(h), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        pids[i] = p.pid
        out, err = p.communicate()
        end = time.monotonic()
        pids.pop(i, None)
        results[i] = {"rc": p.returncode, "start": start, "end": end, "wall": end - start, "report": parse_report(out), "stderr": err}

    threads = [threading.Thread(target=one, args=(i, h), daemon=True) for i, h in enumerate(hosts)]
    for th in threads:
        th.start()
    barrier.wait()
    peak_live, peak_rss = 0, 0
    while any(th.is_alive() for th in threads):
        live = list(pids.values())
        rss = sum(rss_kib(pid) for pid in live)
        peak_live, peak_rss = max(peak_live, len(live)), max(peak_rss, rss)
        time.sleep(0.5)
    for th in threads:
        th.join()
    return {
        "results": results,
        "first_spawn": min(r["start"] for r in results),
        "last_exit": max(r["end"] for r in results),
        "peak_live": peak_live,
        "peak_rss_mib": peak_rss / 1024,
    }


def throttle_on(w: World, scale: float = 1.0) -> dict[str, Any]:
    """AWS's default buckets (times `scale`), every bucket full, throttled counts cleared."""
    return http_json("POST", f"{w.moto.url}/_kplink/throttle", {"scale": scale})


def throttle_state(w: World) -> dict[str, Any]:
    return http_json("GET", f"{w.moto.url}/_kplink/throttle")


def throttle_off(w: World) -> None:
    http_json("DELETE", f"{w.moto.url}/_kplink/throttle")


def short_bucket(key: str) -> str:
    return key.split("/", 1)[-1]


def bench_throttled_burst(binary: Path, n: int, nlbs: int, t: Table, port_range: str = "10001-10049", keep: bool = False) -> World | None:
    """n brokers over `nlbs` NLBs booting at once against the account's token buckets (AWS's
    defaults, scale 1). With `keep`, the converged world is returned open (the caller closes it)."""
    per_nlb = min(range_size(port_range), MAX_LISTENERS - 1)
    label = f"throttled: {n} hosts at once, {nlbs} NLBs"
    lo = int(port_range.split("-")[0])
    w = World(binary, n, port_range, nlbs=nlbs)
    kept = False
    try:
        hosts = w.hosts
        ids = [h["broker_id"] for h in hosts]
        assert ids == list(range(ids[0], ids[0] + n)), f"broker ids not consecutive: {ids[:5]}..."
        t.details.append(
            f"{label}: broker ids {ids[0]}..{ids[-1]}, port_range {port_range} on each NLB ({nlbs} x {per_nlb} = {nlbs * per_nlb} fit); "
            f"throttling on at scale 1 after seeding (buckets full at the first spawn); MemAvailable before: {mem_available_mib() / 1024:.1f} GiB"
        )
        w.reset_calls()
        cfg = throttle_on(w, 1.0)["config"]
        print(f"  {label}: world seeded, starting {n} agents", file=sys.stderr, flush=True)
        fleet = run_fleet(w, hosts)
        print(f"  {label}: all exited after {fleet['last_exit'] - fleet['first_spawn']:.1f} s", file=sys.stderr, flush=True)
        results = fleet["results"]
        wall = fleet["last_exit"] - fleet["first_spawn"]
        thr = throttle_state(w)
        calls = w.calls_by_key()
        # The bench's own reads below must not spend (or be refused by) the account's buckets.
        throttle_off(w)

        failed = [i for i, r in enumerate(results) if r["rc"] != 0 or not r["report"]]
        for i in failed:
            r = results[i]
            tail = " | ".join(r["stderr"].strip().splitlines()[-3:]) or "<no stderr>"
            t.details.append(f"{label}: {hosts[i]['name']} (broker {hosts[i]['broker_id']}) exit {r['rc']} after {r['wall']:.1f} s: {tail}")
        ok = [i for i in range(n) if i not in failed]
        reports = [results[i]["report"] for i in ok]
        pairs = [(r["shard"], r["port"]) for r in reports]
        dup_pairs = len(pairs) - len(set(pairs))

        # Server side: listeners, groups, members. Every dedicated group must hold exactly its
        # broker, every broker exactly one dedicated group; no group forwarded by no listener.
        state = nlb_state(w)
        ec2, elbv2 = worldmod.clients(w.moto.url, w.world["region"])
        groups = [g for page in elbv2.get_paginator("describe_target_groups").paginate() for g in page["TargetGroups"]]
        boot_arns = {ports.get(BOOTSTRAP_PORT) for ports in state["listeners"]} - {None}
        instance_broker = {h["instance_id"]: h["broker_id"] for h in hosts}
        claims_of: dict[int, list[tuple[int, int]]] = {}
        bad_groups = 0
        for s, ports in enumerate(state["listeners"]):
            for port, tg in ports.items():
                if port == BOOTSTRAP_PORT or tg is None:
                    continue
                members = elbv2.describe_target_health(TargetGroupArn=tg)["TargetHealthDescriptions"]
                ids_in = {instance_broker.get(d["Target"]["Id"], -1) for d in members}
                if len(members) != 1:
                    bad_groups += 1
                for b in ids_in:
                    claims_of.setdefault(b, []).append((s, port))
        multi = {b: c for b, c in claims_of.items() if len(c) > 1}
        server_claims = sum(len([p for p in ports if p != BOOTSTRAP_PORT]) for ports in state["listeners"])
        listeners_total = sum(len(ports) for ports in state["listeners"])
        boot_ok = 0
        for s, members in enumerate(state["boot_members"]):
            mine = {hosts[i]["instance_id"] for i in ok if results[i]["report"]["shard"] == s}
            boot_ok += members == mine
        spread_ok = sum(
            1
            for i in ok
            if results[i]["report"]["shard"] == hosts[i]["broker_id"] % nlbs
            and results[i]["report"]["port"] == lo + (hosts[i]["broker_id"] // nlbs) % per_nlb
        )
        per_shard = [sum(1 for r in reports if r["shard"] == s) for s in range(nlbs)]

        per_host = [sum(calls.get(h["access_key_id"], {}).values()) for h in hosts]
        total_calls = sum(per_host)
        throttled_total = thr["throttled"]["total"]
        mean = total_calls / n
        accepted_mean = (total_calls - throttled_total) / n
        agent_throttled = [sum((results[i]["report"] or {}).get("aws_throttled", {}).values()) for i in ok]
        agent_calls = [sum((results[i]["report"] or {}).get("aws_calls", {}).values()) for i in ok]
        totals: dict[str, int] = {}
        for h in hosts:
            for op, c in calls.get(h["access_key_id"], {}).items():
                totals[op] = totals.get(op, 0) + c
        floor = register_floor(n)
        limit = 1.5 * floor
        walls = [r["wall"] for r in results]
        want_groups = n + nlbs

        if failed:
            t.hard_failures.append(f"{label}: {len(failed)} host(s) failed their first run (see details)")
        if dup_pairs or multi or bad_groups or server_claims != len(ok):
            t.hard_failures.append(f"{label}: {dup_pairs} duplicate (NLB, port) in reports, brokers with several claims {sorted(multi)[:10]}, {bad_groups} dedicated groups without exactly one target, {server_claims} claim listeners for {len(ok)} converged")
        if len(groups) != want_groups or state["orphans"]:
            t.hard_failures.append(f"{label}: {len(groups)} target groups (want {want_groups}); orphans {state['orphans'][:10]}")

        t.row(label, "wall time, first spawn to last exit", f"<= {limit:.0f} s (1.5 x floor {floor:.1f} s)", f"{wall:.1f} s ({wall / floor:.2f} x floor)" if floor else f"{wall:.1f} s", wall <= limit)
        t.row(label, "first-run failures", "0", str(len(failed)), not failed)
        t.row(label, "duplicate (NLB, port) claims", "0", f"{dup_pairs} in reports, {len(multi)} brokers with >1 claim at the server ({server_claims} claim listeners, brokers per NLB {' / '.join(map(str, per_shard))})", not dup_pairs and not multi and server_claims == len(ok) and not bad_groups)
        t.row(label, "claimed where the spread says", f"{n}", f"{spread_ok} (NLB = id mod {nlbs}, port = {lo} + (id / {nlbs}) mod {per_nlb})", spread_ok == n)
        t.row(label, "throttled answers, total (server)", "-", f"{throttled_total} of {total_calls} requests ({', '.join(f'{short_bucket(k)}={v}' for k, v in sorted(thr['throttled']['buckets'].items())) or '-'})", None)
        t.row(label, "AWS calls per host, mean (server, all requests)", "<= 6", f"{mean:.2f}", mean <= 6)
        t.row(label, "AWS calls per host, max (server, all requests)", "-", str(max(per_host)), None)
        t.row(label, "  accepted (not throttled) per host, mean", "-", f"{accepted_mean:.2f}", None)
        t.row(label, "nothing left behind: target groups", f"{want_groups} ({n} dedicated + {nlbs} bootstrap), 0 orphans", f"{len(groups)}, {len(state['orphans'])} orphans; listeners {listeners_total}", len(groups) == want_groups and not state["orphans"] and listeners_total == want_groups)
        t.row(label, "bootstrap group = its NLB's brokers", f"{nlbs} of {nlbs}", f"{boot_ok} of {nlbs}", boot_ok == nlbs)
        t.row(label, "time to converged p50 / p99 / max", "-", f"{pct(walls, 50):.1f} s / {pct(walls, 99):.1f} s / {max(walls):.1f} s", None)
        t.row(label, "peak live agents / their summed RSS", "-", f"{fleet['peak_live']} / {fleet['peak_rss_mib']:.0f} MiB", None)

        buckets = ", ".join(f"{k} {v['capacity']:g}/{v['refill_per_s']:g} per s" for k, v in sorted(cfg["buckets"].items()))
        t.details.append(f"{label}: buckets (capacity/refill) {buckets}")
        t.details.append(f"{label}: throttled by action (server): {fmt_ops(thr['throttled']['actions'])}")
        t.details.append(f"{label}: requests by action (server, throttled included): {fmt_ops(totals)}")
        accepted = {op: c - thr["throttled"]["actions"].get(op, 0) for op, c in totals.items()}
        t.details.append(
            f"{label}: accepted (not throttled) per host by action (server): "
            + ", ".join(f"{k.split(':', 1)[-1]}={v / n:.2f}" for k, v in sorted(accepted.items()))
        )
        t.details.append(f"{label}: requests per host (server): {histogram(per_host)}")
        if agent_calls:
            t.details.append(
                f"{label}: agent reports (for comparison only): calls per host mean {sum(agent_calls) / len(agent_calls):.2f}, "
                f"throttled per host mean {sum(agent_throttled) / len(agent_throttled):.2f}, max {max(agent_throttled)}"
            )
        kept = keep
        return w if keep else None
    finally:
        if not kept:
            w.close()


def metric_value(url: str, name: str) -> float | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            text = resp.read().decode("utf-8", "replace")
    except OSError:
        return None
    total, seen = 0.0, False
    for line in text.splitlines():
        m = re.match(rf"^{name}(\{{[^}}]*\}})?\s+([0-9.eE+-]+)", line)
        if m:
            total += float(m.group(2))
            seen = True
    return total if seen else None


def bench_throttled_steady(w: World, t: Table, fast: int, slow: int, window: float, fast_rate: float = 10.0) -> None:
    """Steady reads of converged daemons on the 300-broker world (throttling on again).

    Two groups of daemons on converged brokers of NLBs 1.. (never NLB 0, whose lowest live
    instance is the stale-claims accountant, a separate 0.1 reads/s budget):
    * `fast`: `[daemon] interval = "1s"`, `[aws] steady_reads_per_second = fast_rate` (10 is the
      config's maximum): each checks every cluster_size / fast_rate s (~30 s) x jitter, so a few
      minutes show many checks; their mean gap validates the formula;
    * `slow`: every default (interval 60 s, 0.5 reads/s): checks every ~602 s x [0.5, 1.5], so in
      the window they must make no read after their first pass.
    Every read is counted at the server per access key, polled every 0.5 s; a daemon's first pass
    ends when its kplink_passes_total reaches 1."""
    fleet = len(w.hosts)
    label = f"throttled: steady, {fleet}-broker world"
    nlbs = len(w.lb_arns)
    state = nlb_state(w)
    claims_on = [len([p for p in ports if p != BOOTSTRAP_PORT]) for ports in state["listeners"]]
    # Which broker is on which NLB: from the files the burst wrote (shard in the advertised name).
    shard_of: dict[str, int] = {}
    for h in w.hosts:
        m = re.search(r"-s(\d+)\.orders\.example\.internal:(\d+)", (w.host_dir(h) / "server.properties").read_text())
        if m:
            shard_of[h["name"]] = int(m.group(1))
    pool = [h for h in w.hosts if shard_of.get(h["name"], 0) != 0]
    # Deal the daemons round the NLBs 1..n-1.
    by_shard = {s: [h for h in pool if shard_of[h["name"]] == s] for s in range(1, nlbs)}
    picked: list[dict[str, Any]] = []
    k = 0
    while len(picked) < fast + slow and any(by_shard.values()):
        s = 1 + k % (nlbs - 1)
        if by_shard[s]:
            picked.append(by_shard[s].pop(0))
        k += 1
    groups = {"fast": picked[:fast], "slow": picked[fast : fast + slow]}
    daemons: list[dict[str, Any]] = []
    for g, hs in groups.items():
        for h in hs:
            port = free_port()
            state_dir = w.host_dir(h) / "state"
            state_dir.mkdir(exist_ok=True)
            extra = f'\n[daemon]\nmetrics_listen = "127.0.0.1:{port}"\nstate_dir = "{state_dir}"\n'
            if g == "fast":
                extra = f'\n[daemon]\ninterval = "1s"\nmetrics_listen = "127.0.0.1:{port}"\nstate_dir = "{state_dir}"\n\n[aws]\nsteady_reads_per_second = {fast_rate}\n'
            w.write_host(h, extra)
            cluster = claims_on[shard_of[h["name"]]] * nlbs
            daemons.append({"group": g, "host": h, "metrics": f"http://127.0.0.1:{port}/metrics", "cluster": cluster})

    throttle_on(w, 1.0)
    w.reset_calls()
    for d in daemons:
        d["log"] = open(w.host_dir(d["host"]) / "daemon.stderr", "w+")
        d["proc"] = subprocess.Popen(w.argv(d["host"], "run"), env=w.env(d["host"]), stdout=subprocess.DEVNULL, stderr=d["log"])
        d["first_pass_at"] = None
        d["base"] = None
        d["reads"] = []  # (monotonic time, ops delta) of each request after the first pass
        d["died"] = None
    started = time.monotonic()

    try:
        # Wait for every first pass (at most 120 s), then measure for `window` seconds after the
        # last one, polling the server's per-key counts.
        end: float | None = None
        while True:
            # First the daemons' pass counters, then the server's counts: a first pass seen
            # finished here has all its calls in the counts read next.
            done_now = set()
            for j, d in enumerate(daemons):
                if d["first_pass_at"] is None and d["died"] is None:
                    n = metric_value(d["metrics"], "kplink_passes_total")
                    if n is not None and n >= 1:
                        done_now.add(j)
            now = time.monotonic()
            calls = w.calls_by_key()
            for j, d in enumerate(daemons):
                key = d["host"]["access_key_id"]
                ops = calls.get(key, {})
                if d["proc"].poll() is not None and d["died"] is None:
                    d["log"].seek(0)
                    d["died"] = f"exit {d['proc'].returncode}: {last_error(d['log'].read())}"
                if d["first_pass_at"] is None:
                    if j in done_now:
                        d["first_pass_at"] = now
                        d["base"] = dict(ops)
                        d["last"] = dict(ops)
                    continue
                delta = {op: c - d["last"].get(op, 0) for op, c in ops.items() if c != d["last"].get(op, 0)}
                if delta and (end is None or now <= end):
                    d["reads"].append((now, delta))
                d["last"] = dict(ops)
            if end is None and (all(d["first_pass_at"] is not None or d["died"] for d in daemons) or now - started > 120):
                end = now + window
            if end is not None and now >= end:
                break
            time.sleep(0.5)
        thr = throttle_state(w)
    finally:
        for d in daemons:
            p = d["proc"]
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
            d["log"].close()

    died = [d for d in daemons if d["died"]]
    no_first = [d for d in daemons if d["first_pass_at"] is None]
    for d in died + no_first:
        t.details.append(f"{label}: daemon on {d['host']['name']} ({d['group']}): {d['died'] or 'no first pass within 120 s'}")
    if died or no_first:
        t.hard_failures.append(f"{label}: {len(died)} daemon(s) exited, {len(no_first)} without a first pass")

    def stats(group: str) -> dict[str, Any]:
        ds = [d for d in daemons if d["group"] == group and d["first_pass_at"] is not None]
        first_ops: dict[str, int] = {}
        after_ops: dict[str, int] = {}
        gaps: list[float] = []
        per_host_rate: list[float] = []
        expected: list[float] = []
        host_seconds = 0.0
        reads = 0
        for d in ds:
            for op, c in d["base"].items():
                first_ops[op] = first_ops.get(op, 0) + c
            times = []
            for at, delta in d["reads"]:
                for op, c in delta.items():
                    after_ops[op] = after_ops.get(op, 0) + c
                times.append(at)
                reads += sum(delta.values())
            gaps += [b - a for a, b in zip(times, times[1:])]
            span = (end - d["first_pass_at"])
            host_seconds += span
            per_host_rate.append(len(times) / span if span > 0 else 0.0)
            expected.append(d["cluster"])
        return {"daemons": ds, "first_ops": first_ops, "after_ops": after_ops, "gaps": gaps, "reads": reads, "host_seconds": host_seconds, "clusters": expected}

    fs, ss = stats("fast"), stats("slow")
    # The model's fleet rate with every default: each broker of NLB s reads once every
    # max(60 s, claims_s x nlbs / 0.5) s on average.
    model_fleet = sum(c / max(60.0, c * nlbs / 0.5) for c in claims_on)
    # The model: each broker checks every max(interval, cluster / rate) x U[0.5, 1.5] s; mean
    # interval cluster / rate; the fleet's rate sum(rate / cluster) = rate x (brokers / cluster)
    # = rate when cluster = brokers (one read per check).
    if fs["daemons"]:
        clusters = sorted(set(fs["clusters"]))
        model_gap = sum(max(1.0, c / fast_rate) for c in fs["clusters"]) / len(fs["clusters"])
        gaps = fs["gaps"]
        mean_gap = sum(gaps) / len(gaps) if gaps else float("nan")
        rate_per_host = fs["reads"] / fs["host_seconds"] if fs["host_seconds"] else float("nan")
        ok_gap = bool(gaps) and abs(mean_gap / model_gap - 1) <= 0.10
        non_dth = {op: c for op, c in fs["after_ops"].items() if op != "elasticloadbalancing:DescribeTargetHealth"}
        flabel = f"{label}: {len(fs['daemons'])} daemons, interval 1s, steady_reads_per_second {fast_rate:g}"
        t.row(flabel, "mean gap between steady reads (measured)", f"{model_gap:.1f} s +-10 % (formula cluster/rate, cluster {'/'.join(map(str, clusters))})", f"{mean_gap:.1f} s over {len(gaps)} gaps", ok_gap)
        t.row(flabel, "reads/s per host (measured, count / time)", f"{fast_rate / (sum(fs['clusters']) / len(fs['clusters'])):.4f} (formula rate/cluster)", f"{rate_per_host:.4f} ({fs['reads']} reads in {fs['host_seconds']:.0f} host-s; a short window counts low)", None)
        t.row(flabel, "reads after the first pass, by operation", "DescribeTargetHealth only", fmt_ops(fs["after_ops"]), not non_dth)
        t.row(flabel, "first pass, requests per daemon (server, throttled incl.)", "-", f"{sum(fs['first_ops'].values()) / len(fs['daemons']):.2f} ({fmt_ops(fs['first_ops'])})", None)
        measured_fleet = model_fleet * model_gap / mean_gap if gaps else float("nan")
        t.row(label, f"fleet steady reads/s at {fleet}, defaults: MODEL", "-", f"{model_fleet:.3f} (sum over NLBs of claims / max(60 s, claims x {nlbs} / 0.5 s))", None)
        t.row(label, f"fleet steady reads/s at {fleet}, defaults: COMPUTED from measured gap", f"<= {model_fleet * 1.1:.3f} (model + 10 %)", f"{measured_fleet:.3f} = model x formula gap {model_gap:.1f} s / measured gap {mean_gap:.1f} s", measured_fleet <= model_fleet * 1.1)
    if ss["daemons"]:
        slabel = f"{label}: {len(ss['daemons'])} daemons, all defaults (60s, 0.5/s)"
        first_check = 0.5 * max(60.0, sum(ss["clusters"]) / len(ss["clusters"]) / 0.5)
        t.row(slabel, f"reads after the first pass in {window:.0f} s (measured)", f"0 (first check >= {first_check:.0f} s after it)", f"{ss['reads']} ({fmt_ops(ss['after_ops'])})", ss["reads"] == 0 if window < first_check else None)
        t.row(slabel, "first pass, requests per daemon (server, throttled incl.)", "-", f"{sum(ss['first_ops'].values()) / len(ss['daemons']):.2f} ({fmt_ops(ss['first_ops'])})", None)
    t.details.append(
        f"{label}: daemons on NLBs 1..{nlbs - 1} only (NLB 0's lowest live instance is the stale-claims accountant: a separate "
        f"<= 0.1 reads/s cluster-wide, one read per claim every max(10 min, cluster / 0.1 s)); claims per NLB {'/'.join(map(str, claims_on))}; "
        f"window {window:.0f} s after the last first pass; throttled answers from the daemons' start to the window's end (server): {thr['throttled']['total']} "
        f"({fmt_ops(thr['throttled']['actions'])}; all {len(daemons)} daemons start at once, so their first passes, 3 reads each, queue on the Describe* bucket)"
    )
    if fs["daemons"] and fs["gaps"]:
        g = sorted(fs["gaps"])
        t.details.append(
            f"{label}: fast daemons' gaps min {g[0]:.1f} s, p50 {median(g):.1f} s, max {g[-1]:.1f} s (jitter U[0.5, 1.5] x {model_gap:.1f} s: "
            f"{0.5 * model_gap:.1f}..{1.5 * model_gap:.1f} s; a due check waits for the next 1 s pass, so gaps run ~0.5 s over the formula)"
        )


def bench_throttled(binary: Path, t: Table, steady_fast: int, steady_slow: int, steady_window: float) -> None:
    bench_throttled_burst(binary, 147, 3, t)
    w = bench_throttled_burst(binary, 300, 7, t, keep=True)
    if w is None:
        return
    try:
        if steady_fast + steady_slow > 0:
            bench_throttled_steady(w, t, steady_fast, steady_slow, steady_window)
    finally:
        w.close()


# --------------------------------------------------------------------------------------------


def build(release: bool, no_build: bool) -> Path:
    target = Path(os.environ.get("CARGO_TARGET_DIR") or Path.home() / ".cache" / "kplink" / "target")
    binary = target / ("release" if release else "debug") / "kplink-agent"
    if not no_build:
        cmd = ["cargo", "build", "--quiet", "--bin", "kplink-agent"] + (["--release"] if release else [])
        print(f"building: {' '.join(cmd)} (CARGO_TARGET_DIR={target})", file=sys.stderr, flush=True)
        subprocess.run(cmd, cwd=REPO, env={**os.environ, "CARGO_TARGET_DIR": str(target)}, check=True)
    if not binary.exists():
        raise SystemExit(f"bench: {binary} does not exist (build it or drop --no-build)")
    return binary


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hosts", type=int, default=49, help="hosts booting at once on one NLB in the large burst (default 49, what one NLB holds)")
    ap.add_argument("--burst", type=int, default=20, help="hosts booting at once in the small burst (default 20; 0 skips it)")
    ap.add_argument("--shard-hosts", type=int, default=150, help="hosts booting at once over 3 NLBs (default 150; 147 fit; 0 skips it)")
    ap.add_argument("--release", action="store_true", help="benchmark the release build (default: debug)")
    ap.add_argument("--no-build", action="store_true", help="use the existing binary as is")
    ap.add_argument("--skip-daemon", action="store_true", help="skip the daemon footprint scenario")
    ap.add_argument("--throttled", action="store_true", help="run only the throttled-account scenario")
    ap.add_argument("--skip-throttled", action="store_true", help="skip the throttled-account scenario")
    ap.add_argument("--steady-daemons", type=int, default=30, help="throttled steady state: daemons with interval 1s and steady_reads_per_second 10 (default 30)")
    ap.add_argument("--steady-default-daemons", type=int, default=10, help="throttled steady state: daemons with every default (default 10)")
    ap.add_argument("--steady-window", type=float, default=180.0, help="throttled steady state: seconds measured after the last first pass (default 180)")
    args = ap.parse_args(argv)
    if args.throttled and args.skip_throttled:
        ap.error("--throttled and --skip-throttled exclude each other")

    binary = build(args.release, args.no_build)
    t = Table()
    started = time.monotonic()
    print(f"binary: {binary} ({'release' if args.release else 'debug'})", file=sys.stderr, flush=True)
    steps: list[tuple[str, Any]] = []
    daemon_missing: list[str] = []
    if not args.throttled:
        steps.append(("single broker", lambda: bench_single(binary, t)))
        if args.burst:
            steps.append((f"{args.burst} at once", lambda: bench_burst(binary, args.burst, t)))
        if args.hosts:
            steps.append((f"{args.hosts} at once", lambda: bench_burst(binary, args.hosts, t)))
        if args.shard_hosts:
            steps.append((f"{args.shard_hosts} at once over 3 NLBs", lambda: bench_shards(binary, args.shard_hosts, t)))
        if not args.skip_daemon:
            steps.append(("daemon", lambda: daemon_missing.append(bench_daemon(binary, t) or "")))
    if not args.skip_throttled:
        steps.append((
            "throttled account (147 over 3 NLBs, 300 over 7, steady daemons)",
            lambda: bench_throttled(binary, t, args.steady_daemons, args.steady_default_daemons, args.steady_window),
        ))
    for name, step in steps:
        print(f"scenario: {name} ...", file=sys.stderr, flush=True)
        step()

    print(f"\nkplink-agent benchmark ({'release' if args.release else 'debug'} build, moto, {os.cpu_count()} CPUs, {time.monotonic() - started:.0f} s)\n")
    t.print()
    print(
        f"\nfor scale (README): a DIY aws-cli script needed {DIY['one_host_calls']} calls and {DIY['one_host_s']} s for one host, "
        f"{DIY['burst_calls_per_host']} calls per host and {DIY['burst_s']:.0f} s for {DIY['burst_hosts']} hosts at once."
    )
    if daemon_missing and daemon_missing[0]:
        print(f"daemon: n/a (daemon not available): {daemon_missing[0]}")
    if t.hard_failures:
        print("\nhard failures:")
        for f in t.hard_failures:
            print(f"  {f}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
