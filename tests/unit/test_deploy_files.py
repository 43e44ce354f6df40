"""deploy/ is what a team runs: the image, docker compose, Kubernetes. No image can be built
and no cluster is reachable where these tests run, so they check the files themselves:

- every YAML parses; the Dockerfile keeps its promises (CPU torch pinned as in
  pyproject.toml, the model inside and offline, a numeric non-root user, ``dml`` as the
  entry point, no secret baked in) and .dockerignore lets in only what it copies;
- the compose file validates against the Compose Specification's JSON schema (vendored by
  check-jsonschema), and ``docker compose config`` accepts it where the docker CLI has its
  compose plugin;
- the Kubernetes manifests validate, strictly (unknown fields are errors), against the
  Kubernetes API schemas bundled in kubernetes-validate, and ``kubectl kustomize`` renders
  them where kubectl is installed;
- they only use ``dml`` commands and options that exist (click's own parser), environment
  variables the code reads, and HTTP paths the servers answer.
"""

from __future__ import annotations

import ast
import importlib
import json
import os
import re
import shlex
import shutil
import subprocess
import tomllib
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from pathlib import Path

import click
import pytest
import yaml

from shell.cli import main as dml_cli

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
K8S = DEPLOY / "k8s"
DOCKERFILE = DEPLOY / "Dockerfile"
COMPOSE = DEPLOY / "docker-compose.yml"
ENV_EXAMPLE = DEPLOY / "dml.env.example"
DOCKERIGNORE = REPO / ".dockerignore"
GUIDE = REPO / "docs" / "deployment.md"
CODE_DIRS = ("bot", "knowledge", "ingest", "shell")

# Kubernetes versions the manifests must validate against: the oldest still common in
# managed clusters, and the newest kubernetes-validate knows (None).
K8S_VERSIONS = ("1.27.0", None)
IMAGE = "registry.example.com/your-team/dml:0.1.0"
UID = 10001

# Environment variables the deploy files may set that DML's code does not read itself.
THIRD_PARTY_ENV = {
    "HF_HUB_OFFLINE": "huggingface_hub: never reach for a hub",
    "TRANSFORMERS_OFFLINE": "transformers: never reach for a hub",
    "HF_HUB_DISABLE_TELEMETRY": "huggingface_hub",
    "TOKENIZERS_PARALLELISM": "tokenizers: no fork warning",
    "OMP_NUM_THREADS": "torch and FAISS thread pools",
    "PYTHONUNBUFFERED": "Python",
    "PYTHONDONTWRITEBYTECODE": "Python",
    "PATH": "the image's virtual environment",
    "PIP_NO_CACHE_DIR": "pip, build stage",
    "PIP_DISABLE_PIP_VERSION_CHECK": "pip, build stage",
    "POSTGRES_USER": "the postgres image",
    "POSTGRES_DB": "the postgres image",
    "POSTGRES_PASSWORD": "the postgres image",
}
# Values that must never sit in the image, a ConfigMap or compose's plain `environment`.
SECRET_ENV = {"SLACK_BOT_TOKEN", "SLACK_APP_TOKEN", "SLACK_SIGNING_SECRET", "DATABASE_URL",
              "DML_LLM_API_KEY", "POSTGRES_PASSWORD"}
PLACEHOLDER = re.compile(r"REPLACE-ME")
REAL_TOKEN = re.compile(r"\bx(?:ox[abpers]|app)-\d")


def _tool(module: str, why: str):
    """Import a validator from the dev extras: skip locally without it, fail in CI."""
    try:
        return importlib.import_module(module)
    except ImportError:
        message = f"{module} is not installed ({why}); pip install -e '.[dev]'"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


# -- the files ----------------------------------------------------------------------------
def yaml_files() -> list[Path]:
    return sorted(p for p in DEPLOY.rglob("*") if p.suffix in {".yml", ".yaml"})


@cache
def documents(path: Path) -> tuple[dict, ...]:
    return tuple(d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None)


@cache
def compose() -> dict:
    [document] = documents(COMPOSE)
    return document


def k8s_files() -> list[Path]:
    return sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")


def k8s_objects() -> list[dict]:
    return [d for path in k8s_files() for d in documents(path)]


def k8s_object(kind: str, name: str) -> dict:
    [found] = [d for d in k8s_objects() if d["kind"] == kind and d["metadata"]["name"] == name]
    return found


def pod_spec(obj: dict) -> dict:
    if obj["kind"] == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    if obj["kind"] in {"Deployment", "StatefulSet", "Job"}:
        return obj["spec"]["template"]["spec"]
    raise AssertionError(f"{obj['kind']} has no pod template")


def containers(obj: dict) -> list[dict]:
    spec = pod_spec(obj)
    return spec.get("initContainers", []) + spec["containers"]


def workloads() -> list[dict]:
    return [d for d in k8s_objects() if d["kind"] in {"Deployment", "CronJob", "Job"}]


def env_file(path: Path) -> dict[str, str]:
    values = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, sep, value = line.partition("=")
        assert sep and re.fullmatch(r"[A-Z][A-Z0-9_]*", name), f"{path.name}:{number}: {line!r}"
        values[name] = value
    return values


def quantity(value: str) -> float:
    """A Kubernetes quantity ("1536Mi", "2Gi", "500m", "2") as a number of bytes/cores."""
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 1e3, "M": 1e6, "G": 1e9,
             "m": 1e-3, "": 1}
    number, unit = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", str(value)).groups()
    return float(number) * units[unit]


# -- the Dockerfile, parsed ------------------------------------------------------------
@dataclass
class Instruction:
    keyword: str
    args: str


@cache
def dockerfile() -> tuple[Instruction, ...]:
    """Instructions in order: comments dropped, continuation lines joined."""
    logical, current = [], ""
    for line in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        if line.lstrip().startswith("#"):
            continue
        if line.rstrip().endswith("\\"):
            current += line.rstrip()[:-1] + " "
            continue
        current += line
        if current.strip():
            logical.append(current.strip())
        current = ""
    assert not current.strip(), "the Dockerfile ends inside a continued line"
    out = []
    for text in logical:
        keyword, _, args = text.partition(" ")
        out.append(Instruction(keyword.upper(), args.strip()))
    return tuple(out)


def stages() -> list[list[Instruction]]:
    found: list[list[Instruction]] = []
    for instruction in dockerfile():
        if instruction.keyword == "FROM":
            found.append([])
        if found:
            found[-1].append(instruction)
    return found


def env_of(stage: list[Instruction]) -> dict[str, str]:
    values = {}
    for instruction in stage:
        if instruction.keyword == "ENV":
            for pair in shlex.split(instruction.args):
                name, _, value = pair.partition("=")
                values[name] = value
    return values


def global_args() -> dict[str, str]:
    values = {}
    for instruction in dockerfile():
        if instruction.keyword == "FROM":
            break
        if instruction.keyword == "ARG":
            name, _, value = instruction.args.partition("=")
            values[name] = value
    return values


def pinned_torch() -> str:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    [pin] = [d for d in project["project"]["dependencies"] if re.match(r"torch\s*==", d)]
    return pin.split("==")[1].strip()


# -- what the code has ------------------------------------------------------------------
@cache
def code_strings() -> frozenset[str]:
    """Every string constant in bot/, knowledge/ and ingest/."""
    found = set()
    for folder in CODE_DIRS:
        for path in (REPO / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Constant) and isinstance(node.value, str):
                    found.add(node.value)
    return frozenset(found)


def served_paths() -> set[str]:
    """Paths the HTTP servers match: string constants like "/readyz" in shell/."""
    found = set()
    for path in (REPO / "shell").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Constant) and isinstance(node.value, str)
                    and re.fullmatch(r"/[a-z][a-z/]*", node.value)):
                found.add(node.value)
    return found


def check_dml_command(argv: list[str], where: str) -> None:
    """Parse ``dml ARGV`` with click exactly as the CLI would, without running it."""
    group: click.Command = dml_cli
    names = ["dml"]
    args = list(argv)
    # Options of `dml` itself (-v, --data-dir DIR) come before the subcommand.
    while args and args[0].startswith("-"):
        token = args.pop(0)
        name = token.split("=")[0]
        [option] = [p for p in dml_cli.params if name in p.opts] or [None]
        assert option is not None, f"{where}: `dml {name}` is not an option of dml"
        if not option.is_flag and "=" not in token:
            args.pop(0)  # its value
    while isinstance(group, click.Group):
        assert args, f"{where}: `{' '.join(names)}` needs a subcommand"
        name = args.pop(0)
        assert name in group.commands, (
            f"{where}: `{' '.join(names)} {name}` is not a dml command "
            f"(there are: {', '.join(sorted(group.commands))})")
        group = group.commands[name]
        names.append(name)
    try:
        group.make_context(" ".join(names), list(args))
    except click.ClickException as exc:
        raise AssertionError(f"{where}: `dml {' '.join(argv)}`: {exc.format_message()}") from exc


def deploy_commands() -> list[tuple[str, list[str]]]:
    """Every ``dml`` invocation in deploy/: the image's CMD, compose commands, pod args."""
    found = []
    [cmd] = [i for i in stages()[-1] if i.keyword == "CMD"]
    found.append(("Dockerfile CMD", json.loads(cmd.args)))
    for name, service in compose()["services"].items():
        if "command" in service:
            found.append((f"docker-compose.yml {name}", list(service["command"])))
    for obj in workloads():
        for container in containers(obj):
            found.append((f"k8s {obj['kind']} {obj['metadata']['name']} {container['name']}",
                          list(container["args"])))
    return found


def guide_commands() -> list[tuple[str, list[str]]]:
    """``dml …`` lines in the deployment guide's code blocks."""
    if not GUIDE.exists():
        return []
    found, fenced = [], False
    for number, line in enumerate(GUIDE.read_text(encoding="utf-8").splitlines(), 1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        text = line.strip().removeprefix("$ ")
        if fenced and text.startswith("dml "):
            words = shlex.split(text, comments=True)[1:]
            # Up to a shell operator: `dml stats | tee …`, `dml … > file`.
            cut = [i for i, w in enumerate(words) if w in {"|", ">", "<", "&&", ";", "2>&1"}]
            found.append((f"docs/deployment.md:{number}", words[:cut[0]] if cut else words))
    return found


# -- every file parses ------------------------------------------------------------------
@pytest.mark.parametrize("path", yaml_files(), ids=lambda p: str(p.relative_to(DEPLOY)))
def test_every_yaml_file_parses(path):
    parsed = documents(path)
    assert parsed and all(isinstance(d, dict) for d in parsed)


def test_the_deploy_files_are_there():
    for path in (DOCKERFILE, DOCKERIGNORE, COMPOSE, ENV_EXAMPLE, K8S / "kustomization.yaml",
                 K8S / "secret.example.yaml", DEPLOY / "slack-manifest.yml", GUIDE):
        assert path.is_file(), f"{path.relative_to(REPO)} is missing"


# -- the Dockerfile ---------------------------------------------------------------------
def test_dockerfile_is_multi_stage_on_python_311_slim():
    froms = [i.args for i in dockerfile() if i.keyword == "FROM"]
    assert len(froms) >= 2, "a build stage and a slim runtime stage"
    assert global_args()["PYTHON_IMAGE"] == "python:3.11-slim"
    assert all(f.startswith("${PYTHON_IMAGE}") for f in froms), froms
    runtime = stages()[-1]
    copies = [i.args for i in runtime if i.keyword == "COPY"]
    assert copies == ["--from=build /opt/dml /opt/dml"], "the runtime stage takes only the venv"


def test_dockerfile_installs_the_cpu_torch_pinned_in_pyproject_then_the_package():
    build = stages()[0]
    runs = [i.args for i in build if i.keyword == "RUN"]
    [torch] = [r for r in runs if re.search(r"\btorch==", r)]
    assert f"torch=={pinned_torch()}" in torch.split()
    assert "--index-url" in torch
    index_arg = [i.args for i in build if i.keyword == "ARG" and i.args.startswith("TORCH_INDEX_URL=")]
    assert index_arg == ["TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu"]
    assert "${TORCH_INDEX_URL}" in torch
    install = [r for r in runs if re.search(r"pip install \.(\s|$)", r)]
    assert install and runs.index(install[0]) > runs.index(torch), "torch first, then `pip install .`"
    # The build proves the bundled model loads without a network.
    assert any("HF_HUB_OFFLINE=1" in r and "Embedder" in r for r in runs)


def test_dockerfile_copies_every_package_and_dockerignore_lets_exactly_those_in():
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    packages = {p.rstrip("*") for p in project["tool"]["setuptools"]["packages"]["find"]["include"]}
    sources = set()
    for instruction in stages()[0]:
        if instruction.keyword == "COPY":
            *src, _dest = instruction.args.split()
            sources |= {s.rstrip("/") for s in src}
    assert packages <= sources, f"the image misses {packages - sources}"
    assert {"pyproject.toml", "README.md"} <= sources  # README is the package's readme
    lines = [line.strip() for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
             if line.strip() and not line.startswith("#")]
    assert lines[0] == "*", ".dockerignore starts by excluding everything"
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    assert allowed == sources, "let in exactly what the Dockerfile copies (no env files, no .venv)"


def test_runtime_runs_as_a_numeric_non_root_user_and_offline():
    runtime = stages()[-1]
    users = [i.args for i in runtime if i.keyword == "USER"]
    assert users, "the runtime stage sets USER"
    user, _, group = users[-1].partition(":")
    # Numeric, so Kubernetes' runAsNonRoot can check it; the manifests use the same uid.
    assert user.isdigit() and int(user) == UID and (not group or int(group) == UID)
    env = env_of(runtime)
    assert env["HF_HUB_OFFLINE"] == "1" and env["TRANSFORMERS_OFFLINE"] == "1"
    assert env["DML_DATA_DIR"] == "/data"
    assert "/opt/dml/bin" in env["PATH"]
    assert [i.args for i in runtime if i.keyword == "STOPSIGNAL"] == ["SIGINT"]


def test_entrypoint_is_dml():
    [entrypoint] = [i.args for i in stages()[-1] if i.keyword == "ENTRYPOINT"]
    assert json.loads(entrypoint) == ["dml"]


def test_no_secret_is_baked_into_the_image():
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert not REAL_TOKEN.search(text)
    for instruction in dockerfile():
        if instruction.keyword in {"ENV", "ARG"}:
            names = {p.partition("=")[0] for p in shlex.split(instruction.args)}
            assert not names & SECRET_ENV, f"{instruction.keyword} {instruction.args}"
            assert not any(re.search(r"(^|_)(TOKEN|SECRET|PASSWORD|API_KEY)($|_)", n) for n in names)
        if instruction.keyword in {"COPY", "ADD"}:
            assert ".env" not in instruction.args


# -- docker compose ---------------------------------------------------------------------
def test_compose_file_matches_the_compose_specification():
    _tool("check_jsonschema", "it vendors the Compose Specification's schema")
    import jsonschema

    schema = json.loads(files("check_jsonschema.builtin_schemas.vendor")
                        .joinpath("compose-spec.json").read_text(encoding="utf-8"))
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(compose()), key=str)
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)


def test_compose_services_and_their_order():
    services = compose()["services"]
    assert set(services) == {"postgres", "migrate", "bot", "scheduler", "ingest"}
    postgres = services["postgres"]
    assert postgres["image"].split(":")[0] == "postgres" and postgres["image"].endswith(":16")
    assert "pg_isready" in postgres["healthcheck"]["test"]
    assert any(v.endswith(":/var/lib/postgresql/data") for v in postgres["volumes"])
    assert services["migrate"]["command"] == ["db", "upgrade"]
    assert services["migrate"]["restart"] == "no"
    for name in ("bot", "scheduler", "ingest"):
        depends = services[name]["depends_on"]
        assert depends["postgres"] == {"condition": "service_healthy"}, name
        assert depends["migrate"] == {"condition": "service_completed_successfully"}, name
        assert "dml-data:/data" in services[name]["volumes"], name
    assert "--no-scheduler" in services["bot"]["command"]
    assert services["scheduler"]["command"][0] == "scheduler"
    assert services["ingest"]["profiles"] == ["ingest"], "ingest is one-shot, on demand"
    assert services["ingest"]["restart"] == "no"
    assert set(compose()["volumes"]) == {"dml-data", "postgres-data"}


def test_compose_takes_secrets_from_the_env_file_only():
    for name, service in compose()["services"].items():
        assert service["env_file"] == "${DML_ENV_FILE:-dml.env}", name
        plain = service.get("environment", {})
        assert not set(plain) & SECRET_ENV, f"{name} sets a secret in the compose file"
    assert (DEPLOY / "dml.env.example").is_file()


def test_compose_health_checks_probe_the_served_paths():
    services = compose()["services"]
    for name, port in (("bot", 3000), ("scheduler", 3001)):
        probe = " ".join(services[name]["healthcheck"]["test"])
        assert f"http://127.0.0.1:{port}/readyz" in probe, name
        assert str(port) in services[name]["command"], name


def _docker_compose() -> list[str]:
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("no docker CLI on this machine")
    probe = subprocess.run([docker, "compose", "version"], capture_output=True, text=True,
                           timeout=60)
    if probe.returncode != 0:
        pytest.skip(f"the docker CLI has no compose plugin: {probe.stderr.strip()[:200]}")
    return [docker, "compose"]


def test_docker_compose_config_accepts_the_file():
    """`docker compose config` parses, interpolates and checks the file without an engine."""
    command = _docker_compose() + ["-f", str(COMPOSE), "--profile", "ingest", "config",
                                   "--format", "json"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DML_", "COMPOSE_"))}
    env["DML_ENV_FILE"] = ENV_EXAMPLE.name
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env,
                            cwd=REPO)
    assert result.returncode == 0, result.stderr
    rendered = json.loads(result.stdout)
    assert set(rendered["services"]) == set(compose()["services"])
    bot = rendered["services"]["bot"]
    assert bot["environment"]["DML_DATA_DIR"] == "/data"
    assert bot["environment"]["SLACK_BOT_TOKEN"] == env_file(ENV_EXAMPLE)["SLACK_BOT_TOKEN"]
    assert bot["depends_on"]["migrate"]["condition"] == "service_completed_successfully"


def test_env_file_example_holds_placeholders_only():
    values = env_file(ENV_EXAMPLE)
    assert {"SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "SLACK_APP_TOKEN", "DATABASE_URL",
            "POSTGRES_PASSWORD", "DML_EXPERTS"} <= set(values)
    for name in SECRET_ENV & set(values):
        assert values[name] == "" or PLACEHOLDER.search(values[name]), f"{name}={values[name]}"
    assert not REAL_TOKEN.search(ENV_EXAMPLE.read_text(encoding="utf-8"))
    # The DML services reach the compose postgres with the password it was created with.
    url = values["DATABASE_URL"]
    assert url.startswith("postgresql://dml:") and "@postgres:5432/dml" in url
    assert url.split("://dml:")[1].split("@")[0] == values["POSTGRES_PASSWORD"]


# -- Kubernetes ---------------------------------------------------------------------------
@pytest.mark.parametrize("path", k8s_files(), ids=lambda p: p.name)
@pytest.mark.parametrize("version", K8S_VERSIONS, ids=lambda v: v or "newest")
def test_kubernetes_manifest_matches_the_api_schema(path, version):
    validator = _tool("kubernetes_validate", "it bundles the Kubernetes API schemas")
    version = version or validator.latest_version()
    for document in documents(path):
        try:
            validator.validate(document, version, strict=True)
        except validator.ValidationError as exc:
            where = ".".join(str(p) for p in exc.path)
            raise AssertionError(f"{path.name}: {document['kind']} {where}: {exc.message}") from None


def test_kustomization_lists_every_manifest_but_the_example_secret():
    [kustomization] = documents(K8S / "kustomization.yaml")
    listed = set(kustomization["resources"])
    assert listed == {p.name for p in k8s_files()} - {"secret.example.yaml"}
    assert "namespace" not in kustomization, "namespace-agnostic: -n picks it"
    assert {i["name"] for i in kustomization["images"]} == {IMAGE.rsplit(":", 1)[0]}


def test_kubectl_kustomize_renders_the_manifests():
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("no kubectl on this machine")
    result = subprocess.run([kubectl, "kustomize", str(K8S)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    rendered = [d for d in yaml.safe_load_all(result.stdout) if d]
    expected = {(d["kind"], d["metadata"]["name"]) for d in k8s_objects() if d["kind"] != "Secret"}
    assert {(d["kind"], d["metadata"]["name"]) for d in rendered} == expected
    assert all(d["metadata"]["labels"]["app.kubernetes.io/part-of"] == "dml" for d in rendered)


def test_bot_deployment_replicas_probes_and_migrations():
    bot = k8s_object("Deployment", "dml-bot")
    assert bot["spec"]["replicas"] == 2
    spec = pod_spec(bot)
    [init] = spec["initContainers"]
    assert init["args"] == ["db", "upgrade"]
    [container] = spec["containers"]
    assert container["args"][:2] == ["serve", "--http"] and "--no-scheduler" in container["args"]
    port = int(container["args"][container["args"].index("--port") + 1])
    assert container["ports"] == [{"name": "http", "containerPort": port, "protocol": "TCP"}]
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    annotations = bot["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/path"] == "/metrics"
    assert annotations["prometheus.io/port"] == str(port)


def test_bot_memory_fits_the_measured_figure():
    """README: 990 MB RSS for one replica at 100,000 passages; an index rebuild needs more."""
    [container] = pod_spec(k8s_object("Deployment", "dml-bot"))["containers"]
    requests, limits = container["resources"]["requests"], container["resources"]["limits"]
    measured = 990e6
    assert quantity(requests["memory"]) >= measured
    assert quantity(limits["memory"]) >= 1.5 * measured
    assert quantity(limits["memory"]) >= quantity(requests["memory"])
    assert quantity(limits["cpu"]) >= quantity(requests["cpu"])


def test_scheduler_is_one_recreated_replica():
    scheduler = k8s_object("Deployment", "dml-scheduler")
    assert scheduler["spec"]["replicas"] == 1
    assert scheduler["spec"]["strategy"] == {"type": "Recreate"}
    [container] = pod_spec(scheduler)["containers"]
    assert container["args"][0] == "scheduler"
    port = int(container["args"][container["args"].index("--port") + 1])
    assert port == container["ports"][0]["containerPort"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"


def test_service_routes_to_the_bot_pods():
    service = k8s_object("Service", "dml-bot")
    bot = k8s_object("Deployment", "dml-bot")
    assert service["spec"]["selector"] == bot["spec"]["selector"]["matchLabels"]
    assert [p["targetPort"] for p in service["spec"]["ports"]] == ["http"]
    labels = bot["spec"]["template"]["metadata"]["labels"]
    assert all(labels.get(k) == v for k, v in bot["spec"]["selector"]["matchLabels"].items())


def test_ingest_cronjob_runs_one_at_a_time():
    job = k8s_object("CronJob", "dml-ingest")
    assert job["spec"]["concurrencyPolicy"] == "Forbid"
    [container] = pod_spec(job)["containers"]
    assert container["args"][0] == "ingest"


def test_every_pod_runs_the_image_as_the_non_root_user():
    for obj in workloads():
        spec = pod_spec(obj)
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True and pod["runAsUser"] == UID, obj["metadata"]["name"]
        assert spec["automountServiceAccountToken"] is False
        for container in containers(obj):
            where = f"{obj['metadata']['name']}/{container['name']}"
            assert container["image"] == IMAGE, where
            security = container["securityContext"]
            assert security["allowPrivilegeEscalation"] is False, where
            assert security["capabilities"]["drop"] == ["ALL"], where
            assert security["readOnlyRootFilesystem"] is True, where
            mounts = {m["mountPath"] for m in container.get("volumeMounts", [])}
            assert "/tmp" in mounts, f"{where}: a read-only root needs a writable /tmp"
            assert container.get("resources", {}).get("limits", {}).get("memory"), where


def test_pods_reference_the_config_the_secret_and_the_volume_that_exist():
    config = k8s_object("ConfigMap", "dml-config")
    secret = k8s_object("Secret", "dml-secrets")
    claims = {d["metadata"]["name"] for d in k8s_objects() if d["kind"] == "PersistentVolumeClaim"}
    for obj in workloads():
        for container in containers(obj):
            refs = container["envFrom"]
            assert {"configMapRef": {"name": config["metadata"]["name"]}} in refs
            assert {"secretRef": {"name": secret["metadata"]["name"]}} in refs
        for volume in pod_spec(obj)["volumes"]:
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["claimName"] in claims
    pvc = k8s_object("PersistentVolumeClaim", "dml-data")
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"], "one /data for every pod"


def test_secrets_live_in_the_secret_and_only_as_placeholders():
    secret = k8s_object("Secret", "dml-secrets")
    values = secret["stringData"]
    assert {"SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "DATABASE_URL"} <= set(values)
    for name, value in values.items():
        assert value == "" or PLACEHOLDER.search(value), f"{name} is not a placeholder"
    config = k8s_object("ConfigMap", "dml-config")
    assert not set(config["data"]) & SECRET_ENV, "a secret in the ConfigMap"
    assert config["data"]["DML_DATA_DIR"] == "/data"
    assert config["data"]["DML_LOG_FORMAT"] == "json"
    for path in k8s_files():
        assert not REAL_TOKEN.search(path.read_text(encoding="utf-8")), path.name


# -- consistency with the code ------------------------------------------------------------
def test_every_dml_command_in_deploy_and_the_guide_exists():
    commands = deploy_commands() + guide_commands()
    assert len(commands) >= 8
    problems = []
    for where, argv in commands:
        try:
            check_dml_command(argv, where)
        except AssertionError as exc:
            problems.append(str(exc))
    assert not problems, "\n".join(problems)


def test_the_command_check_catches_mistakes():
    check_dml_command(["ingest", "--prune", "/sources"], "ok")
    check_dml_command(["-v", "--data-dir", "/data", "stats"], "ok")
    for wrong in (["serve", "--htp"], ["serve", "--port", "web"], ["db", "migrate"],
                  ["injest", "x"], ["db"], ["--verbose-ish", "stats"]):
        with pytest.raises(AssertionError):
            check_dml_command(wrong, "wrong")


def _deploy_env_names() -> dict[str, str]:
    names: dict[str, str] = {}
    for name in env_of(stages()[-1]) | env_of(stages()[0]):
        names[name] = "Dockerfile"
    for name in env_file(ENV_EXAMPLE):
        names[name] = ENV_EXAMPLE.name
    for service, spec in compose()["services"].items():
        for name in spec.get("environment", {}):
            names[name] = f"docker-compose.yml {service}"
    for obj in k8s_objects():
        if obj["kind"] in {"ConfigMap", "Secret"}:
            for name in {**obj.get("data", {}), **obj.get("stringData", {})}:
                names[name] = f"k8s {obj['kind']} {obj['metadata']['name']}"
    for obj in workloads():
        for container in containers(obj):
            for entry in container.get("env", []):
                names[entry["name"]] = f"k8s {obj['metadata']['name']}/{container['name']}"
    return names


def test_every_environment_variable_is_one_the_code_reads():
    unknown = {name: where for name, where in _deploy_env_names().items()
               if name not in code_strings() and name not in THIRD_PARTY_ENV}
    assert not unknown, f"set in deploy/ but read by nothing: {unknown}"


def test_probe_paths_are_served():
    served = served_paths()
    probed = {"/slack/events"}
    for obj in workloads():
        for container in containers(obj):
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                if probe in container:
                    probed.add(container[probe]["httpGet"]["path"])
        annotations = obj["spec"].get("template", {}).get("metadata", {}).get("annotations", {})
        if "prometheus.io/path" in annotations:
            probed.add(annotations["prometheus.io/path"])
    assert probed >= {"/healthz", "/readyz", "/metrics"}
    assert probed <= served, f"no server in shell/ answers {sorted(probed - served)}"


# -- the guide ----------------------------------------------------------------------------
def test_the_guide_lists_the_manifests_scopes_and_what_was_exercised():
    text = GUIDE.read_text(encoding="utf-8")
    [manifest] = documents(DEPLOY / "slack-manifest.yml")
    missing = [s for s in manifest["oauth_config"]["scopes"]["bot"] if f"`{s}`" not in text]
    assert not missing, f"docs/deployment.md does not list the bot scopes {missing}"
    assert "`connections:write`" in text
    for path in [DOCKERFILE, COMPOSE, ENV_EXAMPLE]:
        assert str(path.relative_to(REPO)) in text, f"the guide never mentions {path.name}"
    for path in K8S.glob("*.yaml"):
        assert f"`{path.name}`" in text, f"the guide never mentions deploy/k8s/{path.name}"
    assert "## What was and was not exercised here" in text
