"""Services the team-scale tests bring up for real, each on 127.0.0.1 with a free port and private
folders, and stop by PID: an ``mlflow server`` (SQLite or PostgreSQL backend store), PostgreSQL
itself (Debian's ``postgresql``: initdb / pg_ctl as a non-root user, its socket in a private
folder), a one-node SLURM cluster, Swift's S3 API and a Ray head (``ray start --head``).  Helpers to run
lstm_exp's commands and read a server over REST.
"""
from __future__ import annotations

import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from contextlib import contextmanager
from typing import Dict, Iterator, Optional

CHECKOUT = Path(__file__).resolve().parents[2]
ERROR_PREFIX = "lstm_exp: error: "
SMOKE = ("experiment=smoke", "progress=false")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cli_env(extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """The environment of lstm_exp's commands: this checkout first, no store of the caller's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "LSTM_EXP_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(CHECKOUT), *filter(None, [env.get("PYTHONPATH")])])
    env.update(extra or {})
    return env


def lstm_exp(cwd: Path, *args: str, module: str = "lstm_exp", timeout: float = 900,
             env: Optional[Dict[str, str]] = None, **popen) -> subprocess.CompletedProcess:
    """``python -m <module> <args>`` in ``cwd`` (``popen``: e.g. ``preexec_fn``)."""
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=cli_env(env), capture_output=True,
                          text=True, timeout=timeout, **popen)


def error_lines(proc: subprocess.CompletedProcess) -> list[str]:
    return [line for line in proc.stderr.splitlines() if line.startswith(ERROR_PREFIX)]


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 30) -> None:
    """Stop a service started with ``start_new_session`` by its PID (its process group)."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, sig)
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=timeout)
    except ProcessLookupError:
        pass


def wait_http(url: str, proc: subprocess.Popen, log: Path, timeout: float = 180) -> float:
    """Seconds until ``url`` answers (the service's log in the failure)."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return time.monotonic() - start
        except OSError:
            if proc.poll() is not None:
                raise AssertionError(f"{proc.args[:4]} exited {proc.returncode}:\n{log.read_text()[-3000:]}")
            time.sleep(0.25)
    raise AssertionError(f"{url} did not answer within {timeout} s:\n{log.read_text()[-3000:]}")


class MlflowServer:
    """``mlflow server`` over a backend store URI, its artefacts served from a local folder."""

    def __init__(self, folder: Path, backend_uri: str, port: Optional[int] = None,
                 artifacts: Optional[str] = None, env: Optional[Dict[str, str]] = None) -> None:
        self.folder, self.backend_uri = folder, backend_uri
        self.port = port or free_port()
        self.artifacts = artifacts or str(folder / "artifacts")
        self.env = env or {}
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: Optional[subprocess.Popen] = None
        self.bring_up_s: Optional[float] = None

    def start(self) -> "MlflowServer":
        log = self.folder / f"mlflow-server-{self.port}.log"
        env = cli_env({"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **self.env})
        with open(log, "a") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", self.backend_uri,
                 "--artifacts-destination", self.artifacts, "--serve-artifacts",
                 "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1"],
                cwd=self.folder, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        self.bring_up_s = wait_http(f"{self.url}/health", self.proc, log)
        return self

    def kill(self) -> None:
        """The server dies (SIGKILL: no goodbye to its clients)."""
        if self.proc is not None:
            stop(self.proc, signal.SIGKILL)

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)

    # -- REST ------------------------------------------------------------------------------
    def rest(self, path: str, body: Optional[dict] = None) -> dict:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.url}/api/2.0/mlflow/{path}", data=data,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def runs(self, experiment: str = "lstm_exp") -> list[dict]:
        exp_id = self.rest(f"experiments/get-by-name?experiment_name={experiment}")["experiment"]["experiment_id"]
        return self.rest("runs/search", {"experiment_ids": [exp_id], "max_results": 1000}).get("runs", [])

    def artifacts_of(self, run_id: str) -> list[str]:
        return [f["path"] for f in self.rest(f"artifacts/list?run_id={run_id}").get("files", [])]


class FailingProxy:
    """An HTTP proxy in this process in front of ``upstream`` (an mlflow server) on 127.0.0.1 and a
    free port: every request is passed on, except those ``fails(method, path, body)`` picks, which
    get HTTP 503 as from a store that just went down.  :attr:`failed` counts them."""

    def __init__(self, upstream: str, fails) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if fails(self.command, self.path, body):
                    proxy.failed += 1
                    return self._answer(503, b"store down", "text/plain")
                request = urllib.request.Request(upstream + self.path, data=body or None, method=self.command,
                                                 headers={"Content-Type": self.headers.get("Content-Type", "")})
                try:
                    with urllib.request.urlopen(request, timeout=60) as response:
                        self._answer(response.status, response.read(), response.headers.get("Content-Type", ""))
                except urllib.error.HTTPError as exc:
                    self._answer(exc.code, exc.read(), exc.headers.get("Content-Type", ""))

            def _answer(self, status: int, data: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = _forward

            def log_message(self, *args) -> None:  # quiet
                pass

        self.failed = 0
        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> "FailingProxy":
        import threading

        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def tags(run: dict) -> dict:
    return {t["key"]: t["value"] for t in run["data"].get("tags", [])}


def sweep_runs(server: MlflowServer) -> tuple[list[dict], list[dict]]:
    """(sweep parents, job runs) of the server's lstm_exp experiment."""
    runs = server.runs()
    return ([r for r in runs if tags(r).get("lstm_exp.role") == "sweep"],
            [r for r in runs if tags(r).get("lstm_exp.role") == "job"])


# -- PostgreSQL ----------------------------------------------------------------------------
def postgres_bin() -> Optional[Path]:
    """The folder of Debian's PostgreSQL server programs (initdb, pg_ctl), or None."""
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (candidate / "initdb").is_file() and (candidate / "pg_ctl").is_file():
            return candidate
    found = shutil.which("pg_ctl")
    return Path(found).parent if found and shutil.which("initdb") else None


def service_user() -> Optional[pwd.struct_passwd]:
    """The unprivileged account PostgreSQL runs as when the tests run as root (it refuses root)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise AssertionError("running as root and no 'postgres' or 'nobody' account to run PostgreSQL as")


def as_user(user: Optional[pwd.struct_passwd]):
    """``preexec_fn`` that drops to ``user`` (None: stay who we are)."""
    if user is None:
        return None

    def drop() -> None:
        os.setgid(user.pw_gid)
        os.setuid(user.pw_uid)
    return drop


class Postgres:
    """A private PostgreSQL cluster: data and socket under ``folder``, TCP on 127.0.0.1:``port``,
    trust authentication for its one user ``mlflow``."""

    def __init__(self, folder: Path) -> None:
        self.bin = postgres_bin()
        self.folder = folder
        self.data, self.sockets = folder / "pgdata", folder / "pgsock"
        self.port = free_port()
        self.user = service_user()
        self.bring_up_s: Optional[float] = None
        self.postmaster_pid: Optional[int] = None

    @property
    def uri(self) -> str:
        return f"postgresql+psycopg2://mlflow@127.0.0.1:{self.port}/mlflow"

    def _run(self, *args: str) -> None:
        proc = subprocess.run(list(args), cwd=self.folder, capture_output=True, text=True, timeout=300,
                              preexec_fn=as_user(self.user), env={"PATH": "/usr/bin:/bin", "LC_ALL": "C"})
        assert proc.returncode == 0, f"{args[0]}: {proc.stdout[-2000:]}{proc.stderr[-2000:]}"

    def start(self) -> "Postgres":
        start = time.monotonic()
        self.sockets.mkdir(parents=True)
        if self.user is not None:
            for path in (self.folder, self.sockets):
                os.chown(path, self.user.pw_uid, self.user.pw_gid)
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", "mlflow", "-A", "trust", "-E", "UTF8",
                  "--no-sync")
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.folder / "postgres.log"), "-w",
                  "-o", f"-h 127.0.0.1 -p {self.port} -k {self.sockets} -c fsync=off", "start")
        self._run(str(self.bin / "createdb"), "-h", str(self.sockets), "-p", str(self.port), "-U", "mlflow",
                  "mlflow") if (self.bin / "createdb").is_file() else self._createdb_sql()
        self.postmaster_pid = int((self.data / "postmaster.pid").read_text().split()[0])
        self.bring_up_s = time.monotonic() - start
        return self

    def _createdb_sql(self) -> None:
        import psycopg2

        connection = psycopg2.connect(host="127.0.0.1", port=self.port, user="mlflow", dbname="postgres")
        connection.autocommit = True
        connection.cursor().execute("CREATE DATABASE mlflow")
        connection.close()

    def stop(self) -> None:
        """Stop the postmaster by its PID (SIGINT: PostgreSQL's fast shutdown)."""
        if self.postmaster_pid is None:
            return
        try:
            os.kill(self.postmaster_pid, signal.SIGINT)
        except ProcessLookupError:
            return
        for _ in range(300):
            try:
                os.kill(self.postmaster_pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)
        os.kill(self.postmaster_pid, signal.SIGKILL)


# -- SLURM ---------------------------------------------------------------------------------
SLURM_PROGRAMS = ("slurmctld", "slurmd", "sbatch", "munged")


def slurm_missing() -> list[str]:
    """The programs of Debian's slurmctld, slurmd, slurm-client and munge that are not installed."""
    return [name for name in SLURM_PROGRAMS if not (shutil.which(name) or Path("/usr/sbin", name).is_file())]


def _program(name: str) -> str:
    return shutil.which(name) or str(Path("/usr/sbin", name))


class Slurm:
    """A one-node SLURM cluster of its own: munged with its own key and socket, slurmctld and
    slurmd on 127.0.0.1 with free ports, the node's CPUs from ``nproc``, proctrack/linuxproc, no
    accounting; every file under ``folder``.  Clients find it through ``SLURM_CONF`` (:attr:`env`)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.conf = folder / "slurm.conf"
        self.munge_socket = folder / "munge" / "munge.socket"
        self.procs: list[subprocess.Popen] = []
        self.bring_up_s: Optional[float] = None
        self.cpus = os.cpu_count() or 1

    @property
    def env(self) -> Dict[str, str]:
        return {"SLURM_CONF": str(self.conf)}

    def _write_conf(self) -> None:
        memory_mb = int(Path("/proc/meminfo").read_text().split()[1]) // 1024 // 2
        user = pwd.getpwuid(os.geteuid()).pw_name
        state = self.folder / "state"
        state.mkdir()
        self.conf.write_text("\n".join([
            "ClusterName=lstmexp", "SlurmctldHost=localhost(127.0.0.1)",
            f"SlurmctldPort={free_port()}", f"SlurmdPort={free_port()}", f"SlurmUser={user}", f"SlurmdUser={user}",
            "AuthType=auth/munge", "CredType=cred/munge", f"AuthInfo=socket={self.munge_socket}",
            f"StateSaveLocation={state}", f"SlurmdSpoolDir={state}/slurmd",
            f"SlurmctldPidFile={self.folder}/slurmctld.pid", f"SlurmdPidFile={self.folder}/slurmd.pid",
            f"SlurmctldLogFile={self.folder}/slurmctld.log", f"SlurmdLogFile={self.folder}/slurmd.log",
            "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none", "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none", "JobCompType=jobcomp/none", "MpiDefault=none",
            "SchedulerType=sched/backfill", "SelectType=select/cons_tres", "SelectTypeParameters=CR_CPU",
            "ReturnToService=2", "SwitchType=switch/none", "LaunchParameters=use_interactive_step",
            f"NodeName=localhost NodeAddr=127.0.0.1 CPUs={self.cpus} RealMemory={memory_mb} State=UNKNOWN",
            "PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP", ""]))

    def _start_munge(self) -> None:
        munge = self.munge_socket.parent
        munge.mkdir(mode=0o700)
        key = munge / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        self._spawn([_program("munged"), "--foreground", "--force", f"--key-file={key}", f"--socket={self.munge_socket}",
                     f"--pid-file={munge}/munged.pid", f"--log-file={munge}/munged.log", f"--seed-file={munge}/seed"],
                    "munged")
        deadline = time.monotonic() + 30
        while not self.munge_socket.exists():
            assert time.monotonic() < deadline and self.procs[-1].poll() is None, (munge / "munged.log").read_text()
            time.sleep(0.05)

    def _spawn(self, args: list, name: str) -> None:
        with open(self.folder / f"{name}.out", "w") as out:
            self.procs.append(subprocess.Popen(args, cwd=self.folder, env={**os.environ, **self.env}, stdout=out,
                                               stderr=subprocess.STDOUT, start_new_session=True))

    def start(self) -> "Slurm":
        start = time.monotonic()
        self._write_conf()
        self._start_munge()
        self._spawn([_program("slurmctld"), "-D", "-i", "-f", str(self.conf)], "slurmctld")
        self._spawn([_program("slurmd"), "-D", "-N", "localhost", "-f", str(self.conf)], "slurmd")
        self.wait_idle()
        self.bring_up_s = time.monotonic() - start
        return self

    def sinfo(self) -> str:
        proc = subprocess.run(["sinfo", "-h", "-N", "-o", "%N %T %c"], env={**os.environ, **self.env},
                              capture_output=True, text=True, timeout=30)
        return proc.stdout.strip()

    def wait_idle(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "idle" in self.sinfo():
                return
            for proc in self.procs:
                assert proc.poll() is None, f"{proc.args[0]} exited:\n{self.logs()}"
            time.sleep(0.2)
        raise AssertionError(f"the node did not become idle: {self.sinfo()}\n{self.logs()}")

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-2000:]}" for p in sorted(self.folder.glob("*.log"))
                         + sorted(self.folder.glob("*.out")))

    def stop(self) -> None:
        for proc in reversed(self.procs):
            stop(proc)


# -- Swift's S3 API ------------------------------------------------------------------------
SWIFT_SERVERS = ("account", "container", "object")
#: tempauth's one user: S3 access key "<account>:<user>", secret its password
S3_ACCESS_KEY, S3_SECRET_KEY = "lstmexp:tester", "testing"


def swift_missing() -> list[str]:
    """The programs of Debian's swift-proxy, swift-account, swift-container, swift-object absent."""
    return [name for name in ("swift-ring-builder", "swift-proxy-server", *(f"swift-{s}-server" for s in SWIFT_SERVERS))
            if not shutil.which(name)]


def _ini(sections: Dict[str, Dict[str, object]]) -> str:
    return "".join(f"[{name}]\n" + "".join(f"{k} = {v}\n" for k, v in values.items()) + "\n"
                   for name, values in sections.items())


class SwiftS3:
    """OpenStack Swift on one device under ``folder`` (rings, swift.conf: its own ``swift_dir``),
    account/container/object servers and a proxy with the ``s3api`` middleware and tempauth, all
    on 127.0.0.1 with free ports, single-process (``workers = 0``).  :attr:`endpoint` is the S3 URL."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.ports = {name: free_port() for name in (*SWIFT_SERVERS, "proxy")}
        self.endpoint = f"http://127.0.0.1:{self.ports['proxy']}"
        self.procs: list[subprocess.Popen] = []
        self.bring_up_s: Optional[float] = None

    @property
    def env(self) -> Dict[str, str]:
        """What an S3 client (boto3, mlflow server's artefact store) needs."""
        return {"MLFLOW_S3_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": S3_ACCESS_KEY,
                "AWS_SECRET_ACCESS_KEY": S3_SECRET_KEY, "AWS_DEFAULT_REGION": "us-east-1"}

    def _common(self, port: int) -> Dict[str, object]:
        return {"bind_ip": "127.0.0.1", "bind_port": port, "workers": 0, "swift_dir": self.folder,
                "devices": self.folder / "devices", "mount_check": "false", "log_level": "WARNING"}

    def _write_configs(self) -> None:
        (self.folder / "devices" / "d1").mkdir(parents=True)
        (self.folder / "swift.conf").write_text(_ini({
            "swift-hash": {"swift_hash_path_suffix": "lstmexp", "swift_hash_path_prefix": "lstmexp"},
            "storage-policy:0": {"name": "Policy-0", "default": "yes"}}))
        for server in SWIFT_SERVERS:
            builder = str(self.folder / f"{server}.builder")
            for args in (["create", "10", "1", "1"], ["add", f"r1z1-127.0.0.1:{self.ports[server]}/d1", "1"],
                         ["rebalance"]):
                proc = subprocess.run(["swift-ring-builder", builder, *args], capture_output=True, text=True)
                assert proc.returncode in (0, 1), proc.stdout + proc.stderr  # 1: rebalance's warning
            (self.folder / f"{server}-server.conf").write_text(_ini({
                "DEFAULT": self._common(self.ports[server]), "pipeline:main": {"pipeline": f"{server}-server"},
                f"app:{server}-server": {"use": f"egg:swift#{server}"}}))
        (self.folder / "proxy-server.conf").write_text(_ini({
            "DEFAULT": self._common(self.ports["proxy"]),
            "pipeline:main": {"pipeline": "catch_errors proxy-logging cache s3api tempauth proxy-logging proxy-server"},
            "app:proxy-server": {"use": "egg:swift#proxy", "account_autocreate": "true"},
            "filter:tempauth": {"use": "egg:swift#tempauth", "user_lstmexp_tester": f"{S3_SECRET_KEY} .admin"},
            "filter:s3api": {"use": "egg:swift#s3api"},
            "filter:catch_errors": {"use": "egg:swift#catch_errors"},
            # tempauth needs a cache object; nothing listens there, so every lookup misses
            "filter:cache": {"use": "egg:swift#memcache", "memcache_servers": f"127.0.0.1:{free_port()}"},
            "filter:proxy-logging": {"use": "egg:swift#proxy_logging"}}))

    def start(self) -> "SwiftS3":
        start = time.monotonic()
        self._write_configs()
        for server in (*SWIFT_SERVERS, "proxy"):
            with open(self.folder / f"{server}.out", "w") as out:
                self.procs.append(subprocess.Popen([shutil.which(f"swift-{server}-server"),
                                                    str(self.folder / f"{server}-server.conf"), "--verbose"],
                                                   cwd=self.folder, stdout=out, stderr=subprocess.STDOUT,
                                                   start_new_session=True))
        wait_http(f"{self.endpoint}/info", self.procs[-1],
                  self.folder / "proxy.out", timeout=120)
        self.bring_up_s = time.monotonic() - start
        return self

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=S3_ACCESS_KEY,
                            aws_secret_access_key=S3_SECRET_KEY, region_name="us-east-1")

    def keys(self, bucket: str) -> list[str]:
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket)
        return [item["Key"] for page in pages for item in page.get("Contents", [])]

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-2000:]}" for p in sorted(self.folder.glob("*.out")))

    def stop(self) -> None:
        for proc in reversed(self.procs):
            stop(proc)


# -- Ray head ------------------------------------------------------------------------------
#: the ports of ``ray start --head`` given free ones (Ray's defaults would collide with another head)
RAY_PORT_OPTIONS = ("--node-manager-port", "--object-manager-port", "--ray-client-server-port", "--dashboard-port",
                    "--dashboard-agent-grpc-port", "--dashboard-agent-listen-port", "--metrics-export-port",
                    "--runtime-env-agent-port")
#: the head's object store (Ray's default is 30 % of the memory, in /dev/shm; a smoke sweep needs little)
RAY_OBJECT_STORE_BYTES = 100_000_000


class RayHead:
    """``ray start --head --block`` from ``python``'s environment (a venv with hydra-ray-launcher),
    as a user starts a head on a cluster node: in a working directory of its own (``cwd``), with an
    environment of its own (``env``: e.g. another ``MLFLOW_TRACKING_URI``), free ports and a private
    ``--temp-dir``.  Ray's token authentication with a token of its own (``RAY_AUTH_TOKEN_PATH``
    under ``folder``, never ``~/.ray/auth_token``); a client needs :attr:`client_env`.  :meth:`stop`
    ends it by its PID: SIGTERM to the process group of ``ray start`` (GCS, raylet, workers), then
    SIGKILL; never ``ray stop``, which would stop every Ray on the machine."""

    def __init__(self, folder: Path, python: Path, env: Optional[Dict[str, str]] = None) -> None:
        self.folder, self.python = folder, python
        self.cwd = folder / "head-cwd"
        self.env = env or {}
        self.token = folder / "auth_token"
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.proc: Optional[subprocess.Popen] = None
        self.bring_up_s: Optional[float] = None

    def command(self) -> list:
        ports = [arg for option in RAY_PORT_OPTIONS for arg in (option, str(free_port()))]
        return [str(self.python.parent / "ray"), "start", "--head", "--block", f"--port={self.port}",
                "--node-ip-address=127.0.0.1", f"--temp-dir={self.folder / 'ray'}", "--num-cpus=2",
                f"--object-store-memory={RAY_OBJECT_STORE_BYTES}", "--include-dashboard=false",
                "--disable-usage-stats", *ports]

    @property
    def client_env(self) -> Dict[str, str]:
        """What a driver (the sweep) needs to connect: the head's token."""
        return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(self.token), "RAY_USAGE_STATS_ENABLED": "0"}

    def start(self) -> "RayHead":
        start = time.monotonic()
        self.cwd.mkdir()
        self.token.write_text(secrets.token_hex(32))
        self.token.chmod(0o600)
        log = self.folder / "ray-head.out"
        with open(log, "w") as out:
            self.proc = subprocess.Popen(self.command(), cwd=self.cwd, env=cli_env({**self.client_env, **self.env}),
                                         stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        while "Ray runtime started" not in log.read_text():
            assert self.proc.poll() is None, f"ray start exited {self.proc.returncode}:\n{log.read_text()[-3000:]}"
            assert time.monotonic() - start < 300, f"the Ray head did not start within 300 s:\n{log.read_text()[-3000:]}"
            time.sleep(0.5)
        self.bring_up_s = time.monotonic() - start
        return self

    def logs(self) -> str:
        return (self.folder / "ray-head.out").read_text()[-3000:]

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc, timeout=10)  # ray start --block outlives SIGTERM for 30 s and more: then SIGKILL


@contextmanager
def running(service_class, prefix: str) -> Iterator:
    """A service (Postgres, Slurm, SwiftS3) started in a fresh folder outside pytest's 0700 tmp
    (the services' own users read it), stopped by its PIDs and removed afterwards."""
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix=prefix))
    service = service_class(folder)
    try:
        yield service.start()
    finally:
        service.stop()
        shutil.rmtree(folder, ignore_errors=True)
