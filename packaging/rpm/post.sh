# kplink-agent %post ($1: 1 = install, 2 = upgrade). Plain shell: cargo-generate-rpm does not
# expand %systemd_* macros. Installing enables the unit but starts it only when
# /etc/kplink/agent.toml passes check-config; the shipped file does not (exit 78).
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
fi
if [ "$1" -eq 1 ]; then
    systemctl enable kplink-agent.service >/dev/null 2>&1 || :
    if [ -d /run/systemd/system ]; then
        if err=$(/usr/bin/kplink-agent --config /etc/kplink/agent.toml check-config 2>&1 >/dev/null); then
            systemctl start kplink-agent.service >/dev/null 2>&1 || :
        else
            echo "kplink-agent: not started: $err" >&2
            echo "kplink-agent: edit /etc/kplink/agent.toml, then run: systemctl enable --now kplink-agent" >&2
        fi
    fi
fi
exit 0
