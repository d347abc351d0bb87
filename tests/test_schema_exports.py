"""The committed JSON Schema exports (top-level ``schemas/``) match what the code generates.

They are generated, never read at run time: this test catches a schema change committed without
regenerating them (``make schemas``).
"""

from __future__ import annotations

import json
from pathlib import Path

from messaging_core import ChannelRegistry

COMMITTED = Path(__file__).resolve().parent.parent / "schemas"
HOW_TO_FIX = (
    "the committed schemas/ folder is out of date: run `make schemas` (messaging schema export schemas) and commit"
)


def test_committed_exports_match_the_generated_ones(tmp_path: Path) -> None:
    written = ChannelRegistry.discover().export_schemas(tmp_path)
    generated = {path.name: path.read_text("utf-8") for path in written}
    assert COMMITTED.is_dir(), HOW_TO_FIX
    committed = {path.name: path.read_text("utf-8") for path in COMMITTED.iterdir() if path.is_file()}
    missing = sorted(set(generated) - set(committed))
    extra = sorted(set(committed) - set(generated))
    assert (missing, extra) == ([], []), f"{HOW_TO_FIX}; missing: {missing}, not generated any more: {extra}"
    stale = sorted(name for name in generated if generated[name] != committed[name])
    assert not stale, f"{HOW_TO_FIX}; changed: {stale}"


def test_exports_are_deterministic_json(tmp_path: Path) -> None:
    first = {p.name: p.read_bytes() for p in ChannelRegistry.discover().export_schemas(tmp_path / "a")}
    second = {p.name: p.read_bytes() for p in ChannelRegistry.discover().export_schemas(tmp_path / "b")}
    assert first == second
    for name, content in first.items():
        document = json.loads(content)
        assert isinstance(document, dict), name
        # Sorted keys and a final newline: diffs of regenerated files stay minimal.
        assert content.decode("utf-8") == json.dumps(document, indent=2, sort_keys=True) + "\n", name


def test_every_channel_variant_is_exported(tmp_path: Path) -> None:
    registry = ChannelRegistry.discover()
    names = {p.name for p in registry.export_schemas(tmp_path)}
    assert {"channel-schema.schema.json", "config.schema.json"} <= names
    for info in registry.channels():
        for variant, schema in info.variants.items():
            document = json.loads((tmp_path / f"{info.name}.{variant}.json").read_text("utf-8"))
            assert document["channel"] == info.name
            assert document["variant"] == variant
            assert set(document["settings"]["properties"]) == {p.name for p in schema.parameters}
