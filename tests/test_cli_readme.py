"""The README's command table is the CLI's own: generated from it, held in place by this test."""

from __future__ import annotations

from deploy import cli_table


def test_the_readme_lists_every_command_as_the_cli_declares_it() -> None:
    readme = cli_table.README.read_text(encoding="utf-8")
    assert readme == cli_table.with_table(readme), (
        "README.md's command table differs from the CLI: run `python -m deploy.cli_table --write`"
    )


def test_the_table_names_every_command_and_option_the_cli_has() -> None:
    table = cli_table.table()
    for expected in (
        "caducee directory changes [--kind new\\|changed\\|disappeared]",
        "[--offset N]",
        "caducee bridge check-config -c FILE",
        "caducee bot check-config -c FILE",
        "caducee bot forget-identity -c FILE USER_ID",
        "caducee deploy backup -c FILE",
    ):
        assert expected in table


def test_a_changed_readme_is_caught() -> None:
    readme = cli_table.README.read_text(encoding="utf-8")
    tampered = readme.replace("caducee bot forget-identity", "caducee bot forget")
    assert tampered != cli_table.with_table(tampered) == readme


def test_group_help_says_what_exists_now() -> None:
    """`--help` is the operator's first read: it names what each group really does."""
    import typer

    from deploy.cli import app

    groups = typer.main.get_command(app).commands  # type: ignore[attr-defined]
    bridge = groups["bridge"].help or ""
    assert "later" not in bridge and "registry" in bridge and "console" in bridge
    admin = " ".join((groups["admin"].help or "").split())
    for what in ("accounts", "member", "homeservers", "peer", "signing key", "audit log"):
        assert what in admin, what
    options = {p.name: p for p in groups["directory"].commands["search"].params}
    assert "./data/bridge.db" in (options["db"].help or "")
