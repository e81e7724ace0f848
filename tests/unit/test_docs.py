"""Generated documents match what the code renders (docs cannot drift)."""

from pathlib import Path

from plexus.tools.docs import GENERATED, REPO


def test_generated_docs_are_current():
    for rel, render in GENERATED.items():
        assert (REPO / rel).read_text() == render(), f"{rel} is stale: run `plexus docs`"


def test_api_doc_lists_every_resource_attribute():
    from plexus.api.services import SERVICE_CLASSES
    text = (Path(REPO) / "docs/api.md").read_text()
    for cls in SERVICE_CLASSES:
        for attr in (a for a in cls.resource.attrs if a.visible):
            assert f"`{attr.name}`" in text
