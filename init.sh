#!/usr/bin/env bash
# The one command: installs what is missing, then starts, stops, inspects or tests the stack.
#   ./init.sh                 start everything (idempotent) and print URLs and the admin password
#   ./init.sh test            the whole test suite against an isolated stack (what CI runs)
#   ./init.sh down | status | logs [part] | start PART | stop PART | seed N | load | drill | bench
#   ./init.sh --docker        the same system with docker-compose (needs a Docker engine)
set -euo pipefail
cd "$(dirname "$0")"

VENV=.venv
DEBIAN_PACKAGES=(
  nginx-light redis-server
  prometheus prometheus-alertmanager prometheus-node-exporter prometheus-blackbox-exporter
  prometheus-nginx-exporter prometheus-redis-exporter
  chromium docker-compose wrk
)

log() { printf '==> %s\n' "$*" >&2; }

install_debian_packages() {
  local missing=()
  for package in "${DEBIAN_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
  done
  ((${#missing[@]})) || return 0
  if [[ $(id -u) -ne 0 ]]; then
    log "missing Debian packages: ${missing[*]} (run ./init.sh as root once, or: sudo apt-get install ${missing[*]})"
    exit 1
  fi
  log "installing Debian packages: ${missing[*]}"
  apt-get update -qq
  # policy-rc.d 101: install the daemons without starting them; we run our own on our own ports
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  rm -f /usr/sbin/policy-rc.d
}

install_python() {
  local stamp="$VENV/.requirements.sha256"
  local want
  want=$(sha256sum requirements.txt | cut -d' ' -f1)
  [[ -x $VENV/bin/python && -f $stamp && $(cat "$stamp") == "$want" ]] && return 0
  log "installing the Python environment ($VENV) from requirements.txt"
  [[ -x $VENV/bin/python ]] || python3 -m venv "$VENV"
  (umask 077 && mkdir -p var/log)  # var/ holds secrets; the stack keeps it private too
  if ! "$VENV/bin/pip" install --disable-pip-version-check -r requirements.txt > var/log/install.log 2>&1; then
    tail -n 30 var/log/install.log >&2
    log "pip install failed; the whole output is in var/log/install.log"
    exit 1
  fi
  echo "$want" > "$stamp"
}

run_docker() {
  if ! command -v docker >/dev/null || ! docker info >/dev/null 2>&1; then
    log "no Docker engine is running here; install Docker (Engine + Compose v2) and try again."
    log "the native stack needs none: ./init.sh"
    exit 2
  fi
  [[ -f .env ]] || { log "create .env from .env.example first (secrets for the containers)"; exit 2; }
  shift
  exec docker compose up -d --build "$@"
}

main() {
  case "${1:-up}" in
    --docker) run_docker "$@" ;;
  esac
  install_debian_packages
  install_python
  exec "$VENV/bin/python" -m stack "$@"
}

main "$@"
