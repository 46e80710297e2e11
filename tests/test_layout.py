"""The walls between the parts, read from the source with `ast`: what each package may import.

engine ← service ← channels; staff tools use the engine and the service, never a channel (only the channel
registry, for names and colours); importers write knowledge files with the engine's schema. `bot.cli` is the one
place that wires everything together.
"""

from __future__ import annotations

import ast
from pathlib import Path

from bot.config import ROOT

BOT = ROOT / "bot"
# What each part may import, besides the standard library and third-party packages.
ALLOWED = {
    "engine": ("bot.config", "bot.engine"),
    "service": ("bot.config", "bot.engine", "bot.service"),
    "channels": ("bot.config", "bot.engine", "bot.service", "bot.channels.render"),
    "staff": ("bot.config", "bot.engine", "bot.service", "bot.staff"),
    "importers": ("bot.config", "bot.engine", "bot.importers"),
    "config": (),
}
ROOTS = {"bot.cli", "bot.__main__", "bot"}  # the wiring: may import any part


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(source: str, module: str, is_package: bool) -> list[str]:
    """Every bot module a source imports (absolute, relative, and `from package import module`)."""
    package = module if is_package else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.append(target)
            found += [f"{target}.{a.name}" for a in node.names if (BOT.parent / Path(*f"{target}.{a.name}".split(".")))
                      .with_suffix(".py").exists() or (BOT.parent / Path(*f"{target}.{a.name}".split("."))).is_dir()]
    return [m for m in found if m == "bot" or m.startswith("bot.")]


def part_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in ALLOWED else None


def violations(module: str, imported: list[str]) -> list[str]:
    """The imports of `module` that cross a wall."""
    part = part_of(module)
    if module in ROOTS or part is None:
        return []
    out = []
    for target in imported:
        if target == module or target.startswith(module + "."):
            continue
        allowed = ALLOWED[part]
        if part == "channels":
            own = ".".join(module.split(".")[:3])  # bot.channels.<channel>: its own submodules are its own
            if target in ("bot.channels",) or target == own or target.startswith(own + "."):
                continue
        if part == "staff" and target == "bot.channels":
            continue  # the channel registry (names, colours), not a channel
        if not any(target == a or target.startswith(a + ".") for a in allowed):
            out.append(f"{module} imports {target}")
    return out


def all_violations() -> list[str]:
    out = []
    for path in sorted(BOT.rglob("*.py")):
        module = module_name(path)
        out += violations(module, imports(path.read_text(encoding="utf-8"), module, path.name == "__init__.py"))
    return out


def test_no_part_imports_across_its_wall():
    assert all_violations() == []


def test_the_check_sees_a_breach():
    """A wall test that cannot fail protects nothing: each kind of breach is caught, relative imports included."""
    assert violations("bot.engine.answer", imports("from bot.service.desk import Desk", "bot.engine.answer", False))
    assert violations("bot.engine.answer", imports("from ..channels import render", "bot.engine.answer", False))
    assert violations("bot.channels.web", imports("from .zalo import ZALO", "bot.channels.web", False))
    assert violations("bot.channels.web", imports("from . import zalo", "bot.channels.web", False))
    assert violations("bot.staff.report", imports("import bot.channels.telegram", "bot.staff.report", False))
    assert violations("bot.service.desk", imports("from bot.staff.review import group", "bot.service.desk", False))
    assert not violations("bot.channels.web", imports("from . import registry\nfrom .render import cite",
                                                      "bot.channels.web", False))
    assert not violations("bot.channels.telegram", imports("from .relay import StaffRelay",
                                                           "bot.channels.telegram", True))


def test_every_package_says_what_lives_there_and_what_it_may_import():
    for init in sorted(BOT.rglob("__init__.py")):
        doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8")))
        assert doc, f"{init.relative_to(ROOT)} has no docstring"
        if init.parent != BOT:
            assert "import" in doc, f"{init.relative_to(ROOT)}: its docstring should say what the package may import"


def test_no_test_turns_an_import_failure_of_the_bot_into_a_skip():
    """`pytest.importorskip("bot.…")` would report a broken module as skipped, not failed."""
    found = []
    for path in sorted((ROOT / "tests").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "importorskip" and node.args
                    and isinstance(node.args[0], ast.Constant) and str(node.args[0].value).startswith("bot")):
                found.append(f"{path.name}:{node.lineno}")
    assert not found, found
