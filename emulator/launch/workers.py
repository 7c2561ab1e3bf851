"""`serve --workers N`: N forked server processes accepting on one port through SO_REUSEPORT.

Each worker is a whole emulator (its own event loop, answer caches and replay cursors) on the
same data directory, so they share one ledger (each worker journals its charges in a file of its
own and moves them into the shared SQLite file in `flock`ed transactions; see emulator/accounting/ledger.py)
and one cassette directory (appends are `flock`ed). The kernel spreads new connections over the
workers; the banner is printed once every worker listens. The control plane is one state for all
of them (emulator/control/shared.py): a stub, fault, clock, mode or reset set through any worker
applies to the next call on every worker, and the request log shows every worker's calls.

Workers never outlive the parent: each asks the kernel for SIGTERM when its parent dies (even by
kill -9), so no orphan keeps answering on the port. A port another process already holds is refused
with one line before any worker starts (SO_REUSEPORT alone would let a second group share it).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import socket
import sys
from multiprocessing.connection import Connection

import click

from emulator.launch import eventloop
from emulator.launch.banner import banner as make_banner
from emulator.lifeline import die_with_parent
from emulator.server.worker_group import WorkerGroup
from emulator.settings import Settings


class PortInUse(OSError):
    """The port is already held by another process (SO_REUSEPORT would silently share it)."""


def _check_port_free(family: socket.AddressFamily, host: str, port: int) -> None:
    # Without SO_REUSEPORT this bind fails while anything listens on the port, including an older
    # `serve --workers` group, which a SO_REUSEPORT bind would silently join.
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT leftovers are fine
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise PortInUse(exc.errno, f"cannot listen on {host}:{port}: {exc.strerror}") from None


def reserve_port(host: str, port: int) -> socket.socket:
    """Bind (without listening) the port the workers will share, so `--port 0` gives all of them one
    port; the socket joins the SO_REUSEPORT group but, not listening, never receives a connection.
    Raises PortInUse when another process holds the port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    if port:
        _check_port_free(family, host, port)
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise PortInUse(exc.errno, f"cannot listen on {host}:{port}: {exc.strerror}") from None
    return sock


async def _run_worker(settings: Settings, ready: Connection, group: WorkerGroup) -> None:
    # Imported in the child: the parent forks before the server stack is loaded.
    from emulator.launch.lifecycle import serve_until_stopped

    def report_ready(_runner: object) -> None:
        ready.send(os.getpid())
        ready.close()

    await serve_until_stopped(settings, report_ready, group)


def _worker_main(settings: Settings, ready: Connection, parent: int, group: WorkerGroup) -> None:
    # The parent's handlers, set before the fork, only note a stop request in the parent.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    die_with_parent(parent)
    eventloop.run(_run_worker(settings, ready, group), settings.event_loop)


def serve_workers(settings: Settings, banner: str | None = None) -> int:
    """Run `settings.workers` servers until SIGINT/SIGTERM; returns the exit status."""
    # Resolved once here: a default temporary data dir per worker would give each its own ledger.
    settings.resolved_data_dir()
    try:
        placeholder = reserve_port(settings.host, settings.port)
    except PortInUse as exc:
        click.echo(f"Error: {exc.strerror}", err=True)
        return 1
    settings.port = placeholder.getsockname()[1]
    # fork: the parent has imported nothing heavy yet, and a child starts in milliseconds.
    context = multiprocessing.get_context("fork")
    group = WorkerGroup.create(settings.workers, context)
    try:
        return _serve_group(settings, banner, placeholder, context, group)
    finally:
        group.remove()


def _serve_group(settings: Settings, banner: str | None, placeholder: socket.socket,
                 context: multiprocessing.context.ForkContext, group: WorkerGroup) -> int:
    children: list[multiprocessing.process.BaseProcess] = []
    waits: list[Connection] = []
    stopping = False

    def request_stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    # Before the workers start: a SIGTERM that comes as soon as they listen (while the banner is
    # being written) stops the group as any other does, with status 0 and its shared state removed.
    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    for index in range(settings.workers):
        receive, send = context.Pipe(duplex=False)
        child = context.Process(target=_worker_main, args=(settings, send, os.getpid(), group.member(index)),
                                daemon=True)
        child.start()
        send.close()
        children.append(child)
        waits.append(receive)
    try:
        for receive in waits:
            receive.recv()  # EOFError when a worker died before listening
    except EOFError:
        _stop(children)
        placeholder.close()
        click.echo("a worker failed to start", err=True)
        return 1
    placeholder.close()
    click.echo(banner or make_banner(settings))
    pids = ", ".join(str(c.pid) for c in children)
    click.echo(f"  {settings.workers} workers (pids {pids}) share this port.")
    sys.stdout.flush()

    while not stopping and all(c.is_alive() for c in children):
        # A short join keeps the parent responsive to signals and notices a worker that died.
        children[0].join(timeout=0.2)
    ended = [child for child in children if not child.is_alive()]
    failed = not stopping
    _stop(children)
    if failed and ended:
        # The group serves one port: without one of its workers it stops rather than run short.
        click.echo(f"Error: worker {ended[0].pid} {_how_it_ended(ended[0].exitcode)}; stopping the group",
                   err=True)
    return 1 if failed else 0


def _how_it_ended(exitcode: int | None) -> str:
    """`multiprocessing`'s exit code in words: negative for the signal that ended the process."""
    if exitcode is not None and exitcode < 0:
        try:
            return f"was ended by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"was ended by signal {-exitcode}"
    return f"exited with status {exitcode}"


def _stop(children: list[multiprocessing.process.BaseProcess]) -> None:
    for child in children:
        if child.is_alive() and child.pid is not None:
            os.kill(child.pid, signal.SIGTERM)
    for child in children:
        child.join(timeout=10)
        if child.is_alive():
            child.kill()
            child.join()
