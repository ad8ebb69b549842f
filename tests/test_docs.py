"""help() shows the stub's text: the runtime docstrings are the docstrings of _core.pyi.

build.rs copies each docstring of the stub into the extension (`pydoc!`). These tests read the
stub with `ast`, independently of build.rs's parser, so each checks the other.
"""

import ast
import inspect
import pathlib
import pydoc
from typing import Any

import pytest

import sockwire
from sockwire import _core

STUB = pathlib.Path(sockwire.__file__).with_name("_core.pyi")
TREE = ast.parse(STUB.read_text())


def _stub_entries() -> dict[str, tuple[ast.AST, str | None]]:
    """Qualified name -> (definition, docstring) for the module, its classes and functions."""
    entries: dict[str, tuple[ast.AST, str | None]] = {"<module>": (TREE, ast.get_docstring(TREE))}

    def walk(body: list[ast.stmt], prefix: str) -> None:
        for node in body:
            if isinstance(node, ast.ClassDef | ast.FunctionDef):
                name = prefix + node.name
                doc = ast.get_docstring(node)
                # Overloads and property setters repeat a name; the documented one counts.
                if name not in entries or doc is not None:
                    entries[name] = (node, doc)
                if isinstance(node, ast.ClassDef):
                    walk(node.body, name + ".")

    walk(TREE.body, "")
    return entries


ENTRIES = _stub_entries()
DOCUMENTED = {name: doc for name, (_, doc) in ENTRIES.items() if doc is not None}
CLASSES = [name for name, (node, _) in ENTRIES.items() if isinstance(node, ast.ClassDef)]


def runtime(name: str) -> Any:
    """The runtime object a stub name stands for (a property is its descriptor)."""
    if name == "<module>":
        return _core
    obj: Any = _core
    for part in name.split("."):
        obj = inspect.getattr_static(obj, part) if isinstance(obj, type) else getattr(obj, part)
        if isinstance(obj, staticmethod | classmethod):
            obj = obj.__func__
    return obj


def is_public(name: str) -> bool:
    return not name.rpartition(".")[2].startswith("_")


def test_stub_parses_and_has_entries():
    assert len(DOCUMENTED) > 80
    assert set(_core.__all__) <= set(ENTRIES)


@pytest.mark.parametrize("name", sorted(n for n in ENTRIES if is_public(n) or n == "<module>"))
def test_every_public_name_has_a_docstring_in_the_stub(name):
    assert ENTRIES[name][1], f"{name} has no docstring in {STUB.name}"


@pytest.mark.parametrize("name", sorted(DOCUMENTED))
def test_runtime_docstring_is_the_stub_docstring(name):
    assert inspect.getdoc(runtime(name)) == inspect.cleandoc(DOCUMENTED[name])


@pytest.mark.parametrize(
    "cls", [n for n in sorted(_core.__all__) if isinstance(getattr(_core, n), type)]
)
def test_every_public_runtime_attribute_is_in_the_stub_with_a_docstring(cls):
    """The other direction: nothing public at runtime goes without a stub docstring."""
    obj = getattr(_core, cls)
    names = [n for n in vars(obj) if not n.startswith("_")]
    assert not [n for n in names if f"{cls}.{n}" not in DOCUMENTED]
    assert all(inspect.getdoc(getattr(obj, n)) for n in names)


def help_text(obj: Any) -> str:
    return pydoc.render_doc(obj, renderer=pydoc.plaintext)


def stub_parameters(node: ast.AST) -> list[str]:
    assert isinstance(node, ast.FunctionDef)
    a = node.args
    names = [p.arg for p in [*a.posonlyargs, *a.args, a.vararg, *a.kwonlyargs, a.kwarg] if p]
    return [n for n in names if n not in ("self", "cls")]


CALLABLES = sorted(
    name
    for name, (node, _) in ENTRIES.items()
    if isinstance(node, ast.FunctionDef)
    and is_public(name)
    and not any(isinstance(d, ast.Name) and d.id == "property" for d in node.decorator_list)
)


@pytest.mark.parametrize("name", CALLABLES)
def test_help_shows_signature_and_stub_text(name):
    """pyo3 keeps the text signature in front of the docstring; help() shows both."""
    obj = runtime(name)
    parameters = [p for p in inspect.signature(obj).parameters if p not in ("self", "cls")]
    assert parameters == stub_parameters(ENTRIES[name][0])
    first_line = inspect.cleandoc(DOCUMENTED[name]).splitlines()[0]
    assert f"{name.rpartition('.')[2]}(" in help_text(obj)
    assert first_line in help_text(obj)


@pytest.mark.parametrize("cls", [n for n in CLASSES if "__new__" in vars(getattr(_core, n))])
def test_constructor_signature(cls):
    """help() shows the constructor's parameters, as the stub's ``__new__`` names them."""
    new = next(
        n
        for n in ENTRIES[cls][0].body  # type: ignore[attr-defined]
        if isinstance(n, ast.FunctionDef) and n.name == "__new__"
    )
    stub = [a.arg for a in new.args.posonlyargs + new.args.args + new.args.kwonlyargs][1:]
    stub += [a.arg for a in (new.args.vararg, new.args.kwarg) if a is not None]
    assert list(inspect.signature(getattr(_core, cls)).parameters) == stub


def test_help_of_the_issue_example():
    text = help_text(sockwire.PacketFormat.pack)
    assert "pack(self, /, body, msg_id=0, **fields)" in text
    assert "One frame carrying ``body``." in text


# Ordering. A class with __eq__ has a tp_richcompare slot, and CPython then puts all six
# comparison wrappers in its dict. Where the stub declares __eq__ and no ordering, sockwire
# deletes __lt__, __le__, __gt__ and __ge__ again (src/py/mod.rs), so the class looks like a
# Python class that defines only __eq__; `<` raises TypeError as for any unordered type.
ORDERING = ("__lt__", "__le__", "__gt__", "__ge__")


def stub_methods(cls: str) -> set[str]:
    node = ENTRIES[cls][0]
    assert isinstance(node, ast.ClassDef)
    return {n.name for n in node.body if isinstance(n, ast.FunctionDef)}


UNORDERED = [
    c for c in CLASSES if "__eq__" in stub_methods(c) and not stub_methods(c) & set(ORDERING)
]
SAMPLES = {
    "Packet": (sockwire.Packet(b"a"), sockwire.Packet(b"b")),
    "PacketFormat": (sockwire.PacketFormat("!I"), sockwire.PacketFormat("!H")),
    "Compression": (sockwire.Compression("zlib"), sockwire.Compression("zstd")),
    "Cipher": (
        sockwire.Cipher("aes-128-gcm", bytes(16)),
        sockwire.Cipher("aes-256-gcm", bytes(32)),
    ),
}


def test_the_unordered_classes():
    assert sorted(UNORDERED) == ["Cipher", "ClientInfo", "Compression", "Packet", "PacketFormat"]
    assert not any(stub_methods(c) & set(ORDERING) for c in CLASSES)


def test_packets_are_not_ordered():
    a, b = sockwire.Packet(b"a"), sockwire.Packet(b"b")
    with pytest.raises(TypeError, match="'<' not supported between instances of"):
        a < b  # noqa: B015
    assert a == sockwire.Packet(b"a") and a != b


@pytest.mark.parametrize("cls", sorted(SAMPLES))
@pytest.mark.parametrize("op", ["<", "<=", ">", ">="])
def test_ordering_raises_type_error_like_the_stdlib(cls, op):
    a, b = SAMPLES[cls]
    with pytest.raises(TypeError) as exc:
        eval(f"a {op} b")
    assert str(exc.value) == (
        f"'{op}' not supported between instances of 'sockwire.{cls}' and 'sockwire.{cls}'"
    )
    with pytest.raises(TypeError):
        eval(f"a {op} 1")
    # Equality is untouched.
    assert a == a and a != b and not (a == b) and not (a != a)
    assert (a == 1) is False and (a != 1) is True and (1 == a) is False


@pytest.mark.parametrize("cls", UNORDERED)
def test_help_lists_no_ordering_methods(cls):
    obj = getattr(_core, cls)
    assert "__eq__" in vars(obj)
    assert not [m for m in ORDERING if m in vars(obj)]
    assert "__lt__" not in help_text(obj)
