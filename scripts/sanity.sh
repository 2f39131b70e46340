#!/usr/bin/env bash
# ansible-test sanity on a copy of the working tree laid out as ansible_collections/djangoops/maintenance.
set -euo pipefail
# shellcheck source=scripts/bootstrap.sh
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"
ensure_venv
activate_env
ensure_ansible_test_offline
sync_collection_tree
cd "$SANITY_DIR"
ansible-test sanity --venv --python 3.11 --color no "$@"
