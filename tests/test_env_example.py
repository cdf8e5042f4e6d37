"""`.env.example` documents every setting, with the real default."""

from __future__ import annotations

from pathlib import Path

from equilibrate.settings import Settings

ENV_EXAMPLE = Path(__file__).resolve().parents[1] / ".env.example"


def _documented() -> dict[str, str]:
    out = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            out[name] = value
    return out


def test_every_setting_is_documented_with_its_default() -> None:
    documented = _documented()
    defaults = Settings.model_fields
    assert set(documented) == {name.upper() for name in defaults}
    for name, field in defaults.items():
        default = field.default
        shown = documented[name.upper()]
        if default is None:
            assert shown == "", name
        else:
            assert shown == str(default), (name, shown, default)
