"""The network misbehaves under a real worker: connections dropped in the middle of a FETCH, an
APPEND or a MULTIAPPEND, a server restarted, a server that stops answering, a slow link.

A TCP proxy (tests/support/proxy.py) sits between the worker and each Dovecot server, on
plaintext IMAP so that it can see which command is going up. Every test ends with the
destination holding every source message exactly once and the source untouched."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
from django.utils import timezone

from apps.localmail import mail
from apps.localmail.dovecot import DovecotServer, Profile
from apps.providers.models import Provider
from apps.sync import services
from apps.sync.models import JobEvent, JobStatus, SyncJob
from tests.support.proxy import Fault, TcpProxy
from tests.support.workers import CpuMeter, kill_tree, start_worker, wait_until
from tests.sync.conftest import all_messages

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

FETCH_BODIES = rb"UID FETCH [0-9:,*]+ \(UID FLAGS INTERNALDATE BODY\.PEEK\[\]\)"
APPEND = rb"(?:^|\n)[A-Za-z0-9]+ APPEND "
LITERAL = rb"\{\d+\+?\}\r\n"


@dataclass
class Copy:
    job: SyncJob
    source: mail.Account
    destination: mail.Account
    source_proxy: TcpProxy | None
    destination_proxy: TcpProxy | None
    source_before: dict
    log: Path

    def run(self, timeout: float = 120, **env: str) -> float:
        """Run a burst worker until the queue is empty; returns the seconds it took."""
        started = time.monotonic()
        worker = start_worker(log=self.log, **env)
        self.wait(worker, timeout)
        return time.monotonic() - started

    def wait(self, worker: subprocess.Popen, timeout: float) -> None:
        try:
            returncode = worker.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_tree(worker)
            raise AssertionError(f"the worker was still busy after {timeout} s:\n{self.log_tail()}") from None
        assert returncode == 0, self.log_tail()

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""

    def refreshed(self) -> SyncJob:
        self.job.refresh_from_db()
        return self.job

    def events(self, kind: str) -> list[dict]:
        return [event.detail for event in JobEvent.objects.filter(job=self.job, kind=kind).order_by("id")]

    def assert_exact(self) -> None:
        """Nothing missing, nothing extra (bytes, flags, dates), the source unchanged."""
        expected = all_messages(self.source)
        assert sum(expected.values()) > 0
        assert all_messages(self.destination) == expected
        assert mail.uid_state(self.source) == self.source_before, "the source was modified"


@pytest.fixture
def plain_account(make_account):
    def make(server: DovecotServer, user, port: int):
        return make_account(f"{user.login}@example.org", login=user.login, password=user.password,
                            host="127.0.0.1", port=port, security="none")  # fmt: skip

    return make


@pytest.fixture
def proxied_copy(imap_trust, plain_account, redis_connection, tmp_path):
    """A queued job whose source and destination are each reached through a TcpProxy."""
    source_server, destination_server, _bundle = imap_trust
    proxies: list[TcpProxy] = []

    def make(*, seed: int, messages: int, **corpus) -> Copy:
        source_user, destination_user = source_server.new_user(), destination_server.new_user()
        source = mail.Account(source_server.host, source_server.port, source_user.login, source_user.password,
                              "INBOX.", ".")  # fmt: skip
        destination = mail.Account(destination_server.host, destination_server.port, destination_user.login,
                                   destination_user.password)  # fmt: skip
        mail.upload_fast(source, mail.build_corpus(seed=seed, messages=messages, **corpus))
        source_proxy = TcpProxy("127.0.0.1", source_server.port).__enter__()
        destination_proxy = TcpProxy("127.0.0.1", destination_server.port).__enter__()
        proxies.extend((source_proxy, destination_proxy))
        job = services.job_create(
            source=plain_account(source_server, source_user, source_proxy.port),
            destination=plain_account(destination_server, destination_user, destination_proxy.port),
        )
        return Copy(job, source, destination, source_proxy, destination_proxy, mail.uid_state(source),
                    tmp_path / "worker.log")  # fmt: skip

    yield make
    for proxy in proxies:
        proxy.close()


def literals(chunk: bytes) -> int:
    return len(re.findall(LITERAL, chunk))


def test_source_dropped_in_the_middle_of_a_fetch(proxied_copy):
    copy = proxied_copy(seed=61, messages=600)
    copy.source_proxy.arm(Fault("drop", upstream=FETCH_BODIES, after_bytes=60_000))
    copy.run()
    assert copy.source_proxy.acted.is_set() and copy.source_proxy.drops == 1
    job = copy.refreshed()
    assert job.status == JobStatus.FINISHED, (job.error_code, job.error_detail, copy.log_tail())
    assert job.attempts == 1, "the worker reconnected by itself"
    assert any(event["side"] == "source" for event in copy.events("retry"))
    assert job.messages_copied == job.messages_total
    copy.assert_exact()


def test_destination_dropped_in_the_middle_of_an_append(proxied_copy):
    # Messages above a batch each: one APPEND per message, its literal sent on its own.
    copy = proxied_copy(seed=62, messages=24, sizes=(150_000,))
    copy.destination_proxy.arm(Fault("drop", upstream=APPEND, after_bytes=50_000))
    copy.run(IMAPCOPY_BATCH_BYTES=str(64 * 1024))
    assert copy.destination_proxy.drops == 1
    assert literals(copy.destination_proxy.trigger_chunk) == 1, "a single-message APPEND was cut"
    job = copy.refreshed()
    assert job.status == JobStatus.FINISHED, (job.error_code, job.error_detail, copy.log_tail())
    assert any(event["side"] == "destination" for event in copy.events("retry"))
    copy.assert_exact()


def test_destination_dropped_in_the_middle_of_a_multiappend(proxied_copy):
    copy = proxied_copy(seed=63, messages=600)
    copy.destination_proxy.arm(Fault("drop", upstream=APPEND, after_bytes=100_000))
    copy.run()
    assert copy.destination_proxy.drops == 1
    assert literals(copy.destination_proxy.trigger_chunk) >= 2, "a MULTIAPPEND of several messages was cut"
    job = copy.refreshed()
    assert job.status == JobStatus.FINISHED, (job.error_code, job.error_detail, copy.log_tail())
    assert any(event["side"] == "destination" for event in copy.events("retry"))
    copy.assert_exact()


def _restartable(profile: Profile):
    """A Dovecot of this test's own, in a directory that outlives stop() (under /tmp: Dovecot's
    unprivileged user cannot reach pytest's private tmp_path), so its mail and UIDVALIDITYs
    survive a restart."""
    directory = Path(tempfile.mkdtemp(prefix="dovecot-restart-"))
    server = DovecotServer(profile, directory=directory, pool_size=2)
    server.start()
    yield server
    server.stop()
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def restartable_server():
    yield from _restartable(Profile.slash())


@pytest.fixture
def restartable_source():
    yield from _restartable(Profile.dot())


def restart(server: DovecotServer) -> None:
    """Down for 3 s: new connections refused, open ones cut, as `systemctl restart dovecot` does."""
    restart_begins = time.monotonic()
    server.stop()
    assert stop_sessions(server) >= 1
    time.sleep(max(0.0, 3 - (time.monotonic() - restart_begins)))
    server.start()


def stop_sessions(server: DovecotServer) -> int:
    """Kill what is left of a stopped test server: its IMAP session processes outlive the master
    we terminated (a real restart, with Dovecot's shutdown_clients=yes, ends them too)."""
    title = f"dovecot-test-{server.profile.name}-{server.port}/"
    leftovers = [p for p in psutil.process_iter(["cmdline"]) if any(title in part for part in p.info["cmdline"] or [])]
    for process in leftovers:
        process.kill()
    psutil.wait_procs(leftovers, timeout=10)
    return len(leftovers)


def copy_across_a_restart(*, seed: int, source_server: DovecotServer, destination_server: DovecotServer,
                          restarted: DovecotServer, plain_account, log: Path,
                          destination_port: int | None = None) -> Copy:  # fmt: skip
    """A 900-message copy (paced at 200 msgs/s by the provider's limit) during which `restarted`
    (the source or the destination server) is restarted; returns it finished."""
    source_user, destination_user = source_server.new_user(), destination_server.new_user()
    source = mail.Account(source_server.host, source_server.port, source_user.login, source_user.password,
                          "INBOX.", ".")  # fmt: skip
    destination = mail.Account(destination_server.host, destination_server.port, destination_user.login,
                               destination_user.password)  # fmt: skip
    mail.upload_fast(source, mail.build_corpus(seed=seed, messages=900))
    Provider.objects.filter(slug="other").update(max_messages_per_second=200)
    job = services.job_create(
        source=plain_account(source_server, source_user, source_server.port),
        destination=plain_account(destination_server, destination_user, destination_port or destination_server.port),
    )
    copy = Copy(job, source, destination, None, None, mail.uid_state(source), log)
    worker = start_worker(log=copy.log)
    wait_until(lambda: 100 < SyncJob.objects.get(pk=job.pk).messages_copied < 700, timeout=60)
    restart(restarted)
    copy.wait(worker, timeout=120)
    job = copy.refreshed()
    assert job.status == JobStatus.FINISHED, (job.error_code, job.error_detail, copy.log_tail())
    assert job.attempts == 1
    return copy


@pytest.mark.parametrize("front", ["direct", "load_balancer"])
def test_destination_server_restarted_during_the_copy(front, imap_trust, restartable_server, plain_account,
                                                      redis_connection, tmp_path, request):  # fmt: skip
    """Directly, connections are refused while the server is down; behind a load balancer (the
    proxy) they are accepted and closed before any greeting."""
    port = None
    if front == "load_balancer":
        balancer = TcpProxy("127.0.0.1", restartable_server.port).__enter__()
        request.addfinalizer(balancer.close)
        port = balancer.port
    copy = copy_across_a_restart(
        seed=64, source_server=imap_trust[0], destination_server=restartable_server, restarted=restartable_server,
        plain_account=plain_account, log=tmp_path / "worker.log", destination_port=port,
    )  # fmt: skip
    assert copy.events("reconnecting"), "the run waited for the server to come back"
    copy.assert_exact()


def test_source_server_restarted_during_the_copy(imap_trust, restartable_source, plain_account, redis_connection,
                                                 tmp_path):  # fmt: skip
    """The source's sessions are cut mid-FETCH and it refuses connections for 3 s; it comes back
    with the same UIDVALIDITYs, so the run resumes from its checkpoints without reconciling."""
    copy = copy_across_a_restart(
        seed=65, source_server=restartable_source, destination_server=imap_trust[1], restarted=restartable_source,
        plain_account=plain_account, log=tmp_path / "worker.log",
    )  # fmt: skip
    assert any(event["side"] == "source" for event in copy.events("reconnecting")), copy.log_tail()
    assert not copy.events("uidvalidity_changed")
    copy.assert_exact()


def test_a_stalled_source_times_out_and_the_copy_goes_on_once_it_answers(proxied_copy):
    copy = proxied_copy(seed=65, messages=600)
    # Stops forwarding in the middle of the first FETCH, without closing anything, for 6 s.
    copy.source_proxy.arm(Fault("stall", upstream=FETCH_BODIES, after_bytes=30_000, seconds=6))
    worker = start_worker(log=copy.log, IMAPCOPY_IMAP_TIMEOUT_SECONDS="2")
    proxy = copy.source_proxy
    wait_until(proxy.acted.is_set, timeout=60)
    meter = CpuMeter(worker.pid)
    cpu_before, wall_before = meter.sample(), time.monotonic()
    while not proxy.healed.wait(0.25):
        meter.sample()
    cpu = meter.sample() - cpu_before
    wall = time.monotonic() - wall_before
    assert cpu < 0.3 * wall, f"the worker spun during the stall: {cpu:.2f} s CPU in {wall:.1f} s"
    copy.wait(worker, timeout=120)
    job = copy.refreshed()
    assert job.status == JobStatus.FINISHED, (job.error_code, job.error_detail, copy.log_tail())
    assert any(event["reason"] == "timeout" and event["side"] == "source" for event in copy.events("retry"))
    copy.assert_exact()


def test_a_destination_that_never_answers_again_fails_the_job_in_bounded_time_then_a_retry_completes(
    proxied_copy,
):
    copy = proxied_copy(seed=66, messages=600)
    proxy = copy.destination_proxy
    proxy.arm(Fault("stall", upstream=APPEND, after_bytes=20_000))  # until heal()
    worker = start_worker(log=copy.log, IMAPCOPY_IMAP_TIMEOUT_SECONDS="2", IMAPCOPY_NETWORK_PATIENCE_SECONDS="8")
    wait_until(proxy.acted.is_set, timeout=60)
    meter = CpuMeter(worker.pid)
    cpu_before, stalled_at = meter.sample(), time.monotonic()
    silences = [0.0]  # how long the run's heartbeat has been silent, sampled
    while worker.poll() is None and time.monotonic() - stalled_at < 120:
        meter.sample()
        status, beat = SyncJob.objects.values_list("status", "heartbeat_at").get(pk=copy.job.pk)
        if status == JobStatus.RUNNING:
            silences.append((timezone.now() - beat).total_seconds())
        time.sleep(0.25)
    cpu, wall = meter.sample() - cpu_before, time.monotonic() - stalled_at
    copy.wait(worker, timeout=1)
    assert wall < 90, f"the job took {wall:.0f} s to give up"
    assert cpu < 0.3 * wall, f"the worker spun while the server was silent: {cpu:.2f} s CPU in {wall:.1f} s"
    # The run kept beating while it waited, silent at most for the heartbeat interval (2 s) plus
    # a timeout per stalled connection it logs out of (two pipelines here), plus slack. With the
    # default 60 s timeout that is ~122 s, below the 180 s after which recovery would take the
    # live run for a dead one and start a second.
    assert max(silences) < 2 + 2 * 2 + 1, f"the heartbeat was silent for {max(silences):.1f} s"
    job = copy.refreshed()
    assert (job.status, job.error_code, job.error_side) == (JobStatus.FAILED, "timeout", "destination")
    assert job.messages_copied < job.messages_total
    assert job.source.has_password, "a job that failed on the network can be retried"

    proxy.heal()
    services.job_retry(job=job)
    copy.run()
    job = copy.refreshed()
    assert job.status == JobStatus.FINISHED, (job.error_code, job.error_detail, copy.log_tail())
    assert job.attempts == 2
    copy.assert_exact()


def test_a_trickling_destination_is_slow_but_completes(proxied_copy):
    copy = proxied_copy(seed=67, messages=600)
    rate = 150_000
    copy.destination_proxy.trickle(rate)  # from the first byte (greeting included)
    seconds = copy.run()
    job = copy.refreshed()
    assert job.status == JobStatus.FINISHED, (job.error_code, job.error_detail, copy.log_tail())
    # The rate is per connection, and the copy runs over several at once.
    connections = copy.destination_proxy.connections
    assert seconds > 0.8 * job.bytes_copied / (rate * connections), "the link was that slow"
    assert copy.events("retry") == [] and copy.events("reconnecting") == [], "a slow link is no failure"
    copy.assert_exact()
