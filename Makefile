# The two set-up commands: `make demo` (the main job on the toy world) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean-venv

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/python -m pip install -q -e ".[test]"
	touch $(STAMP)

# Re-running replaces only a previous demo's own output (recognised by its demo.json).
demo: $(STAMP)
	$(BIN)/editclip demo $(if $(wildcard out/demo/demo.json),--overwrite,)

test: $(STAMP)
	$(BIN)/ruff check editclip tests
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check editclip tests

bench: $(STAMP)
	$(BIN)/editclip bench decompose --model ViT-B-16 --batch-size 16

clean-venv:
	rm -rf $(VENV)
