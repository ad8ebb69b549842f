"""mypy --strict accepts the README's Python snippets and the examples as written.

sockwire's API is typed by python/sockwire/_core.pyi; this checks that the stub composes the way
the documentation uses it (``create_client(listener.getsockname())``, ``host, port =
sock.getsockname()``, ...). The third-party packages the snippets import (trustme, zstandard,
cryptography) ship their own types, so no import is exempted from checking.
"""

import pathlib
import re
import shutil
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))


def readme_snippets() -> list[tuple[int, str]]:
    """Each ```python block of the README with the README line its code starts on."""
    text = README.read_text()
    return [
        (text.count("\n", 0, m.start(1)) + 1, m.group(1))
        for m in re.finditer(r"```python\n(.*?)```", text, flags=re.S)
    ]


# How addresses compose, and what the stub must refuse: each `type: ignore[code]` has to match
# an error, or --strict (--warn-unused-ignores) reports it.
CONTRACT = """
import sockwire

listener = sockwire.server_listener(("127.0.0.1", 0), 1)
client = sockwire.create_client(listener.getsockname(), timeout=5)
conn = sockwire.connect(listener.getsockname(), sockwire.PacketFormat("!H"))
host, port = listener.getsockname()
same_port: int = client.getpeername()[1]
accepted, peer = listener.accept()
sockwire.create_client(peer)
accepted.connect(accepted.getpeername())
sockwire.create_client(("::1", 0, 0, 0))
sockwire.create_client(("::1", 0, 0))
sockwire.server_listener((b"localhost", 0), 1)
info = listener.clients.get(accepted.fileno())
if info is not None:
    sockwire.create_client(info.addr)

sockwire.create_client("localhost:80")  # type: ignore[arg-type]
sockwire.create_client(("localhost", "80"))  # type: ignore[arg-type]
sockwire.connect(("localhost", 80, 0, 0, 0))  # type: ignore[arg-type]
info.client_fd  # type: ignore[union-attr]
sockwire.Packet(b"a") < sockwire.Packet(b"b")  # type: ignore[operator]
"""


def test_readme_and_examples_pass_mypy_strict(tmp_path):
    snippets = readme_snippets()
    assert len(snippets) >= 8 and EXAMPLES
    files = [tmp_path / "api_contract.py"]
    files[0].write_text(CONTRACT)
    for i, (line, code) in enumerate(snippets):
        # Blank lines in front keep mypy's line numbers those of README.md.
        path = tmp_path / f"readme_snippet{i}.py"
        path.write_text("\n" * (line - 1) + code)
        files.append(path)
    for example in EXAMPLES:
        path = tmp_path / f"example_{example.name}"
        shutil.copy(example, path)
        files.append(path)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--cache-dir",
            str(tmp_path / ".mypy_cache"),
            *(f.name for f in files),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,  # away from the source tree: sockwire is checked as installed
    )
    # readme_snippetN.py:LINE is README.md:LINE; example_NAME.py:LINE is examples/NAME.py:LINE;
    # api_contract.py is CONTRACT.
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"no issues found in {len(files)} source files" in proc.stdout
