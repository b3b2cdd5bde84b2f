"""Print the configuration table of the README from ``kitrade.config.Settings``.

Usage: python scripts/settings_table.py
"""

from __future__ import annotations

from kitrade.config import Settings, env_var_name


def rows() -> list[tuple[str, str, str]]:
    """(variable, default, meaning) for every setting."""
    out = []
    for name, info in Settings.model_fields.items():
        default = info.default
        if default is None:
            shown = "unset"
        elif isinstance(default, bool):
            shown = f"`{int(default)}`"
        elif default == "":
            shown = "empty"
        elif name == "data_dir":
            shown = "`~/.kitrade`"
        else:
            shown = f"`{default}`"
        out.append((env_var_name(name), shown, info.description or ""))
    return out


def main() -> None:
    """Print the markdown table."""
    print("| variable | default | meaning |")
    print("|---|---|---|")
    for var, default, desc in rows():
        print(f"| `{var}` | {default} | {desc} |")


if __name__ == "__main__":
    main()
