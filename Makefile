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

clean:
	rm -rf .build tests/output

# The one-command demo: the real deploy playbook on the demo shop (SQLite) on localhost, a good and a bad release.
demo:
	bash scripts/demo.sh
