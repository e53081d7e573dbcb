"""Every TFModel the README and docs/ show is one the operator accepts: each ```yaml block
with a TFModel `spec:` (whole objects and spec-only fragments alike) goes through the
operator's own parser and pod builder, so an example cannot drift from the fields."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from tfmodel_operator.deployment import build_pod_template
from tfmodel_operator.spec import parse_spec

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"```yaml\n(.*?)```", re.S)


def _tfmodel_specs() -> list[tuple[str, dict]]:
    found = []
    for page in PAGES:
        for n, block in enumerate(BLOCK.findall(page.read_text())):
            try:
                doc = yaml.safe_load(block)
            except yaml.YAMLError:
                continue  # not every yaml block is one document (status excerpts, values)
            if not isinstance(doc, dict) or not isinstance(doc.get("spec"), dict):
                continue
            if doc.get("kind", "TFModel") != "TFModel" or "models" not in doc["spec"]:
                continue
            found.append((f"{page.relative_to(ROOT)}#{n}", doc["spec"]))
    return found


SPECS = _tfmodel_specs()


def test_the_pages_show_tfmodels():
    pages = {where.split("#")[0] for where, _ in SPECS}
    assert {"README.md", "docs/request-logging.md", "docs/security.md"} <= pages, pages


@pytest.mark.parametrize("where,spec", SPECS, ids=[w for w, _ in SPECS])
def test_each_example_is_accepted_by_the_operator(where: str, spec: dict):
    build_pod_template("example", parse_spec(spec))
