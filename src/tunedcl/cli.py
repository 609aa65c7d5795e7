"""The ``tunedcl`` command line: it parses arguments and calls the library, nothing more.

tunedcl train [--config NAME_OR_YAML] [--out RUN_DIR] [--resume] [--quiet] [section.key=value ...]
tunedcl eval RUN_DIR [eval.key=value ...]
tunedcl sweep --config BASE --grid section.key=v1,v2 ... --seeds N --out DIR
tunedcl report DIR ... [--baseline POINT] [--fill DOC]
tunedcl export SWEEP ... --to STUDY
tunedcl list [losses|methods|models|datasets|augmentations|presets]
tunedcl demo
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tunedcl import __version__


def _add_result_commands(commands: Any) -> None:
    """``tunedcl report`` and ``tunedcl export``: tables from run folders and records, records from sweeps."""
    report = commands.add_parser(
        "report", help="rewrite report.md of runs / summary.md of sweeps and exported studies",
        description="Rewrite report.md of each run folder, and summary.md (plus plots) of each sweep or exported "
        "study (tunedcl export); no training. With --fill, copy the tables into a markdown document.",
    )
    report.add_argument("dirs", nargs="+", type=Path, metavar="DIR")
    report.add_argument(
        "--baseline", metavar="POINT", default=None,
        help="also write DIR/paired.md: every grid point minus this one, paired by seed (95%% interval, sign and "
        "Wilcoxon p-values); e.g. --baseline loss.method=tcl-ssl. In a study of several sweeps, a sweep's name "
        "pairs each point with that sweep's point of the same grid values; in a grid of several axes, one grid "
        "item (--baseline loss.k1=0) pairs each point with the one that differs only there",
    )
    report.add_argument(
        "--fill", metavar="DOC", type=Path, default=None,
        help="then replace the table after each '<!-- summary|batch|paired: NAME -->' line of DOC whose NAME is "
        "the folder name of a DIR (e.g. docs/results.md)",
    )

    export = commands.add_parser(
        "export", help="write compact records (config, results, metrics, machine) of a sweep's finished runs",
        description="Write one JSON record of a few kB per finished run of each SWEEP under STUDY/<point>/"
        "seed<N>.json, to commit: tunedcl report STUDY rebuilds the sweep's tables from them on any machine. "
        "With several sweeps, each point is named after its sweep folder (SWEEP, or SWEEP@<point>).",
    )
    export.add_argument("sweeps", nargs="+", type=Path, metavar="SWEEP")
    export.add_argument("--to", type=Path, required=True, metavar="STUDY", help="folder of the records")


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tunedcl",
        description="Tuned Contrastive Learning (TCL): losses, training and evaluation.",
    )
    parser.add_argument("--version", action="version", version=f"tunedcl {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error instead of one line")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    train = commands.add_parser(
        "train",
        help="pretrain (or train the CE baseline), evaluate, write results.json and report.md",
        description="Train from a preset or YAML config; `section.key=value` overrides any field "
        "(e.g. loss.k1=1000 train.epochs=5). Without arguments: the `default` preset (supervised TCL "
        "on Fashion-MNIST, small CNN, 6-9 minutes on 2 cores with bf16 units, 25-30 on AVX2-only CPUs).",
    )
    train.add_argument("--config", default=None, help="preset name or YAML file (default: default)")
    train.add_argument("--out", type=Path, default=None, help="run directory (default: runs/<name>-<time>)")
    train.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    train.add_argument("--quiet", action="store_true", help="no progress bar: epoch lines only")
    train.add_argument("overrides", nargs="*", metavar="section.key=value")

    evaluate = commands.add_parser("eval", help="evaluate a run's checkpoint again (kNN, linear probe)")
    evaluate.add_argument("run_dir", type=Path)
    evaluate.add_argument("overrides", nargs="*", metavar="eval.key=value")

    sweep = commands.add_parser(
        "sweep",
        help="a grid of runs over seeds (restartable) and one mean ± std table",
        description="Run every combination of the --grid values for each of --seeds seeds under --out; "
        "finished runs are skipped when started again. Writes OUT/summary.md and OUT/summary.json.",
    )
    sweep.add_argument("--config", default="default", help="base preset or YAML file (default: default)")
    sweep.add_argument("--grid", nargs="+", default=[], metavar="section.key=v1,v2", help="values to sweep")
    sweep.add_argument("--seeds", type=int, default=3, help="seeds per grid point (default 3)")
    sweep.add_argument("--out", type=Path, required=True, help="sweep directory")
    sweep.add_argument(
        "--reuse",
        nargs="+",
        type=Path,
        default=[],
        metavar="DIR",
        help="link finished runs with the identical config found under DIR instead of training them again",
    )
    sweep.add_argument(
        "--select-on", choices=("linear", "knn"), default=None,
        help="then pick, per method, the point with the best mean validation top-1 (needs data.validation=N) "
        "and run it on test with --final-seeds seeds (OUT/selected.md)",
    )
    sweep.add_argument("--final-seeds", type=int, default=5, help="seeds of each chosen point (default 5)")
    sweep.add_argument("overrides", nargs="*", metavar="section.key=value", help="fixed for every run")

    _add_result_commands(commands)

    listing = commands.add_parser("list", help="what can be named in a config: losses, methods, models, ...")
    listing.add_argument(
        "kind", nargs="?", choices=LISTS, metavar="KIND", help=f"one of {', '.join(LISTS)} (default: all)"
    )

    demo = commands.add_parser("demo", help="print what the TCL loss does, in two tables (seconds)")
    demo.add_argument("--n", type=int, default=4096, help="embeddings in the timed batch (default 4096)")
    demo.add_argument("--dim", type=int, default=128, help="embedding dimension (default 128)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    return parser


LISTS = ("losses", "methods", "models", "datasets", "augmentations", "presets")


def _list(kind: str | None) -> int:
    from tunedcl.listing import listing

    print("\n".join(listing(kind)))
    return 0


def _train(args: argparse.Namespace) -> int:
    from tunedcl.train.config import ConfigError, load_config
    from tunedcl.train.loop import Interrupted, TrainingError
    from tunedcl.train.run import default_run_dir, run_training

    if args.resume:
        if args.out is None:
            raise ConfigError("--resume needs --out RUN_DIR (the run to continue)")
        if args.config is not None:
            raise ConfigError("--resume continues the run's own config.yaml; do not pass --config")
        config = None
    else:
        config = load_config(args.config or "default", args.overrides)
    out = args.out or default_run_dir(config.name)
    try:
        run_training(config, out, resume=args.resume, quiet=args.quiet,
                     overrides=args.overrides if args.resume else ())
    except Interrupted as stop:
        print(f"\n{stop}\nresume with: tunedcl train --out {out} --resume", file=sys.stderr)
        return 130
    except TrainingError as error:
        print(f"tunedcl train: {error}", file=sys.stderr)
        return 1
    return 0


def _report(dirs: Sequence[Path], baseline: str | None = None, fill: Path | None = None) -> int:
    from tunedcl.docfill import fill_document
    from tunedcl.report import report_dirs

    if fill is not None and not fill.is_file():
        print(f"tunedcl report: --fill must be an existing markdown file; got {str(fill)!r}", file=sys.stderr)
        return 2
    shared = sorted(name for name, count in Counter(Path(d).name for d in dirs).items() if count > 1)
    if fill is not None and shared:  # checked before anything is written
        print(f"tunedcl report: --fill finds a study by its folder name; two DIRs share one: {', '.join(shared)}",
              file=sys.stderr)
        return 2
    try:
        for line in report_dirs(dirs, baseline):
            print(line)
        if fill is not None:
            filled, skipped = fill_document(fill, {Path(d).name: Path(d) for d in dirs})
            print(f"{fill}: {len(filled)} tables filled" + (f"; left as they were (folder not given): "
                                                               f"{len(skipped)}" if skipped else ""))
    except ValueError as error:
        print(f"tunedcl report: {error}", file=sys.stderr)
        return 2
    return 0


def _export(sweeps: Sequence[Path], destination: Path) -> int:
    from tunedcl.records import export_runs

    try:
        written = export_runs(list(sweeps), destination)
    except ValueError as error:
        print(f"tunedcl export: {error}", file=sys.stderr)
        return 2
    points = sorted({path.parent.name for path in written})
    print(f"{destination}: {len(written)} run records, {len(points)} points ({', '.join(points)})")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``tunedcl`` and ``python -m tunedcl``; returns the exit status.

    A mistake (a bad value, a missing file, a damaged checkpoint) is one line on stderr and exit status 2;
    Ctrl-C outside training is 130; anything else is a one-line internal error (status 1). ``--debug``
    shows the traceback instead."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    from tunedcl.rundir import CheckpointError
    from tunedcl.train.config import ConfigError

    prefix = f"tunedcl {args.command}"
    try:
        return _dispatch(args, parser)
    except (ConfigError, CheckpointError, FileNotFoundError, ImportError, ValueError) as error:
        if args.debug:
            raise
        print(f"{prefix}: {error}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `tunedcl list | head`: the reader has gone, which is no error
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing left to flush at exit
        return 0
    except OSError as error:  # a folder that cannot be written, a disk that is full, ...
        if args.debug:
            raise
        where = f": {error.filename}" if error.filename else ""
        print(f"{prefix}: {error.strerror or error}{where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if args.debug:
            raise
        print(f"\n{prefix}: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # noqa: BLE001 - a bug: one line here, the traceback with --debug
        if args.debug:
            raise
        print(f"{prefix}: internal error ({type(error).__name__}: {error}); rerun with --debug for the "
              "traceback, and please report it", file=sys.stderr)
        return 1


def _dispatch(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if args.command == "train":
        return _train(args)
    if args.command == "eval":
        from tunedcl.train.run import evaluate_run, summary_table

        results = evaluate_run(args.run_dir, args.overrides)
        print(summary_table(results) if "train_seconds" in results else results)
        return 0
    if args.command == "sweep":
        from tunedcl.train.sweep import run_sweep

        summary = run_sweep(args.config, args.grid, args.seeds, args.out, args.overrides, reuse=args.reuse)
        print(summary["table"] + f"\n\nsummary: {args.out / 'summary.md'}")
        if summary["failed"]:  # results too, so the sweep goes on; said on stderr for whoever runs it
            runs = sum(len(seeds) for seeds in summary["failed"].values())
            print(f"tunedcl sweep: {runs} run(s) failed (collapse or non-finite); listed in summary.md",
                  file=sys.stderr)
        if args.select_on is not None:
            from tunedcl.train.sweep import select_and_confirm

            print(select_and_confirm(args.config, args.out, args.overrides, summary["rows"], args.select_on,
                                     args.final_seeds))
        return 0
    if args.command == "report":
        return _report(args.dirs, args.baseline, args.fill)
    if args.command == "export":
        return _export(args.sweeps, args.to)
    if args.command == "list":
        return _list(args.kind)
    if args.command == "demo":
        from tunedcl import demo

        if args.n < 2:
            parser.error(f"--n must be >= 2; got {args.n}")
        demo.run(n=args.n, dim=args.dim, seed=args.seed)
    return 0


def run_and_exit(argv: Sequence[str] | None = None) -> None:
    """``sys.exit(main())``, except after a distributed run: then the process leaves without the
    interpreter's teardown, where torch 2.13's gloo threads can abort a run that has already finished
    (its process group is destroyed by then and every file is written)."""
    import os

    code = main(argv)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    run_and_exit()
