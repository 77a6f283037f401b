"""The ``segstream`` command: a thin shell that parses, calls a function and maps errors to exit codes.

Each command group lives in its own module under ``segstream.cli``; the modules listed in
``_COMMAND_MODULES`` expose ``COMMANDS`` (a list of click commands). Those modules keep heavy imports
(pandas, scikit-learn, faust, Prophet) inside the command functions so ``segstream --help`` stays fast.
"""

from __future__ import annotations

import importlib
import sys

import click

from segstream.models.errors import SegstreamError

_COMMAND_MODULES: tuple[str, ...] = (
    "segstream.cli.data",
    "segstream.cli.bundle",
    "segstream.cli.train",
    "segstream.cli.backtest",
    "segstream.cli.campaigns",
    "segstream.cli.config",
    "segstream.cli.doctor",
    "segstream.cli.state",
    "segstream.cli.stack",
    "segstream.cli.stream",
    "segstream.cli.dead_letters",
    "segstream.cli.dashboard",
    "segstream.cli.bench",
)


class _ErrorMappingGroup(click.Group):
    """A group that turns project errors into a clean message and exit code, never a traceback."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except SegstreamError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(exc.exit_code)
        except Exception as exc:  # a SEGSTREAM_* variable a settings section refused: say which, no traceback
            from segstream.settings import settings_error_message

            message = settings_error_message(exc)
            if message is None:
                raise
            click.echo(f"error: {message}", err=True)
            sys.exit(2)


@click.group(cls=_ErrorMappingGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="segstream")
def cli() -> None:
    """segstream: real-time customer segmentation on Kafka and Redis."""


def _register() -> None:
    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue
            raise
        for command in module.COMMANDS:
            cli.add_command(command)


_register()


def main() -> None:
    """Console-script entry point."""
    cli()
