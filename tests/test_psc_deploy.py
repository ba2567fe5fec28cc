"""Pro Santé Connect in a production render: `.env` settings become Synapse's
`oidc_providers` entry (which Synapse's own config loader accepts), 0600 secret files beside
homeserver.yaml, and the bridge's `psc:` section; mistakes are named; without the settings
nothing about PSC is written."""

from __future__ import annotations

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


def test_render_writes_the_psc_provider_the_files_and_the_bridge_rule(tmp_path: Path) -> None:
    from synapse.config.oidc import _parse_oidc_config_dict

    (tmp_path / "psc-client-secret").write_text("the-client-secret\n")
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
