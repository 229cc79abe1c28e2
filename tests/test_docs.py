"""Every example in the documentation runs: the ```python blocks of the library's
docstrings, of the README and of docs/*.md.

Each docstring block runs on its own, in a fresh namespace; the blocks of one Markdown
file run in order in one namespace, as a reader would paste them.
"""

import importlib
import inspect
import re
import sys
from pathlib import Path

import pytest


ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)


def _members(module):
    """The module and the classes, functions and methods it defines, with their names."""
    yield module.__name__, module
    for name, obj in vars(module).items():
        if getattr(obj, "__module__", None) != module.__name__:
            continue  # re-exported: collected where it is defined
        if inspect.isclass(obj):
            yield f"{module.__name__}.{name}", obj
            for attr, member in vars(obj).items():
                member = member.fget if isinstance(member, property) else member
                member = getattr(member, "__func__", member)
                if callable(member) and getattr(member, "__doc__", None):
                    yield f"{module.__name__}.{name}.{attr}", member
        elif callable(obj):
            yield f"{module.__name__}.{name}", obj


def _modules():
    """Every module of the library that its public packages import."""
    for name in ("jaxflow.experiments", "jaxflow.cli"):
        importlib.import_module(name)
    return [sys.modules[name] for name in sorted(sys.modules) if name.split(".")[0] == "jaxflow"]


def _docstring_blocks():
    seen = set()
    for module in _modules():
        for name, obj in _members(module):
            doc = inspect.getdoc(obj)
            if not doc or doc in seen:
                continue
            seen.add(doc)
            for i, block in enumerate(BLOCK.findall(doc)):
                yield pytest.param(block, id=f"{name}[{i}]")


def _markdown_files():
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


@pytest.mark.parametrize("block", list(_docstring_blocks()))
def test_docstring_example_runs(block):
    exec(compile(block, "<docstring>", "exec"), {})


@pytest.mark.parametrize("path", _markdown_files(), ids=lambda p: p.name)
def test_markdown_examples_run(path):
    namespace = {}
    for block in BLOCK.findall(path.read_text()):
        exec(compile(block, str(path), "exec"), namespace)


def test_examples_are_found():
    assert len(list(_docstring_blocks())) >= 6
    assert BLOCK.findall((ROOT / "README.md").read_text())
