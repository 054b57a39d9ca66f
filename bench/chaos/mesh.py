"""The engine's processes for a chaos run: one gateway, several workers and hosts.

Each is a `python -m reverb_cli …` subprocess (tests.e2e.processes.Service), so kill -9
leaves it no clean-up. A host keeps its port across restarts, so the address it
registered stays the one workers call.
"""

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from tests.e2e.processes import Service, free_port

APP = str(Path(__file__).with_name("app.py"))
# What a service logs once it does its job: then it is worth killing.
READY = {"worker": '"worker started"', "host": '"app registered"', "gateway": '"gateway started"'}
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Mesh:
    environment: dict[str, str]
    logs: Path
    gateway: Service
    workers: list[Service] = field(default_factory=list)
    hosts: list[Service] = field(default_factory=list)
    # Where each service's log stood when it was last started.
    offsets: dict[str, int] = field(default_factory=dict)

    @property
    def victims(self) -> list[Service]:
        """The processes the run may kill."""
        return [*self.workers, *self.hosts]

    def start(self) -> None:
        for service in (self.gateway, *self.victims):
            self.launch(service)

    def launch(self, service: Service) -> None:
        self.offsets[service.name] = (
            service.log_path.stat().st_size if service.log_path.exists() else 0
        )
        service.start()

    def ready(self, service: Service) -> bool:
        """Whether the service has started since it was last launched (not only forked)."""
        if service.process is None or service.process.poll() is not None:
            return False
        with service.log_path.open("rb") as log:
            log.seek(self.offsets.get(service.name, 0))
            text = log.read().decode(errors="replace")
        return READY[service.name.split("-")[0]] in text

    def eligible(self) -> list[Service]:
        """Processes that may be killed now: started, and not the last started one of
        their kind, so that a kill is a crash the engine recovers from, not an outage."""
        chosen = []
        for group in (self.workers, self.hosts):
            up = [service for service in group if self.ready(service)]
            if len(up) > 1:
                chosen.extend(up)
        return chosen

    def stop(self) -> None:
        for service in (*self.workers, *self.hosts, self.gateway):
            service.stop()

    def exited(self) -> list[Service]:
        """Processes that exited on their own (none of ours was killed without a restart)."""
        return [
            service
            for service in (self.gateway, *self.victims)
            if service.process is not None and service.process.poll() is not None
        ]


def build(
    database_url: str,
    *,
    workers: int,
    hosts: int,
    logs: Path,
    step_log: Path,
    heartbeat_timeout: float,
) -> Mesh:
    logs.mkdir(parents=True, exist_ok=True)
    http = free_port()
    environment = {
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "REVERB_DATABASE_URL": database_url,
        "REVERB_DEV": "true",
        "REVERB_HTTP_ADDRESS": f"127.0.0.1:{http}",
        "REVERB_INGRESS_ADDRESS": f"127.0.0.1:{free_port()}",
        "REVERB_SIGNING_KEY": secrets.token_hex(32),
        "REVERB_WORKER_HEARTBEAT_TIMEOUT": str(heartbeat_timeout),
        "REVERB_LOG_JSON": "true",
        "REVERB_CHAOS_STEP_LOG": str(step_log),
    }
    mesh = Mesh(environment, logs, Service("gateway", ["gateway"], environment, logs))
    for number in range(workers):
        mesh.workers.append(Service(f"worker-{number}", ["worker"], environment, logs))
    for number in range(hosts):
        address = {"REVERB_HOST_ADDRESS": f"127.0.0.1:{free_port()}"}
        mesh.hosts.append(
            Service(f"host-{number}", ["host", APP], {**environment, **address}, logs)
        )
    return mesh


def http_port(mesh: Mesh) -> int:
    return int(mesh.environment["REVERB_HTTP_ADDRESS"].rsplit(":", 1)[1])
