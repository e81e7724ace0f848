# The two commands: `make demo` (run the main job) and `make test` (run the tests).
# Both install what they need first (scripts/bootstrap.sh, idempotent).

.PHONY: demo test bootstrap bench docs

bootstrap:
	@scripts/bootstrap.sh

demo: bootstrap
	.venv/bin/plexus demo

test: bootstrap
	.venv/bin/python -m pytest -q -p no:cacheprovider --durations=30 $(PYTEST_ARGS)
	.venv/bin/python -m tests.functional

bench: bootstrap
	.venv/bin/python bench/api.py

docs: bootstrap
	.venv/bin/plexus docs
