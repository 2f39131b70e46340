#!/usr/bin/env bash
# ansible-lint, production profile, offline, resolving the collection's own modules.
set -euo pipefail
# shellcheck source=scripts/bootstrap.sh
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"
ensure_venv
activate_env
sync_collection_tree
export ANSIBLE_COLLECTIONS_PATH=$BUILD/sanity
cd "$SANITY_DIR"
ansible-lint --offline --profile production --nocolor "$@"
