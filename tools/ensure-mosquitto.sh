#!/bin/sh
# Make sure a mosquitto binary is installed. The tests and `make sim` start their own brokers
# on free loopback ports, so all we need is the program (not a running system service).
set -eu

have_mosquitto() {
    for p in "$(command -v mosquitto 2>/dev/null || true)" /usr/sbin/mosquitto /usr/local/sbin/mosquitto; do
        if [ -n "$p" ] && [ -x "$p" ]; then return 0; fi
    done
    return 1
}

have_mosquitto && exit 0
hint="sudo apt-get install mosquitto"

if command -v apt-get >/dev/null 2>&1; then
    sudo=none
    if [ "$(id -u)" -eq 0 ]; then sudo=""
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo="sudo -n"
    fi
    if [ "$sudo" != none ]; then
        echo "ensure-mosquitto: installing mosquitto with apt-get" >&2
        $sudo apt-get update -qq
        $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto >/dev/null
        # The package may start a system broker on port 1883; we do not want it running.
        if [ -d /run/systemd/system ]; then
            $sudo systemctl disable --now mosquitto >/dev/null 2>&1 || true
        elif command -v service >/dev/null 2>&1 && service mosquitto status >/dev/null 2>&1; then
            $sudo service mosquitto stop >/dev/null 2>&1 || true
        fi
        have_mosquitto && exit 0
        echo "ensure-mosquitto: apt-get finished but no mosquitto binary was found" >&2
        exit 1
    fi
elif command -v brew >/dev/null 2>&1; then
    hint="brew install mosquitto"
    answer="${FLOORWATCH_INSTALL_MOSQUITTO:-}"
    if [ -z "$answer" ] && [ -t 0 ]; then
        printf 'mosquitto is needed for the tests. Run "%s" now? [y/N] ' "$hint" >&2
        read -r answer || answer=""
    fi
    case "$answer" in
        y|Y|yes|1) brew install mosquitto && have_mosquitto && exit 0 ;;
    esac
fi

echo "mosquitto not found; install it with: $hint" >&2
exit 1
