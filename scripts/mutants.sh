#!/usr/bin/env bash
# Mutation testing of the safety core (README "Reliability"): cargo-mutants over the files in
# .cargo/mutants.toml, each mutant judged by the unit tests alone (`cargo test --lib`).
#
#   scripts/mutants.sh                          # every mutant (one at a time; see the README for how long)
#   scripts/mutants.sh --in-diff                # only mutants on lines changed since $BASE (default main)
#   scripts/mutants.sh --file src/restart/gate.rs   # anything else goes to `cargo mutants`
#
# Then prints the per-file table of scripts/mutants_report.py and every missed mutant; exits 1
# when a file is under 90 % caught (of viable mutants), as the report says.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/kplink/target}"
MUTANTS_VERSION=27.1.0
if ! cargo mutants --version 2>/dev/null | grep -q "$MUTANTS_VERSION"; then
  cargo install --locked cargo-mutants --version "$MUTANTS_VERSION"
fi
out="${MUTANTS_OUT:-$CARGO_TARGET_DIR/mutants}"
mkdir -p "$out"
args=()
if [ "${1:-}" = --in-diff ]; then
  shift
  git diff "${BASE:-main}" -- src >"$out/changes.diff"
  args+=(--in-diff "$out/changes.diff")
fi
# With --file, only those files: cargo-mutants adds --file to the config's examine_globs, so the
# config is skipped and its other settings given here.
extra=() tail=()
if printf '%s\n' "$@" | grep -qx -- --file; then
  extra=(--no-config --exclude-re 'impl (std::fmt::|fmt::)?Display for'
         --exclude-re 'impl (std::fmt::|fmt::)?Debug for')
  tail=(--cargo-arg=--lib)
fi
# Debug info off for the mutants' builds (their own target dir, so the tests' stays warm): each
# mutant rebuilds only the crate's unit-test binary (`--lib`).
export CARGO_TARGET_DIR="${MUTANTS_TARGET_DIR:-$HOME/.cache/kplink/mutants-target}"
export CARGO_PROFILE_DEV_DEBUG=0
rc=0
# 10 s per test run: the unit tests take about 2; a mutant that sends a property test into a
# loop is a timeout (counted as caught) instead of 20 s of waiting.
cargo mutants --output "$out" --jobs 1 --timeout "${MUTANTS_TIMEOUT:-10}" \
  "${extra[@]}" "${args[@]}" "$@" "${tail[@]}" || rc=$?
# cargo-mutants: 0 all caught, 2 some missed, 3 some timed out; anything else is a failure of
# the run itself (1 usage, 4 the unmutated tree fails its tests).
case "$rc" in 0|2|3) ;; *) echo "cargo mutants failed (exit $rc)" >&2; exit "$rc" ;; esac
python3 scripts/mutants_report.py "$out/mutants.out"
