"""Tools that misbehave, for the sandbox tests (each is a typed tool function)."""

from __future__ import annotations

import os
import socket
import time

from pydantic import BaseModel

from autopilot.tools.registry import ToolContext


class Target(BaseModel):
    path: str = ""
    host: str = "127.0.0.1"
    port: int = 0
    mb: int = 0


class Out(BaseModel):
    text: str


def read_file(args: Target, ctx: ToolContext) -> Out:
    """Read a file the tool should never see (the store)."""
    with open(args.path, "rb") as fh:
        return Out(text=fh.read(64).hex())


def connect(args: Target, ctx: ToolContext) -> Out:
    """Open a socket and say hello over HTTP."""
    with socket.create_connection((args.host, args.port), timeout=3) as s:
        s.sendall(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
        return Out(text=s.recv(200).decode(errors="replace"))


def fork_bomb(args: Target, ctx: ToolContext) -> Out:
    """Fork until something stops it."""
    children = 0
    while True:
        if os.fork() == 0:
            time.sleep(30)
            os._exit(0)
        children += 1


def hog_memory(args: Target, ctx: ToolContext) -> Out:
    """Allocate `mb` megabytes."""
    block = bytearray(args.mb * 1024 * 1024)
    return Out(text=str(len(block)))


def spin(args: Target, ctx: ToolContext) -> Out:
    """Never return."""
    while True:
        time.sleep(0.1)


def burn_cpu(args: Target, ctx: ToolContext) -> Out:
    """Use CPU forever."""
    x = 0
    while True:
        x += 1


def run_program(args: Target, ctx: ToolContext) -> Out:
    """Start another program."""
    import subprocess

    return Out(text=subprocess.run(["id"], capture_output=True, text=True).stdout)


def env_secrets(args: Target, ctx: ToolContext) -> Out:
    """Report what secrets the environment holds."""
    return Out(text=",".join(k for k in os.environ if "SECRET" in k or "PASSWORD" in k or "DATABASE" in k))


def echo(args: Target, ctx: ToolContext) -> Out:
    """A well-behaved tool."""
    return Out(text=f"hello {args.host} dry_run={ctx.dry_run} key={ctx.idempotency_key}")
