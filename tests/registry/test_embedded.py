"""The embedded server: start and stop, socket only, and starting after a killed run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import pytest

from via_otlp.errors import StartupError
from via_otlp.registry.embedded import EmbeddedPostgres

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("VIA_TEST_DSN")), reason="embedded server not used"
)


async def _select_one(dsn: str) -> tuple[int, str]:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval("SELECT 1"), await conn.fetchval("SHOW listen_addresses")
    finally:
        await conn.close()


async def test_start_stop_restart_on_a_unix_socket_only(data_dir: Path) -> None:
    pg = EmbeddedPostgres(data_dir / "pg", durable=False)
    pg.stop()  # safe without start
    try:
        started = time.monotonic()
        dsn = pg.start()
        first = time.monotonic() - started
        assert "host=%2F" in dsn and "@/" in dsn  # a socket directory, no TCP host
        assert await _select_one(dsn) == (1, "")
        pg.stop()
        pg.stop()  # idempotent
        started = time.monotonic()
        assert pg.start() == dsn
        again = time.monotonic() - started
        assert await _select_one(dsn) == (1, "")
        print(f"embedded PostgreSQL: first start {first:.2f}s (with initdb), restart {again:.2f}s")
    finally:
        pg.stop()


async def test_second_process_on_the_same_data_dir_is_refused(data_dir: Path) -> None:
    """...and leaves the first one's server running (a refused start used to stop it)."""
    a = EmbeddedPostgres(data_dir / "pg", durable=False)
    b = EmbeddedPostgres(data_dir / "pg", durable=False)
    try:
        dsn = a.start()
        with pytest.raises(StartupError, match="another process"):
            b.start()
        assert a.alive()
        assert (await _select_one(dsn))[0] == 1
    finally:
        a.stop()
        b.stop()


async def test_stale_pid_file_of_another_process(data_dir: Path) -> None:
    """After a crash, postmaster.pid may name a pid now used by something else."""
    pg = EmbeddedPostgres(data_dir / "pg", durable=False)
    pg.start()
    pg.stop()
    pid_file = data_dir / "pg" / "postmaster.pid"
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        pid_file.write_text(f"{sleeper.pid}\n{data_dir / 'pg'}\n0\n5432\n\n\n\nready\n")
        dsn = pg.start()
        assert (await _select_one(dsn))[0] == 1
    finally:
        pg.stop()
        sleeper.kill()
        sleeper.wait()


_KILLED_RUN = """
import os, signal, sys
from via_otlp.registry.embedded import EmbeddedPostgres
EmbeddedPostgres(sys.argv[1], durable=False).start()
os.kill(os.getpid(), signal.SIGKILL)
"""


def _postmaster_pid(pg_dir: Path) -> int:
    return int((pg_dir / "postmaster.pid").read_text().split("\n", 1)[0])


@pytest.mark.parametrize("kill_server", [False, True], ids=["orphan-server", "server-killed-too"])
async def test_start_after_a_killed_run(data_dir: Path, kill_server: bool) -> None:
    pg_dir = data_dir / "pg"
    run = subprocess.run([sys.executable, "-c", _KILLED_RUN, str(pg_dir)], check=False)
    assert run.returncode == -signal.SIGKILL
    orphan = _postmaster_pid(pg_dir)
    if kill_server:
        os.kill(orphan, signal.SIGKILL)
        time.sleep(0.2)
    pg = EmbeddedPostgres(pg_dir, durable=False)
    try:
        dsn = pg.start()
        assert (await _select_one(dsn))[0] == 1
        assert _postmaster_pid(pg_dir) != orphan
    finally:
        pg.stop()
    assert (
        not Path(f"/proc/{orphan}").exists()
        or b"postgres" not in Path(f"/proc/{orphan}/cmdline").read_bytes()
    )


@pytest.mark.skipif(
    os.geteuid() != 0, reason="only root must hand the server to an unprivileged user"
)
def test_root_with_a_private_directory_uses_shared_copies(data_dir: Path) -> None:
    """Root running from /root/... (mode 700): the server user cannot reach the binaries or the
    cluster there, so both are used from /var/tmp/via-otlp instead, and found again next time."""
    import shutil

    from via_otlp.registry.embedded import find_bin_dir

    private = data_dir / "root"  # 0700 in a 0755 directory: like /root, not a temp dir
    private.mkdir(mode=0o700)
    real_bin = find_bin_dir()
    site = private / "site"
    shutil.copytree(
        real_bin.parent, site / real_bin.parent.parent.name / real_bin.parent.name, symlinks=True
    )
    libs = real_bin.parent.parent.parent / f"{real_bin.parent.parent.name}.libs"
    if libs.is_dir():
        shutil.copytree(libs, site / libs.name, symlinks=True)
    bin_dir = site / real_bin.parent.parent.name / real_bin.parent.name / real_bin.name
    first = EmbeddedPostgres(private / "data" / "pg", bin_dir=bin_dir, durable=False)
    try:
        first.start()
        assert str(first.data_dir).startswith("/var/tmp/via-otlp/")
    finally:
        first.stop()
    again = EmbeddedPostgres(private / "data" / "pg", bin_dir=bin_dir, durable=False)
    try:
        again.start()
        assert again.data_dir == first.data_dir
    finally:
        again.stop()
        shutil.rmtree(first.data_dir.parent, ignore_errors=True)
        # the shared copy of this test's private binaries: <target>/<pkg>/pginstall/bin
        copied_bin = again._bin_dir
        if copied_bin is not None and str(copied_bin).startswith("/var/tmp/via-otlp/"):
            shutil.rmtree(copied_bin.parents[2], ignore_errors=True)


def test_durable_initdb_is_synced_before_it_is_renamed_into_place(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """initdb runs without its fsync per file; one sync of the whole new cluster (with our
    include line) comes before the rename, and the parent directory is fsynced after it."""
    from via_otlp.registry import embedded

    pg_dir = data_dir / "pg"
    seen: list[tuple[str, Path, bool]] = []

    def sync_filesystem(path: Path) -> None:
        conf = (path / "postgresql.conf").read_text()
        assert (path / "PG_VERSION").exists() and "include_if_exists = 'via.conf'" in conf
        seen.append(("sync", path, pg_dir.exists()))

    def fsync_dir(path: Path) -> None:
        seen.append(("fsync", path, (pg_dir / "PG_VERSION").exists()))

    monkeypatch.setattr(embedded, "sync_filesystem", sync_filesystem)
    monkeypatch.setattr(embedded, "fsync_dir", fsync_dir)
    pg = EmbeddedPostgres(pg_dir)
    try:
        pg.start()
    finally:
        pg.stop()
    assert [(what, renamed) for what, _, renamed in seen] == [("sync", False), ("fsync", True)]
    assert seen[0][1].parent == data_dir and seen[1][1] == data_dir


def test_the_cluster_is_synced_to_disk(data_dir: Path) -> None:
    """The real sync: syncfs on the new cluster's file system, without an error."""
    from via_otlp.durable import fsync_dir, sync_filesystem

    sync_filesystem(data_dir)
    fsync_dir(data_dir)


@pytest.mark.skipif(
    os.geteuid() != 0, reason="only root must hand the server to an unprivileged user"
)
def test_root_with_a_data_dir_deep_in_a_private_temp_dir_keeps_the_cluster_there() -> None:
    """A TemporaryDirectory (0700, in the sticky /tmp) holding the data dir a few levels down:
    the private directories on the way get group traverse, no copy in /var/tmp/via-otlp."""
    import pwd
    import shutil
    import tempfile

    from via_otlp.registry.embedded import find_bin_dir

    temp = Path(tempfile.mkdtemp())
    try:
        state = temp / "run" / "data"
        state.mkdir(parents=True, mode=0o700)
        pg = EmbeddedPostgres(state / "postgres", durable=False)
        pg._bin_dir = find_bin_dir()
        nobody = pwd.getpwnam(pg.os_user)
        run_as = pg._resolve_run_as()
        assert pg.data_dir == state / "postgres"
        assert run_as.uid == nobody.pw_uid
        assert (temp.stat().st_mode & 0o777) == 0o710 and (state.stat().st_mode & 0o777) == 0o710
    finally:
        shutil.rmtree(temp, ignore_errors=True)


def test_what_a_killed_initdb_left_is_removed_at_the_next_one(data_dir: Path) -> None:
    left = data_dir / ".pg.init-killed"
    (left / "base").mkdir(parents=True)
    (left / "PG_VERSION").write_text("18\n")
    other = data_dir / ".other.init-keep"  # another cluster's: not ours to remove
    other.mkdir()
    pg = EmbeddedPostgres(data_dir / "pg", durable=False)
    try:
        pg.start()
    finally:
        pg.stop()
    assert not left.exists() and other.exists()
    assert sorted(p.name for p in data_dir.iterdir() if ".init-" in p.name) == [".other.init-keep"]


_FORKED_THEN_KILLED = """
import os, signal, sys, time
from via_otlp.registry.embedded import EmbeddedPostgres
pg = EmbeddedPostgres(sys.argv[1], durable=False)  # (kept: its lock file stays open)
pg.start()
child = os.fork()  # as `serve` forks its shards after the registry's start began
if child == 0:
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):  # (the test reads the parent's output to its end)
        os.dup2(null, fd)
    time.sleep(60)
    os._exit(0)
print(child, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


async def test_a_killed_run_s_forked_child_does_not_keep_the_data_directory(
    data_dir: Path,
) -> None:
    """The data directory's lock ends with the process that took it: a child it forked (a
    shard, still finishing after its parent was killed) lets go of its copy."""
    pg_dir = data_dir / "pg"
    run = subprocess.run(
        [sys.executable, "-c", _FORKED_THEN_KILLED, str(pg_dir)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert run.returncode == -signal.SIGKILL, run.stderr
    child = int(run.stdout.split()[0])
    pg = EmbeddedPostgres(pg_dir, durable=False)
    try:
        assert Path(f"/proc/{child}").exists()  # the child lives on...
        dsn = pg.start()  # ...and the next run takes the data directory all the same
        assert (await _select_one(dsn))[0] == 1
    finally:
        pg.stop()
        os.kill(child, signal.SIGKILL)


def test_a_child_forked_while_initdb_runs_lets_go_of_its_output(data_dir: Path) -> None:
    """A shard forked after `begin` does not keep initdb's output file (a deleted temporary file
    it would hold for its whole life): in the child, that descriptor is /dev/null."""
    pg = EmbeddedPostgres(data_dir / "pg", durable=False)
    pg.begin()
    try:
        assert pg._initdb_job is not None
        fd = pg._initdb_job.out.fileno()
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: report what its copy of that descriptor is, and go
            os.write(w, os.readlink(f"/proc/self/fd/{fd}").encode())
            os._exit(0)
        os.close(w)
        with os.fdopen(r, "rb") as pipe:
            held = pipe.read().decode()
        os.waitpid(pid, 0)
        assert held == os.devnull
        assert "(deleted)" in os.readlink(f"/proc/self/fd/{fd}")  # the parent's is the file
        pg.start()
    finally:
        pg.stop()


def test_a_server_that_cannot_start_says_why(data_dir: Path) -> None:
    """The server is waited for by its postmaster.pid, not by pg_ctl: when it exits at its
    start, the error carries the end of its log, and nothing is left running or locked."""
    pg_dir = data_dir / "pg"
    pg = EmbeddedPostgres(pg_dir, durable=False)
    pg.start()
    pg.stop()
    with open(pg_dir / "postgresql.conf", "a", encoding="utf-8") as conf:
        conf.write("\nshared_buffers = 'lots'\n")
    with pytest.raises(StartupError, match=r"(?s)did not start.*shared_buffers") as err:
        pg.start()
    assert "server.log" in (err.value.hint or "")
    assert not pg.running and pg._server is None and pg._pid_from_file() is None
    again = EmbeddedPostgres(pg_dir, durable=False)  # the lock was released
    with pytest.raises(StartupError, match="shared_buffers"):
        again.start()
