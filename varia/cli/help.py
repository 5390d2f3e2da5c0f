"""Help that shows names, not types: `INPUTS...` and `-n N`, never `<list[Path]>` or `<bool>`.

typer 0.29 prints each parameter's Python type in help and wraps required arguments in braces
(`{inputs}...`). Options take their name from `metavar` (flags get an empty one); arguments
need this command class, which shows their `metavar` in both the usage line and the table.
"""

from __future__ import annotations

import inspect

from typer import _click as click  # typer 0.29 vendors click
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption


class NamedArgument(TyperArgument):
    """An argument shown by its metavar (e.g. `INPUTS...`), without a type column."""

    def display_type_rich(self, ctx: click.Context) -> str | None:
        """No type: the metavar already names it."""
        return None

    def _usage_display_name(self) -> str:
        return self.display_name_raw


def _untyped_help(option: TyperOption | None) -> TyperOption | None:
    if option is not None:
        option.metavar = ""  # a flag: no `<bool>`
    return option


def reflowed(help_text: str | None) -> str | None:
    """`help_text` with each paragraph on one line: typer 0.29 joins the first paragraph's
    lines but prints the later ones' line breaks as they are, mid-sentence at any width.
    A paragraph with a list or an indented line keeps its breaks."""
    if help_text is None:
        return None
    paragraphs = inspect.cleandoc(help_text).split("\n\n")
    return "\n\n".join(
        paragraph if _keeps_breaks(paragraph) else " ".join(paragraph.split("\n"))
        for paragraph in paragraphs
    )


def _keeps_breaks(paragraph: str) -> bool:
    return any(line.startswith(("-", "*", " ", "\b")) for line in paragraph.split("\n"))


class NamedCommand(TyperCommand):
    """A command whose arguments are `NamedArgument`s, whose `--help` shows no type, and whose
    help paragraphs are reflowed (`reflowed`)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.help = reflowed(self.help)
        for param in self.params:
            if type(param) is TyperArgument:
                param.__class__ = NamedArgument

    def get_help_option(self, ctx: click.Context) -> TyperOption | None:
        """`--help`, shown without a type."""
        return _untyped_help(super().get_help_option(ctx))


class NamedGroup(TyperGroup):
    """The `varia` group: its `--help` shows no type either."""

    def get_help_option(self, ctx: click.Context) -> TyperOption | None:
        """`--help`, shown without a type."""
        return _untyped_help(super().get_help_option(ctx))
