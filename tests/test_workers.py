"""Worker processes: sized to the CPUs, counted together by /metrics, supervised to a clean exit."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, contextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pydantic
import pytest
import uvicorn
from prometheus_client.parser import text_string_to_metric_families

import service.__main__ as main
from service.cpus import Plan, cgroup_cpu_limit, plan, usable_cpus
from service.settings import Settings
from tests.conftest import README_EXAMPLE, fake_cgroups, free_port, running_server
from tests.pinning import pinned_clients, worker_pids

pytestmark = pytest.mark.timeout(120)


@pytest.mark.parametrize(
    ("membership", "files", "limit"),
    [
        pytest.param("0::/\n", {"cpu.max": "150000 100000\n"}, 1.5, id="v2 container"),
        pytest.param("0::/\n", {"cpu.max": "max 100000\n"}, None, id="v2 no quota"),
        pytest.param(
            "0::/kubepods/pod1/ctr\n",
            {
                "kubepods/pod1/ctr/cpu.max": "max 100000\n",
                "kubepods/pod1/cpu.max": "200000 100000\n",
                "kubepods/cpu.max": "400000 100000\n",
            },
            2.0,
            id="v2 tightest ancestor",
        ),
        pytest.param(
            "0::/docker/abc\n", {"cpu.max": "50000 100000\n"}, 0.5, id="v2 path not mounted"
        ),
        pytest.param(
            "4:memory:/x\n2:cpu,cpuacct:/docker/abc\n",
            {"cpu/cpu.cfs_quota_us": "250000\n", "cpu/cpu.cfs_period_us": "100000\n"},
            2.5,
            id="v1",
        ),
        pytest.param(
            "2:cpu,cpuacct:/\n",
            {"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"},
            None,
            id="v1 no quota",
        ),
        pytest.param("0::/\n", {}, None, id="no cgroup files"),
        pytest.param("0::/\n", {"cpu.max": "garbage\n"}, None, id="unreadable"),
    ],
)
def test_cgroup_cpu_limit(
    tmp_path: Path, membership: str, files: dict[str, str], limit: float | None
) -> None:
    root, proc = fake_cgroups(tmp_path, membership, files)
    assert cgroup_cpu_limit(root, proc) == limit


def test_cgroup_cpu_limit_without_proc_file(tmp_path: Path) -> None:
    assert cgroup_cpu_limit(tmp_path, tmp_path / "missing") is None


@pytest.mark.parametrize(
    ("affinity", "quota", "cpus"),
    [(8, None, 8), (8, 1.5, 2), (8, 2.0, 2), (8, 0.5, 1), (2, 16.0, 2), (0, None, 1)],
)
def test_usable_cpus_is_the_affinity_capped_by_the_quota_rounded_up(
    affinity: int, quota: float | None, cpus: int
) -> None:
    assert usable_cpus(lambda: affinity, lambda: quota) == cpus


def test_usable_cpus_here_follows_the_affinity() -> None:
    assert 1 <= usable_cpus() <= len(os.sched_getaffinity(0))


@pytest.mark.parametrize(
    ("workers", "threads", "cpus", "expected"),
    [
        (0, 0, 4, Plan(4, 4)),  # auto: a worker per CPU, each may use every CPU
        (2, 0, 4, Plan(2, 4)),
        (1, 0, 4, Plan(1, 4)),
        (8, 0, 2, Plan(8, 2)),
        (0, 3, 4, Plan(4, 3)),  # FAIRLOSS_TORCH_THREADS wins
        (0, 0, 1, Plan(1, 1)),
    ],
)
def test_plan(workers: int, threads: int, cpus: int, expected: Plan) -> None:
    assert plan(workers, threads, cpus) == expected


@pytest.mark.parametrize(("workers", "threads", "cpus"), [(-1, 0, 2), (0, -1, 2), (0, 0, 0)])
def test_plan_refuses_bad_sizes(workers: int, threads: int, cpus: int) -> None:
    with pytest.raises(ValueError, match="bad sizes"):
        plan(workers, threads, cpus)


@pytest.mark.parametrize(("given", "workers"), [("auto", 0), (" AUTO ", 0), ("0", 0), ("3", 3)])
def test_workers_setting_takes_auto(
    monkeypatch: pytest.MonkeyPatch, given: str, workers: int
) -> None:
    monkeypatch.setenv("FAIRLOSS_WORKERS", given)
    assert Settings().workers == workers


@pytest.mark.parametrize("given", ["-1", "many", "1.5"])
def test_workers_setting_refuses_other_values(monkeypatch: pytest.MonkeyPatch, given: str) -> None:
    monkeypatch.setenv("FAIRLOSS_WORKERS", given)
    with pytest.raises(pydantic.ValidationError):
        Settings()


BAD_SETTINGS = [
    (
        {"FAIRLOSS_WORKERS": "abc"},
        "FAIRLOSS_WORKERS: expected a whole number >= 0 or 'auto', got 'abc'",
    ),
    (
        {"FAIRLOSS_WORKERS": "-1"},
        "FAIRLOSS_WORKERS: expected a whole number >= 0 or 'auto', got '-1'",
    ),
    (
        {"FAIRLOSS_TORCH_THREADS": "x"},
        "FAIRLOSS_TORCH_THREADS: expected a whole number >= 0 or 'auto', got 'x'",
    ),
    (
        {"FAIRLOSS_LOG_LEVEL": "verbose"},
        "FAIRLOSS_LOG_LEVEL: Input should be 'critical', 'error', 'warning', 'info' or 'debug'",
    ),
    (
        {"FAIRLOSS_DEVICE": "tpu"},
        "FAIRLOSS_DEVICE tpu: Unknown device 'tpu': use 'auto', 'cpu', 'cuda' or 'cuda:K'. "
        "Devices here: cpu",  # then ", cuda:0" and so on, where there are GPUs
    ),
    (
        {"FAIRLOSS_CORS_ORIGINS": "http://127.0.0.1:5000/"},
        "FAIRLOSS_CORS_ORIGINS: expected an origin, scheme://host[:port] and nothing after it, "
        "got 'http://127.0.0.1:5000/'; send http://127.0.0.1:5000",
    ),
    (
        {"FAIRLOSS_CORS_ORIGINS": "https://a.example, 127.0.0.1:5000"},
        "FAIRLOSS_CORS_ORIGINS: expected origins such as https://dash.example or "
        "http://127.0.0.1:5000 (or *), got '127.0.0.1:5000', which has no http:// or https://",
    ),
    (
        {"FAIRLOSS_HOST": "127.0.0.1", "FAIRLOSS_PORT": "{busy}"},
        "FAIRLOSS_HOST/FAIRLOSS_PORT: cannot listen on 127.0.0.1:{busy}: Address already in use",
    ),
]


@contextmanager
def listening() -> Iterator[int]:
    """A loopback port that a socket listens on, for as long as the context lasts."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


@pytest.mark.parametrize(
    ("env", "said"), BAD_SETTINGS, ids=[next(iter(e)) for e, _ in BAD_SETTINGS]
)
def test_python_m_service_says_a_bad_setting_in_one_line(env: dict[str, str], said: str) -> None:
    """A bad FAIRLOSS_* value (or a port in use) stops `python -m service` before anything
    starts: one line on stderr naming the variable, status 1, nothing on stdout."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FAIRLOSS_")}
    with listening() as busy:
        given = {k: v.format(busy=busy) for k, v in env.items()}
        done = subprocess.run(
            [sys.executable, "-m", "service"],
            env={**clean, **given},
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert (done.returncode, done.stdout) == (1, "")
    (line,) = done.stderr.splitlines()
    assert line.startswith(f"python -m service: error: {said.format(busy=busy)}")


@pytest.fixture
def launched(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """`service.__main__.run` on 3 CPUs, with uvicorn's runners replaced by recorders; its
    changes to the environment and to SIGTERM's handler are undone after the test."""
    seen: dict[str, Any] = {}
    monkeypatch.setattr(main, "usable_cpus", lambda: 3)
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.update(kw, runner="uvicorn"))
    monkeypatch.setattr(main, "serve", lambda config: seen.update(config=config, runner="serve"))
    monkeypatch.setattr(signal, "signal", lambda *_: None)
    for name in ("WORKERS", "TORCH_THREADS"):
        monkeypatch.setenv(f"FAIRLOSS_{name}", "")
        monkeypatch.delenv(f"FAIRLOSS_{name}")
    return seen


def test_by_default_a_worker_per_cpu_each_with_every_cpus_threads(
    launched: dict[str, Any],
) -> None:
    main.run(Settings())
    assert launched["runner"] == "serve"
    assert launched["config"].workers == 3
    assert (os.environ["FAIRLOSS_WORKERS"], os.environ["FAIRLOSS_TORCH_THREADS"]) == ("3", "3")


def test_one_worker_runs_in_process_with_every_cpus_threads(launched: dict[str, Any]) -> None:
    main.run(Settings(workers=1))
    assert (launched["runner"], launched["workers"]) == ("uvicorn", 1)
    assert (os.environ["FAIRLOSS_WORKERS"], os.environ["FAIRLOSS_TORCH_THREADS"]) == ("1", "3")


def test_torch_threads_given_are_kept(launched: dict[str, Any]) -> None:
    main.run(Settings(workers=2, torch_threads=4))
    assert launched["config"].workers == 2
    assert os.environ["FAIRLOSS_TORCH_THREADS"] == "4"


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _samples(text: str) -> Samples:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def _scrape(client: httpx.AsyncClient) -> Samples:
    return _samples((await client.get("/metrics")).text)


SCORED = (
    "fairloss_http_requests_total",
    (("method", "POST"), ("route", "/score"), ("status", "200")),
)
LATENCY = (
    "fairloss_http_request_duration_seconds_count",
    (("method", "POST"), ("route", "/score")),
)
SAMPLES = ("fairloss_samples_scored_total", ())
IN_FLIGHT = ("fairloss_computations_in_flight", ())


def _metrics_dir(pid: int) -> Path:
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    (value,) = [v for v in environ if v.startswith(b"PROMETHEUS_MULTIPROC_DIR=")]
    return Path(value.split(b"=", 1)[1].decode())


@pytest.mark.anyio
async def test_two_workers_metrics_sum_over_both_and_forget_a_dead_ones_slots() -> None:
    env = {"FAIRLOSS_WORKERS": "2", "FAIRLOSS_LOG_LEVEL": "warning"}
    sent = (3, 5)  # /score requests answered by the first worker, by the second
    go = anyio.Event()

    async def held_body() -> AsyncIterator[bytes]:
        yield b'{"logits": '
        await go.wait()
        yield b"[[1, 2]], "

    async def hold(client: httpx.AsyncClient) -> None:
        with pytest.raises(httpx.TransportError):  # its worker is killed meanwhile
            await client.post("/score", content=held_body())

    with running_server(env) as server:
        workers = worker_pids(server.process.pid)
        metrics_dir = _metrics_dir(workers[0])
        assert metrics_dir.is_dir()
        async with AsyncExitStack() as stack:
            fresh = httpx.Limits(max_keepalive_connections=0)  # never one to a killed worker
            client = await stack.enter_async_context(
                httpx.AsyncClient(base_url=server.url, limits=fresh)
            )
            pinned, pids = await pinned_clients(stack, server.url, 1, 2)
            assert sorted(pids) == sorted(workers)
            info = (await pinned[0].get("/info")).json()["server"]
            assert info == {
                "workers": 2,
                "worker_pid": pids[0],
                "torch_threads": plan(2, 0, usable_cpus()).torch_threads,
            }
            before = await _scrape(client)
            for own, count in zip(pinned, sent, strict=True):
                for _ in range(count):
                    assert (await own.post("/score", json=README_EXAMPLE)).status_code == 200
            for own, pid in zip(pinned, pids, strict=True):  # the pins held: each its worker
                assert (await own.get("/info")).json()["server"]["worker_pid"] == pid
            after = await _scrape(client)
            assert after[SCORED] - before.get(SCORED, 0) == sum(sent)
            assert after[LATENCY] - before.get(LATENCY, 0) == sum(sent)
            assert after[SAMPLES] - before[SAMPLES] == 2 * sum(sent)

            async with anyio.create_task_group() as group:
                group.start_soon(hold, pinned[0])
                with anyio.fail_after(10):
                    while (await _scrape(client))[IN_FLIGHT] != 1:
                        await anyio.sleep(0.02)
                os.kill(pids[0], signal.SIGKILL)
                with anyio.fail_after(30):  # the supervisor notices, and replaces the worker
                    while (await _scrape(client))[IN_FLIGHT] != 0:
                        await anyio.sleep(0.1)
                go.set()
            with anyio.fail_after(30):
                while len(set(worker_pids(server.process.pid)) - {pids[0]}) < 2:
                    await anyio.sleep(0.1)
            kept = await _scrape(client)
            assert kept[SCORED] - before.get(SCORED, 0) == sum(sent)  # the dead one's too
            assert kept[SAMPLES] - before[SAMPLES] == 2 * sum(sent)
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=20) == 0, server.output()[-2000:]
    assert not metrics_dir.exists()


def test_a_worker_that_cannot_start_stops_the_supervisor_with_status_3() -> None:
    """`run` without `main`'s checks, so that the workers meet a device that is not there (as
    they would a GPU that failed between the check and their start)."""
    env = {
        **os.environ,
        "FAIRLOSS_HOST": "127.0.0.1",
        "FAIRLOSS_PORT": str(free_port()),
        "FAIRLOSS_WORKERS": "2",
        "FAIRLOSS_DEVICE": "cuda:99",
    }
    code = "import service.__main__ as m; m.run(m.Settings())"
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, timeout=90, check=False
    )
    assert done.returncode == 3, done.stdout[-2000:]
    assert b"FAIRLOSS_DEVICE='cuda:99'" in done.stdout
    assert time.monotonic() - started < 60


def _alive(pid: int) -> bool:
    """Whether ``pid`` is a process that has not exited (a zombie has)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def _answers(url: str) -> bool:
    try:
        httpx.get(f"{url}/healthz", timeout=1.0)
    except httpx.TransportError:
        return False
    return True


def test_workers_die_with_a_supervisor_killed_by_sigkill() -> None:
    """SIGKILL (the OOM killer's signal) gives the supervisor no chance to stop its workers:
    each must notice on its own, stop accepting and exit, and leave the port closed."""
    env = {"FAIRLOSS_WORKERS": "2", "FAIRLOSS_LOG_LEVEL": "warning"}
    with running_server(env) as server:
        workers = worker_pids(server.process.pid)
        assert len(workers) == 2
        assert server.process.pid not in workers
        assert httpx.post(f"{server.url}/score", json=README_EXAMPLE).status_code == 200
        try:
            server.process.send_signal(signal.SIGKILL)
            server.process.wait(timeout=10)
            deadline = time.monotonic() + 10
            while any(map(_alive, workers)) and time.monotonic() < deadline:
                time.sleep(0.05)
            gone_after = 10 - (deadline - time.monotonic())
            assert not any(map(_alive, workers)), server.output()[-2000:]
            assert not _answers(server.url)
            assert gone_after < 5
        finally:
            for pid in workers:  # never leave one serving, whatever the assertions found
                if _alive(pid):
                    os.kill(pid, signal.SIGKILL)
