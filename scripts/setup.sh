#!/usr/bin/env bash
# Installs what tcpsh needs and is missing: Debian packages, then a virtual environment at .venv
# with the project and its test extras installed. Safe to run again; does nothing that is already done.
set -euo pipefail
cd "$(dirname "$0")/.."

need_pkgs=()
have() { command -v "$1" >/dev/null 2>&1; }
have nft      || need_pkgs+=(nftables)
have tcpdump  || need_pkgs+=(tcpdump)
have curl     || need_pkgs+=(curl)
have ip       || need_pkgs+=(iproute2)
have iptables || need_pkgs+=(iptables)       # the firewall's fallback, tested beside nftables
have ping     || need_pkgs+=(iputils-ping)   # the lab tests check ICMP still passes the rule
have setpriv  || need_pkgs+=(util-linux)     # the tests run tcpsh without privileges
have useradd  || need_pkgs+=(passwd)         # the tests make throwaway users (daemon socket, privileges)
have make     || need_pkgs+=(make)
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || need_pkgs+=(python3-venv)

if [ ${#need_pkgs[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "setup: missing packages: ${need_pkgs[*]}; run as root (sudo make ...) to install them" >&2
        exit 1
    fi
    echo "setup: installing ${need_pkgs[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
fi

stamp=.venv/.installed
if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv"
    python3 -m venv .venv
fi
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    echo "setup: installing tcpsh into .venv"
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e '.[test]'
    touch "$stamp"
fi
