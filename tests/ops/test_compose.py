"""docker-compose.yml and the Dockerfile, checked structurally (Docker is not available on CI machines)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from equilibrate.cli import build_parser
from equilibrate.settings import Settings

ROOT = Path(__file__).parents[2]
COMPONENTS = {"archive", "features", "risk", "snapshot", "interventions", "dashboard", "api", "produce"}


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return loaded


def test_every_component_is_a_service_with_the_real_command_and_known_settings() -> None:
    services = compose()["services"]
    assert COMPONENTS | {"kafka", "redis"} <= set(services)
    known = {name.upper() for name in Settings.model_fields}
    parser = build_parser()
    for name in COMPONENTS:
        service = services[name]
        assert service["image"] == "equilibrate:latest" and service["build"] == "."
        args = parser.parse_args(service["command"])  # the image's entrypoint is `equilibrate`
        assert args.command == service["command"][0]
        unknown = set(service["environment"]) - known
        assert not unknown, f"{name}: {unknown} are not settings"
        assert service["environment"]["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
        assert service["environment"]["EMBEDDED_SERVICES"] == "never"
        assert service["restart"] == "unless-stopped"
        assert service["depends_on"] == {
            "kafka": {"condition": "service_healthy"},
            "redis": {"condition": "service_healthy"},
        }
        assert "equilibrate-data:/data" in service["volumes"]
        check = service["healthcheck"]
        if name == "produce":
            assert check == {"disable": True} and service["profiles"] == ["demo"]
        elif name in {"dashboard", "api"}:
            assert any("/health" in part for part in check["test"])
        else:
            assert check["test"] == ["CMD", "equilibrate", "status", "--component", name]


def test_services_the_host_reaches_and_durable_storage() -> None:
    doc = compose()
    services = doc["services"]
    assert services["redis"]["command"][:3] == ["redis-server", "--appendonly", "yes"]
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft
    assert "INTERNAL://kafka:9092" in services["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    assert {"kafka-data", "redis-data", "equilibrate-data"} <= set(doc["volumes"])
    assert services["dashboard"]["ports"] == ["8501:8501"] and services["api"]["ports"] == ["8000:8000"]
    assert services["api"]["environment"]["API_MODE"] == "production"  # keys required in the stack
    assert services["dashboard"]["environment"]["DASHBOARD_HOST"] == "0.0.0.0"  # inside its container


def test_the_dockerfile_builds_from_files_that_exist() -> None:
    text = (ROOT / "Dockerfile").read_text()
    for source in re.findall(r"^COPY (.+) \S+$", text, flags=re.MULTILINE):
        for part in source.split():
            assert (ROOT / part).exists(), part
    assert re.search(r"^USER equilibrate$", text, flags=re.MULTILINE)  # never root
    assert 'ENTRYPOINT ["equilibrate"]' in text and "espeak-ng" in text
