#!/usr/bin/env bash
# The whole test suite of djangoops.maintenance on a fresh Debian 12 machine, as root: `make test`.
# Installs what is missing (Debian packages, a Python venv), runs every pytest suite (the tests start
# and stop their own throwaway PostgreSQL, MariaDB, sshd and Django servers), then ansible-test sanity
# and ansible-lint.  Extra arguments go to pytest, e.g. `make test ARGS="-k sqlite"`.
set -euo pipefail
# shellcheck source=scripts/bootstrap.sh
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"

ensure_apt_packages
ensure_venv
ensure_django_venvs   # before pytest: its two workers must not both build them
ensure_oldest_ansible_venv
ensure_database_versions
link_collection
activate_env
cd "$REPO"

started=$SECONDS
log "pytest: unit, integration, fleet and release tests (2 workers)"
# Two workers: most tests wait on servers, ssh and Ansible subprocesses, so two share the 2 cores well. worksteal:
# a worker that ran out of tests takes half of what the other still has queued (tests/conftest.py puts the long
# ones first), so the two end together.
pytest -p no:cacheprovider -n 2 --dist worksteal --durations=25 "$@"

log "docs: docs/reference/ matches the code, plugin and role docs lint"
bash "$REPO/scripts/docs.sh" --check

log "changelog fragments (antsibull-changelog lint)"
antsibull-changelog lint

log "ansible-test sanity"
bash "$REPO/scripts/sanity.sh"

log "ansible-lint (production profile)"
bash "$REPO/scripts/lint.sh"

log "all tests passed in $((SECONDS - started)) s"
