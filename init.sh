#!/usr/bin/env bash
# The one command: installs what is missing, then starts, stops, inspects or tests the stack.
#   ./init.sh                 start everything (idempotent) and print URLs and the admin password
#   ./init.sh test            the whole test suite against an isolated stack (what CI runs)
#   ./init.sh down | status | logs [part] | start PART | stop PART | seed N | load | drill | chaos | bench
#   ./init.sh --docker        the same system with docker-compose (needs a Docker engine)
set -euo pipefail
cd "$(dirname "$0")"

VENV=.venv
DEBIAN_PACKAGES=(
  python3-venv nginx-light redis-server
  prometheus prometheus-alertmanager prometheus-node-exporter prometheus-blackbox-exporter
  prometheus-nginx-exporter prometheus-redis-exporter
  chromium docker-compose wrk git ca-certificates lnav
  # the image tests (tests/deploy/test_podman.py): build and run the Dockerfile and compose here;
  # netavark sets up container networks with iptables (it fails with "No such file" without it)
  podman runc debootstrap netavark aardvark-dns iptables
  # the report opened by another spreadsheet program (tests/unit/test_report_in_libreoffice.py)
  libreoffice-calc-nogui
  # the MongoDB bootstrap script's test (tests/deploy/test_mongodb_bootstrap.py)
  nodejs
)
# Every program the stack and the suite run, beside the package above that provides it: a
# missing one is named before the suite starts, not deep inside a test. A path when the
# program is not meant to be on PATH (podman finds its network helpers in /usr/lib/podman).
PROGRAMS=(
  python3:python3-venv nginx:nginx-light redis-server:redis-server
  prometheus:prometheus promtool:prometheus
  prometheus-alertmanager:prometheus-alertmanager amtool:prometheus-alertmanager
  prometheus-node-exporter:prometheus-node-exporter prometheus-blackbox-exporter:prometheus-blackbox-exporter
  prometheus-nginx-exporter:prometheus-nginx-exporter prometheus-redis-exporter:prometheus-redis-exporter
  chromium:chromium docker-compose:docker-compose wrk:wrk git:git lnav:lnav
  soffice:libreoffice-calc-nogui node:nodejs
  /etc/ssl/certs/ca-certificates.crt:ca-certificates
  podman:podman runc:runc debootstrap:debootstrap iptables:iptables
  /usr/lib/podman/netavark:netavark /usr/lib/podman/aardvark-dns:aardvark-dns
)
APT_GET=(apt-get -o DPkg::Lock::Timeout=600)  # another install may hold dpkg's lock: wait for it

POLICY_RC_D=/usr/sbin/policy-rc.d
SYSTEMD_DIR=/run/systemd/system
POLICY_BACKUP=

log() { printf '==> %s\n' "$*" >&2; }

# policy-rc.d 101: apt installs the daemons without starting them; we run our own on our
# own ports. An existing policy-rc.d (a container image's, say) is put back however we exit.
hold_services() {
  if [[ -e $POLICY_RC_D ]]; then
    POLICY_BACKUP=$(mktemp)
    cp -p "$POLICY_RC_D" "$POLICY_BACKUP"
  fi
  trap release_services EXIT
  printf '#!/bin/sh\nexit 101\n' > "$POLICY_RC_D" && chmod +x "$POLICY_RC_D"
}

release_services() {
  if [[ -n $POLICY_BACKUP ]]; then
    mv -f "$POLICY_BACKUP" "$POLICY_RC_D"
    POLICY_BACKUP=
  else
    rm -f "$POLICY_RC_D"
  fi
  trap - EXIT
}

installed_packages() {
  dpkg-query -W -f='${db:Status-Status} ${Package}\n' 2>/dev/null | awk '$1 == "installed" { print $2 }' | sort
}

# Under systemd the packages' units are still enabled and would start at the next boot,
# taking 80, 6379, 9090, 9093, 9100... Only the units of packages this run installed (their
# dependencies too: nginx.service comes with nginx-common): a system nginx or Redis the
# machine already had is not ours to switch off. Template units (name@.service) are not services.
disable_distro_services() {
  [[ -d $SYSTEMD_DIR ]] || return 0
  local units
  mapfile -t units < <(dpkg -L "$@" 2>/dev/null | grep -E '^(/usr)?/lib/systemd/system/[^/@]+\.service$' \
    | xargs -r -n1 basename | sort -u)
  ((${#units[@]})) || return 0
  log "disabling the distribution's own services (the stack runs its own): ${units[*]}"
  systemctl disable --now "${units[@]}" >/dev/null 2>&1 || true
}

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
  local before
  before=$(installed_packages)
  "${APT_GET[@]}" update -qq
  hold_services
  DEBIAN_FRONTEND=noninteractive "${APT_GET[@]}" install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  release_services
  local new
  mapfile -t new < <(comm -13 <(printf '%s\n' "$before") <(installed_packages))
  ((${#new[@]} == 0)) || disable_distro_services "${new[@]}"
}

install_python() {
  local stamp="$VENV/.requirements.sha256"
  local want
  want=$(sha256sum requirements.txt | cut -d' ' -f1)
  # without pip the venv is half-made (python3-venv was missing, or creation was cut short)
  [[ -x $VENV/bin/python && -x $VENV/bin/pip && -f $stamp && $(cat "$stamp") == "$want" ]] && return 0
  log "installing the Python environment ($VENV) from requirements.txt"
  [[ -x $VENV/bin/python && -x $VENV/bin/pip ]] || python3 -m venv "$VENV"
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

# One line for everything missing, before a stack starts: a test that met it would fail far
# from the cause. Root's PATH has the sbin folders; a user's may not.
preflight() {
  local missing=() entry program
  for entry in "${PROGRAMS[@]}"; do
    program=${entry%%:*}
    if [[ $program == /* ]]; then
      [[ -e $program ]] || missing+=("$program (Debian package ${entry#*:})")
    else
      PATH=$PATH:/usr/sbin:/sbin command -v "$program" >/dev/null || missing+=("$program (Debian package ${entry#*:})")
    fi
  done
  ((${#missing[@]})) || return 0
  log "missing programs: ${missing[*]}; ./init.sh installs them when run as root"
  return 1
}

# ruff with the settings in pyproject.toml: ./init.sh test fails on a finding before it
# starts a stack, as CI runs it.
lint() {
  log "lint: ruff check, ruff format --check"
  if ! "$VENV/bin/ruff" check --quiet . || ! "$VENV/bin/ruff" format --check --quiet --output-format concise .; then
    log "lint failed: fix the findings above (ruff check --fix <file>; ruff format <file>)"
    return 1
  fi
}

main() {
  case "${1:-up}" in
    --docker) run_docker "$@" ;;
  esac
  install_debian_packages
  install_python
  if [[ ${1:-} == test ]]; then
    preflight
    lint
  fi
  exec "$VENV/bin/python" -m stack "$@"
}

# sourced (by the tests) it only defines the functions
[[ ${BASH_SOURCE[0]} != "$0" ]] || main "$@"
