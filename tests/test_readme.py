"""The README's Python examples run as written."""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)


def test_the_writing_tools_example_runs() -> None:
    (block,) = [b for b in _python_blocks() if "def forecast(" in b]
    module = types.ModuleType("readme_example")  # dataclasses look their module up
    sys.modules[module.__name__] = module
    try:
        # dont_inherit: the example must run without this file's __future__ imports
        exec(compile(block, "README.md", "exec", dont_inherit=True), module.__dict__)  # asserts inside check it
    finally:
        del sys.modules[module.__name__]
    registry = module.registry
    hook = registry.before_call_hook  # type: ignore[attr-defined]
    from loopback import CallBlocked, Context

    with pytest.raises(CallBlocked):
        hook("forget", {"city": "Oslo"}, Context())
