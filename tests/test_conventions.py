"""Conventions of the code itself: every ruff suppression says why."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ["admin", "bench", "bot", "deploy", "handlers", "migrations", "tests"]
# "no" "qa" apart, so that this file does not match itself
SUPPRESSION = re.compile(r"#\s*" + "no" + r"qa\b(?P<rest>.*)$")
WITH_REASON = re.compile(r"^: [A-Z]+[0-9]+(, ?[A-Z]+[0-9]+)* - \S")


def python_files() -> list[Path]:
    files = [ROOT / "wsgi.py"]
    for top in SOURCES:
        files += (ROOT / top).rglob("*.py")
    return [f for f in files if "versions" not in f.relative_to(ROOT).parts[:2]]


def test_every_noqa_names_its_codes_and_a_reason():
    bare = []
    for path in python_files():
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            found = SUPPRESSION.search(line)
            if found and not WITH_REASON.match(found["rest"]):
                bare.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert bare == [], "name the codes, then ' - ' and why (or fix the code):\n" + "\n".join(bare)


def test_every_ruff_ignore_in_pyproject_has_a_comment():
    sections = re.split(r"\n(?=\[)", (ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    lint = next(s for s in sections if s.startswith("[tool.ruff.lint]\n"))
    per_file = next(s for s in sections if s.startswith("[tool.ruff.lint.per-file-ignores]\n"))
    ignores = lint.split("\nignore = [", 1)[1] + per_file
    entries = [line for line in ignores.splitlines() if re.match(r'\s+"[A-Z]+[0-9]+",', line)]
    assert entries, "no ignore found: has pyproject.toml's [tool.ruff.lint] changed shape?"
    assert [e for e in entries if not re.search(r'",\s+# \S', e)] == []


#: "No module over about 500 lines": past this a module holds more than one concern (split it by concern)
MAX_LINES = 520


def test_no_module_is_over_about_500_lines():
    long = {
        str(path.relative_to(ROOT)): n
        for path in python_files()
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert long == {}, f"split these by concern: {long}"


def test_nothing_reads_or_cites_a_file_outside_the_repository():
    """Whoever clones Siyu alone must be able to run it and its tests: no path above the checkout, no citation
    of a team document that is not in it (WeCom's doc page ids are cited instead)."""
    outside = re.compile(r"\.\./shared|REFERENCE(-2)?\.md|PERFORMANCE\.md")
    found = []
    for path in [
        *python_files(),
        ROOT / "Makefile",
        ROOT / "README.md",
        ROOT / "pyproject.toml",
        *ROOT.glob("docs/*.md"),
    ]:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if outside.search(line) and path != Path(__file__):
                found.append(f"{path.relative_to(ROOT)}:{number}")
    assert found == []
