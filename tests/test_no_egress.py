"""Nothing leaves this machine: a Ray test, the ``--ray`` CLI test and a browser test, run
under ``strace``, connect to and send to nothing beyond the loopback, and write nothing in
``$HOME`` nor a Ray session in ``/tmp/ray``.

``strace -f -yy`` follows every process they start (Ray's raylets and workers, Chromium's
renderers) and names each socket's kind and peer at every ``connect``, ``sendto`` and
``sendmsg``. A connection or datagram to an address outside ``127.0.0.0/8`` and ``::1`` fails
the test, and so does any DNS query (port 53, even to a resolver on the loopback: a test has no
name to look up). One exception, by name: Chromium's IPv6 reachability probe, a UDP socket
``connect``ed to Google's public resolver address and closed without sending anything (the
kernel only picks a route); a datagram sent on it would fail the test.

strace is a requirement of the suite (``.ci/run`` installs it with apt-get where it is
missing): without it this test fails, never skips.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STRACE = shutil.which("strace")
TRACED = [
    "tests/test_ray.py::test_agent_testing_shards_on_ray_start_each_test_run_once",
    "tests/test_ray.py::test_the_cli_runs_the_shards_on_a_local_ray_cluster",
    "tests/test_view_browser.py::test_the_runs_page_lists_every_run",
]
CHROMIUM_IPV6_PROBE = ipaddress.ip_address("2001:4860:4860::8888")
"""Where Chromium ``connect``s a UDP socket to learn whether IPv6 is routable (its
``IPv6ProbeAddress``): nothing is sent."""
DNS_PORT = 53

SYSCALL = re.compile(
    r"^(?P<pid>\d+) (?P<call>connect|sendto|sendmsg)\((?P<fd>\d+)<(?P<kind>\w+:\[.*?\])>"
)
SOCKADDR = re.compile(
    r"sa_family=AF_INET6?, sin6?_port=htons\((?P<port>\d+)\).*?"
    r'(?:inet_addr\("(?P<v4>[^"]+)"\)|inet_pton\(AF_INET6, "(?P<v6>[^"]+)")'
)
PEER = re.compile(r"->(?:\[(?P<v6>[^\]]+)\]|(?P<v4>[\d.]+)):(?P<port>\d+)\]$")
"""The far end in strace's ``-yy`` name of a connected socket: ``TCP:[a:p->b:q]``,
``UDPv6:[[a]:p->[b]:q]``."""
MKDIR = re.compile(r'^\d+ mkdir(?:at)?\((?:[^,]+, )?"(?P<path>[^"]+)".*= 0$')


@dataclass(frozen=True)
class Leak:
    line: str
    why: str


def loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    mapped = getattr(ip, "ipv4_mapped", None)
    return (mapped or ip).is_loopback


def leaks(trace: str, forbidden_dirs: list[str]) -> list[Leak]:
    """Every traced call that reaches beyond the loopback, queries DNS, or makes a directory
    under one of ``forbidden_dirs``."""
    found: list[Leak] = []
    for line in trace.splitlines():
        if made := MKDIR.match(line):
            path = made["path"]
            if any(path == d or path.startswith(d.rstrip("/") + "/") for d in forbidden_dirs):
                found.append(Leak(line, f"made {path}"))
            continue
        call = SYSCALL.match(line)
        if call is None or not call["kind"].startswith(("TCP", "UDP")):
            continue  # AF_UNIX, netlink: on this machine by nature
        udp = call["kind"].startswith("UDP")
        for addr in SOCKADDR.finditer(line):  # the address the call names
            ip = addr["v4"] or addr["v6"]
            if int(addr["port"]) == DNS_PORT:
                found.append(Leak(line, f"a DNS query to {ip}"))
            elif not loopback(ip):
                probe = (
                    call["call"] == "connect"
                    and udp
                    and ipaddress.ip_address(ip) == CHROMIUM_IPV6_PROBE
                )
                if not probe:
                    found.append(Leak(line, f"{call['call']} to {ip}"))
        if call["call"] != "connect" and (peer := PEER.search(call["kind"])):
            ip = peer["v4"] or peer["v6"]
            if not loopback(ip) or int(peer["port"]) == DNS_PORT:
                found.append(Leak(line, f"sent to {ip}:{peer['port']}"))
    return found


# ------------------------------------------------------------------------ the parser (pure)


def v4(call: str, kind: str, ip: str, port: int) -> str:
    """A traced call naming an IPv4 address, as ``strace -yy`` writes it."""
    addr = f'{{sa_family=AF_INET, sin_port=htons({port}), sin_addr=inet_addr("{ip}")}}'
    data = '"\\1", 1, 0, ' if call == "sendto" else ""
    return f"7 {call}(5<{kind}>, {data}{addr}, 16) = 0"


def v6(call: str, kind: str, ip: str, port: int, end: str = ") = 0") -> str:
    addr = (
        f"{{sa_family=AF_INET6, sin6_port=htons({port}), sin6_flowinfo=htonl(0),"
        f' inet_pton(AF_INET6, "{ip}", &sin6_addr), sin6_scope_id=0}}'
    )
    return f"9 {call}(19<{kind}>, {addr}, 28{end}"


def test_the_parser_finds_what_leaves_and_lets_the_loopback_be() -> None:
    probe = v6("connect", "UDPv6:[37]", "2001:4860:4860::8888", 443)
    lines = [
        # beyond the loopback: cloud metadata, a DNS query, an IPv6 peer
        v4("connect", "TCP:[31]", "169.254.169.254", 80),
        v4("sendto", "UDP:[32]", "127.0.0.53", 53),
        v6("connect", "TCPv6:[33]", "2a00:1450::1", 443, " <unfinished ...>"),
        # a datagram on Chromium's probe socket, once connected, names its peer
        "9 sendmsg(19<UDPv6:[[::]:4->[2001:4860:4860::8888]:443]>, {msg_name=NULL}, 0) = 1",
        '9 mkdir("/tmp/ray/session_1", 0777) = 0',
        # on this machine
        v4("connect", "TCP:[34]", "127.0.0.1", 8080),
        v6("connect", "TCPv6:[35]", "::ffff:127.0.0.1", 1),
        v6("connect", "TCPv6:[36]", "::1", 1),
        "7 sendmsg(10<TCP:[127.0.0.1:5->127.0.0.1:6]>, {msg_name=NULL}, 0) = 9",
        '7 connect(11<UNIX:[36]>, {sa_family=AF_UNIX, sun_path="/run/x"}, 110) = 0',
        probe,
        '9 mkdir("/tmp/pytest-of-root/pytest-1/ray0/ray/session_1", 0777) = 0',
    ]
    found = leaks("\n".join(lines), ["/tmp/ray", "/root"])
    assert [leak.why for leak in found] == [
        "connect to 169.254.169.254",
        "a DNS query to 127.0.0.53",
        "connect to 2a00:1450::1",
        "sent to 2001:4860:4860::8888:443",
        "made /tmp/ray/session_1",
    ]
    # the probe's exception is for a UDP connect only
    tcp_probe = probe.replace("UDPv6", "TCPv6")
    assert [leak.why for leak in leaks(tcp_probe, [])] == ["connect to 2001:4860:4860::8888"]


# ------------------------------------------------------------------------ the guard


@pytest.mark.timeout(600)
def test_nothing_leaves_the_machine_nor_lands_in_home(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    if STRACE is None:
        pytest.fail(
            "strace is missing: install Debian's strace (apt-get install strace; .ci/run does"
            " it). This test never skips."
        )
    work = tmp_path_factory.mktemp("egress")
    home = work / "home"
    home.mkdir()
    trace = work / "trace"
    real_home = os.environ.get("RUNNER_TESTS_REAL_HOME", os.path.expanduser("~"))
    # the child keeps this HOME (conftest would move it to a temp dir of its own)
    env = {**os.environ, "HOME": str(home), "PYTHONPATH": str(ROOT), "RUNNER_TESTS_KEEP_HOME": "1"}
    done = subprocess.run(
        [
            *(STRACE, "-f", "--seccomp-bpf", "-qq", "-yy", "-o", str(trace)),
            "-e",
            "trace=connect,sendto,sendmsg,mkdir,mkdirat",
            *(sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x"),
            *("--basetemp", str(work / "t"), *TRACED),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=540,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert f"{len(TRACED)} passed" in done.stdout
    found = leaks(trace.read_text(errors="replace"), ["/tmp/ray", real_home])
    assert found == [], "\n".join(f"{leak.why}: {leak.line[:300]}" for leak in found)
    assert sorted(p.name for p in home.iterdir()) == []  # nothing written in $HOME
