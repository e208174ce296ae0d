#!/usr/bin/env python3
"""NLB checks and changes for tests/systemd/nspawn_test.sh, straight against moto (boto3).

``nlb.py check WORLD --range FIRST-LAST``
    Exit 0 and print ``PORT LISTENER_ARN`` when exactly one listener in the range forwards to
    broker ``--broker-id``'s group (default host 1's; named as the agent names it, see
    ``world.group_name``) and host 1's instance is registered there (port 9094).
    Otherwise exit 1 with what was found.
``nlb.py bootstrap-members WORLD [--bootstrap-port 10000]``
    Prints the instance ids registered in the group the bootstrap listener forwards to, one a line.
``nlb.py delete-listener WORLD --range FIRST-LAST``
    Deletes every listener in the range (the agent's claim); prints the deleted ports.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
import world as w  # noqa: E402


def in_range(port: int, spec: str) -> bool:
    first, last = (int(x) for x in spec.split("-"))
    return first <= port <= last


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("command", choices=["check", "delete-listener", "bootstrap-members"])
    ap.add_argument("world")
    ap.add_argument("--range")
    ap.add_argument("--bootstrap-port", type=int, default=10000)
    ap.add_argument("--target-port", type=int, default=9094)
    ap.add_argument("--broker-id", type=int, help="default: host 1's kafka:broker-id tag in the world")
    args = ap.parse_args()
    world = w.load_world(args.world)
    host = world["hosts"][0]
    wiring = w.describe_wiring(world)
    if args.command == "bootstrap-members":
        for lst in wiring["listeners"]:
            if lst["port"] == args.bootstrap_port:
                for tg in lst["target_groups"]:
                    for t in tg["targets"]:
                        print(t["id"])
        return 0
    if not args.range:
        ap.error("--range is required")
    mine = [lst for lst in wiring["listeners"] if in_range(lst["port"], args.range)]
    if args.command == "delete-listener":
        _, elbv2 = w.clients(world["moto"], world["region"])
        for lst in mine:
            elbv2.delete_listener(ListenerArn=lst["arn"])
            print(lst["port"])
        return 0
    want_tg = w.group_name(world["cluster"], world["load_balancer_arn"], args.broker_id or host["broker_id"])
    problems = []
    if len(mine) != 1:
        problems.append(f"{len(mine)} listener(s) in {args.range}: {[lst['port'] for lst in mine]}")
    for lst in mine:
        names = [tg["name"] for tg in lst["target_groups"]]
        if names != [want_tg]:
            problems.append(f"listener :{lst['port']} forwards to {names}, want [{want_tg!r}]")
            continue
        targets = [(t["id"], t["port"]) for t in lst["target_groups"][0]["targets"]]
        if targets != [(host["instance_id"], args.target_port)]:
            problems.append(f"{want_tg} has targets {targets}, want [({host['instance_id']!r}, {args.target_port})]")
    if problems:
        print("; ".join(problems))
        print(w.format_wiring(wiring), file=sys.stderr)
        return 1
    print(mine[0]["port"], mine[0]["arn"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
