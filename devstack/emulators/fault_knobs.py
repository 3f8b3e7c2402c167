"""Which submits, answers and webhooks an emulator spoils: its settings' fault knobs (docs/emulators.md).

A counter (the next N, e.g. `server_error_submits`) is taken from the settings whoever asks; a fraction
(e.g. `server_error_submit_fraction`) picks callers with devstack/faults.py's `EvenSelection`, keyed by the
caller (a submit's webhook URL, which names our job), and hits only that caller's first submit, so its retry
goes through. The record of what was injected is the emulator's (`GET /_emulator/requests`).
"""

import threading
from http import HTTPStatus

from devstack.emulators.http_serving import Response
from devstack.emulators.runs import Run
from devstack.emulators.settings import SettingsStore
from devstack.faults import EvenSelection


def dropped_answer() -> Response:
    """No answer at all: the server closes the connection (a client sees "Server disconnected")."""
    return Response(HTTPStatus.BAD_GATEWAY, drop_connection=True)


def gateway_error_page(status: int) -> Response:
    """A load balancer's own error page: HTML, none of the provider's JSON or headers."""
    title = f"{status} {HTTPStatus(status).phrase}"
    page = f"<html><head><title>{title}</title></head><body><center><h1>{title}</h1></center></body></html>"
    return Response(status, page.encode(), {"Content-Type": "text/html"})


def answer_of_submit(run: Run, answer: Response) -> Response:
    """`answer` (the ticket), or what reaches the client instead when the run's submit_answer says so."""
    if run.submit_answer == "dropped":
        return dropped_answer()
    if run.submit_answer.startswith("gateway_"):
        return gateway_error_page(int(run.submit_answer.removeprefix("gateway_")))
    return answer


class FaultKnobs:
    """The fault decisions of one emulator, from its settings."""

    def __init__(self, settings: SettingsStore) -> None:
        self._settings = settings
        self._lock = threading.Lock()
        self._selections: dict[str, EvenSelection] = {}
        self._faulted_once: set[tuple[str, str]] = set()  # (fault, caller): the faults that hit only a first submit

    def selects(self, fraction_setting: str, key: str) -> bool:
        """Whether the share `fraction_setting` (e.g. drop_webhook_fraction) picks `key` (a job's webhook URL)."""
        settings = self._settings.current()
        fraction = float(getattr(settings, fraction_setting))
        if fraction <= 0:
            return False
        salt = f"{settings.fault_seed}:{fraction_setting}"
        with self._lock:
            selection = self._selections.get(fraction_setting)
            if selection is None or (selection.fraction, selection.salt) != (fraction, salt):
                selection = self._selections[fraction_setting] = EvenSelection(fraction, salt)
        return selection.selects(key)

    def submit_refusal(self, caller: str) -> str | None:
        """ "server_error" (503) or "rate_limit" (429) when this submit is to be refused, else None.

        First the counters (the next N submits, whoever sends them); then the fractions, which refuse only
        the first submit of a picked caller: `caller` is the submit's webhook URL, which names our job.
        """
        if self._settings.take("server_error_submits"):
            return "server_error"
        if self._settings.take("rate_limit_submits"):
            return "rate_limit"
        # Both shares see every caller, in the order they first submit; one picked by both is refused twice.
        picked = [
            refusal for refusal in ("server_error", "rate_limit") if self.selects(f"{refusal}_submit_fraction", caller)
        ]
        return next((refusal for refusal in picked if self._first_time(refusal, caller)), None)

    def submit_answer_fault(self, caller: str) -> str:
        """How the answer of an accepted submit reaches the client: "answered", "dropped" or "gateway_<status>".

        The run exists either way. Counters first (the next N accepted submits); then the fractions, which hit
        only the first accepted submit of a picked caller, so a client that submits the job again is answered.
        """
        settings = self._settings.current()
        gateway = f"gateway_{settings.gateway_error_status}"
        if self._settings.take("submit_answer_drops"):
            return "dropped"
        if self._settings.take("submit_gateway_errors"):
            return gateway
        shares = (("dropped", "submit_answer_drop_fraction"), (gateway, "submit_gateway_error_fraction"))
        picked = [fault for fault, share in shares if self.selects(share, caller)]
        return next((fault for fault in picked if self._first_time(fault, caller)), "answered")

    def _first_time(self, fault: str, caller: str) -> bool:
        """True the first time `fault` is asked about for `caller`, then False."""
        with self._lock:
            first = (fault, caller) not in self._faulted_once
            self._faulted_once.add((fault, caller))
        return first

    def drops_webhook(self, caller: str) -> bool:
        """Whether a new run (of the job `caller` names) is to send no webhook."""
        return self._settings.take("drop_webhooks") or self.selects("drop_webhook_fraction", caller)
