"""tests/docs: README, demo, Dockerfile, p11-kit, CLI and generated docs (helpers: docs_helpers.py)."""
