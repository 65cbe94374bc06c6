"""The directions of import (docs/ARCHITECTURE.md) are contracts import-linter checks in `make lint`. These tests
show the contracts biting: the tree as it is keeps them, and a copy of it with one upward arrow or one circle
planted breaks the contract that forbids it."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    # The copy comes first on the path, ahead of the installed (editable) packages.
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", "pyproject.toml", "--no-cache", "--no-logo"],
        cwd=tree,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tree)},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tree = tmp_path_factory.mktemp("tree")
    for package in ("bot", "handlers", "admin"):
        shutil.copytree(
            ROOT / package,
            tree / package,
            ignore=shutil.ignore_patterns("__pycache__", "static", "templates", "translations"),
        )
    shutil.copy(ROOT / "pyproject.toml", tree / "pyproject.toml")
    return tree


def test_the_tree_keeps_every_contract(pristine):
    result = lint_imports(pristine)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "planted", "broken"),
    [
        # the WeCom library reaching up into the app
        ("bot/wecom/xml.py", "import bot.metrics", "Layers"),
        # the queue importing the tasks it carries (it names them by dotted path instead)
        ("bot/jobs/queue.py", "import bot.services.callbacks.jobs", "Layers"),
        # the panel calling WeCom itself
        ("admin/views/staff.py", "import bot.wecom.errors", "The panel and the API reach WeCom only"),
        # a domain importing one above it
        ("bot/services/tags/library.py", "import bot.services.channels.codes", "Domains depend one way"),
        # two modules of one package importing each other
        ("bot/services/channels/welcome.py", "import bot.services.channels.acquisition", "No circles"),
        # the WeCom library taking Flask
        ("bot/wecom/budget.py", "import flask", "bot.wecom is a library"),
    ],
)
def test_a_planted_import_breaks_its_contract(pristine, tmp_path, module, planted, broken):
    tree = tmp_path / "tree"
    shutil.copytree(pristine, tree)
    target = tree / module
    target.write_text(target.read_text(encoding="utf-8") + f"\n{planted}\n", encoding="utf-8")
    result = lint_imports(tree)
    assert result.returncode == 1, result.stdout + result.stderr
    broken_section = result.stdout.split("Broken contracts", 1)[1]
    assert broken in broken_section
    assert planted.split()[-1].split(".")[0] in broken_section
