"""docs/operations.md stays true to the command line: every `credsup …` it shows names a command
that exists and only options that command accepts (each with its value where it takes one), its
shell blocks are valid bash, and its settings table names every setting. Renaming a command or
an option, or adding a setting, fails here until the guide follows."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from typing import Any

import pytest
import typer.main

from cli.main import app
from records.settings import Settings
from tests.conftest import REPO

GUIDE = (REPO / "docs" / "operations.md").read_text("utf-8")
FENCED = re.compile(r"```(\w*)\n(.*?)```", re.S)
SH_BLOCKS = [body for lang, body in FENCED.findall(GUIDE) if lang == "sh"]
INLINE = [s for s in re.findall(r"`([^`\n]+)`", FENCED.sub("", GUIDE)) if s.startswith("credsup ")]
SEPARATORS = {";", "&", "&&", "|", "||", "(", ")", "<", ">", ">>", "<(", "2>&1"}


def invocations(shell: str) -> list[list[str]]:
    """The arguments of each `credsup` (or `…/bin/credsup`) invocation in shell text, line by
    line after joining continued lines, comments dropped, each cut at `;`, `&&`, `|`, `>` …"""
    found = []
    for line in shell.replace("\\\n", " ").splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        tokens = list(lexer)
        for i, token in enumerate(tokens):
            if token == "credsup" or token.endswith("/bin/credsup"):
                args = []
                for arg in tokens[i + 1 :]:
                    if arg in SEPARATORS or set(arg) <= set("();|&<>"):
                        break
                    args.append(arg)
                found.append(args)
    return found


def problems(args: list[str], root: Any) -> list[str]:
    """What is wrong with one invocation: an unknown command or option, or an option that takes
    a value given none. Invocations that pass their arguments on (`"$@"`) are not checked."""
    if not args or args[0].startswith("$") or "…" in args[0]:
        return []
    command, path = root, ["credsup"]
    rest = list(args)
    while hasattr(command, "commands"):
        if not rest:
            return [f"`{' '.join(path)}` is a group: name one of its commands"]
        name = rest.pop(0)
        if name not in command.commands:
            return [f"`{' '.join(path)}` has no command {name!r}"]
        command, path = command.commands[name], [*path, name]
    options: dict[str, Any] = {"--help": None}
    for param in command.params:
        for opt in [*getattr(param, "opts", []), *getattr(param, "secondary_opts", [])]:
            if opt.startswith("-"):
                options[opt] = param
    found = []
    for i, arg in enumerate(rest):
        if not arg.startswith("--"):
            continue
        name = arg.split("=", 1)[0]
        if name not in options:
            found.append(f"`{' '.join(path)}` does not accept {name} (it takes {sorted(options)})")
            continue
        param = options[name]
        takes_value = param is not None and not getattr(param, "is_flag", False)
        if takes_value and "=" not in arg and (i + 1 == len(rest) or rest[i + 1].startswith("--")):
            found.append(f"`{' '.join(path)}`: {name} needs a value")
    return found


def test_the_guide_shows_the_commands_and_scripts_it_is_meant_to() -> None:
    scripts = [b for b in SH_BLOCKS if b.startswith("#!/usr/bin/env bash\n")]
    assert len(scripts) == 2, "the monthly job and the backup"
    assert all("set -euo pipefail" in s for s in scripts)
    shown = [args[0] for block in SH_BLOCKS for args in invocations(block) if args]
    for command in ("ingest", "events", "records", "score", "train", "promote", "tier", "load",
                    "lists", "plan", "serve", "keys", "audit", "db"):  # fmt: skip
        assert command in shown or any(s.startswith(f"credsup {command}") for s in INLINE), command
    assert len(shown) >= 30, shown


def test_every_credsup_command_of_the_guide_exists_with_its_options() -> None:
    root = typer.main.get_command(app)
    found = [args for block in SH_BLOCKS for args in invocations(block)]
    found += [invocations(span)[0] for span in INLINE]
    wrong = [p for args in found for p in problems(args, root)]
    assert not wrong, "\n".join(wrong)


def test_the_check_catches_a_renamed_option_or_command() -> None:
    root = typer.main.get_command(app)
    [args] = invocations('step tier credsup tier --as-off "$AS_OF" --json  # a comment --x')
    assert args == ["tier", "--as-off", "$AS_OF", "--json"]
    assert problems(args, root) and "--as-off" in problems(args, root)[0]
    assert problems(["plan", "draw", "--name", "x"], root)
    assert problems(["plan"], root)
    assert problems(["score", "--as-of"], root) == ["`credsup score`: --as-of needs a value"]
    assert not problems(["train", "--no-plots", "--json"], root)
    assert not problems(["lists", "confirm", "5", "--no-rescore"], root)


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
@pytest.mark.parametrize("block", SH_BLOCKS, ids=[b.splitlines()[0][:40] for b in SH_BLOCKS])
def test_each_shell_block_is_valid_bash(block: str) -> None:
    checked = subprocess.run(["bash", "-n"], input=block, text=True, capture_output=True)
    assert checked.returncode == 0, checked.stderr


def test_the_settings_table_names_every_setting() -> None:
    for name, field in Settings.model_fields.items():
        aliases = getattr(field.validation_alias, "choices", None) or [f"CREDSUP_{name.upper()}"]
        assert any(f"`{a}`" in GUIDE for a in aliases), f"{aliases} missing from the guide"
