#!/usr/bin/env python3
"""kplink-agent benchmark: AWS calls, wall time and footprint against moto.

Usage (from the repository root)::

    python3 benches/bench.py [--hosts 49] [--burst 20] [--shard-hosts 150] [--release] [--no-build]

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
   ``/metrics``). Printed as "n/a (daemon not available)" when the binary has no daemon mode.

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
        for label, h, limit in (("first broker, empty NLB", first, 8), ("new broker, serving NLB", second, 6)):
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
        t.row(label, "AWS calls per host, mean", "<= 8", f"{mean:.2f}", mean <= 8)
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
        t.row(label, "AWS calls per converged host, median", "<= 8", f"{median(ok_calls):g}", median(ok_calls) <= 8)
        t.row(label, "AWS calls per converged host, mean", "<= 8", f"{sum(ok_calls) / max(1, len(ok_calls)):.2f}", sum(ok_calls) / max(1, len(ok_calls)) <= 8)
        t.row(label, "AWS calls per converged host, max", "<= 8", str(max(ok_calls, default=0)), max(ok_calls, default=0) <= 8)
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
        t.row(jlabel, "AWS calls (server side)", "<= 8", str(total), rc == 0 and total <= 8)
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


def passes_total(url: str) -> float | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            text = resp.read().decode("utf-8", "replace")
    except OSError:
        return None
    total, seen = 0.0, False
    for line in text.splitlines():
        m = re.match(r"^kplink_passes_total(\{[^}]*\})?\s+([0-9.eE+-]+)", line)
        if m:
            total += float(m.group(2))
            seen = True
    return total if seen else None


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
                n = passes_total(metrics)
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
    args = ap.parse_args(argv)

    binary = build(args.release, args.no_build)
    t = Table()
    started = time.monotonic()
    print(f"binary: {binary} ({'release' if args.release else 'debug'})", file=sys.stderr, flush=True)
    steps = [("single broker", lambda: bench_single(binary, t))]
    if args.burst:
        steps.append((f"{args.burst} at once", lambda: bench_burst(binary, args.burst, t)))
    if args.hosts:
        steps.append((f"{args.hosts} at once", lambda: bench_burst(binary, args.hosts, t)))
    if args.shard_hosts:
        steps.append((f"{args.shard_hosts} at once over 3 NLBs", lambda: bench_shards(binary, args.shard_hosts, t)))
    daemon_missing: list[str] = []
    if not args.skip_daemon:
        steps.append(("daemon", lambda: daemon_missing.append(bench_daemon(binary, t) or "")))
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
