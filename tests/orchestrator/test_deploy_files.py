"""Every compose, Kubernetes, systemd, env and Dockerfile in deploy/ is parsed and checked against
the code: ORCHESTRATE_* names the settings read, queue names the routing table produces, and
`orchestrate` command lines the CLI accepts. A renamed setting, queue or option fails here, not in
somebody's cluster."""

import configparser
import json
import re
import shlex
from pathlib import Path

import click
import pytest
import yaml

from compiler.identity import DEVICE_CLASSES
from orchestrator.cli import main
from orchestrator.remote import API_URL_ENV, TOKEN_ENV
from orchestrator.routing import Target, parse_queue
from orchestrator.settings import environment_variables

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
YAML_FILES = sorted([*DEPLOY.rglob("*.yaml"), *DEPLOY.rglob("*.yml")])
COMPOSE_FILES = [p for p in YAML_FILES if p.name.startswith("compose")]
KUBE_FILES = [p for p in YAML_FILES if "kubernetes" in p.parts]
UNIT_FILES = sorted(DEPLOY.rglob("*.service"))
ENV_FILES = sorted(DEPLOY.rglob("*.env.example"))
DOCKERFILES = sorted(DEPLOY.rglob("Dockerfile*"))
ALL_FILES = sorted({*YAML_FILES, *UNIT_FILES, *ENV_FILES, *DOCKERFILES, *DEPLOY.rglob("*.md")})

# compile.<arch> or compile.<arch>.<class>; a placeholder such as sm<NN> is not a queue name.
# (Possessive, so that "compile.x86_64.sm<NN>" does not back off to "compile.x86_64".)
QUEUE = re.compile(r"\bcompile(?:\.[a-z0-9_-]+){1,2}+(?![\w<])")
ENV_NAME = re.compile(r"\bORCHESTRATE_[A-Z0-9_]+\b")


def _rel(path):
    return str(path.relative_to(DEPLOY))


# ----------------------------------------------------------------------------------- parsing
def _yaml_documents(path):
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def _unit(path):
    parser = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    parser.optionxform = str  # keys are case-sensitive in systemd
    # systemd allows repeated keys (Environment=, ExecStartPre=): keep every value.
    values: dict[tuple[str, str], list[str]] = {}
    section = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        values.setdefault((section, key.strip()), []).append(value.strip())
    parser.read_string(path.read_text())  # well-formed as an INI file, too
    return values


def _containers(doc):
    spec = doc.get("spec", {})
    pod = spec.get("template", {}).get("spec", {}) if "template" in spec else spec
    return pod.get("containers", []) + pod.get("initContainers", [])


def _commands():
    """(where, argv) of every command line in deploy/ that runs `orchestrate`."""
    found = []
    for path in COMPOSE_FILES:
        for name, service in _yaml_documents(path)[0]["services"].items():
            for argv in (service.get("command"), (service.get("healthcheck") or {}).get("test")):
                if isinstance(argv, str):
                    argv = shlex.split(argv)
                if argv and argv[0] in ("CMD", "CMD-SHELL"):
                    argv = argv[1:] if argv[0] == "CMD" else shlex.split(argv[1])
                if argv:
                    found.append((f"{_rel(path)}:{name}", list(argv)))
    for path in KUBE_FILES:
        for doc in _yaml_documents(path):
            for container in _containers(doc):
                argv = [*container.get("command", []), *container.get("args", [])]
                found.append((f"{_rel(path)}:{container['name']}", argv))
                for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
                    exec_ = (container.get(probe) or {}).get("exec")
                    if exec_:
                        found.append((f"{_rel(path)}:{container['name']}:{probe}", exec_["command"]))
    for path in UNIT_FILES:
        for (section, key), values in _unit(path).items():
            if section == "Service" and key.startswith("Exec"):
                found += [(f"{_rel(path)}:{key}", shlex.split(v.lstrip("-@+!"))) for v in values]
    for path in DOCKERFILES:
        for line in path.read_text().splitlines():
            match = re.match(r"(CMD|ENTRYPOINT)\s+(\[.*\])\s*$", line)
            if match and json.loads(match.group(2)):
                found.append((f"{_rel(path)}:{match.group(1)}", json.loads(match.group(2))))
    return [(where, argv) for where, argv in found if argv and Path(argv[0]).name == "orchestrate"]


def parse_cli(argv):
    """Parse an `orchestrate ...` command line as the CLI would, without running it; returns
    the innermost command's context (raises click.UsageError for a bad command or option)."""
    command: click.Command = main
    name, args, ctx = "orchestrate", list(argv[1:]), None
    while True:
        ctx = command.make_context(name, args, parent=ctx)
        if not isinstance(command, click.Group):
            return ctx
        rest = [*getattr(ctx, "_protected_args", []), *ctx.args]
        if not rest:
            raise click.UsageError(f"{' '.join(argv)}: missing a command after {name}")
        name, resolved, args = command.resolve_command(ctx, rest)
        assert resolved is not None
        command = resolved


# ------------------------------------------------------------------------------------ checks
def test_the_files_the_guide_describes_are_all_here_and_parse():
    assert {p.name for p in COMPOSE_FILES} >= {"compose.yaml", "compose.gpu-node.yaml"}
    kinds = {doc["kind"] for p in KUBE_FILES for doc in _yaml_documents(p)}
    assert kinds >= {"Secret", "Job", "Deployment"}
    assert UNIT_FILES and ENV_FILES and DOCKERFILES


@pytest.mark.parametrize("path", ALL_FILES, ids=_rel)
def test_every_orchestrate_variable_is_one_the_settings_read(path):
    names = set(ENV_NAME.findall(path.read_text()))
    # the farm's settings, and the two the CLI and client read to go through the API server
    known = environment_variables() | {API_URL_ENV, TOKEN_ENV}
    unknown = sorted(names - known)
    assert not unknown, f"{_rel(path)} sets {unknown}, which neither orchestrator/settings.py nor the client reads"


@pytest.mark.parametrize("path", ALL_FILES, ids=_rel)
def test_every_queue_name_is_one_the_routing_table_produces(path):
    for name in QUEUE.findall(path.read_text()):
        target = parse_queue(name)
        assert target.queue == name, f"{_rel(path)}: {name} is spelled {target.queue} by routing"
        if target.device_class is not None:
            known = DEVICE_CLASSES.get(target.device_class)
            assert known is not None, f"{_rel(path)}: {name}: no device class {target.device_class}"
            assert known.arch in (None, target.arch), f"{_rel(path)}: {name}: {known.arch} only"


def test_every_orchestrate_command_line_is_one_the_cli_accepts():
    commands = _commands()
    where = {w.split(":")[0] for w, _ in commands}
    # Each kind of file is covered, so a new file's commands are not silently skipped.
    assert {_rel(p) for p in [*COMPOSE_FILES, *KUBE_FILES, *UNIT_FILES]} - where <= {
        "kubernetes/secret.yaml"
    }
    for location, argv in commands:
        try:
            parse_cli(argv)
        except click.ClickException as exc:
            pytest.fail(f"{location}: `{' '.join(argv)}` is refused by the CLI: {exc.format_message()}")


def test_the_checker_refuses_what_the_cli_refuses():
    with pytest.raises(click.UsageError):
        parse_cli(["orchestrate", "worker", "--no-such-option"])
    with pytest.raises(click.UsageError):
        parse_cli(["orchestrate", "wokrer"])
    with pytest.raises(click.BadParameter):
        parse_cli(["orchestrate", "worker", "--pool", "gevent"])
    with pytest.raises(click.UsageError):
        parse_cli(["orchestrate", "db"])
    assert parse_cli(["orchestrate", "db", "upgrade"]).command.name == "upgrade"
    assert QUEUE.findall("compile.x86_64.sm<NN> and compile.aarch64.orin.") == ["compile.aarch64.orin"]


def test_compose_services_have_images_and_gpu_workers_are_pinned_one_per_gpu():
    for path in COMPOSE_FILES:
        services = _yaml_documents(path)[0]["services"]
        for name, service in services.items():
            assert "image" in service or "build" in service, f"{_rel(path)}:{name} has no image"
    control = _yaml_documents(DEPLOY / "datacenter/compose.yaml")[0]["services"]
    assert {"redis", "postgres", "migrate"} <= set(control)
    assert control["migrate"]["command"] == ["orchestrate", "db", "upgrade"]
    workers = _yaml_documents(DEPLOY / "datacenter/compose.gpu-node.yaml")[0]["services"]
    pins = [s["environment"]["CUDA_VISIBLE_DEVICES"] for s in workers.values()]
    assert len(pins) >= 2 and len(set(pins)) == len(pins)
    ports = [s["environment"]["ORCHESTRATE_METRICS_PORT"] for s in workers.values()]
    assert len(set(ports)) == len(ports)
    for service in workers.values():
        assert service["command"][:2] == ["orchestrate", "worker"]
        assert service["healthcheck"]["test"] == ["CMD", "orchestrate", "worker-alive"]
        (device,) = service["deploy"]["resources"]["reservations"]["devices"]
        assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]


def test_kubernetes_workers_select_their_nodes_request_a_gpu_and_probe_the_heartbeat():
    docs = [doc for p in KUBE_FILES for doc in _yaml_documents(p)]
    secret = next(d for d in docs if d["kind"] == "Secret")
    assert {"ORCHESTRATE_DATABASE_URL", "ORCHESTRATE_BROKER_URL"} <= set(secret["stringData"])
    job = next(d for d in docs if d["kind"] == "Job")
    assert _containers(job)[0]["command"] == ["orchestrate", "db", "upgrade"]
    deployments = [d for d in docs if d["kind"] == "Deployment"]
    classes = set()
    for deployment in deployments:
        pod = deployment["spec"]["template"]["spec"]
        device_class = pod["nodeSelector"]["orchestrate.dev/device-class"]
        classes.add(device_class)
        known = DEVICE_CLASSES[device_class]
        arch = {"amd64": "x86_64", "arm64": "aarch64"}[pod["nodeSelector"]["kubernetes.io/arch"]]
        assert known.arch in (None, arch)
        (container,) = pod["containers"]
        assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
        assert container["envFrom"] == [{"secretRef": {"name": secret["metadata"]["name"]}}]
        assert container["livenessProbe"]["exec"]["command"] == ["orchestrate", "worker-alive"]
        options = parse_cli(container["command"]).params
        assert options["queues"].split(",") == [Target(arch).queue, Target(arch, device_class).queue]
    assert {"sm90", "orin"} <= classes


def test_systemd_unit_runs_a_worker_with_an_environment_file_of_known_variables():
    (unit,) = UNIT_FILES
    values = _unit(unit)
    (exec_start,) = values[("Service", "ExecStart")]
    assert shlex.split(exec_start)[1] == "worker"
    assert values[("Service", "EnvironmentFile")] == ["/etc/orchestrate/worker.env"]
    for env_file in ENV_FILES:
        names = [line.split("=", 1)[0] for line in env_file.read_text().splitlines()
                 if line and not line.startswith("#")]
        assert {"ORCHESTRATE_DATABASE_URL", "ORCHESTRATE_BROKER_URL"} <= set(names)
