"""cxrq: train, score and report on chest X-ray pneumonia classifiers.

cxrq train --arch googlenet --data ../shared/data/chest_xray --epochs 3
cxrq score ../shared/data/fullres --model googlenet
cxrq report models
"""

from __future__ import annotations

import click

from cli.calibrate_cmd import calibrate
from cli.cancel_cmd import cancel
from cli.db_cmd import db
from cli.ensemble_cmd import ensemble
from cli.errors import friendly_errors
from cli.listen_cmd import export, listen
from cli.model_cmd import model
from cli.report_audit_cmd import report_audit
from cli.report_cmd import report
from cli.report_compare_cmd import report_compare
from cli.report_drift_cmd import report_drift
from cli.report_outbox_cmd import report_outbox
from cli.report_visual_cmd import report_heatmap, report_html
from cli.score_cmd import evaluate, score
from cli.status_cmd import status
from cli.train_cmd import train
from cli.worker_cmd import worker


class _Cli(click.Group):
    def invoke(self, ctx: click.Context) -> object:
        # A net under every command: an error a user can fix raised outside a command's own
        # friendly_errors block is still one line, not a traceback.
        with friendly_errors():
            return super().invoke(ctx)


@click.group(cls=_Cli, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="cxrq")
def cli() -> None:
    """Train, compare and run chest X-ray pneumonia classifiers as batch jobs.

    Without CXRQ_BROKER_URL every job runs in this process against a local SQLite
    database (CXRQ_DATABASE_URL overrides it). With it, train and score enqueue jobs
    for `cxrq worker` processes.

    Example: cxrq train --arch googlenet --data ./chest_xray --epochs 3
    """


# Report commands with modules of their own (the group's module stays small; the drawing ones
# import the group's helpers, so the group cannot import them back).
for subcommand in (
    report_audit,
    report_compare,
    report_drift,
    report_html,
    report_heatmap,
    report_outbox,
):
    report.add_command(subcommand)
for command in (
    train,
    score,
    evaluate,
    calibrate,
    ensemble,
    model,
    listen,
    export,
    report,
    status,
    cancel,
    worker,
    db,
):
    cli.add_command(command)


def main() -> None:
    """The `cxrq` command: run it, then leave without the interpreter's teardown.

    Tearing down an interpreter that imported torch takes ~0.5 s (measured: `import torch` alone
    spends that long exiting), more than a 10-image `score` spends working. Nothing of ours
    needs it: every row is committed, the engines are closed and the streams flushed here, and
    a thread still at work (none should be) gets the normal, waiting exit instead.
    """
    import os
    import sys
    import threading

    try:
        cli.main(standalone_mode=True)
        code = 0
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
        if isinstance(exit_.code, str):
            print(exit_.code, file=sys.stderr)
    busy = [t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon]
    if busy:
        sys.exit(code)
    if "db.session" in sys.modules:
        sys.modules["db.session"].dispose_engines()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
