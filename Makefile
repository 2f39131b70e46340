# djangoops.maintenance: every target installs what it needs first (see scripts/bootstrap.sh).
.PHONY: test demo sanity lint unit docs bench build clean

# Every test: pytest (unit, integration with real servers, fleet), ansible-test sanity, ansible-lint.
test:
	bash scripts/test.sh $(ARGS)

# Only the pure-logic unit tests (seconds, no servers).
unit:
	bash -c 'source scripts/bootstrap.sh && ensure_venv && link_collection && activate_env && pytest -p no:cacheprovider tests/unit $(ARGS)'

sanity:
	bash scripts/sanity.sh $(ARGS)

lint:
	bash scripts/lint.sh $(ARGS)

# Regenerate docs/reference/ (module, filter and role pages, the error index) from the code.
docs:
	bash scripts/docs.sh

# The collection tarball, as Galaxy would get it, in .build/.
build:
	bash -c 'source scripts/bootstrap.sh && ensure_venv && activate_env && ansible-galaxy collection build --force --output-path .build'

clean:
	rm -rf .build tests/output

# The one-command demo: the real deploy playbook on the demo shop (SQLite) on localhost, a good and a bad release.
demo:
	bash scripts/demo.sh
