"""The ``pipetune`` command: the group, its global options and the one error boundary.

Commands live one per module. Each module in :data:`COMMAND_MODULES` exposes
``register(cli: click.Group) -> None``; adding a command is one line here. Plugins add
theirs through the ``register_commands`` hook, called when the CLI is built (never at
import time). Nothing heavy is imported until a command runs, so ``pipetune --help`` is
instant.

Errors: a :class:`~pipetune.core.kernel.errors.PipetuneError` from anywhere becomes one message on
stderr and exit code 2 (``--debug`` adds the traceback); ``sys.exit()`` called by user code
or a plugin is an error too (exit 2), never pipetune's own status. SIGINT and SIGTERM are
handled once, here (:mod:`pipetune.cli.interrupts`): the command stops within seconds,
keeps what it finished, and exits 130; a second signal exits at once. ``--isolate`` runs
the command in a child process (:mod:`pipetune.cli.isolate`).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import click

from pipetune.cli.plugin_problems import (
    announce_plugin_problems,
    check_plugin_arguments,
    split_extra,
)
from pipetune.cli.state import CliState, get_state

if TYPE_CHECKING:
    from pipetune.core.kernel.manager import PipetunePluginManager

#: Command modules, each exposing ``register(cli)``. Add a command by adding its module.
COMMAND_MODULES: tuple[str, ...] = (
    "pipetune.cli.plugins_cmd",
    "pipetune.cli.profile_cmd",
    "pipetune.cli.propose_cmd",
    "pipetune.cli.optimize_cmd",
    "pipetune.cli.apply_cmd",
    "pipetune.cli.history_cmd",
    "pipetune.cli.compare_cmd",
    "pipetune.cli.check_cmd",
    "pipetune.cli.demo_cmd",
    "pipetune.cli.scan_cmd",
    "pipetune.cli.monitor_cmd",
    "pipetune.cli.capacity_cmd",
    "pipetune.cli.run_cmd",
    "pipetune.cli.serve_cmd",
)

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class PipetuneGroup(click.Group):
    """A click group whose ``main`` is the single error boundary of the CLI."""

    pm: PipetunePluginManager | None = None

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        args = list(sys.argv[1:] if args is None else args)
        state = extra.pop("obj", None)
        if not isinstance(state, CliState):
            state = CliState(pm=self.pm)
        elif state.pm is None:
            state.pm = self.pm
        tokens = _global_tokens(args)
        state.debug = state.debug or "--debug" in tokens
        from pipetune.cli import isolate

        if isolate.wanted(tokens):
            code = isolate.run_isolated(args)
            if standalone_mode:
                sys.exit(code)
            return code

        def invoke() -> Any:
            return super(PipetuneGroup, self).main(
                args,
                prog_name or "pipetune",
                complete_var,
                standalone_mode=False,
                obj=state,
                **extra,
            )

        from pipetune.cli import interrupts

        with interrupts.handling() as token:
            code = run_guarded(invoke, state)
        if token.cancelled and code != EXIT_INTERRUPTED:
            # the work returned (or failed) after the signal: it was still cut short
            code = _interrupted(state)
        if standalone_mode:
            sys.exit(code)
        return code


def run_guarded(fn: Callable[[], Any], state: CliState) -> int:
    """Run ``fn`` and turn what it raises into an exit code and one message on stderr."""
    from pipetune.core.kernel.errors import PipetuneError

    try:
        value = fn()
    except PipetuneError as exc:
        return _pipetune_error(exc, state)
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.Abort as exc:
        return _aborted(exc, state)
    except KeyboardInterrupt:
        return _interrupted(state)
    except SystemExit as exc:  # user code or a plugin ended the process: not our status
        return _stray_exit(exc, state)
    except BrokenPipeError:
        # `pipetune plugins --json | head`: the reader left; say nothing more.
        _silence_stdout()
        return EXIT_INTERNAL
    except Exception as exc:  # a bug in pipetune or a plugin: say so, briefly
        return _internal_error(exc, state)
    return _exit_code(value)


def _debug_traceback(exc: BaseException, state: CliState) -> None:
    """With ``--debug``, print the exception's traceback to stderr before its one-line message."""
    if state.debug:
        traceback.print_exception(exc, file=sys.stderr)


def _pipetune_error(exc: Exception, state: CliState) -> int:
    """Report an expected pipetune error in one line; its exit code is the error's own."""
    _debug_traceback(exc, state)
    click.echo(f"Error: {exc}", err=True)
    return int(getattr(exc, "exit_code", EXIT_USAGE))


def _aborted(exc: click.Abort, state: CliState) -> int:
    """A click abort: an interrupt if Ctrl-C caused it, otherwise "Aborted!" and exit 1."""
    if isinstance(exc.__cause__, KeyboardInterrupt):
        return _interrupted(state)
    click.echo("Aborted!", err=True)
    return EXIT_INTERNAL


def _stray_exit(exc: SystemExit, state: CliState) -> int:
    """A ``sys.exit()`` from user code or a plugin: reported as a usage error, saying where."""
    _debug_traceback(exc, state)
    click.echo(f"Error: {_describe_exit(exc)}", err=True)
    return EXIT_USAGE


def _internal_error(exc: Exception, state: CliState) -> int:
    """An unexpected exception: a bug, named with where it was raised, and exit 1."""
    _debug_traceback(exc, state)
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" at {frames[-1].filename}:{frames[-1].lineno}" if frames else ""
    click.echo(
        f"Error: internal error: {type(exc).__name__}: {exc}{where}\n"
        "This is a bug in pipetune or a plugin; rerun with --debug for the traceback.",
        err=True,
    )
    return EXIT_INTERNAL


def _exit_code(value: Any) -> int:
    """The exit code a command's return value means: an int as is, anything else 0."""
    if isinstance(value, bool) or not isinstance(value, int):
        return EXIT_OK
    return value


def _interrupted(state: CliState) -> int:
    if state.reported_interrupt:
        return EXIT_INTERRUPTED
    state.reported_interrupt = True
    kept = f" Kept: {', '.join(state.written)}." if state.written else " Nothing was kept."
    click.echo(f"Interrupted.{kept}", err=True)
    return EXIT_INTERRUPTED


def _describe_exit(exc: SystemExit) -> str:
    """Where a stray ``sys.exit()`` came from: the deepest frame outside pipetune."""
    frames = traceback.extract_tb(exc.__traceback__)
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    outside = [f for f in frames if not os.path.abspath(f.filename).startswith(here)]
    candidates = outside or list(frames)
    frame = candidates[-1] if candidates else None
    at = f" at {frame.filename}:{frame.lineno}" if frame is not None else ""
    return (
        f"sys.exit({exc.code!r}) was called{at} while pipetune was running (user code or "
        "a plugin); pipetune's exit status is its own, so this is reported as an error"
    )


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def _global_tokens(args: Sequence[str]) -> list[str]:
    """The tokens before the subcommand name (where global options live)."""
    tokens: list[str] = []
    iterator = iter(args)
    for token in iterator:
        if token == "--":
            break
        if token == "-p":
            tokens.append(token)
            tokens.append(next(iterator, ""))
            continue
        if not token.startswith("-"):
            break
        tokens.append(token)
    return tokens


def plugin_arguments(args: Sequence[str]) -> tuple[list[str], list[str]]:
    """``-p no:NAME`` and ``-p MODULE`` from the global options: (disabled, extra modules)."""
    disabled: list[str] = []
    extra: list[str] = []
    tokens = _global_tokens(args)
    values = [
        tokens[i + 1] if token == "-p" else token[2:]
        for i, token in enumerate(tokens)
        if token == "-p" or (token.startswith("-p") and not token.startswith("--"))
    ]
    for value in values:
        value = value.lstrip("=")
        if value.startswith("no:"):
            disabled.append(value[3:])
        elif value:
            extra.append(value)
    return disabled, extra


# -- building the CLI ----------------------------------------------------------------------


def build_cli(pm: PipetunePluginManager | None = None) -> click.Group:
    """The ``pipetune`` command group with every command module's and plugin's commands.

    ``pm`` defaults to :func:`pipetune.core.kernel.manager.get_plugin_manager` (environment
    settings apply). Tests pass their own manager.
    """
    if pm is None:
        from pipetune.core.kernel.manager import get_plugin_manager

        pm = get_plugin_manager()

    @click.group(cls=PipetuneGroup, context_settings=CONTEXT_SETTINGS)
    @click.option(
        "--debug",
        is_flag=True,
        help="Show full tracebacks for errors (also PIPETUNE_DEBUG=1).",
    )
    @click.option(
        "-p",
        "plugin_args",
        multiple=True,
        metavar="NAME",
        help="-p no:NAME disables plugin NAME (also PIPETUNE_DISABLE_PLUGINS=a,b); "
        "-p MODULE (or -p NAME=MODULE) loads a module of hooks as a plugin without installing "
        "it. Repeatable. PIPETUNE_STRICT_PLUGINS=1 makes any plugin problem an error.",
    )
    @click.option(
        "--isolate",
        is_flag=True,
        help="Run the command (and every stage) in a child process, so that user code "
        "ending the process (os._exit, a native crash) is reported as an error naming the "
        "stage and input instead of a silent exit (also PIPETUNE_ISOLATE=1).",
    )
    @click.version_option(_version(), "--version", prog_name="pipetune")
    @click.pass_context
    def cli(ctx: click.Context, debug: bool, isolate: bool, plugin_args: tuple[str, ...]) -> None:
        """Profile an AI pipeline, propose the changes with the biggest end-to-end gain,
        apply them, and prove each one on the same workload before keeping it.

        TARGET arguments name a pipeline as package.module:attr or path/to/file.py:attr.
        """
        state = get_state(ctx)
        state.debug = state.debug or debug
        disabled, extra = plugin_arguments([token for arg in plugin_args for token in ("-p", arg)])
        _apply_plugin_arguments(state.plugin_manager(), disabled, extra)
        if ctx.invoked_subcommand != "plugins" and not {"-h", "--help"} & set(ctx.args):
            announce_plugin_problems(state.plugin_manager())

    assert isinstance(cli, PipetuneGroup)
    cli.pm = pm
    for module_name in COMMAND_MODULES:
        module = importlib.import_module(module_name)
        module.register(cli)
    register_plugin_commands(cli, pm)
    return cli


def register_plugin_commands(cli: click.Group, pm: PipetunePluginManager) -> None:
    """Call every plugin's ``register_commands(cli)``, one plugin at a time.

    A plugin that raises, or that replaces a command someone else registered, is recorded
    in ``pm.hook_failures`` (and shown by ``pipetune plugins``) and its change is undone;
    in strict mode it is an error that names both owners.
    """
    from pipetune.core.kernel.errors import DuplicateError, PluginError
    from pipetune.core.kernel.manager import HookFailure

    owners = {name: "pipetune" for name in cli.commands}
    for impl in reversed(pm.hook.register_commands.get_hookimpls()):
        before = dict(cli.commands)
        try:
            impl.function(*[{"cli": cli}[name] for name in impl.argnames])
        except Exception as exc:
            cli.commands.clear()
            cli.commands.update(before)
            message = f"{type(exc).__name__}: {exc}"
            if pm.strict:
                raise PluginError(
                    f"plugin {impl.plugin_name!r} raised in register_commands: {message}"
                ) from exc
            pm.hook_failures.append(HookFailure(impl.plugin_name, "register_commands", message))
            continue
        for name, command in list(cli.commands.items()):
            if name in before and before[name] is not command:
                problem = (
                    f"command {name!r} is registered by both {owners[name]!r} and "
                    f"{impl.plugin_name!r}"
                )
                if pm.strict:
                    raise DuplicateError(problem)
                cli.commands[name] = before[name]
                pm.hook_failures.append(
                    HookFailure(impl.plugin_name, "register_commands", problem + "; kept the first")
                )
            elif name not in before:
                owners[name] = impl.plugin_name


def _apply_plugin_arguments(
    pm: PipetunePluginManager, disabled: Sequence[str], extra: Sequence[str]
) -> None:
    """Apply ``-p`` to a manager built before the arguments were parsed (tests that call
    ``build_cli(pm)`` directly). :func:`main` applies them before building, so plugin
    commands of a disabled plugin are never registered."""
    from pipetune.core.kernel.manager import PluginStatus

    statuses = {status.name: status for status in pm.load_report}
    for name in disabled:
        status = statuses.get(name)
        if status is None:
            check_plugin_arguments(pm, [name], [])  # raises: no plugin of that name
            continue
        if status.status == "disabled":
            continue
        plugin = pm.get_plugin(name)
        if plugin is not None:
            pm.unregister(plugin)
        pm.load_report[pm.load_report.index(status)] = PluginStatus(
            name,
            status.source,
            "disabled",
            status.version,
            status.distribution,
            status.module,
        )
    for value in extra:
        name, module = split_extra(value)
        if name not in statuses:
            pm.load_plugin(name, _import_loader(module), source="command line", module=module)
    check_plugin_arguments(pm, [], extra)


def _import_loader(module: str) -> Callable[[], Any]:
    def load() -> Any:
        return importlib.import_module(module)

    return load


def _version() -> str:
    from pipetune import __version__

    return __version__


def main(argv: Sequence[str] | None = None) -> int:
    """The console script: build the plugin manager (honouring ``-p``), the CLI, run it."""
    args = list(sys.argv[1:] if argv is None else argv)
    from pipetune.core.kernel import isolation

    isolation.enable_from_env()  # the child of --isolate: keep the breadcrumb
    state = CliState()
    state.debug = state.debug or "--debug" in _global_tokens(args)
    disabled, extra = plugin_arguments(args)
    state.disabled = disabled
    state.extra_plugins = extra
    built: dict[str, click.Group] = {}

    def build() -> None:
        from pipetune.core.kernel.manager import get_plugin_manager

        pm = get_plugin_manager(
            disable=disabled,
            plugins=[(name, _import_loader(module)) for name, module in map(split_extra, extra)],
        )
        state.pm = pm
        check_plugin_arguments(pm, disabled, extra)
        built["cli"] = build_cli(pm)

    code = run_guarded(build, state)
    if "cli" not in built:
        isolation.reached_verdict()
        return code
    code = built["cli"].main(args, prog_name="pipetune", standalone_mode=False, obj=state)
    isolation.reached_verdict()
    if argv is None:  # the console script, not a caller in the same process
        _exit_past_hung_stages(code)
        _ignore_late_signals()
    return code


def _ignore_late_signals() -> None:
    """The verdict is in and everything is written: a Ctrl-C in the last milliseconds of
    the interpreter's shutdown must not kill the process with a status of its own."""
    import signal

    for number in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(ValueError, OSError):
            signal.signal(number, signal.SIG_IGN)


def _exit_past_hung_stages(code: int) -> None:
    """Exit now, with ``code``, when a stage that timed out is still running, or when the
    command was interrupted.

    Its thread may be inside native code (a torch forward pass): finalizing the
    interpreter under it tore the process down with "terminate called without an active
    exception" (exit 134) after the report had been written (``pipetune demo llm``, a
    no-cache generate stage past its deadline). Everything is written by now, so skip
    the finalization. Interrupted, the same: the finalization would wait for worker
    processes and threads that were told to stop (a scan's pool took seconds), and the
    command must end within 2 s of the signal."""
    from pipetune.core.kernel import workers

    if code == EXIT_INTERRUPTED:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    hung = workers.busy()
    if not hung:
        return
    click.echo(
        f"note: {hung} stage thread(s) that timed out are still running; exiting without "
        "waiting for them",
        err=True,
    )
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
