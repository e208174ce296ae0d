# kplink-agent %preun ($1: 0 = erase, 1 = upgrade), as %systemd_preun: on erase only, disable and
# stop the unit; an upgrade keeps it running until %postun restarts it on the new binary.
if [ "$1" -eq 0 ]; then
    systemctl --no-reload disable --now kplink-agent.service >/dev/null 2>&1 || :
fi
exit 0
