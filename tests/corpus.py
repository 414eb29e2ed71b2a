"""The labelled real Keycloak lines of ../shared/corpus, for tests."""

from __future__ import annotations

import json
import pathlib
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parent.parent
_RELATIVE = pathlib.Path("shared", "corpus", "keycloak-log-lines.jsonl")


def _find_corpus() -> pathlib.Path:
    """``shared/corpus`` beside the checkout, or beside a parent of it (a git worktree in a
    sub-directory such as ``wt/NAME`` sees the same corpus as the main checkout)."""
    for parent in ROOT.parents:
        candidate = parent / _RELATIVE
        if candidate.is_file():
            return candidate
    return ROOT.parent / _RELATIVE


CORPUS = _find_corpus()


def load_corpus() -> list[dict[str, Any]]:
    with CORPUS.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]
