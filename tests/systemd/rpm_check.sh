#!/usr/bin/env bash
# Builds the .rpm (cargo-generate-rpm, declared in Cargo.toml) from this build's debug binary and
# checks its contents and scripts with rpm -qlp / --scripts / --configfiles. Prints PASS/FAIL lines.
set -uo pipefail
REPO=$(cd "$(dirname "$0")/../.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target}
fails=0
pass() { echo "PASS: $*"; }
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
die() { echo "FAIL: $*"; exit 1; }

command -v rpm >/dev/null || {
  apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rpm >/dev/null
} || die "apt-get install rpm"
cargo generate-rpm --version >/dev/null 2>&1 \
  || cargo install cargo-generate-rpm --locked --version 0.21.1 --quiet \
  || die "cargo install cargo-generate-rpm"
[ -x "$TARGET_DIR/debug/kplink-agent" ] || die "no debug binary in $TARGET_DIR/debug (cargo build first)"

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
(cd "$REPO" && cargo generate-rpm --profile dev --target-dir "$TARGET_DIR" -o "$out/") >/dev/null 2>"$out/err" \
  || die "cargo generate-rpm: $(cat "$out/err")"
rpmfile=$(ls "$out"/*.rpm 2>/dev/null | head -1)
[ -n "$rpmfile" ] || die "no .rpm produced"
pass "cargo generate-rpm built $(basename "$rpmfile") ($(du -h "$rpmfile" | cut -f1))"

files=$(rpm -qlp "$rpmfile" 2>/dev/null)
for f in /usr/bin/kplink-agent /usr/lib/systemd/system/kplink-agent.service /etc/kplink/agent.toml \
         /usr/share/doc/kplink-agent/iam-policy.json /usr/share/doc/kplink-agent/README.md; do
  if grep -qx "$f" <<<"$files"; then pass "rpm ships $f"; else fail "rpm lacks $f (has: $(echo $files))"; fi
done
if rpm -qp --configfiles "$rpmfile" 2>/dev/null | grep -qx /etc/kplink/agent.toml; then
  pass "/etc/kplink/agent.toml is a %config file"
else
  fail "/etc/kplink/agent.toml is not a %config file"
fi
# It may hold Kafka admin secrets ([restart.kafka]): root:root 0640, never world-readable.
conf_line=$(rpm -qlvp "$rpmfile" 2>/dev/null | awk '$NF == "/etc/kplink/agent.toml"')
if [ "$(awk '{ print $1, $3, $4 }' <<<"$conf_line")" = "-rw-r----- root root" ]; then
  pass "/etc/kplink/agent.toml is -rw-r----- root root"
else
  fail "/etc/kplink/agent.toml is not -rw-r----- root root: $conf_line"
fi
scripts=$(rpm -qp --scripts "$rpmfile" 2>/dev/null)
grep -q "chmod 0640 /etc/kplink/agent.toml" <<<"$(sed -n '/postinstall scriptlet/,/preuninstall/p' <<<"$scripts")" \
  && pass "%post makes a world-readable agent.toml 0640 on upgrade" || fail "%post does not fix a 0644 agent.toml"
grep -q "postinstall scriptlet" <<<"$scripts" && grep -q "check-config" <<<"$scripts" \
  && pass "%post enables and starts only a configured agent" || fail "%post missing or without check-config"
grep -q "preuninstall scriptlet" <<<"$scripts" && grep -q "systemctl" <<<"$(sed -n '/preuninstall/,/postuninstall/p' <<<"$scripts")" \
  && pass "%preun stops/disables the unit" || fail "%preun missing or without systemctl"
grep -q "postuninstall scriptlet" <<<"$scripts" \
  && pass "%postun present (restart on upgrade, clean-up on erase)" || fail "%postun missing"
rpm -qp --requires "$rpmfile" 2>/dev/null | grep -q ca-certificates \
  && pass "requires ca-certificates" || fail "does not require ca-certificates"

[ "$fails" = 0 ] || { echo "$fails assertion(s) failed"; exit 1; }
echo "all rpm assertions passed"
