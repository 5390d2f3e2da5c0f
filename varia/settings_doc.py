"""The settings as documentation: the README's table and the `varia worker --help` epilog,
generated from the model (`tests/test_settings.py` checks the README's copy)."""

from __future__ import annotations

from pydantic.fields import FieldInfo

from varia.config import Settings


def _shown_default(field: FieldInfo) -> str:
    default = field.get_default(call_default_factory=True)
    if default is None:
        return "unset"
    if isinstance(default, list):
        return ", ".join(map(str, default)) or "empty"
    return str(default)


def settings_rows() -> list[tuple[str, str, str]]:
    """(env var, default, meaning) of every setting, in the model's order."""
    return [
        (str(field.alias or name), _shown_default(field), field.description or "")
        for name, field in Settings.model_fields.items()
    ]


def settings_markdown() -> str:
    """The README's settings table, generated from the model."""
    lines = ["| env var | default | meaning |", "|---|---|---|"]
    lines += [f"| `{env}` | `{default}` | {meaning} |" for env, default, meaning in settings_rows()]
    return "\n".join(lines)


def settings_help() -> str:
    """Every setting as help text: one paragraph each (the `varia worker --help` epilog)."""
    entries = [
        f"{env} (default: {default}): {meaning}" for env, default, meaning in settings_rows()
    ]
    return "Settings (environment variables):\n\n" + "\n\n".join(entries)
