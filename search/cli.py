"""``tunelab``: parse arguments, call the core, print results or a one-line error.

Exit status: 0 the search ran its budget (trials that diverged, ran out of memory or were stopped
early are results); 1 it ended but some trials raised; 2 bad input, nothing started (or the search is
running in another process); 3 every trial raised, or the search could not go on (one line says why:
a full disk leaves it INTERRUPTED and resumable); 130 interrupted by Ctrl-C or SIGTERM (resumable).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import shlex
import shutil
import sys
from pathlib import Path

from tunelab import spaces
from tunelab import trainables
from tunelab.search import _jobs
from tunelab.search._errors import SearchFailed, SearchRunningError
from tunelab.search._jobs import JobError

USER_ERRORS = (spaces.SpecError, trainables.ConfigError, trainables.DataError)
SOME_TRIALS_RAISED, SEARCH_FAILED, INTERRUPTED = 1, 3, 130


def console() -> None:
    """The ``tunelab`` command: ``main``, then a prompt exit.

    By the time ``main`` returns everything is written and closed (the search's Ray stopped, its MLflow
    runs ended, its files flushed). What is left, the interpreter tearing down the modules of Ray,
    MLflow and SQLAlchemy one by one, does nothing a user needs and costs a search about a second on
    a small machine: so flush what is buffered, disconnect from a Ray still connected, and exit.
    """
    code = main()
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        ray.shutdown()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args) or 0
    except USER_ERRORS as exc:
        print(f"tunelab: error: {exc}", file=sys.stderr)
        return 2
    except JobError as exc:  # the cluster's answer, not the user's input
        print(f"tunelab: error: {exc}", file=sys.stderr)
        return 1
    except SearchFailed as exc:
        print(f"tunelab: error: {exc}", file=sys.stderr)
        return SEARCH_FAILED
    except KeyboardInterrupt:  # before a search started (a search's own Ctrl-C ends in _print_outcome)
        print("tunelab: interrupted", file=sys.stderr)
        return INTERRUPTED


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tunelab", description=__doc__)
    sub = p.add_subparsers(required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run a search file (a path, or a name of the catalogue: tunelab spaces)")
    run.add_argument("file", help="a search file, or the name of one in the catalogue (ptb_smoke)")
    _overrides(run)
    run.add_argument("--name", help="experiment name (default: the file's name field)")
    run.add_argument("--storage", help="results root (default: the file's storage, else ./runs)")
    run.add_argument("--address", help="Ray cluster address (default: local Ray)")
    _verbose(run)
    run.set_defaults(func=_run)

    res = sub.add_parser("resume", help="resume an interrupted search")
    res.add_argument("name")
    res.add_argument("--storage", default="runs")
    res.add_argument("--address")
    _verbose(res)
    res.set_defaults(func=_resume)

    tra = sub.add_parser("transfer", help="run the best finished configs of a search again (more epochs, seeds, "
                                          "width: --set) as a new search")
    tra.add_argument("name", help="the earlier search (its folder under --storage)")
    tra.add_argument("--top", type=int, default=3, metavar="K", help="its K best finished configs (default 3)")
    tra.add_argument("--seeds", type=int, default=1, metavar="S",
                     help="run each with S seeds: the earlier seed + 0..S-1 (default 1)")
    tra.add_argument("--name", dest="new_name", help="the new search's name (default NAME-transfer)")
    tra.add_argument("--storage", default="runs", help="results root of both searches (default ./runs)")
    _overrides(tra)
    tra.add_argument("--address", help="Ray cluster address (default: local Ray)")
    _verbose(tra)
    tra.set_defaults(func=_transfer)

    syn = sub.add_parser("sync", help="replay into MLflow what Ray recorded while the tracking server was down")
    syn.add_argument("name")
    syn.add_argument("--storage", default="runs")
    syn.set_defaults(func=_sync)

    sbm = sub.add_parser("submit", help="run a search file on a Ray cluster as a Ray Job; prints the job id")
    sbm.add_argument("file")
    _overrides(sbm)
    sbm.add_argument("--address", required=True, help="the Jobs server, http://HOST:8265")
    sbm.add_argument("--name", help="experiment name (default: the file's name field)")
    sbm.add_argument("--storage", help=f"results root on the cluster (default: the file's, else {_jobs.CLUSTER_STORAGE})")
    sbm.set_defaults(func=_submit)

    for verb, helptext, func in (("status", "a submitted search's job status", _job_status),
                                 ("logs", "a submitted search's driver output", _job_logs),
                                 ("stop", "stop a submitted search", _job_stop)):
        j = sub.add_parser(verb, help=helptext)
        j.add_argument("job_id")
        j.add_argument("--address", default=os.environ.get("RAY_API_SERVER_ADDRESS", "http://127.0.0.1:8265"),
                       help="the Jobs server (default $RAY_API_SERVER_ADDRESS, else http://127.0.0.1:8265)")
        if verb == "logs":
            j.add_argument("--follow", action="store_true", help="keep printing until the job ends")
        j.set_defaults(func=func)

    cat = sub.add_parser("spaces", help="list the catalogue of search files, each with its opening comment")
    cat.set_defaults(func=_spaces)

    show = sub.add_parser("show", help="print a search file of the catalogue (tunelab show ptb_smoke > mine.yaml)")
    show.add_argument("name")
    show.set_defaults(func=_show)

    ls = sub.add_parser("ls", help="list searches under the results root")
    ls.add_argument("--storage", default="runs")
    ls.set_defaults(func=_ls)

    trn = sub.add_parser("train", help="train one config of a search file in this process: no Ray, no MLflow; "
                                       "prints each report as a table row")
    trn.add_argument("file")
    _overrides(trn)
    trn.set_defaults(func=_train)

    ins = sub.add_parser("inspect", help="size a config: params, FLOPs, steps, memory, feasibility (no Ray)")
    ins.add_argument("file")
    _overrides(ins)
    ins.set_defaults(func=_inspect)

    prep = sub.add_parser("prepare-data", help="tokenise a corpus once into a token folder for gpt trials")
    prep.add_argument("text", help="a text file, or a folder with ptb.{train,valid,test}.txt")
    prep.add_argument("--tokenizer", required=True, choices=["char", "word", "bpe", "gpt2"])
    prep.add_argument("--vocab-size", type=int, help="bpe only (default 4096)")
    prep.add_argument("--val-fraction", type=float, default=0.1, help="tail share of a single file kept for validation")
    prep.add_argument("--out", required=True, help="the token folder to write")
    prep.set_defaults(func=_prepare_data)

    rep = sub.add_parser("report", help="write report.md/.html with tables and figures (of one search, or several "
                         "side by side); log them on each one's parent run")
    rep.add_argument("name", nargs="+", help="the search, or several (one MLflow store, one objective)")
    rep.add_argument("--storage", default="runs")
    rep.add_argument("--out", help="folder to write (default: <storage>/<name>/report; for several searches "
                     "<storage>/reports/<name>+<name>...)")
    rep.set_defaults(func=_report)

    tr = sub.add_parser("trainables", help="list the trainables (built-in and plugins) with their parameters")
    tr.add_argument("--json", action="store_true", help="as JSON")
    tr.set_defaults(func=_trainables)

    ui = sub.add_parser("ui", help="start the MLflow UI on a search's tracking database (127.0.0.1) and print "
                                   "the URL of its runs table")
    ui.add_argument("name", nargs="?")
    ui.add_argument("--storage", default="runs")
    ui.add_argument("--port", type=int, default=5000)
    ui.add_argument("--open", action="store_true", help="open the runs table in a web browser")
    ui.set_defaults(func=_ui)
    return p


def _verbose(p: argparse.ArgumentParser) -> None:
    p.add_argument("--verbose", action="store_true",
                   help="print Ray's own progress output (default: a compact live view; Ray's output goes to "
                        "ray.log in the search's folder)")


def _overrides(p: argparse.ArgumentParser) -> None:
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a field (budget.trials=4) or fix a parameter (lr=0.5); repeatable")


def _load(args) -> spaces.Search:
    extra = []
    if getattr(args, "name", None):
        extra.append(f"name={args.name}")
    if getattr(args, "storage", None):
        extra.append(f"storage={args.storage}")
    return spaces.load(args.file, [*args.overrides, *extra])


def _run(args) -> int:
    search_ = _load(args)
    from tunelab.search import _run as core  # imports Ray and torch: only once the file is known good

    try:
        outcome = core.run(search_, address=args.address, verbose=args.verbose)
    except (core.SearchExistsError, SearchRunningError) as exc:
        raise spaces.SpecError(search_.file, "name", str(exc)) from None
    return _print_outcome(outcome)


def _transfer(args) -> int:
    from tunelab.search import _run as core
    from tunelab.search._transfer import transfer

    try:
        outcome = transfer(args.name, args.storage, top=args.top, seeds=args.seeds, overrides=args.overrides,
                           new_name=args.new_name, address=args.address, verbose=args.verbose)
    except (core.SearchExistsError, SearchRunningError) as exc:
        raise spaces.SpecError("tunelab transfer", "--name", str(exc)) from None
    return _print_outcome(outcome)


def _sync(args) -> int:
    from tunelab.search import _resume

    return _print_outcome(_resume.sync(args.name, args.storage))


def _submit(args) -> int:
    job_id = _jobs.submit(args.address, args.file, args.overrides, args.name, args.storage)
    print(job_id)
    print(f"follow it: {program()} logs {job_id} --address {shlex.quote(args.address)} --follow", file=sys.stderr)
    return 0


def _job_status(args) -> int:
    info = _jobs.status(args.address, args.job_id)
    print(json.dumps(info, indent=2))
    return 0


def _job_logs(args) -> int:
    if args.follow:
        for chunk in _jobs.follow(args.address, args.job_id):
            print(chunk, end="", flush=True)
    else:
        print(_jobs.logs(args.address, args.job_id), end="")
    return 0


def _job_stop(args) -> int:
    stopped = _jobs.stop(args.address, args.job_id)
    print(f"{args.job_id}: {'stopping' if stopped else 'had already ended'}")
    return 0


def _resume(args) -> int:
    from tunelab.search import _resume as core

    try:
        outcome = core.resume(args.name, args.storage, address=args.address, verbose=args.verbose)
    except SearchRunningError as exc:
        raise spaces.SpecError(args.name, "name", str(exc)) from None
    return _print_outcome(outcome)


def program() -> str:
    """How to run tunelab again from this shell: ``tunelab`` when that is on the PATH as this very
    program, else the path it was started by (``.venv/bin/tunelab``), else ``python -m tunelab``."""
    argv0 = sys.argv[0] if sys.argv and sys.argv[0] else ""
    if Path(argv0).name == "tunelab" and Path(argv0).exists():
        on_path = shutil.which("tunelab")
        if on_path and Path(on_path).resolve() == Path(argv0).resolve():
            return "tunelab"
        return shlex.quote(argv0 if os.sep in argv0 else str(Path(argv0).resolve()))
    return f"{shlex.quote(sys.executable)} -m tunelab"


def _print_outcome(o) -> int:
    """Print how the search ended; return the exit status (0, or 1/3 when trials raised)."""
    print()
    print(o.table(top=10))
    counts = ", ".join(f"{k} {v}" for k, v in o.counts().items() if v)
    state = "" if o.state == "FINISHED" else f", {o.state}"
    print(f"\n{o.name}: {len(o.trials)} trials ({counts}){state}")
    if o.best is not None:
        params = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in o.best.params.items())
        print(f"best trial {o.best.name or o.best.trial_id}: {o.metric} {o.best.best:.4g}  {params}")
    print(f"results: {o.experiment_dir}  (Ray's output: ray.log)")
    print(f"MLflow:  {o.tracking_uri}  (parent run {o.parent_run_id})")
    where = f"{shlex.quote(o.name)} --storage {shlex.quote(str(o.experiment_dir.parent))}"
    print(f"open the UI: {program()} ui {where} --open")
    if o.tracking_pending:
        print(f"MLflow was unreachable at the end: `{program()} sync {where}` once it is back")
    if o.state == "INTERRUPTED":
        resume = f"`{program()} resume {where}`"
        if o.fault:
            print(f"tunelab: error: {o.reason}; the search is interrupted, its records closed: {resume} "
                  "once that is put right", file=sys.stderr)
            return SEARCH_FAILED
        print(f"tunelab: interrupted ({o.reason}): {resume} continues the search", file=sys.stderr)
        return INTERRUPTED
    if o.state == "FAILED":
        print(f"tunelab: error: {o.reason}", file=sys.stderr)
        return SEARCH_FAILED
    errors = o.errors
    if not errors:
        return 0
    first = next((t for t in errors if t.error), errors[0])
    print(f"tunelab: {len(errors)} of {len(o.trials)} trials raised; the first, {first.name or first.trial_id}: "
          f"{first.error or 'see ray.log'}", file=sys.stderr)
    return SEARCH_FAILED if len(errors) == len(o.trials) else SOME_TRIALS_RAISED


def _inspect(args) -> int:
    from tunelab.search import _single

    print(json.dumps(_single.inspect(spaces.load(args.file, args.overrides)), indent=2, default=str))
    return 0


def _train(args) -> int:
    from tunelab.search import _single

    training = _single.prepare_training(spaces.load(args.file, args.overrides))
    shown = " ".join(f"{k}={v}" for k, v in training.from_space.items())
    print(f"training {training.trainable} ({training.file}){': ' + shown if shown else ''}", flush=True)
    training.run()  # reports print as table rows: no Tune trial runs here
    return 0


def _prepare_data(args) -> int:
    from tunelab.trainables.gpt import tokens

    td = tokens.prepare(args.text, args.out, args.tokenizer, args.vocab_size, args.val_fraction)
    print(json.dumps(dataclasses.asdict(td), indent=2, default=str))
    return 0


def _report(args) -> int:
    from tunelab import analysis
    from tunelab.search import _paths

    names = list(dict.fromkeys(args.name))
    states = [_paths.read_state(Path(args.storage), name) for name in names]
    uris = {state["tracking_uri"] for state in states}
    if len(uris) > 1:
        raise spaces.SpecError(" ".join(names), "name", "expected searches tracked in one MLflow store, got "
                               + ", ".join(f"{n} in {s['tracking_uri']}" for n, s in zip(names, states)))
    root = Path(args.storage).resolve()
    default = root / names[0] / "report" if len(names) == 1 else root / "reports" / "+".join(names)
    out = Path(args.out) if args.out else default
    experiments = names[0] if len(names) == 1 else names
    parents = states[0]["parent_run_id"] if len(names) == 1 else [s["parent_run_id"] for s in states]
    try:
        path = analysis.report(experiments, uris.pop(), out, parent_run=parents)
    except analysis.AnalysisError as exc:
        raise spaces.SpecError(" ".join(names), "", str(exc)) from None
    where = "the search's parent run" if len(names) == 1 else "each search's parent run"
    print(f"wrote {path / 'report.md'} and {path / 'report.html'} (also on {where})")
    return 0


def _spaces(args) -> int:
    for name in spaces.catalogue():
        print(name)
        for line in _opening_comment((spaces.CATALOGUE / f"{name}.yaml").read_text()):
            print(f"    {line}")
    return 0


def _opening_comment(text: str) -> list[str]:
    """The comment lines a search file opens with, without their ``#``."""
    lines = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.removeprefix("#").strip())
    return lines


def _show(args) -> int:
    path = spaces.find(args.name)
    print(path.read_text(), end="")
    return 0


def _ls(args) -> int:
    from tunelab.search import _catalog

    rows = _catalog.list_searches(Path(args.storage))
    if not rows:
        print(f"no searches under {Path(args.storage).resolve()}")
        return 0
    print(_catalog.format_table(rows))
    return 0


def _trainables(args) -> int:
    registry = trainables.REGISTRY
    if args.json:
        print(json.dumps([registry.describe(name) for name in sorted(registry)], indent=2, default=str))
    else:
        print(registry.listing())
    return 0


def _ui(args) -> int:
    from tunelab.search import _ui_server

    server = _ui_server.ui_server(Path(args.storage), args.name, args.port)
    if server.remote:
        print(f"{args.name}'s runs are on the tracking server {server.tracking_uri}: open it in a browser", flush=True)
        return 0
    print(" ".join(server.command[1:]), flush=True)
    print(f"runs table: {server.url}", flush=True)
    return _ui_server.serve(server, open_browser=args.open)


if __name__ == "__main__":
    console()
