# kplink-agent %post ($1: 1 = install, 2 = upgrade). Plain shell: cargo-generate-rpm does not
# expand %systemd_* macros, so this is what %systemd_post expands to, plus our start rule.
# First install: `systemctl preset` enables the unit through the shipped preset
# (/usr/lib/systemd/system-preset/50-kplink-agent.preset: enable), so a site preset that says
# otherwise wins, and it works in an image build without a running systemd. The agent is started
# only when /etc/kplink/agent.toml passes check-config; the shipped file does not (exit 78).
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
fi
# The config may hold Kafka admin secrets ([restart.kafka] "sasl.password"). New installs get 0640;
# %config(noreplace) keeps an edited file as it is, so an upgrade from 0644 fixes the mode here.
# Only a world-readable file is touched: a mode an admin tightened or chose otherwise stays.
if [ -f /etc/kplink/agent.toml ] && [ ! -L /etc/kplink/agent.toml ]; then
    case $(stat -c %a /etc/kplink/agent.toml) in
    *[4567]) chmod 0640 /etc/kplink/agent.toml ;;
    esac
fi
if [ "$1" -eq 1 ]; then
    systemctl --no-reload preset kplink-agent.service >/dev/null 2>&1 || :
    if [ -d /run/systemd/system ] && systemctl --quiet is-enabled kplink-agent.service 2>/dev/null; then
        if err=$(/usr/bin/kplink-agent --config /etc/kplink/agent.toml check-config 2>&1 >/dev/null); then
            systemctl start kplink-agent.service >/dev/null 2>&1 || :
        else
            echo "kplink-agent: not started: $err" >&2
            echo "kplink-agent: edit /etc/kplink/agent.toml, then run: systemctl enable --now kplink-agent" >&2
        fi
    fi
fi
exit 0
