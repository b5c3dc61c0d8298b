"""Typer plumbing of the command line: one-line usage errors, StsevalError -> exit 2, Ctrl-C -> how to resume.

stseval/cli.py declares the commands; this module only shapes how Typer reports on them, so a usage error
(unknown option, missing value, bad number) reads like stseval's own errors: one line and exit code 2.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

import typer
from typer.core import TyperGroup

from stseval.common.errors import StsevalError

try:
    from typer._click import exceptions as click_errors  # typer >= 0.20 vendors its own click
except ImportError:  # pragma: no cover - older typer runs on click itself
    from click import exceptions as click_errors  # type: ignore[no-redef]  # the same module, unvendored


_ABORTS = tuple({getattr(click_errors, "Abort", typer.Abort), typer.Abort})  # not every vendored click has Abort


class _OneLineErrors(TyperGroup):
    """Typer's group, with its usage errors (unknown option, extra argument, bad value) printed as one
    line and exit code 2, the way stseval's own errors are."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        given = list(sys.argv[1:] if args is None else args)
        try:
            code = super().main(given, prog_name, complete_var, standalone_mode=False, **extra)
        except click_errors.NoArgsIsHelpError as err:  # bare `stseval` or `stseval index`: the help
            typer.echo(err.format_message())
            sys.exit(0)
        except click_errors.ClickException as err:
            ctx = getattr(err, "ctx", None)
            where = ctx.command_path if ctx is not None else "stseval"
            message = err.format_message().rstrip(".") + _flag_hint(err, given)
            # after click's "Did you mean 'whiten'?" a new sentence starts; elsewhere the hint continues it
            hint = "" if ctx is None else f" See {where} --help" if message.endswith("?") else f"; see {where} --help"
            typer.echo(f"stseval: {message}{hint}", err=True)
            sys.exit(2)
        except _ABORTS:
            typer.echo("stseval: aborted", err=True)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


def _flag_hint(err: Exception, given: list[str]) -> str:
    """For `--then-whiten true`: say that boolean options are flags without a value."""
    message = str(getattr(err, "message", err))
    for position, word in enumerate(given[1:], start=1):
        if word.lower() in ("true", "false", "yes", "no", "1", "0") and given[position - 1].startswith("--") \
                and f"({word}" in message:
            return f" ({given[position - 1]} is a flag: give it alone to switch it on, leave it out for off)"
    return ""


def make_typer(**settings) -> typer.Typer:
    """A Typer with plain help (flags shown as flags, not `<bool>`) and one-line usage errors."""
    return typer.Typer(cls=_OneLineErrors, rich_markup_mode=None, no_args_is_help=True, add_completion=False,
                       pretty_exceptions_enable=False, **settings)


def fail(err: StsevalError) -> typer.Exit:
    """Print a StsevalError as one line on stderr; raise the returned Exit (code 2)."""
    typer.echo(f"stseval: {err}", err=True)
    return typer.Exit(code=2)


def echo_lines(lines: Iterable[object]) -> None:
    """Print each item (a path, a line) on a line of its own."""
    for line in lines:
        typer.echo(str(line))


def log_to_stderr(message: str) -> None:
    """The `log` callable the runs report progress through."""
    typer.echo(message, err=True)


def resumable(results_csv: Callable[[dict], Path], also_kept: str = "") -> Callable:
    """Decorate a command so Ctrl-C says in one line what was kept and how to resume, then exits 130.

    results_csv: the command's keyword arguments -> the results file it grows; also_kept: more that stays,
    formatted with the same arguments (e.g. "{runs_dir}").
    """
    def decorate(command: Callable) -> Callable:
        @functools.wraps(command)  # keeps the signature Typer reads the options from
        def run(**options):
            try:
                return command(**options)
            except KeyboardInterrupt:
                from stseval.runs.results import count_rows

                path = results_csv(options)
                rows = count_rows(path)
                kept = f"{path} keeps {rows} finished row(s)" if rows else f"no row of {path} was finished"
                typer.echo(f"\nstseval: interrupted; {kept}{also_kept.format(**options)}; "
                           "run the same command again to resume", err=True)
                raise typer.Exit(code=130) from None
        return run
    return decorate
