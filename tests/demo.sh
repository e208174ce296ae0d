#!/usr/bin/env bash
# Local demo: moto (AWS), our IMDSv2 test server and three simulated broker hosts in three AZs.
# Builds the agent, runs one pass on each host, then prints the NLB wiring and each
# server.properties diff. Everything runs on 127.0.0.1 and is torn down on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/kplink/target}"
python3 -m pip install --quiet -r tests/support/requirements.txt
cargo build --quiet
bin="$CARGO_TARGET_DIR/debug/kplink-agent"
work=$(mktemp -d)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

start() { # script -> prints its URL
  local out="$work/$1.out"
  python3 "tests/support/$1" --port 0 >"$out" 2>"$work/$1.err" &
  pids+=($!)
  for _ in $(seq 100); do grep -q '^READY ' "$out" 2>/dev/null && break; sleep 0.1; done
  sed -n 's/^READY //p' "$out" | head -1
}
moto=$(start moto_launcher.py)
imds_out="$work/imds.out"
python3 tests/support/imds_server.py --control-port 0 >"$imds_out" 2>"$work/imds.err" &
pids+=($!)
for _ in $(seq 100); do grep -q '^READY ' "$imds_out" 2>/dev/null && break; sleep 0.1; done
imds=$(sed -n 's/^READY //p' "$imds_out" | head -1)
echo "moto: $moto   imds control: $imds"
python3 tests/support/world.py seed --moto "$moto" --hosts 3 --imds "$imds" --out "$work/world.json" >/dev/null

python3 - "$work" <<'PY'
import json, sys, pathlib
work = pathlib.Path(sys.argv[1])
world = json.loads((work / "world.json").read_text())
for h in world["hosts"]:
    d = work / h["name"]; d.mkdir()
    (d / "server.properties").write_text(
        "# managed by config management\nprocess.roles=broker,controller\ncontroller.listener.names=CONTROLLER\n"
        "listeners=PLAINTEXT://:9092,CONTROLLER://:9093\nadvertised.listeners=PLAINTEXT://:9092\n"
        "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT\nlog.dirs=/var/lib/kafka\n")
    (d / "agent.toml").write_text(
        f'cluster = "orders"\n\n[broker]\nserver_properties = "{d}/server.properties"\n\n'
        '[listener]\nadvertised_host = "kafka-{az_id}.orders.example.internal"\n\n'
        f'[nlb]\nload_balancer_arn = "{world["load_balancer_arn"]}"\n')
    (d / "env").write_text(f'{h["imds_endpoint"]} {h["access_key_id"]}\n')
PY

for d in "$work"/host-*; do
  read -r endpoint key <"$d/env"
  echo
  echo "== $(basename "$d"): kplink-agent run --once"
  AWS_ENDPOINT_URL="$moto" AWS_EC2_METADATA_SERVICE_ENDPOINT="$endpoint" \
    AWS_ACCESS_KEY_ID="$key" AWS_SECRET_ACCESS_KEY=demo KPLINK_LOG=warn \
    "$bin" --config "$d/agent.toml" run --once
done

echo
echo "== NLB wiring (read from moto)"
python3 tests/support/world.py show --world "$work/world.json"
for d in "$work"/host-*; do
  echo
  echo "== $(basename "$d")/server.properties (diff against the backup the agent kept)"
  diff -u "$d/server.properties.kplink.bak" "$d/server.properties" | tail -n +3 || true
done
