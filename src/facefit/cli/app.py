"""The ``facefit`` command. Each command lives in its own module and imports heavy
libraries only inside its function, so ``facefit --help`` stays instant."""

from __future__ import annotations

import sys

import typer

from facefit.cli.bench import bench_app
from facefit.cli.card import card
from facefit.cli.compare import compare
from facefit.cli.demo import demo
from facefit.cli.embed import embed
from facefit.cli.ensemble import ensemble
from facefit.cli.eval import eval_command
from facefit.cli.eval_1n import eval_1n_command
from facefit.cli.export import export
from facefit.cli.gallery import gallery_app
from facefit.cli.identify import identify
from facefit.cli.import_ import import_command
from facefit.cli.models import models
from facefit.cli.pairs import pairs_command
from facefit.cli.serve import serve
from facefit.cli.stream import stream
from facefit.cli.train import train_command

app = typer.Typer(
    name="facefit",
    help="Adapt face recognition to the people it is used on: align, embed, compare, evaluate, fine-tune.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.command()(embed)
app.command()(compare)
app.command("eval")(eval_command)
app.command("eval-1n")(eval_1n_command)
app.command("pairs")(pairs_command)
app.command("import")(import_command)
app.command("train")(train_command)
app.command()(ensemble)
app.command()(export)
app.command()(card)
app.command()(demo)
app.command()(models)
app.command()(identify)
app.command()(stream)
app.command()(serve)
app.add_typer(gallery_app, name="gallery")
app.add_typer(bench_app, name="bench")


def _is_usage_error(exc: BaseException) -> bool:
    # click's (or typer's vendored click's) ClickException, matched by interface.
    return hasattr(exc, "format_message") and isinstance(getattr(exc, "exit_code", None), int)


def main(argv: list[str] | None = None) -> None:
    """Entry point: user errors become one line on stderr and a non-zero exit, never a traceback."""
    from facefit.errors import FacefitError

    try:
        code = app(args=argv, prog_name="facefit", standalone_mode=False)
    except FacefitError as exc:
        print(f"facefit: error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        print("facefit: interrupted", file=sys.stderr)
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(0)
    except OSError as exc:  # the system refused something facefit did not foresee: still one line, no traceback
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"facefit: error: {where}{exc.strerror or exc}", file=sys.stderr)
        sys.exit(1)
    except Exception as exc:
        name = type(exc).__name__
        if name == "NoArgsIsHelpError":
            print(exc.format_message())  # type: ignore[attr-defined]
            sys.exit(0)
        if name == "Abort":
            print("facefit: aborted", file=sys.stderr)
            sys.exit(130)
        if not _is_usage_error(exc):
            raise
        ctx = getattr(exc, "ctx", None)
        hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
        print(f"facefit: error: {exc.format_message()}{hint}", file=sys.stderr)  # type: ignore[attr-defined]
        sys.exit(exc.exit_code)  # type: ignore[attr-defined]
    if code == 130:  # typer turns Ctrl-C into exit code 130 when it does not exit itself
        print("facefit: interrupted", file=sys.stderr)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
