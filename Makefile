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

bench:
	uv run --extra bench python benchmarks/bench_sandbox.py

bench-e2e:
	uv run --extra bench --extra local fleet-rlm bench --suite small --lm local --methods rlm,direct

corpus:
	uv run python scripts/build_dspy_corpus.py

# --- release, pre-commit and notebook -------------------------------------------------------

.PHONY: notebook

# What a release needs: lint, the tests, a fresh build, twine's metadata check, then the built
# wheel installed into a new temporary venv, where `fleet-rlm --help` and a scripted RLM run on
# the local sandbox must work (no key, no network beyond PyPI for the dependencies).
release-check: lint test
	rm -rf dist
	uv build
	uv run --no-project --with twine twine check --strict dist/*
	@set -e; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	wheel=$$(ls dist/*.whl); built=$$(ls dist/* | tr '\n' ' '); \
	echo "installing $$wheel into a fresh venv"; \
	uv venv --quiet "$$tmp/venv"; \
	uv pip install --quiet --python "$$tmp/venv/bin/python" "$$wheel"; \
	cd "$$tmp"; \
	./venv/bin/fleet-rlm --help >/dev/null; \
	./venv/bin/fleet-rlm --version; \
	./venv/bin/python -c "from fleet_rlm import ScriptedLM, run_rlm; \
		lm = ScriptedLM(['SUBMIT(answer=str(sum(range(10))))']); \
		r = run_rlm('question -> answer', {'question': 'sum of 0..9?'}, lm=lm); \
		assert r.outputs == {'answer': '45'}, r.outputs; \
		print('scripted RLM run from the installed wheel:', r.outputs)"; \
	echo "release-check passed: $$built"

# Git hooks that run the project's own ruff (repo-local hooks: nothing is fetched).
precommit-install:
	uv run --extra dev pre-commit install

precommit-run:
	uv run --extra dev pre-commit run --all-files

# Run the walkthrough notebook headlessly; the executed copy goes to results/notebooks/
# (git-ignored), the committed notebook stays without outputs. The LM is chosen as in the
# notebook: .env model, else the offline model, else the scripted smoke run; force one with
# `FLEET_RLM_NOTEBOOK_LM=scripted make notebook` (or env, local).
notebook:
	@mkdir -p results/notebooks
	@if uv run --extra dev python -c "import nbconvert" 2>/dev/null; then \
		uv run --extra dev jupyter nbconvert --to notebook --execute \
			--ExecutePreprocessor.timeout=3600 --output-dir results/notebooks \
			notebooks/rlm-dspy-modal.ipynb; \
	else \
		uv run --extra dev jupyter execute --timeout=3600 \
			--output=../results/notebooks/{notebook_name} notebooks/rlm-dspy-modal.ipynb; \
	fi
	@echo "executed notebook: results/notebooks/rlm-dspy-modal.ipynb"
