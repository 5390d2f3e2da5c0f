"""The CLI's help text: each paragraph on one line, so the terminal wraps it, not the source."""

from __future__ import annotations

import inspect

import typer.main
from hypothesis import given
from hypothesis import strategies as st

from varia.cli.app import app
from varia.cli.help import reflowed

words = st.lists(st.text("abc xyz.,()", min_size=1, max_size=12).map(str.strip), min_size=1)


def test_every_commands_help_paragraphs_have_no_line_break_mid_sentence() -> None:
    group = typer.main.get_command(app)
    assert isinstance(group, typer.core.TyperGroup)
    for name, command in group.commands.items():
        for paragraph in inspect.cleandoc(command.help or "").split("\n\n"):
            lines = paragraph.split("\n")
            listed = any(line.startswith(("-", "*", " ")) for line in lines)
            assert listed or len(lines) == 1, f"{name}: {paragraph!r}"


@given(st.lists(words, min_size=1, max_size=4))
def test_reflowing_keeps_every_word_and_every_paragraph(paragraphs: list[list[str]]) -> None:
    source = "\n\n".join("\n".join(w for w in lines if w) or "x" for lines in paragraphs)
    result = reflowed(source)
    assert result is not None
    assert result.split() == inspect.cleandoc(source).split()
    assert result.count("\n\n") == inspect.cleandoc(source).count("\n\n")


def test_a_list_keeps_its_line_breaks() -> None:
    text = "Short.\n\nItems:\n- one\n- two\n\nA long\nsentence."
    assert reflowed(text) == "Short.\n\nItems:\n- one\n- two\n\nA long sentence."
