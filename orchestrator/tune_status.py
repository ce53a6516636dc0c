"""The Ray Tune callback that feeds an ablation's :class:`orchestrator.console.LiveStatus` (it runs in the
driver, in Tune's control loop).

Tune pickles a grid's ``RunConfig`` (callbacks included) into its experiment state; the callback is a
module-level class (pickled by reference) that leaves its status out of the pickle. A restored grid gets
fresh callbacks (:func:`replace_callbacks`); one that still runs a pickled callback prints plain lines.
"""

from __future__ import annotations

from typing import Any

from ray.tune import Callback

from orchestrator.ablation import trial_label
from orchestrator.console import LiveStatus, selection_stat

FINISHED_BEFORE = "already_finished"
"""Result key a trial reports when its MLflow run had finished before (it is not trained again)."""


class TrialStatus(Callback):
    """Trial events -> the status: a row per trial (state, epoch of total, best AP so far) and, when the
    output is not a terminal, one line per event (``started``, ``epoch N best AP x``, ``finished (k/n)
    AP x``); a failed trial is always one line with its error file.

    Args:
        status: the ablation's status (rows are added by the caller, keyed by
            :func:`orchestrator.ablation.trial_label`).
        total: trials of this grid (the ``k/n`` of the lines).
        stage: the stage of this grid (``warm_start``), None for the ablation's grid.
    """

    def __init__(self, status: LiveStatus, total: int, stage: str | None = None) -> None:
        self.status: LiveStatus | None = status
        self.total = total
        self.stage = stage
        self.done = 0

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "status": None}  # a stream and a lock: not part of Tune's saved state

    def _s(self) -> LiveStatus:
        if self.status is None:
            self.status = LiveStatus(live=False)
        return self.status

    def _id(self, trial) -> str:
        return trial_label(trial.config.get("trial", {}).get("trial_id", trial.trial_id), self.stage)

    def on_trial_start(self, iteration, trials, trial, **info):
        tid = self._id(trial)
        self._s().update(tid, state="running")
        self._s().event(tid, "started")

    def on_trial_result(self, iteration, trials, trial, result, **info):
        tid = self._id(trial)
        stat, best = selection_stat(result, "final/best_")
        if result.get(FINISHED_BEFORE):
            self._s().update(tid, state="finished", best_ap=best, best_stat=stat)
            self._s().event(tid, f"already finished (MLflow run {result.get('mlflow_run_id')}); not rerun")
            return
        if selection_stat(result, "final/")[1] is not None:
            self._s().update(tid, best_ap=best, best_stat=stat)
            return
        stat, ap = selection_stat(result, "val/best_")
        epoch = result.get("epoch")
        self._s().update(tid, epoch=int(epoch) if epoch is not None else None, best_ap=ap, best_stat=stat)
        evaluated = ap is not None and ap >= 0  # -1 until the first evaluation
        self._s().event(tid, f"epoch {epoch if epoch is not None else '?'}"
                        + (f" best {stat} {ap:.3f}" if evaluated else ""))

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.done += 1
        tid = self._id(trial)
        r = trial.last_result or {}
        stat, ap = selection_stat(r, "final/")
        # a trial that ends without its final metrics was stopped by the scheduler (ASHA)
        self._s().update(tid, state="finished" if "done" in r and ap is not None else "stopped")
        self._s().event(tid, f"finished ({self.done}/{self.total})" + (f" {stat} {ap:.3f}" if ap is not None else ""))

    def on_trial_recover(self, iteration, trials, trial, **info):
        tid = self._id(trial)
        self._s().update(tid, state="retrying")
        self._s().note(tid, f"failed, retrying: {trial.error_file or ''}")

    def on_trial_error(self, iteration, trials, trial, **info):
        self.done += 1
        tid = self._id(trial)
        self._s().update(tid, state="failed")
        self._s().note(tid, f"FAILED ({self.done}/{self.total}): {trial.error_file or ''}")

    def on_step_end(self, iteration, trials, **info):
        status = self._s()
        for trial in trials:  # a restored grid's finished trials never start: their rows follow Tune's state
            row = status.rows.get(self._id(trial))
            if row is not None and row.state == "pending" and trial.status in ("TERMINATED", "ERROR"):
                r = trial.last_result or {}
                stat, best = selection_stat(r, "final/best_")
                if best is None:
                    stat, best = selection_stat(r, "val/best_")
                status.update(row.label, state="finished" if trial.status == "TERMINATED" else "failed",
                              epoch=r.get("epoch"), best_ap=best, best_stat=stat)
        status.tick()


def replace_callbacks(tuner, callbacks: list[Callback]) -> None:
    """Give a restored ``Tuner`` this driver's callbacks instead of the pickled ones (Ray 2.60 keeps the
    run config in ``Tuner._local_tuner._run_config``; elsewhere the pickled ones run)."""
    run_config = getattr(getattr(tuner, "_local_tuner", None), "_run_config", None)
    if run_config is not None:
        run_config.callbacks = list(callbacks)
