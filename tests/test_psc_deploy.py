"""Pro Santé Connect in a production render: `.env` settings become Synapse's
`oidc_providers` entry (which Synapse's own config loader accepts), 0600 secret files beside
homeserver.yaml, and the bridge's `psc:` section; mistakes are named; without the settings
nothing about PSC is written."""

from __future__ import annotations

import json
import os
import stat
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from bridge.config import parse_config as parse_bridge_config
from deploy.production.envfile import SECRET_KEYS, EnvFileError
from deploy.production.render import prepare_data_dirs, render
from deploy.production.settings import Settings, Topology

BRIDGE_TOKEN = "b" * 64


def env(**extra: str) -> dict[str, str]:
    values = {
        "CADUCEE_SERVER_NAME": "sante-nord.test",
        "CADUCEE_MATRIX_HOST": "matrix.sante-nord.test",
        "CADUCEE_ELEMENT_HOST": "element.sante-nord.test",
        "CADUCEE_ADMIN_EMAIL": "admin@sante-nord.test",
    }
    values |= {name: f"secret-{name.lower()}-" + "x" * 40 for name in SECRET_KEYS}
    return values | extra


def rendered(tmp_path: Path, settings: Settings) -> tuple[dict, dict, Path]:  # type: ignore[type-arg]
    topology = replace(
        Topology.containers(),
        config_dir=tmp_path / "etc",
        synapse_data_dir=tmp_path / "synapse",
        bridge_data_dir=tmp_path / "bridge",
        bot_data_dir=tmp_path / "bot",
    )
    prepare_data_dirs(topology)
    files = render(settings, topology, topology.config_dir)
    return (
        yaml.safe_load(files.homeserver.read_text()),
        yaml.safe_load(files.bridge.read_text()),
        topology.config_dir / "synapse",
    )


def _secret_file(tmp_path: Path, mode: int = 0o600) -> Path:
    path = tmp_path / "psc-client-secret"
    path.write_text("the-client-secret\n")
    os.chmod(path, mode)
    return path


def test_render_writes_the_psc_provider_the_files_and_the_bridge_rule(tmp_path: Path) -> None:
    from synapse.config.oidc import _parse_oidc_config_dict

    _secret_file(tmp_path)
    settings = Settings.from_env(
        env(
            CADUCEE_PSC_ENV="production",
            CADUCEE_PSC_CLIENT_ID="caducee-sante-nord",
            CADUCEE_PSC_CLIENT_SECRET_FILE="psc-client-secret",
            CADUCEE_PSC_BRIDGE_TOKEN=BRIDGE_TOKEN,
            CADUCEE_PSC_ADMISSION="register",
            CADUCEE_PSC_PROFESSIONS="10, 40",
        ),
        env_dir=tmp_path,
    )
    homeserver, bridge, synapse_dir = rendered(tmp_path / "out", settings)
    [provider] = homeserver["oidc_providers"]
    assert provider["issuer"] == "https://auth.esw.esante.gouv.fr/auth/realms/esante-wallet"
    assert provider["authorization_endpoint"] == "https://wallet.esw.esante.gouv.fr/auth"
    assert provider["client_id"] == "caducee-sante-nord"
    assert (provider["discover"], provider["pkce_method"]) == (False, "always")
    assert provider["additional_authorization_parameters"] == {"acr_values": "eidas1"}
    text = (synapse_dir.parent / "synapse" / "homeserver.yaml").read_text()
    assert "the-client-secret" not in text and BRIDGE_TOKEN not in text
    for name in ("psc-client-secret", "psc-bridge.token"):
        assert stat.S_IMODE(os.stat(synapse_dir / name).st_mode) == 0o600
    assert (synapse_dir / "psc-client-secret").read_text() == "the-client-secret"
    template_dir = Path(homeserver["templates"]["custom_template_directory"])
    assert (template_dir / "sso_error.html").is_file()
    # Synapse's own loader accepts the entry and loads Caducée's mapping provider from it.
    mapping = provider["user_mapping_provider"]["config"]
    assert mapping["bridge_url"] == "http://bridge:8780"
    provider = {
        **provider,
        "client_secret_path": str(synapse_dir / "psc-client-secret"),
        "user_mapping_provider": {
            **provider["user_mapping_provider"],
            "config": {**mapping, "bridge_token_file": str(synapse_dir / "psc-bridge.token")},
        },
    }
    assert _parse_oidc_config_dict(provider, ("oidc_providers", "<item 0>")).idp_id == "oidc-psc"
    # The bridge knows the rule and the homeserver's token.
    bridge["data_dir"] = str(tmp_path / "bridge-data")
    bridge["service_tokens"][0]["token"] = "t" * 64
    config = parse_bridge_config(bridge, source="rendered", base_dir=tmp_path)
    assert config.psc is not None
    assert (config.psc.admission, config.psc.professions) == ("register", ("10", "40"))
    assert config.service_token_for(BRIDGE_TOKEN) is not None
    assert config.service_token_for(BRIDGE_TOKEN).name == config.psc.synapse_token  # type: ignore[union-attr]


def test_the_test_environment_renders_psc_test_hosts_and_doctors_only(tmp_path: Path) -> None:
    """`CADUCEE_PSC_ENV=test` points Synapse at PSC's test environment ("BAS"), never at
    production; without `CADUCEE_PSC_ADMISSION`/`_PROFESSIONS`, members only, doctors."""
    _secret_file(tmp_path)
    settings = Settings.from_env(
        env(
            CADUCEE_PSC_ENV="test",
            CADUCEE_PSC_CLIENT_ID="caducee-bas",
            CADUCEE_PSC_CLIENT_SECRET_FILE="psc-client-secret",
            CADUCEE_PSC_BRIDGE_TOKEN=BRIDGE_TOKEN,
        ),
        env_dir=tmp_path,
    )
    homeserver, bridge, _ = rendered(tmp_path / "out", settings)
    [provider] = homeserver["oidc_providers"]
    bas = "https://auth.bas.psc.esante.gouv.fr/auth/realms/esante-wallet"
    assert provider["issuer"] == bas
    assert provider["authorization_endpoint"] == "https://wallet.bas.psc.esante.gouv.fr/auth"
    for key in ("token_endpoint", "userinfo_endpoint", "jwks_uri"):
        assert provider[key].startswith(bas + "/protocol/openid-connect/"), provider[key]
    assert ".esw." not in yaml.safe_dump(provider)  # no production host
    assert bridge["psc"]["admission"] == "members"
    assert bridge["psc"]["professions"] == ["10"]


def test_a_client_secret_file_others_can_read_is_refused(tmp_path: Path) -> None:
    """The client secret is read from a file only its owner can read, like every secret."""
    secret = _secret_file(tmp_path, mode=0o644)
    values = env(
        CADUCEE_PSC_ENV="test",
        CADUCEE_PSC_CLIENT_ID="caducee-bas",
        CADUCEE_PSC_CLIENT_SECRET_FILE="psc-client-secret",
        CADUCEE_PSC_BRIDGE_TOKEN=BRIDGE_TOKEN,
    )
    with pytest.raises(EnvFileError, match=r"readable by others.*chmod 600") as raised:
        Settings.from_env(values, env_dir=tmp_path)
    assert "the-client-secret" not in str(raised.value)
    os.chmod(secret, 0o600)
    assert Settings.from_env(values, env_dir=tmp_path).psc is not None


def test_without_psc_settings_nothing_about_psc_is_rendered(tmp_path: Path) -> None:
    homeserver, bridge, synapse_dir = rendered(tmp_path, Settings.from_env(env()))
    assert "oidc_providers" not in homeserver
    assert "psc" not in bridge
    assert not (synapse_dir / "psc-bridge.token").exists()


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ({"CADUCEE_PSC_ENV": "staging"}, "CADUCEE_PSC_ENV"),
        ({"CADUCEE_PSC_ENV": "test"}, "CADUCEE_PSC_CLIENT_ID"),
        ({"CADUCEE_PSC_ENV": "test"}, "client secret is missing"),
        ({"CADUCEE_PSC_ENV": "test"}, "CADUCEE_PSC_BRIDGE_TOKEN"),
        ({"CADUCEE_PSC_ENV": "test", "CADUCEE_PSC_CLIENT_SECRET_FILE": "nope"}, "cannot read"),
        ({"CADUCEE_PSC_ENV": "test", "CADUCEE_PSC_ADMISSION": "all"}, "CADUCEE_PSC_ADMISSION"),
        ({"CADUCEE_PSC_ENV": "test", "CADUCEE_PSC_PROFESSIONS": "doctors"}, "PROFESSIONS"),
    ],
)
def test_psc_mistakes_are_named(tmp_path: Path, extra: dict[str, str], named: str) -> None:
    with pytest.raises(EnvFileError, match=named):
        Settings.from_env(env(**extra), env_dir=tmp_path)


def test_the_shipped_element_config_leaves_the_psc_button_to_the_homeserver(
    tmp_path: Path,
) -> None:
    """Element Web and Desktop draw "Continue with Pro Santé Connect" from the homeserver's
    login flows (tests/test_psc_signin.py::test_login_flows_offer_psc_beside_the_password).
    The rendered config.json must neither hide nor bypass it: no SSO redirect options (an
    immediate redirect would hide the password form activation links need), no native OIDC
    settings (they would replace the login page), no login switch in the setting defaults."""
    topology = replace(Topology.containers(), config_dir=tmp_path / "etc")
    _secret_file(tmp_path)
    settings = Settings.from_env(
        env(
            CADUCEE_PSC_ENV="test",
            CADUCEE_PSC_CLIENT_ID="caducee-bas",
            CADUCEE_PSC_CLIENT_SECRET_FILE="psc-client-secret",
            CADUCEE_PSC_BRIDGE_TOKEN=BRIDGE_TOKEN,
        ),
        env_dir=tmp_path,
    )
    topology = replace(
        topology,
        synapse_data_dir=tmp_path / "synapse",
        bridge_data_dir=tmp_path / "bridge",
        bot_data_dir=tmp_path / "bot",
    )
    prepare_data_dirs(topology)
    element = json.loads(render(settings, topology, topology.config_dir).element.read_text())
    words = ("sso", "oidc", "login", "embedded_pages", "delegated_auth")
    allowed = {"disable_3pid_login"}  # e-mail/phone identifiers on the password form, not SSO
    assert not [
        key for key in element if key not in allowed and any(word in key.lower() for word in words)
    ]
    defaults = element["setting_defaults"]
    assert not [key for key in defaults if any(word in key.lower() for word in words)]
    assert element["default_server_config"]["m.homeserver"]["base_url"] == (
        "https://matrix.sante-nord.test"
    )
    assert element["disable_custom_urls"] is True  # this homeserver's flows, no other's


def test_only_the_demo_relaxes_the_per_address_login_limit(tmp_path: Path) -> None:
    """Every demo client signs in from 127.0.0.1: the per-address limit goes, the per-account
    and failed-attempt limits stay Synapse's; production keeps every limit."""
    from deploy.local.ca import ensure_ca
    from deploy.local.demo import demo_specs
    from deploy.local.homeserver import render_config

    spec = demo_specs((18481, 18482))[0]
    assert spec.login_address_relaxed and not spec.testing
    demo = yaml.safe_load(
        render_config(spec, tmp_path / "hs", ensure_ca(tmp_path / "ca")).read_text()
    )
    assert demo["rc_login"] == {"address": {"per_second": 1000, "burst_count": 1000}}
    assert "rc_message" not in demo and "rc_joins" not in demo
    production, _, _ = rendered(tmp_path / "prod", Settings.from_env(env()))
    assert not any(key.startswith("rc_") for key in production)


def test_the_demo_stand_in_vouches_for_the_demo_register_and_status_lists_it(
    tmp_path: Path,
) -> None:
    """What `caducee local status --json` shows under each homeserver's `psc` key: the
    stand-in's issuer and discovery URL (PSC's path) and its identities; and those identities
    play the roles the demo promises against the demo register: the demo accounts, doctors
    without an account, a nurse and an identifier nobody knows."""
    from deploy.local.demo import DEMO_ACCOUNTS, PSC_ADMISSION, demo_psc, psc_status
    from deploy.local.stack import DEMO_REGISTER

    lines = DEMO_REGISTER.read_text(encoding="utf-8").splitlines()
    header = lines[0].split("|")
    column = {name: header.index(name) for name in ("Identifiant PP", "Code profession")}
    register: dict[str, set[str]] = {}
    for line in lines[1:]:
        fields = line.split("|")
        register.setdefault(fields[column["Identifiant PP"]], set()).add(
            fields[column["Code profession"]]
        )

    standin = demo_psc(tmp_path, (18481, 18482))
    for name in ("a", "b"):
        status = psc_status(standin, name)
        assert status["admission"] == PSC_ADMISSION[name]
        assert status["url"] == "http://127.0.0.1:31481/auth/realms/esante-wallet"
        assert status["discovery_url"] == status["url"] + "/.well-known/wallet-openid-configuration"
        json.dumps(status)  # what --json prints
    identities = {i["rpps"]: i for i in psc_status(standin, "a")["identities"]}
    for who in identities.values():
        prefix = "8" if len(who["rpps"]) == 11 else "0"
        assert who["subject_name_id"] == prefix + who["rpps"]
    accounts = {account.rpps for account in DEMO_ACCOUNTS}
    assert accounts <= set(identities)  # every demo account can sign in with PSC
    doctors = {r for r, i in identities.items() if register.get(r) == {"10"}}
    assert len(doctors - accounts) >= 1  # a newcomer A opens an account for, B refuses
    assert any(register.get(r) and "10" not in register[r] for r in identities)  # not a doctor
    assert any(r not in register for r in identities)  # unknown to the directory
    assert {i["profession_code"] for r, i in identities.items() if r in register} == {
        code for r in identities if r in register for code in register[r]
    }
    # The stand-in's own secret stays in its folder, readable by its owner only.
    assert stat.S_IMODE(os.stat(standin.client_secret_path).st_mode) == 0o600
