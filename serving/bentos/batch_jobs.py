"""The batch endpoints' logic over the job store: submit, status, result, and the notifications on completion.

:class:`BatchJobs` puts together the job store and the worker (:mod:`serving.bentos.batch`) and the
notifier of finished jobs (:mod:`serving.bentos.callbacks`): the engine delegates ``/batch``,
``/batch_status`` and ``/batch_result`` to it. A request it cannot answer raises a typed
:class:`~serving.bentos.errors.ServingError` (422 a notification field that cannot be used, 404 an
unknown job, 409 a job not done).
"""

from __future__ import annotations

import logging

from serving.bentos.batch import (
    BatchLimits,
    BatchRunner,
    ChampionGetter,
    CsvError,
    FormatUnavailable,
    JobStore,
    parse_csv,
    render,
)
from serving.bentos.callbacks import CallbackRules, Notifier
from serving.bentos.errors import Conflict, InvalidInput, NotFound
from serving.bentos.schemas_ops import JobOut
from stockml.settings_serving import NotifySettings

log = logging.getLogger("stockml.serving")


class BatchJobs:
    """Jobs on disk, the worker thread that runs them and the thread that tells callers they ended."""

    def __init__(
        self, jobs: JobStore, champion: ChampionGetter, limits: BatchLimits, notify: NotifySettings | None = None
    ) -> None:
        notify = notify or NotifySettings()
        self.jobs = jobs
        self.limits = limits
        self.rules = CallbackRules.from_settings(notify)
        self.notifier = Notifier(jobs, notify)
        self.runner = BatchRunner(jobs, champion, limits, on_finish=self.notifier.finished)

    def start(self) -> None:
        self.notifier.start()
        self.runner.start()

    def stop(self) -> None:
        self.runner.stop()
        self.notifier.stop()

    def submit(
        self, raw: bytes, horizon: int = 13, callback_url: str | None = None, notify_email: str | None = None
    ) -> JobOut:
        """A job for the uploaded CSV. A CSV that cannot be used (its content is not something the
        schema can state) gives a job that is ``failed`` from the start, ``error`` saying why (and its
        notifications are sent: it ended)."""
        notify = {"callback_url": callback_url, "notify_email": notify_email}
        problem = self.rules.problem(notify)
        if problem is not None:
            raise InvalidInput(problem[0], field=problem[1])
        notify = {k: v.rstrip("\n") if v else None for k, v in notify.items()}
        try:
            table = parse_csv(raw, self.limits)
        except CsvError as exc:
            job = self.jobs.create_failed(f"the CSV cannot be used: {exc}", horizon, **notify)
            log.info("batch job %s refused its CSV: %s", job.job_id, exc)
            self.notifier.finished(job)
            return JobOut(**job.public())
        job = self.jobs.create(table, horizon, **notify)
        self.runner.submit(job)
        log.info("batch job %s queued: %d SKUs, %d rows, horizon %d", job.job_id, job.skus_total, job.rows, horizon)
        return JobOut(**job.public())

    def status(self, job_id: str) -> JobOut:
        job = self.jobs.load(job_id)
        if job is None:
            raise NotFound(f"no batch job {job_id}", field="job_id")
        return JobOut(**job.public())

    def result(self, job_id: str, fmt: str = "csv") -> tuple[bytes, str, str]:
        """(content, media type, file name) of a finished job's forecasts."""
        job = self.jobs.load(job_id)
        if job is None:
            raise NotFound(f"no batch job {job_id}", field="job_id")
        if job.state != "done":
            raise Conflict(f"batch job {job_id} is {job.state}, not done", state=job.state, progress=job.progress)
        try:
            content, media = render(job, self.jobs.result_path(job_id), fmt)
        except FormatUnavailable as exc:
            raise InvalidInput(str(exc), field="format") from exc
        return content, media, f"forecasts-{job_id}.{fmt}"
