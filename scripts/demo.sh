#!/usr/bin/env bash
# `make demo`: the collection's real deploy playbook on the shipped demo shop (SQLite, media, gunicorn) on
# localhost, twice - a good release, then a bad one whose migration wrecks data and crashes, which the window
# restores. Needs no database server. Everything lives in .build/demo (or $DJANGOOPS_DEMO_DIR).
set -euo pipefail
# shellcheck source=scripts/bootstrap.sh
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"

ensure_apt_packages
ensure_venv
ensure_django_venvs
link_collection
activate_env

DEMO=${DJANGOOPS_DEMO_DIR:-$BUILD/demo}
APP=$DEMO/srv/shop
APP_PY=$BUILD/django-5.2/bin/python
PORT=$("$VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
TOKEN=$("$VENV/bin/python" -c 'import secrets; print(secrets.token_hex(16))')

# A previous demo's app server may still run.
if [[ -f $APP/run/app.pid ]]; then "$APP_PY" "$APP/current/bin/appctl.py" stop --pidfile "$APP/run/app.pid" || true; fi
rm -rf "$DEMO"
mkdir -p "$APP/releases" "$APP/shared/media" "$APP/run" "$DEMO/backups" "$DEMO/locks" "$DEMO/reports"

log "building releases 1.0, 2.0 and 3.0 of the demo shop"
"$VENV/bin/python" "$REPO/demo/releases.py" "$APP/releases" >/dev/null
ln -sfn "$APP/releases/1.0" "$APP/current"

cat >"$APP/shared/app.env" <<ENV
SHOP_DB_ENGINE=sqlite
SHOP_DB_NAME=$APP/shared/db.sqlite3
SHOP_MEDIA_ROOT=$APP/shared/media
SHOP_MAINTENANCE_FLAG=$APP/maintenance.on
SHOP_MAINTENANCE_BYPASS=$TOKEN
SHOP_ALLOWED_HOSTS=127.0.0.1,localhost
ENV

log "release 1.0 goes live: migrate, seed products with images, start gunicorn on 127.0.0.1:$PORT"
(set -a; source "$APP/shared/app.env"; set +a
 cd "$APP/current" && "$APP_PY" manage.py migrate -v0 && "$APP_PY" manage.py seed_demo --products 40 --orders 60 --with-images -v0)
"$APP_PY" "$APP/current/bin/appctl.py" start --pidfile "$APP/run/app.pid" --bind "127.0.0.1:$PORT" --env-file "$APP/shared/app.env"

cat >"$DEMO/inventory.yml" <<INV
all:
  children:
    django:
      hosts:
        demo-shop:
          ansible_connection: local
          ansible_python_interpreter: $VENV/bin/python
  vars:
    djangoops_app_root: $APP
    djangoops_snapshot_root: $DEMO/backups
    djangoops_lock_name: shop
    window_lock_dir: $DEMO/locks
    djangoops_django:
      project_path: $APP/current
      virtualenv: $BUILD/django-5.2
      environment:
        SHOP_DB_ENGINE: sqlite
        SHOP_DB_NAME: $APP/shared/db.sqlite3
        SHOP_MEDIA_ROOT: $APP/shared/media
    window_app_stop_command: [$APP_PY, $APP/current/bin/appctl.py, stop, --pidfile, $APP/run/app.pid]
    window_app_start_command: [$APP_PY, $APP/current/bin/appctl.py, start, --pidfile, $APP/run/app.pid,
                               --bind, "127.0.0.1:$PORT", --env-file, $APP/shared/app.env]
    window_verify_http_checks:
      - name: health
        url: http://127.0.0.1:$PORT/health/
        headers: {X-Djangoops-Bypass: "$TOKEN"}
        contains: '"ok": true'
      - name: front page
        url: http://127.0.0.1:$PORT/
        headers: {X-Djangoops-Bypass: "$TOKEN"}
        contains: 'id="product-count"'
INV

export DJANGOOPS_REPORT_DIR=$DEMO/reports
deploy() {
  ansible-playbook -i "$DEMO/inventory.yml" djangoops.maintenance.deploy -e "window_release_version=$1"
}
show_report() {
  local newest
  # The newest report: run ids start with a UTC timestamp, so they sort by time.
  newest=$(printf '%s\n' "$DEMO"/reports/*/ | sort | tail -n1)
  newest=${newest%/}
  "$VENV/bin/python" - "$newest/report.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
for name, h in r['hosts'].items():
    print('  %s: %s' % (name, h['status'].upper()))
    if h.get('snapshot'):
        print('    snapshot %s (%s bytes)' % (h['snapshot']['id'], h['snapshot']['bytes']))
    if h.get('migrations_applied'):
        print('    migrations applied: %s' % ', '.join(h['migrations_applied']))
    if h.get('error'):
        print('    error: %s' % h['error'][:300])
    if h.get('restored'):
        print('    restored: %s' % ', '.join(k for k, v in sorted(h['restored'].items()) if v is True))
    if h.get('downtime_seconds') is not None:
        print('    downtime: %s s' % h['downtime_seconds'])
PY
  echo "  full report: $newest/report.md (and report.json, report.html)"
}
counts() { curl -s "http://127.0.0.1:$PORT/health/" | "$VENV/bin/python" -c 'import json,sys; d=json.load(sys.stdin); print(d["rows"], "migrations:", d["applied_migrations"])'; }

echo; echo "live before the windows: $(counts)"
log "window 1: release 2.0 (a good release: snapshot -> migrate -> verify)"
deploy 2.0
show_report
echo "live after window 1:  $(counts)"

log "window 2: release 3.0 (a bad release: its migration reprices every product, deletes orders, then crashes)"
if deploy 3.0; then
  echo "release 3.0 should have failed; the demo is broken" >&2
  exit 1
fi
show_report
echo "live after window 2:  $(counts)   <- the same as after window 1: restored"
echo
echo "The shop is still running on http://127.0.0.1:$PORT/ (stop it with:"
echo "  $APP_PY $APP/current/bin/appctl.py stop --pidfile $APP/run/app.pid)"
echo "Snapshots: $DEMO/backups   Reports: $DEMO/reports"
