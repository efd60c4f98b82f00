"""Operators the providers lack: promotion in the MLflow registry through stockml's guardrails."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from airflow.sdk import BaseOperator

from training.registry.names import ROUTER_MODEL


class MlflowPromoteOperator(BaseOperator):
    """Move ``champion`` to a version through the guardrails; never fails because of a refusal.

    A refused promotion is a normal outcome (the champion stays in place), recorded as tags on
    the candidate version and returned as the task's XCom, and told to ops as a ``promotion_refused``
    alert (:mod:`stockml_airflow.notifications`; the deliveries are in the XCom's ``alerts``).
    ``version`` may be templated, e.g. ``"{{ ti.xcom_pull(task_ids='train_router')['version'] }}"``;
    empty means the challenger.
    ``enabled_by`` names a boolean setting (e.g. ``lstm_register``): when it is off the task skips
    itself, so a model that is trained only on request is never promoted by a run that did not train it.
    """

    template_fields = ("version",)

    def __init__(
        self,
        *,
        model_name: str = ROUTER_MODEL,
        version: str | None = None,
        tolerance: float | None = None,
        force: bool = False,
        enabled_by: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.enabled_by = enabled_by
        self.model_name = model_name
        self.version = version
        self.tolerance = tolerance
        self.force = force

    def execute(self, context: Any) -> dict:
        from stockml.steps.promotion import promote, record_decision
        from stockml_airflow import notifications
        from stockml_airflow.common import run_for

        run = run_for(context)
        if self.enabled_by and not getattr(run.settings, self.enabled_by):
            from airflow.sdk.exceptions import AirflowSkipException

            raise AirflowSkipException(f"{self.enabled_by} is off: {self.model_name} is not promoted in this run")
        who = f"airflow:{context['dag'].dag_id}/{context['run_id']}"
        decision = promote(run.settings, self.model_name, self.version or None, self.tolerance, self.force, who=who)
        self.log.info("promotion: %s", decision.reason)
        record_decision(run, decision)
        result = asdict(decision)
        if notifications.is_refusal(result):  # the champion stays: a normal outcome that ops hear about
            result["alerts"] = notifications.notify(notifications.refused_alert(result, run.settings.tracking_uri))
        return result
