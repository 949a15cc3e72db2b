"""--help reads as a user expects: plain flags show no value type, every option says what it does."""

from __future__ import annotations

import pytest

from ganplug.cli.app import COMMAND_MODULES, command, main

COMMANDS = sorted(command().commands)


def test_every_command_module_is_registered():
    assert len(COMMANDS) >= len(COMMAND_MODULES)


@pytest.mark.parametrize("name", COMMANDS)
def test_flags_show_no_bool_metavar(name, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    assert main([name, "--help"]) == 0
    text = capsys.readouterr().out
    assert "<bool>" not in text and "BOOLEAN" not in text
    assert "--help" in text


@pytest.mark.parametrize("name", COMMANDS)
def test_every_option_has_help_text(name):
    cmd = command().commands[name]
    subs = list(getattr(cmd, "commands", {}).values()) or [cmd]
    missing = [f"{sub.name} {p.opts[0]}" for sub in subs for p in sub.params
               if p.param_type_name == "option" and not (p.help or "").strip()]
    assert not missing, missing
