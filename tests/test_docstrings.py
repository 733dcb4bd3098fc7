"""Every example in the public docstrings runs and prints what it claims."""

import doctest
import importlib
import pkgutil

import pytest

import miakit

MODULES = sorted(
    name for _, name, _ in pkgutil.walk_packages(miakit.__path__, prefix="miakit.")
    if name != "miakit.__main__"
)


@pytest.mark.parametrize("name", ["miakit", *MODULES])
def test_docstring_examples(name):
    module = importlib.import_module(name)
    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    result = doctest.testmod(module, optionflags=flags, verbose=False)
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {name}"


def test_public_functions_have_examples():
    missing = []
    for name in ["miakit", *MODULES]:
        module = importlib.import_module(name)
        for attr in getattr(module, "__all__", []):
            obj = getattr(module, attr)
            if callable(obj) and not isinstance(obj, type) and obj.__module__ == name:
                if ">>>" not in (obj.__doc__ or ""):
                    missing.append(f"{name}.{attr}")
    assert not missing, f"public functions without a docstring example: {missing}"
