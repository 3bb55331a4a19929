"""docs/API.md cannot rot: its example runs as written and prints what the page says; it names every public name."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import hcl_core
from hcl_core.modules import LOSS_MODULES

ROOT = Path(__file__).resolve().parent.parent
API = ROOT / "docs" / "API.md"


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", API.read_text(encoding="utf-8"), flags=re.S)


def _example() -> str:
    text = API.read_text(encoding="utf-8")
    match = re.search(r"<!-- example -->\n```python\n(.*?)```", text, flags=re.S)
    assert match, "docs/API.md lost its <!-- example --> block"
    return match.group(1)


@pytest.mark.slow
def test_the_api_example_runs_and_prints_what_the_page_shows(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", _example()], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-4000:]
    lines = out.stdout.splitlines()
    shown = next(b for b in _blocks("text") if "identical after the round trip" in b).splitlines()
    assert len(lines) == len(shown)
    # The numbers are the page's on this machine; elsewhere only their meaning is held to.
    first, last = (float(line.rsplit(" ", 1)[1]) for line in lines[:2])
    assert last < first - 0.5, "the foreign model's loss did not decrease"
    assert lines[0].startswith("HCLLoss(tau=0.5, beta=1.0, tau_plus=0.1, detach_weights=False)  step 1: loss")
    assert lines[2].startswith("finished after 5 epochs: kNN accuracy") and float(lines[2].split()[-1]) > 0.8
    assert lines[3:] == shown[3:], "the round trip, the embeddings or the loss line differ from the page"


def test_the_api_page_names_every_public_name_and_every_loss_module():
    text = API.read_text(encoding="utf-8")
    for name in hcl_core.__all__:
        assert f"`{name}`" in text, f"docs/API.md does not mention {name}"
    for cls in LOSS_MODULES.values():
        assert f"| `{cls.__name__}` | `{cls.name}` |" in text
