"""docs/ says what the code has: every table and view of the store, every exit code, every environment
variable prefgen reads, and a Python API whose imports exist."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from prefgen.errors import ExitCode
from prefgen.storage.db import Store

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"


def test_every_table_and_view_of_the_store_is_documented(tmp_path):
    with Store(tmp_path / "s.duckdb") as store:
        names = [row[0] for row in store.con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'").fetchall()]
    text = (DOCS / "store.md").read_text()
    assert len(names) > 20
    assert [n for n in names if f"`{n}`" not in text] == []


def test_every_exit_code_is_documented():
    text = (DOCS / "exit-codes.md").read_text()
    for code in ExitCode:
        assert re.search(rf"^\| {code.value} \| `{code.name}` \|", text, re.MULTILINE), code


def test_every_environment_variable_prefgen_reads_is_documented():
    read = set()
    for path in (REPO / "prefgen").rglob("*.py"):
        read |= set(re.findall(r"os\.environ(?:\.get|\.setdefault)?\(\s*\"([A-Z_]+)\"", path.read_text()))
    text = (DOCS / "environment.md").read_text()
    assert {"OPENAI_BASE_URL", "OPENAI_API_KEY", "ANTHROPIC_API_KEY"} <= read
    assert [v for v in sorted(read | {"PREFGEN_API_KEY", "_PREFGEN_COMPLETE"}) if f"`{v}`" not in text] == []


def test_the_python_api_page_imports_what_exists():
    code = "\n".join(re.findall(r"```python\n(.*?)```", (DOCS / "python-api.md").read_text(), re.DOTALL))
    imports = [node for node in ast.walk(ast.parse(code, "python-api.md")) if isinstance(node, ast.ImportFrom)]
    assert imports
    for node in imports:
        module = __import__(node.module, fromlist=[a.name for a in node.names])
        for alias in node.names:
            assert hasattr(module, alias.name), f"{node.module}.{alias.name}"


def test_every_prefgen_call_the_docs_show_is_on_the_facade():
    import prefgen

    for page in (DOCS / "python-api.md", REPO / "README.md"):
        code = "\n".join(re.findall(r"```python\n(.*?)```", page.read_text(), re.DOTALL))
        used = {node.attr for node in ast.walk(ast.parse(code, page.name)) if isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name) and node.value.id == "prefgen"
                and not node.attr.startswith("__")}  # `prefgen.__file__` finds the examples, and is no call
        assert used, page
        assert sorted(used - set(prefgen.__all__)) == [], page


def _shell_commands(text: str) -> list[str]:
    """`prefgen ...` command lines of the ```bash blocks, continuation lines joined, comments dropped."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.DOTALL):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("  #")[0].strip()
            if line.startswith("prefgen "):
                commands.append(line)
    return commands


def test_every_command_and_option_the_readme_shows_exists():
    import shlex

    from prefgen.cli import cli

    commands = _shell_commands((REPO / "README.md").read_text())
    assert len(commands) >= 10
    for line in commands:
        words = shlex.split(line)[1:]
        command = cli.commands.get(words[0])
        assert command is not None, line
        options = {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}
        assert [w for w in words if w.startswith("--") and w not in options] == [], line


def test_readme_links_point_to_files_of_the_repository():
    for target in re.findall(r"\]\(([^)#]+)\)", (REPO / "README.md").read_text() + (DOCS / "README.md").read_text()):
        if not target.startswith("http"):
            assert (REPO / target).exists() or (DOCS / target).exists(), target
    assert "DESIGN.md" not in (REPO / "README.md").read_text()


def test_every_route_weight_is_documented_with_its_flag_and_default():
    from prefgen.pipelines.configs import RouteWeights

    text = (DOCS / "routing.md").read_text()
    for name, info in RouteWeights.model_fields.items():
        flag = "--weight-" + name.replace("_", "-")
        assert f"| `{name}` | `{flag}` | {info.default} |" in text, name
