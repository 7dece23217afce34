.PHONY: sync sync-dev lint format test check release-check precommit-install precommit-run bench bench-e2e corpus

sync:
	uv sync

sync-dev:
	uv sync --extra dev

lint:
	uv run ruff check .
	uv run ruff format --check .

format:
	uv run ruff check --fix .
	uv run ruff format .

test:
	uv run pytest

check: lint test

corpus:
	uv run python scripts/build_dspy_corpus.py
