# kplink-agent %postun ($1: 0 = erase, 1 = upgrade). Upgrade, as %systemd_postun_with_restart:
# try-restart, so a running agent restarts on the new binary and a stopped one stays stopped.
# Erase: rpm keeps a modified /etc/kplink/agent.toml as agent.toml.rpmsave (rpm has no purge); the
# agent's state in /var/lib/kplink is removed.
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
fi
if [ "$1" -ge 1 ]; then
    if [ -d /run/systemd/system ]; then
        systemctl try-restart kplink-agent.service >/dev/null 2>&1 || :
    fi
else
    rm -rf /var/lib/kplink
fi
exit 0
