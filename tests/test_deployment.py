"""Deployment files: Dockerfile, docker-compose.yml, docs/deployment.md and deploy/nginx/.

There is no Docker engine here: the Dockerfile and the compose file are parsed and checked
against the code they configure (settings, CLI, probes). The nginx example configuration is run
for real when nginx and its njs module are installed (Debian: ``nginx libnginx-mod-http-js``):
two service replicas (the tiny random model) behind nginx, sessions started through the proxy
land on both, and every request naming a session reaches the replica that holds it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from savi_stream import check_content_type, parse_savi_stream

from sam2_matting.tiny import TinyModelFiles
from server.config import Settings

REPO = Path(__file__).resolve().parents[1]
NGINX_DIR = REPO / "deploy" / "nginx"
DOCS = REPO / "docs" / "deployment.md"
REAL_SETTINGS = {Settings.env_name(f.name) for f in dataclasses.fields(Settings)}
APT_HINT = "apt-get install nginx libnginx-mod-http-js"
NJS_MODULES = [
    Path("/usr/lib/nginx/modules/ngx_http_js_module.so"),  # Debian, Ubuntu
    Path("/usr/share/nginx/modules/ngx_http_js_module.so"),
    Path("/etc/nginx/modules/ngx_http_js_module.so"),  # nginx.org packages
    Path("/usr/lib64/nginx/modules/ngx_http_js_module.so"),  # Fedora, RHEL
]
ORIGIN = "http://localhost:7262"  # the stock frontend's origin, allowed by default
PROXY_TIMEOUT = 3.0  # nginx's client header and body timeouts in the tests (10 s as written)

START = "mutation StartSession($input: StartSessionInput!) { startSession(input: $input) { sessionId } }"
CLOSE = (
    "mutation CloseSession($input: CloseSessionInput!) { closeSession(input: $input) { success } }"
)
ADD_POINTS = """mutation AddPoints($input: AddPointsInput!) {
  addPoints(input: $input) { frameIndex rleMaskList { objectId rleMask { counts size } } } }"""
CANCEL = """mutation CancelPropagateInVideo($input: CancelPropagateInVideoInput!) {
  cancelPropagateInVideo(input: $input) { success } }"""
SESSION = """query Session($id: String!) { session(sessionId: $id) { sessionId frameCount
  objects { objectId promptedFrames } } }"""
DEFAULT_VIDEO = "query DemoPageQuery { defaultVideo { path url posterUrl height width } }"
UPLOAD = """mutation UploadVideo($file: Upload!) { uploadVideo(file: $file) { path url posterUrl
  height width } }"""


def inline_add_points(sid: str) -> str:
    """addPoints with the session id in the query text, as some clients write it."""
    doc = (
        'mutation { addPoints(input: {sessionId: "SID", frameIndex: 1, clearOldPoints: true, '
        "objectId: 1, labels: [1], points: [[0.6, 0.5]]}) { frameIndex } }"
    )
    return doc.replace("SID", sid)


DOCUMENTS = [START, CLOSE, ADD_POINTS, CANCEL, SESSION, DEFAULT_VIDEO, UPLOAD]


# -- helpers: parsing ---------------------------------------------------------------------------


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    current = ""
    for raw in (REPO / "Dockerfile").read_text().splitlines():
        line = raw.strip()
        if line.startswith("#") or (not line and not current):
            continue  # comments may also sit between continuation lines
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        keyword, _, args = current.partition(" ")
        out.append((keyword.upper(), args.strip()))
        current = ""
    assert not current, "the Dockerfile ends in a continuation line"
    return out


def instructions(name: str) -> list[str]:
    return [args for keyword, args in dockerfile() if keyword == name]


def exec_form(args: str) -> list[str]:
    """The JSON array of an exec-form instruction (fails on shell form)."""
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), args
    return value


def env_assignments(args: str) -> dict[str, str]:
    """``ENV A=1 B="x y"`` (only the key=value form)."""
    pairs = re.findall(r'([A-Za-z_][A-Za-z0-9_]*)=("[^"]*"|\S*)', args)
    return {k: v.strip('"') for k, v in pairs}


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule, simplified: a pattern excludes a path or any folder above it."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        if pattern.startswith("**/"):
            hit = any(fnmatch(p, pattern[3:]) for p in parts) or any(
                fnmatch(p, pattern) for p in prefixes
            )
        else:
            hit = any(fnmatch(p, pattern) for p in prefixes)
        if hit:
            ignored = not negate
    return ignored


def compose() -> dict[str, Any]:
    data = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    assert isinstance(data, dict)
    return data


def service() -> dict[str, Any]:
    services = compose()["services"]
    assert list(services) == ["sam2-matting"]
    return dict(services["sam2-matting"])


def interpolate(value: str) -> str:
    """Compose's ``${VAR:-default}`` with nothing set in the environment."""
    return re.sub(r"\$\{[A-Za-z_][A-Za-z0-9_]*(?::?-([^}]*))?\}", lambda m: m.group(1) or "", value)


def seconds(duration: str) -> float:
    """A compose duration: ``30s``, ``1m30s``, ``1h``, ``500ms``."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", duration)
    assert parts and "".join(a + b for a, b in parts) == duration, duration
    return sum(float(a) * units[b] for a, b in parts)


def nginx_conf() -> str:
    return (NGINX_DIR / "sam2-matting.conf").read_text()


def nginx_replicas() -> dict[str, str]:
    """replica id -> upstream name, from the example's map block."""
    block = re.search(r"map \$sam2_replica \$sam2_upstream \{(.*?)\}", nginx_conf(), re.S)
    assert block, "no map from $sam2_replica to $sam2_upstream"
    entries = dict(re.findall(r"^\s*(\S+)\s+(\S+);", block.group(1), re.M))
    assert entries.pop("default") == "sam2_any"
    return entries


def upstream_servers(name: str) -> list[str]:
    block = re.search(rf"upstream {re.escape(name)} \{{(.*?)\}}", nginx_conf(), re.S)
    assert block, f"no upstream {name}"
    return re.findall(r"^\s*server\s+(\S+?);", block.group(1), re.M)


# -- the Dockerfile -----------------------------------------------------------------------------


def test_dockerfile_builds_sam2_with_cuda_on_the_base_torch() -> None:
    froms = instructions("FROM")
    assert len(froms) == 1 and re.fullmatch(r"pytorch/pytorch:[\w.]+-cuda[\w.-]+-devel", froms[0])
    runs = instructions("RUN")
    sam2 = [r for r in runs if "sam2==1.1.0" in r]
    assert len(sam2) == 1
    for flag in ("--no-deps", "--no-build-isolation", "SAM2_BUILD_CUDA=1"):
        assert flag in sam2[0]
    # No GPU at build time: the architectures must be given, and a failed build must fail.
    assert "SAM2_BUILD_ALLOW_ERRORS=0" in sam2[0] and "TORCH_CUDA_ARCH_LIST=" in sam2[0]
    arch = re.search(r'ARG TORCH_CUDA_ARCH_LIST="([^"]+)"', (REPO / "Dockerfile").read_text())
    assert arch and all(re.fullmatch(r"\d\.\d(\+PTX)?", a) for a in arch.group(1).split(";"))
    assert any("sam2._C" in r for r in sam2)  # checks the extension is there

    # Every pip install after the base image runs under a constraint pinning its torch.
    order = [(k, a) for k, a in dockerfile() if k in ("ENV", "RUN")]
    pinned = next(
        i for i, (k, a) in enumerate(order) if k == "ENV" and "PIP_CONSTRAINT" in env_assignments(a)
    )
    makes = [i for i, (k, a) in enumerate(order) if k == "RUN" and "pip-constraints" in a]
    installs = [i for i, (k, a) in enumerate(order) if k == "RUN" and "pip install" in a]
    assert makes and makes[0] < pinned < min(installs)
    project = [a for k, a in order if k == "RUN" and re.search(r"pip install \.(\s|$)", a)]
    assert len(project) == 1 and "-e " not in project[0]
    assert not re.search(r"(--upgrade|-U\b|torch[=<>~ ])", project[0])


def test_dockerfile_torch_constraint_snippet_pins_the_installed_torch() -> None:
    """Run the Dockerfile's own snippet here: it must name the installed torch as pip wants it."""
    import torch
    from packaging.requirements import Requirement

    run = next(r for r in instructions("RUN") if "pip-constraints" in r)
    code = re.search(r'python -c "([^"]+)"', run)
    assert code
    out = subprocess.run(
        [sys.executable, "-c", code.group(1)], capture_output=True, text=True, check=True
    ).stdout.strip()
    req = Requirement(out)
    assert req.name == "torch" and str(req.specifier).startswith("==")
    assert req.specifier.contains(torch.__version__, prereleases=True), (out, torch.__version__)


def test_dockerfile_runs_the_service_as_a_non_root_user() -> None:
    users = instructions("USER")
    assert users and users[-1].split(":")[0] not in ("root", "0")
    entry = exec_form(instructions("ENTRYPOINT")[-1])
    cmd = exec_form(instructions("CMD")[-1])
    argv = entry + cmd
    assert argv[0] == "sam2-matting" and argv[1:3] == ["serve", "--host"] and "0.0.0.0" in argv
    # The arguments are the real CLI's.
    from sam2_matting.cli import build_parser

    args = build_parser().parse_args(argv[1:])
    assert args.command == "serve" and args.host == "0.0.0.0"
    assert instructions("EXPOSE") == [str(Settings().port)]
    assert instructions("STOPSIGNAL") == ["SIGTERM"]
    volumes = exec_form(instructions("VOLUME")[-1])
    assert sorted(volumes) == ["/app/checkpoints", "/app/data", "/app/gallery"]
    workdir = instructions("WORKDIR")[-1]
    # Relative setting defaults (checkpoints, data, gallery) resolve to the volumes.
    for name in ("checkpoint_dir", "data", "gallery"):
        assert f"{workdir}/{getattr(Settings(), name)}" in volumes
    for args_ in instructions("ENV"):
        for key in env_assignments(args_):
            if key.startswith(("SAM2_MATTING_", "API_")):
                assert key in REAL_SETTINGS, key


def test_dockerfile_healthcheck_probes_ready_in_exec_form() -> None:
    (check,) = instructions("HEALTHCHECK")
    options, _, command = check.partition("CMD ")
    argv = exec_form(command)
    assert argv[:2] == ["python", "-c"] and "/ready" in argv[2]
    start = re.search(r"--start-period=(\S+)", options)
    assert start and seconds(start.group(1)) >= 120  # loading the large model takes a while


def test_dockerignore_keeps_the_context_small_but_complete() -> None:
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for path in (
        ".venv/bin/python",
        ".git/HEAD",
        "data/uploads/x.mp4",
        "checkpoints/sam2.1_hiera_large.pt",
        "server/__pycache__/app.cpython-311.pyc",
        ".pytest_cache/v",
    ):
        assert dockerignored(path, patterns), path
    for copy in instructions("COPY"):
        sources = [s for s in copy.split() if not s.startswith("--")][:-1]
        for source in sources:
            assert (REPO / source).exists(), source
            files = (
                [source]
                if (REPO / source).is_file()
                else [str(p.relative_to(REPO)) for p in (REPO / source).rglob("*") if p.is_file()]
            )
            kept = [f for f in files if not dockerignored(f, patterns)]
            assert kept, f"COPY {source}: everything is excluded by .dockerignore"
            if source in ("pyproject.toml", "README.md"):
                assert kept == [source]
    assert not dockerignored("sam2_matting/__init__.py", patterns)
    assert not dockerignored("server/gunicorn.conf.py", patterns)


# -- docker-compose.yml -------------------------------------------------------------------------


def test_compose_service_gpu_ports_volumes() -> None:
    svc = service()
    assert "7263:7263" in svc["ports"]
    devices = svc["deploy"]["resources"]["reservations"]["devices"]
    assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] for d in devices)
    targets = {v.split(":")[1]: v.split(":")[0] for v in svc["volumes"]}
    assert set(targets) == {"/app/checkpoints", "/app/data", "/app/gallery"}
    named = {src for src in targets.values() if not src.startswith((".", "/"))}
    assert named <= set(compose()["volumes"])
    assert svc["restart"] in ("always", "unless-stopped", "on-failure")
    assert svc["build"] == "." and "command" not in svc  # the image's CMD: serve


def test_compose_environment_is_real_settings() -> None:
    env = {k: interpolate(str(v)) for k, v in service()["environment"].items()}
    unknown = set(env) - REAL_SETTINGS
    assert not unknown, f"not settings of server/config.py: {sorted(unknown)}"
    settings = Settings.from_env(env)  # every value parses
    assert settings.device == "cuda" and settings.port == 7263
    assert settings.cors_origins  # the stock frontend still has an origin


def test_compose_stop_grace_outlasts_gunicorn_graceful_timeout() -> None:
    svc = service()
    env = {k: interpolate(str(v)) for k, v in svc["environment"].items()}
    grace = seconds(svc["stop_grace_period"])
    # Longer than the default and than what the file sets, with time to close the sessions.
    assert grace > Settings().graceful_timeout
    assert grace >= Settings.from_env(env).graceful_timeout + 5


def test_compose_healthcheck() -> None:
    check = service()["healthcheck"]
    assert check["test"][0] == "CMD" and "/ready" in " ".join(check["test"])
    assert seconds(check["start_period"]) >= 120
    assert seconds(check["timeout"]) > 5  # urlopen's own timeout is 5 s


# -- docs and the nginx example, without nginx --------------------------------------------------


def test_nginx_example_lists_each_replica_consistently() -> None:
    replicas = nginx_replicas()
    assert len(replicas) >= 2
    any_servers = upstream_servers("sam2_any")
    mine: list[str] = []
    for replica, upstream in replicas.items():
        assert upstream == f"sam2_{replica}"
        servers = upstream_servers(upstream)
        assert len(servers) == 1
        mine += servers
    assert sorted(mine) == sorted(any_servers)
    conf = nginx_conf()
    assert "js_content sam2.route;" in conf and "js_var $sam2_replica;" in conf
    assert "proxy_buffering off;" in conf  # propagation streams frame by frame
    # Large enough for the service's uploads (it accepts max_upload_bytes plus 1 MiB).
    limit = re.search(r"client_max_body_size (\d+)m;", conf)
    assert limit and int(limit.group(1)) * 1024**2 >= Settings().max_upload_bytes + 1024**2


def test_docs_cover_compose_download_and_replicas() -> None:
    text = DOCS.read_text()
    for needle in (
        "sam2-matting download large",
        "docker compose",
        "deploy/nginx/sam2-matting.conf",
        "session_route.js",
        "libnginx-mod-http-js",
        "REPLICA_ID",
        "Ingress",
    ):
        assert needle in text, needle
    blocks = re.findall(r"```ya?ml\n(.*?)```", text, re.S)
    assert blocks, "no YAML example in docs/deployment.md"
    replica_of: dict[str, str] = {}  # compose service -> its SAM2_MATTING_REPLICA_ID
    for block in blocks:
        data = yaml.safe_load(block)
        for name, svc in (data or {}).get("services", {}).items():
            env = svc.get("environment", {}) or {}
            if isinstance(env, list):
                env = dict(item.split("=", 1) for item in env)
            for key in env:
                if key.startswith(("SAM2_MATTING_", "API_")):
                    assert key in REAL_SETTINGS, key
            if "SAM2_MATTING_REPLICA_ID" in env:
                replica_of[name] = str(env["SAM2_MATTING_REPLICA_ID"])
            for volume in svc.get("volumes", []):
                if volume.startswith("./"):
                    assert (REPO / volume.split(":")[0]).is_file(), volume
    # The nginx example's upstream hosts are the compose example's replicas, id for id.
    replicas = nginx_replicas()
    assert sorted(replica_of.values()) == sorted(replicas)
    for replica, upstream in replicas.items():
        (server,) = upstream_servers(upstream)
        assert replica_of[server.split(":")[0]] == replica


def test_graphql_documents_match_the_schema() -> None:
    from graphql import parse, validate

    from server.schema import build_schema

    schema = build_schema(Settings())._schema
    for doc in [*DOCUMENTS, inline_add_points("r1-00000000-0000-4000-8000-000000000000")]:
        assert validate(schema, parse(doc)) == [], doc
    assert validate(schema, parse("mutation { startSession(input: {paht: 1}) { sessionId } }"))


# -- two replicas and nginx, for real -----------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(url: str, proc: subprocess.Popen[bytes], log: Path, what: str) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{what} exited: " + log.read_text()[-3000:])
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except (requests.ConnectionError, requests.Timeout):
            pass
        time.sleep(0.2)
    pytest.fail(f"{what} did not become ready: " + log.read_text()[-3000:])


def _stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


class Client:
    """GraphQL and the propagation stream at one base URL (a replica or the proxy)."""

    def __init__(self, url: str) -> None:
        self.url = url

    def gql(self, query: str, variables: dict[str, Any] | None = None, **kw: Any) -> Any:
        r = requests.post(
            f"{self.url}/graphql",
            json={"query": query, "variables": variables or {}},
            headers={"Origin": ORIGIN, **kw.pop("headers", {})},
            timeout=60,
            **kw,
        )
        assert r.headers["Content-Type"].startswith("application/json"), r.text[:300]
        return r.json()

    def data_of(self, query: str, variables: dict[str, Any] | None = None, **kw: Any) -> Any:
        body = self.gql(query, variables, **kw)
        assert "errors" not in body, body
        return body["data"]

    def start(self, path: str = "gallery/bedroom.mp4") -> str:
        return str(self.data_of(START, {"input": {"path": path}})["startSession"]["sessionId"])

    def click(self, sid: str, frame: int = 0, **kw: Any) -> Any:
        inp = {
            "sessionId": sid,
            "frameIndex": frame,
            "clearOldPoints": True,
            "objectId": 0,
            "labels": [1],
            "points": [[0.4, 0.5]],
        }
        return self.data_of(ADD_POINTS, {"input": inp}, **kw)["addPoints"]

    def close(self, sid: str, **kw: Any) -> bool:
        closed = self.data_of(CLOSE, {"input": {"sessionId": sid}}, **kw)
        return bool(closed["closeSession"]["success"])

    def stream(self, body: dict[str, Any], ndjson: bool = True, **kw: Any) -> requests.Response:
        headers = {"Origin": ORIGIN, **kw.pop("headers", {})}
        if ndjson:
            headers["Accept"] = "application/x-ndjson"
        return requests.post(
            f"{self.url}/propagate_in_video",
            json=body,
            headers=headers,
            stream=True,
            timeout=120,
            **kw,
        )


@dataclasses.dataclass
class Deployment:
    proxy: Client
    replicas: dict[str, Client]  # replica id -> direct client
    ports: dict[str, int]
    access_log: Path
    data: Path

    def expect_routed(self, tag: str, replica: str) -> None:
        """The request sent with ``?tag=TAG`` chose ``replica`` and reached its port."""
        pattern = re.compile(rf'\?tag={re.escape(tag)} HTTP.*replica="(\w*)" upstream=(\S+)')
        found: list[tuple[str, str]] = []
        for _ in range(50):  # nginx logs a request when it ends, just after the client's read
            found = pattern.findall(self.access_log.read_text())
            if found:
                break
            time.sleep(0.05)
        assert found == [(replica, f"127.0.0.1:{self.ports[replica]}")], (tag, found)


@pytest.fixture(scope="module")
def replicas(
    tiny_model: TinyModelFiles, shared_videos: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    """Replicas r1 and r2 of the service (tiny model, CPU) sharing gallery and data folders."""
    root = tmp_path_factory.mktemp("replicas")
    gallery, data = root / "gallery", root / "data"
    gallery.mkdir()
    (gallery / "bedroom.mp4").symlink_to(shared_videos / "bedroom.mp4")
    procs: dict[str, tuple[subprocess.Popen[bytes], Path, Any]] = {}
    ports = {"r1": _free_port(), "r2": _free_port()}
    try:
        for replica, port in ports.items():
            env = {
                **os.environ,
                "SAM2_MATTING_REPLICA_ID": replica,
                "SAM2_MATTING_GALLERY": str(gallery),
                "SAM2_MATTING_DATA": str(data),
                "SAM2_MATTING_DEFAULT_VIDEO": "bedroom.mp4",
                "SAM2_MATTING_DEVICE": "cpu",
                "SAM2_MATTING_THREADS": "4",
                "SAM2_MATTING_MAX_SESSIONS": "8",
                "SAM2_MATTING_MAX_UPLOAD_BYTES": str(3 * 1024 * 1024),
            }
            cmd = [
                sys.executable, "-m", "sam2_matting", "serve",
                "--config", str(tiny_model.config), "--checkpoint", str(tiny_model.checkpoint),
                "--host", "127.0.0.1", "--port", str(port),
            ]  # fmt: skip
            log_path = root / f"{replica}.log"
            log = open(log_path, "wb")  # noqa: SIM115
            proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
            procs[replica] = (proc, log_path, log)
        for replica, (proc, log_path, _) in procs.items():
            _wait(f"http://127.0.0.1:{ports[replica]}/ready", proc, log_path, replica)
        yield {"ports": ports, "data": data, "root": root}
    finally:
        for proc, _, log in procs.values():
            _stop(proc)
            log.close()
    for replica, (_, log_path, _) in procs.items():
        text = log_path.read_text()
        assert "Traceback" not in text, f"{replica}: {text[-4000:]}"


def _nginx() -> tuple[str, Path]:
    binary = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if Path(p).is_file()), None
    )
    if binary is None:
        pytest.skip(f"nginx not installed: {APT_HINT}")
    module = next((m for m in NJS_MODULES if m.is_file()), None)
    if module is None:
        pytest.skip(f"nginx's njs module not installed: {APT_HINT}")
    return binary, module


def _substitute(text: str, old: str, new: str, count: int | None = None) -> str:
    found = text.count(old)
    assert found and (count is None or found == count), f"{old!r} found {found} times"
    return text.replace(old, new)


@pytest.fixture(scope="module")
def deployment(
    replicas: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    """nginx with deploy/nginx/{nginx.conf,sam2-matting.conf,session_route.js} in front of them.

    The example is used as written, with addresses, paths, one buffer size and two timeouts
    changed: the GraphQL body buffer drops from 16m to 8k so that a test can send a body over
    it, and the client header and body timeouts from 10 s to 3 s so that a test sees them.
    """
    binary, module = _nginx()
    prefix = tmp_path_factory.mktemp("nginx")
    ports = replicas["ports"]
    port = _free_port()
    conf = nginx_conf()
    for replica, upstream in nginx_replicas().items():
        (server,) = upstream_servers(upstream)
        conf = _substitute(conf, server, f"127.0.0.1:{ports[replica]}")
    conf = _substitute(conf, 'js_path "/etc/nginx/njs/";', f'js_path "{NGINX_DIR}/";', 1)
    conf = _substitute(conf, "listen 8080;", f"listen 127.0.0.1:{port};", 1)
    conf = _substitute(conf, "/var/log/nginx/", f"{prefix}/")
    conf = _substitute(conf, "client_body_buffer_size 16m;", "client_body_buffer_size 8k;", 1)
    for timeout in ("client_header_timeout", "client_body_timeout"):
        conf = _substitute(conf, f"{timeout} 10s;", f"{timeout} {PROXY_TIMEOUT:g}s;", 1)
    (prefix / "sam2-matting.conf").write_text(conf)
    main = (NGINX_DIR / "nginx.conf").read_text()
    main = _substitute(main, "load_module modules/ngx_http_js_module.so;", f"load_module {module};")
    temps = "".join(
        f"\n    {kind}_temp_path {prefix}/{kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    main = _substitute(main, "http {", "http {" + temps, 1)
    main = _substitute(main, "user nginx;", "", 1)
    (prefix / "nginx.conf").write_text(main)
    globals_ = f"pid {prefix}/nginx.pid; daemon off;"
    if os.geteuid() == 0:
        globals_ += " user root;"  # workers read the temporary files of this test's folder
    cmd = [binary, "-p", f"{prefix}/", "-c", str(prefix / "nginx.conf"), "-e", "stderr"]
    checked = subprocess.run([*cmd, "-t", "-g", globals_], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    log_path = prefix / "nginx.log"
    log = open(log_path, "wb")  # noqa: SIM115
    proc = subprocess.Popen([*cmd, "-g", globals_], stdout=log, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        _wait(f"{url}/healthy", proc, log_path, "nginx")
        yield Deployment(
            proxy=Client(url),
            replicas={r: Client(f"http://127.0.0.1:{p}") for r, p in ports.items()},
            ports=ports,
            access_log=prefix / "access.log",
            data=replicas["data"],
        )
    finally:
        _stop(proc, signal.SIGQUIT)  # graceful: lets open streams finish
        log.close()
    text = log_path.read_text()
    assert "[error]" not in text and "[crit]" not in text and "[emerg]" not in text, text


def _replica(sid: str) -> str:
    m = re.fullmatch(
        r"(r\d+)-[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", sid
    )
    assert m, sid
    return m.group(1)


def _ndjson(resp: requests.Response) -> list[dict[str, Any]]:
    assert resp.status_code == 200, resp.text[:300]
    assert resp.headers["Content-Type"].startswith("application/x-ndjson")
    return [json.loads(line) for line in resp.iter_lines() if line]


def test_sessions_spread_over_replicas_and_stick_to_theirs(deployment: Deployment) -> None:
    proxy = deployment.proxy
    sids = [proxy.start() for _ in range(4)]
    # Round-robin (per nginx worker): four starts reach both replicas.
    assert {_replica(s) for s in sids} == {"r1", "r2"}
    for i, sid in enumerate(sids):
        assert proxy.click(sid, params={"tag": f"click{i}"})["frameIndex"] == 0
        body = {"session_id": sid, "direction": "forward", "max_frames": 2}
        lines = _ndjson(proxy.stream(body, params={"tag": f"stream{i}"}))
        assert [x["frame_index"] for x in lines if x["type"] == "frame"] == [0, 1]
        assert lines[-1] == {"type": "end", "frames": 2, "total": 2, "cancelled": False}
        assert proxy.close(sid, params={"tag": f"close{i}"})
        # Not by luck: nginx's access log shows where each of them went.
        for tag in ("click", "stream", "close"):
            deployment.expect_routed(f"{tag}{i}", _replica(sid))

    # The control: sent past the proxy to the other replica, the same requests find nothing.
    sid = proxy.start()
    other = deployment.replicas["r2" if _replica(sid) == "r1" else "r1"]
    inp = {"sessionId": sid, "frameIndex": 0, "clearOldPoints": True, "objectId": 0,
           "labels": [1], "points": [[0.4, 0.5]]}  # fmt: skip
    assert other.gql(ADD_POINTS, {"input": inp})["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    assert other.stream({"session_id": sid, "max_frames": 2}).status_code == 404
    assert proxy.close(sid)
    for client in deployment.replicas.values():
        metrics = requests.get(f"{client.url}/metrics", timeout=10).text
        assert re.search(r"^sam2_matting_live_sessions(\{[^}]*\})? 0(\.0)?$", metrics, re.M)


def test_session_id_is_found_wherever_the_client_puts_it(deployment: Deployment) -> None:
    proxy = deployment.proxy
    sids: dict[str, str] = {}
    for _ in range(4):  # round-robin: four starts reach both replicas
        sid = proxy.start()
        if sids.setdefault(_replica(sid), sid) != sid:
            assert proxy.close(sid)
    assert set(sids) == {"r1", "r2"}
    for replica, sid in sids.items():
        # In the query text instead of the variables.
        tag = f"inline-{replica}"
        assert proxy.data_of(inline_add_points(sid), params={"tag": tag})["addPoints"] == {
            "frameIndex": 1
        }
        deployment.expect_routed(tag, replica)
        # In a variable of another name, outside `input`.
        tag = f"query-{replica}"
        info = proxy.data_of(SESSION, {"id": sid}, params={"tag": tag})["session"]
        assert info["sessionId"] == sid
        assert info["objects"] == [{"objectId": 1, "promptedFrames": [1]}]
        deployment.expect_routed(tag, replica)
        # In the path: the page's still preview of a frame.
        tag = f"preview-{replica}"
        got = requests.get(
            f"{proxy.url}/sessions/{sid}/composite/1", params={"tag": tag}, timeout=60
        )
        assert got.status_code == 200 and got.headers["Content-Type"] == "image/png"
        deployment.expect_routed(tag, replica)
        # A JSON body over nginx's buffer (8k in this test) cannot be read by njs: refused
        # rather than sent to a replica at random, unless X-Session-Id names the session.
        inp = {"sessionId": sid, "frameIndex": 0, "clearOldPoints": True, "objectId": 0,
               "labels": [1], "points": [[0.4, 0.5]]}  # fmt: skip
        variables: dict[str, Any] = {"input": inp, "padding": "x" * 20_000}
        big: dict[str, Any] = {"query": ADD_POINTS, "variables": variables}
        r = requests.post(f"{proxy.url}/graphql", json=big, timeout=30)
        assert r.status_code == 413 and r.json()["error"]["code"] == "LIMIT_EXCEEDED"
        tag = f"big-{replica}"
        ok = proxy.data_of(
            ADD_POINTS, variables, headers={"X-Session-Id": sid}, params={"tag": tag}
        )
        assert ok["addPoints"]["frameIndex"] == 0
        deployment.expect_routed(tag, replica)
        # The stock frontend's multipart stream; and X-Session-Id with a small body.
        tag = f"multipart-{replica}"
        resp = proxy.stream(
            {"session_id": sid, "start_frame_index": 1, "direction": "forward", "max_frames": 2},
            ndjson=False,
            params={"tag": tag},
        )
        assert resp.status_code == 200
        check_content_type(resp.headers["Content-Type"])
        parts = list(parse_savi_stream(resp.iter_content(chunk_size=None)))
        assert [json.loads(p.body)["frame_index"] for p in parts] == [1, 2]
        deployment.expect_routed(tag, replica)
        tag = f"header-{replica}"
        assert proxy.close(sid, headers={"X-Session-Id": sid}, params={"tag": tag})
        deployment.expect_routed(tag, replica)

    # And every request in nginx's log that named a replica went to that replica's port.
    for line in deployment.access_log.read_text().splitlines():
        m = re.search(r'replica="(\w*)" upstream=(\S+)', line)
        assert m, line
        if m.group(1):
            assert m.group(2) == f"127.0.0.1:{deployment.ports[m.group(1)]}", line


def test_stream_flows_through_and_cancel_reaches_it(deployment: Deployment) -> None:
    proxy = deployment.proxy
    sid = proxy.start()
    proxy.click(sid)
    resp = proxy.stream({"session_id": sid, "direction": "forward"})
    assert resp.status_code == 200
    seen: list[dict[str, Any]] = []
    for raw in resp.iter_lines():
        if not raw:
            continue
        seen.append(json.loads(raw))
        if len(seen) == 2:
            # Only possible mid-stream if nginx passes frames on as they come.
            done = proxy.data_of(CANCEL, {"input": {"sessionId": sid}}, params={"tag": "cancel"})
            assert done["cancelPropagateInVideo"]["success"]
    assert seen[-1]["type"] == "end" and seen[-1]["cancelled"] is True
    assert 2 <= seen[-1]["frames"] < 200
    deployment.expect_routed("cancel", _replica(sid))
    assert proxy.close(sid)


def test_media_uploads_and_cors_through_the_proxy(
    deployment: Deployment, bedroom_video: Path, tmp_path: Path
) -> None:
    import av

    proxy = deployment.proxy
    default = proxy.data_of(DEFAULT_VIDEO)["defaultVideo"]
    # Media URLs name the proxy (nginx passes the client's Host), and work through it.
    assert default["url"] == f"{proxy.url}/gallery/bedroom.mp4"
    video = requests.get(default["url"], headers={"Range": "bytes=0-99"}, timeout=10)
    assert video.status_code == 206 and len(video.content) == 100
    assert requests.get(default["posterUrl"], timeout=10).status_code == 200

    # A browser may send X-Session-Id: the preflight through the proxy allows it.
    pre = requests.options(
        f"{proxy.url}/graphql",
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,x-session-id",
        },
        timeout=10,
    )
    assert pre.status_code == 204 and pre.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "x-session-id" in pre.headers["Access-Control-Allow-Headers"].lower()

    # An upload goes to any replica; with the data folder shared, every replica can open it.
    clip = tmp_path / "clip.mp4"
    with av.open(str(bedroom_video)) as src, av.open(str(clip), "w") as dst:
        out = dst.add_stream("libx264", rate=30)
        out.width, out.height, out.pix_fmt = 160, 96, "yuv420p"
        for i, frame in enumerate(src.decode(video=0)):
            if i == 6:
                break
            for packet in out.encode(frame.reformat(160, 96, format="yuv420p")):
                dst.mux(packet)
        for packet in out.encode():
            dst.mux(packet)
    r = requests.post(
        f"{proxy.url}/graphql",
        data={
            "operations": json.dumps({"query": UPLOAD, "variables": {"file": None}}),
            "map": json.dumps({"file": ["variables.file"]}),
        },
        files={"file": ("clip.mp4", clip.read_bytes(), "video/mp4")},
        headers={"Origin": ORIGIN},
        timeout=60,
    )
    uploaded = r.json()["data"]["uploadVideo"]
    assert uploaded["path"].startswith("uploads/") and uploaded["url"].startswith(proxy.url)
    assert (deployment.data / uploaded["path"]).is_file()
    assert requests.get(uploaded["url"], timeout=10).status_code == 200
    for replica, client in deployment.replicas.items():
        sid = client.start(uploaded["path"])
        assert _replica(sid) == replica
        assert proxy.click(sid, params={"tag": f"upload-{replica}"})["frameIndex"] == 0
        deployment.expect_routed(f"upload-{replica}", replica)
        assert proxy.close(sid)


def test_slow_clients_wait_in_the_proxy_not_in_a_replica(
    deployment: Deployment, replicas: dict[str, Any]
) -> None:
    """30 slow clients on the proxy: headers and upload bodies at a few bytes a second, bodies
    shorter than their Content-Length. The replicas (4 threads, 2 of them for bodies) never see
    them: a real upload through the proxy is stored, not BUSY; stalled requests are cut by
    nginx."""
    from test_reliability_slow import SlowClient, multipart_start, upload_head

    port = int(deployment.proxy.url.rsplit(":", 1)[1])
    clients = []
    for i in range(30):
        if i % 3 == 0:
            opening, drip = f"GET /healthy HTTP/1.1\r\nHost: x\r\nX-{i}: ".encode(), b"ab"
        elif i % 3 == 1:
            opening, drip = upload_head(port, 200_000) + multipart_start(), b"xy"
        else:
            body = multipart_start() + b"x" * 70_000
            opening, drip = upload_head(port, len(body) + 1000) + body, b""
        clients.append(
            SlowClient(("headers", "upload", "short upload")[i % 3], port, opening, drip)
        )
    started = time.monotonic()
    try:
        for _ in range(4):  # 2 s of dripping
            for c in clients:
                c.tick()
            time.sleep(0.5)
        assert requests.get(f"{deployment.proxy.url}/healthy", timeout=10).text == "OK"
        clip = REPO / "tests" / "fixtures" / "hostile" / "valid.mp4"
        r = requests.post(
            f"{deployment.proxy.url}/graphql",
            data={
                "operations": json.dumps({"query": UPLOAD, "variables": {"file": None}}),
                "map": json.dumps({"file": ["variables.file"]}),
            },
            files={"file": ("valid.mp4", clip.read_bytes(), "video/mp4")},
            headers={"Origin": ORIGIN},
            timeout=30,
        )
        assert r.status_code == 200 and "errors" not in r.json(), r.text[:300]
        while time.monotonic() - started < PROXY_TIMEOUT + 10 and any(
            c.closed_after is None for c in clients if c.kind == "short upload"
        ):
            for c in clients:
                c.tick()
            time.sleep(0.5)
        stalled = [c for c in clients if c.kind == "short upload"]
        assert all(c.closed_after is not None for c in stalled), "nginx kept a stalled body"
    finally:
        for c in clients:
            if c.closed_after is None:
                c.sock.close()
    # Neither replica saw a slow request: no 408 or 503 of theirs, and one upload in all.
    for replica in ("r1", "r2"):
        log = (replicas["root"] / f"{replica}.log").read_text()
        assert '" 408 ' not in log and '" 503 ' not in log, log[-2000:]
        assert "cut off a request body" not in log and "refused a large body" not in log


def test_healthchecks_pass_on_a_ready_replica_and_fail_on_none(replicas: dict[str, Any]) -> None:
    """The Dockerfile's and compose file's HEALTHCHECK commands, run here against a replica."""
    port = replicas["ports"]["r1"]
    closed = _free_port()
    (check,) = instructions("HEALTHCHECK")
    docker_argv = exec_form(check.partition("CMD ")[2])
    compose_argv = list(service()["healthcheck"]["test"][1:])
    assert docker_argv[0] == compose_argv[0] == "python"
    python = [sys.executable, *docker_argv[1:]]
    env = {**os.environ, "SAM2_MATTING_PORT": str(port)}
    assert subprocess.run(python, env=env, capture_output=True, timeout=30).returncode == 0
    env["SAM2_MATTING_PORT"] = str(closed)
    assert subprocess.run(python, env=env, capture_output=True, timeout=30).returncode != 0

    code = compose_argv[-1]
    for p, ok in ((port, True), (closed, False)):
        argv = [sys.executable, *compose_argv[1:-1], _substitute(code, ":7263/", f":{p}/", 1)]
        done = subprocess.run(argv, capture_output=True, timeout=30)
        assert (done.returncode == 0) is ok, done.stderr
