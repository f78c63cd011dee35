"""Meta's side of webhook delivery, for the demo and the tests (loopback only).

As the reference (§2) describes Meta: each body is POSTed with ``X-Hub-Signature-256:
sha256=<HMAC-SHA256 of the body under the app secret>`` (and the legacy ``X-Hub-Signature`` SHA-1,
which receivers ignore); anything but a 200 — another status, a refused connection, no answer in
time — is delivered again at a decreasing frequency; and a body already answered 200 is sometimes
delivered again all the same (a retry meant for another app subscribed to the same account reaches
every app). Bodies go out concurrently, in no guaranteed order.

The backoff here is fractions of a second (Meta's runs for days). Which bodies lose their answer
(as when Meta's 20 s timeout passes before the receiver answers) or come twice is decided per body
from the seed and the body's label, so a run repeats itself whatever the threads do and whatever
day it is. The log keeps
labels, attempts and statuses, never a body.
"""

from __future__ import annotations

import hashlib
import hmac
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

import httpx

from shared.local.whatsapp_traffic import WebhookBody

ANSWER_LOST = "answer lost"


@dataclass(frozen=True)
class Attempt:
    label: str  # the body's (or send's) label
    number: int  # 1 for the first POST of it
    kind: str  # delivery | redelivery | duplicate
    status: int | None  # None: no answer reached the sender
    error: str | None = None  # why there was no answer: the exception's name, or ANSWER_LOST


@dataclass
class DeliveryLog:
    attempts: list[Attempt] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, attempt: Attempt) -> None:
        with self._lock:
            self.attempts.append(attempt)

    def summary(self) -> dict[str, Any]:
        labels = {a.label for a in self.attempts}
        delivered = {a.label for a in self.attempts if a.status == 200}
        answers = Counter(str(a.status) if a.status is not None else a.error or "no answer" for a in self.attempts)
        return {
            "bodies": len(labels),
            "attempts": len(self.attempts),
            "delivered": len(delivered),
            "redelivered": len({a.label for a in self.attempts if a.kind == "redelivery"}),
            "redeliveries": sum(a.kind == "redelivery" for a in self.attempts),
            "duplicates_sent": sum(a.kind == "duplicate" for a in self.attempts),
            "answers_lost": sum(a.error == ANSWER_LOST for a in self.attempts),
            "undelivered": sorted(labels - delivered),
            "answers": dict(sorted(answers.items())),
        }


@dataclass(frozen=True)
class Job:
    label: str
    url: str
    data: bytes
    headers: Mapping[str, str]
    lose_first_answer: bool = False
    duplicate: bool = False


class Courier:
    """POSTs each job until it is answered 200, with a growing backoff, at most ``max_attempts``
    times; then once more if it is to be duplicated. Thread-safe; one connection pool."""

    def __init__(
        self, *, concurrency: int = 4, backoff: float = 0.05, max_backoff: float = 1.0, max_attempts: int = 8,
        timeout: float = 20.0, http: httpx.Client | None = None, sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.concurrency = concurrency
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.max_attempts = max_attempts
        self._owns_http = http is None
        # trust_env off: a proxy from the environment must never stand between Meta's stand-in and loopback.
        self._http = http or httpx.Client(timeout=httpx.Timeout(timeout), follow_redirects=False, trust_env=False)
        self._sleep = sleep

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def post_all(self, jobs: Iterable[Job], log: DeliveryLog | None = None) -> DeliveryLog:
        log = log if log is not None else DeliveryLog()
        with ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="meta-sender") as pool:
            for future in [pool.submit(self._post_job, job, log) for job in jobs]:
                future.result()
        return log

    def _post_job(self, job: Job, log: DeliveryLog) -> None:
        number = self._until_accepted(job, log, "delivery", 0, lose_first=job.lose_first_answer)
        if job.duplicate:
            self._until_accepted(job, log, "duplicate", number, lose_first=False)

    def _until_accepted(self, job: Job, log: DeliveryLog, kind: str, number: int, *, lose_first: bool) -> int:
        for attempt in range(1, self.max_attempts + 1):
            number += 1
            status, error = self._post(job)
            if lose_first and status is not None:
                status, error, lose_first = None, ANSWER_LOST, False
            log.add(Attempt(job.label, number, kind, status, error))
            if status == 200:
                break
            kind = "redelivery"
            if attempt < self.max_attempts:
                self._sleep(min(self.max_backoff, self.backoff * 2 ** (attempt - 1)))
        return number

    def _post(self, job: Job) -> tuple[int | None, str | None]:
        try:
            response = self._http.post(job.url, content=job.data, headers=dict(job.headers))
        except httpx.TransportError as error:
            return None, type(error).__name__
        response.close()
        return response.status_code, None


def signature(secret: str, data: bytes) -> str:
    """``X-Hub-Signature-256``'s value for ``data``."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), data, hashlib.sha256).hexdigest()


class WebhookSender(Courier):
    """Delivers webhook bodies to one callback URL as Meta does, signed with the app secret."""

    def __init__(self, url: str, app_secret: str, *, seed: int = 0, duplicate_rate: float = 0.0,
                 lost_answer_rate: float = 0.0, **courier: Any) -> None:
        super().__init__(**courier)
        self.url = url
        self._secret = app_secret
        self.seed = seed
        self.duplicate_rate = duplicate_rate
        self.lost_answer_rate = lost_answer_rate

    def headers(self, body: WebhookBody) -> dict[str, str]:
        legacy = hmac.new(self._secret.encode("utf-8"), body.signed, hashlib.sha1).hexdigest()
        return {
            "Content-Type": "application/json",
            "User-Agent": "facebookexternalua",
            "X-Hub-Signature": f"sha1={legacy}",
            "X-Hub-Signature-256": signature(self._secret, body.signed),
        }

    def job(self, body: WebhookBody) -> Job:
        fate = random.Random(f"{self.seed}:{body.label}")
        lose = fate.random() < self.lost_answer_rate
        duplicate = fate.random() < self.duplicate_rate
        return Job(body.label, self.url, body.wire, self.headers(body), lose, duplicate)

    def handshake(self, verify_token: str, *, challenge: str) -> bool:
        """Meta's GET when the callback URL is saved: it sends no webhook until the challenge comes back."""
        try:
            response = self._http.get(self.url, params={
                "hub.mode": "subscribe", "hub.verify_token": verify_token, "hub.challenge": challenge})
        except httpx.TransportError:
            return False
        return response.status_code == 200 and response.text == challenge

    def deliver(self, bodies: Iterable[WebhookBody], log: DeliveryLog | None = None) -> DeliveryLog:
        return self.post_all((self.job(body) for body in bodies), log)
