"""`cxrq listen`: receive X-rays over DICOM (C-STORE), score each study, send the results back."""

from __future__ import annotations

import logging
import signal
from pathlib import Path

import click

from cli.errors import friendly_errors


@click.command()
@click.option("--ae-title", default=None, help="this receiver's AE title [CXRQ_AE_TITLE; CXRQ]")
@click.option("--host", default="0.0.0.0", show_default=True, help="address to listen on")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=None, help="[CXRQ_DICOM_PORT; 11112]"
)
@click.option("--model", "model_ref", default=None, help="model id, name or arch that scores")
@click.option("--site", default=None, help="decide with this site's profile (`cxrq calibrate`)")
@click.option(
    "--allow",
    multiple=True,
    help="a calling AE title let in (repeat for more) [CXRQ_DICOM_ALLOW]; default: any",
)
@click.option("--send-to", default=None, help="C-STORE results to AE@HOST:PORT [CXRQ_SEND_TO]")
@click.option("--stow", "stow_url", default=None, help="STOW-RS results to URL [CXRQ_STOW_URL]")
@click.option(
    "--spool",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="where received instances are kept [CXRQ_SPOOL_DIR]",
)
@click.option(
    "--explain",
    type=click.Choice(["none", "pneumonia", "all"]),
    default="pneumonia",
    show_default=True,
    help="heatmaps, each sent as a secondary capture: of the PNEUMONIA calls, all, or none",
)
@click.option(
    "--study-idle",
    type=click.FloatRange(min=0.1),
    default=None,
    help="seconds without a new instance that close a study [CXRQ_STUDY_IDLE_SECONDS; 10]",
)
def listen(**opts: object) -> None:
    """Receive CR and DX images over DICOM, score each study as a job, and send an SR (and a
    secondary capture of each heatmap) back into the same study.

    An instance gets success only once it is on disk (fsynced) in the spool; a study is scored
    when its association is released or after --study-idle seconds without a new instance.
    Embedded mode scores here; with CXRQ_BROKER_URL the workers score and send the results.
    Stop with Ctrl-C or SIGTERM: open studies are scored first.

    Example: cxrq listen --port 11112 --model googlenet --send-to PACS@10.0.0.5:104
    """
    with friendly_errors():
        listener = _listener(opts)
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
        logging.getLogger("pynetdicom").setLevel(logging.WARNING)  # its INFO lines name patients
        listener.start()
        cfg = listener.config
        _audit_start(cfg, listener.port)
        where = (
            ", ".join(cfg.intake.destinations) or "nowhere (rows only; `cxrq export` writes them)"
        )
        click.echo(
            f"listening as {cfg.ae_title} on {cfg.host}:{listener.port}; spool {cfg.spool_dir}"
        )
        click.echo(f"results go to {where}")
        signal.signal(signal.SIGTERM, lambda *_: listener.stop())
        try:
            listener.wait()
        except KeyboardInterrupt:
            click.echo("stopping: scoring the studies still open")
            listener.stop()


def _listener(opts: dict):
    """The Listener the options ask for, each unset option from its CXRQ_* setting."""
    from db.settings import gateway_settings
    from gateway.intake import IntakeConfig, site_profile_id
    from gateway.listener import ListenConfig, Listener
    from gateway.receiver import ReceiverLimits

    env = gateway_settings()
    destinations = _destinations(opts["send_to"] or env.send_to, opts["stow_url"] or env.stow_url)
    ae, model = opts["ae_title"] or env.ae_title, opts["model_ref"]
    _check_scorer(model)
    profile = None if opts["site"] is None else site_profile_id(opts["site"], model)
    intake = IntakeConfig(model, profile, destinations, opts["explain"], sender_ae=ae)
    limits = ReceiverLimits(
        opts["allow"] or env.allow, env.max_associations, env.max_instance_bytes
    )
    config = ListenConfig(
        spool_dir=(opts["spool"] or env.spool_dir).expanduser().resolve(),
        ae_title=ae,
        host=opts["host"],
        port=env.port if opts["port"] is None else opts["port"],
        limits=limits,
        intake=intake,
        spool_max_bytes=env.spool_max_bytes,
        spool_retention=env.spool_retention,
        study_idle_s=opts["study_idle"] or env.study_idle_seconds,
    )
    return Listener(config)


def _audit_start(cfg, port: int) -> None:
    from db.audit import record
    from db.session import session_scope

    intake = cfg.intake
    detail = {
        "ae_title": cfg.ae_title,
        "port": port,
        "model": intake.model,
        "site_profile_id": intake.site_profile_id,
        "destinations": list(intake.destinations),
    }
    with session_scope() as s:
        record(s, "listen", detail=detail)


def _destinations(send_to: str | None, stow_url: str | None) -> tuple[str, ...]:
    from gateway.senders import parse_ae

    if send_to is not None:
        try:
            parse_ae(send_to)
        except ValueError as exc:
            raise click.UsageError(str(exc)) from None
    if stow_url is not None and not stow_url.startswith(("http://", "https://")):
        raise click.UsageError(f"--stow takes an http(s) DICOMweb URL, not {stow_url!r}")
    return tuple(d for d in (send_to, stow_url) if d)


def _check_scorer(model_ref: str | None) -> None:
    """Refuse at start, not at the first study, a model reference that names nothing."""
    from db.lookups import resolve_scorer
    from db.session import session_scope

    with session_scope() as s:
        resolve_scorer(s, model_ref)


@click.command("export")
@click.argument("job_ref")
@click.option(
    "--dicom",
    "folder",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="write the job's DICOM results (an SR per scored image, an SC per heatmap) here",
)
def export(job_ref: str, folder: Path) -> None:
    """Write a score job's results as DICOM objects into FOLDER, for a job whose inputs were
    DICOM files: the same SR and secondary captures `cxrq listen` sends, with the same UIDs.

    Example: cxrq export latest --dicom ./results
    """
    with friendly_errors():
        from db.audit import record
        from db.lookups import resolve_job
        from db.session import session_scope
        from gateway.outbox import job_results_to

        with session_scope() as s:
            job = resolve_job(s, job_ref)
            job_id, kind = job.id, job.kind
        if kind != "score":
            raise click.ClickException(f"job {job_id} is a {kind} job; export takes score jobs")
        written = job_results_to(job_id, folder)
        if not written:
            raise click.ClickException(
                f"job {job_id} has no scored DICOM input whose file is still there; nothing written"
            )
        with session_scope() as s:
            detail = {"folder": str(folder.resolve()), "objects": len(written)}
            record(s, "export", job_id=job_id, detail=detail)
        click.echo(f"wrote {len(written)} DICOM object(s) of job {job_id} to {folder}")
