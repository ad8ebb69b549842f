"""The names sockwire exports are the same everywhere they are listed: the module the
extension registers (src/py/mod.rs), the stub's `__all__`, and `sockwire.__all__`."""

import ast
import pathlib
import socket

import sockwire
from sockwire import _core

STUB = ast.parse(pathlib.Path(sockwire.__file__).with_name("_core.pyi").read_text())


def stub_all() -> list[str]:
    for node in STUB.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
        ):
            return list(ast.literal_eval(node.value))
    raise AssertionError("the stub has no __all__")


def test_the_stub_lists_exactly_what_the_extension_registers():
    assert set(stub_all()) == set(_core.__all__)
    registered = {name for name in vars(_core) if not name.startswith("__")}
    assert set(stub_all()) == registered
    assert len(stub_all()) == len(set(stub_all()))


def test_the_package_exports_the_extension_and_the_stdlib_constants():
    constants = {name for name in sockwire.__all__ if name.isupper()}
    assert all(getattr(sockwire, c) == getattr(socket, c) for c in constants)
    public = {name for name in stub_all() if not name.startswith("_")}
    python_level = {"Report", "swarm"}  # defined in Python (sockwire._swarm)
    assert set(sockwire.__all__) - constants - python_level == public
    assert all(getattr(sockwire, name) is getattr(_core, name) for name in public)
