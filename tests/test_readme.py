"""The README's Python examples run, in order, against Azurite: what a newcomer copies must work."""

from __future__ import annotations

from readme_examples import run_examples


def test_readme_examples_run(azurite, tmp_path):
    run_examples(azurite.connection_string, tmp_path)
