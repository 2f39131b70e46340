#!/usr/bin/env bash
# `make docs`: regenerate docs/reference/ from the collection itself - module, filter and role pages from
# their own DOCUMENTATION and meta/argument_specs.yml (antsibull-docs, simplified RST that GitHub renders),
# and errors.md, every error message the code can fail a task with (scripts/docs_errors.py).
#
# `scripts/docs.sh --check` (run by `make test`): regenerate into a temporary directory and fail when
# docs/reference/ differs, then lint the plugin and role docs (every O(...), M(...), P(...) reference must
# name something that exists).
set -euo pipefail
# shellcheck source=scripts/bootstrap.sh
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"
ensure_venv
link_collection
activate_env

REFERENCE=$REPO/docs/reference

generate() {
  local dest=$1
  # --use-current documents the copy on ANSIBLE_COLLECTIONS_PATH: the working tree, through the link.
  antsibull-docs collection --use-current --squash-hierarchy --output-format simplified-rst \
    --no-add-antsibull-docs-version --fail-on-error --dest-dir "$dest" djangoops.maintenance >/dev/null
  python "$REPO/scripts/docs_errors.py" "$REPO" >"$dest/errors.md"
}

if [[ ${1:-} == --check ]]; then
  tmp=$(mktemp -d "${TMPDIR:-/tmp}/djangoops-docs.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  generate "$tmp"
  if ! diff -ru "$REFERENCE" "$tmp" >"$tmp.diff" 2>&1; then
    head -n 60 "$tmp.diff" >&2
    rm -f "$tmp.diff"
    echo "docs/reference/ is out of date with the code (diff above): run 'make docs' and commit docs/reference/" >&2
    exit 1
  fi
  rm -f "$tmp.diff"
  antsibull-docs lint-collection-docs --plugin-docs --skip-rstcheck \
    "$COLLECTIONS_PATH/ansible_collections/djangoops/maintenance"
  echo "docs/reference/ is up to date; plugin and role docs lint clean"
else
  tmp=$(mktemp -d "$REPO/.build/docs.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  generate "$tmp"
  rm -rf "$REFERENCE"
  mv "$tmp" "$REFERENCE"
  chmod 755 "$REFERENCE"
  echo "wrote $REFERENCE"
fi
