"""Output that can never kill `reverb dev`: it must stop its children even when its stdout
or stderr is gone (`reverb dev | tee dev.log` after Ctrl-C killed tee, a closed terminal).

Python ignores SIGPIPE, so a write to a closed pipe raises BrokenPipeError (a dead terminal:
EIO). `say` catches that and points the broken stream's file descriptor at /dev/null: later
output, and the interpreter's flush at exit, go nowhere instead of raising.
"""

import io
import os
import sys
from typing import TextIO

import click


def say(message: str, *, err: bool = False) -> None:
    """`click.echo(message, err=err)`, dropped once that stream is broken."""
    try:
        click.echo(message, err=err)
    except OSError:
        _silence(sys.stderr if err else sys.stdout)


def _silence(stream: TextIO) -> None:
    try:
        descriptor = stream.fileno()
    except (OSError, ValueError, io.UnsupportedOperation):  # closed, or not a file
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, descriptor)
    finally:
        os.close(devnull)
