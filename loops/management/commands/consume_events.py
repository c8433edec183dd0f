"""manage.py consume_events [--queue-url URL ...] [--once]: A2I's events from SQS queues.

Each queue (A2I_EVENTS_QUEUE_URLS, or the --queue-url options) is read by a thread of
its own, so a long poll on a quiet queue never delays a busy one. A thread repeats:

1. receive: long poll (20 s) for up to 10 messages;
2. parse each message (an EventBridge event, or an SNS notification holding one); one
   that cannot be parsed is logged and left in the queue, where the queue's redrive
   policy moves it to the dead-letter queue after maxReceiveCount receives;
3. apply the parsed events in one transaction (services.events.apply_events);
4. delete exactly the messages applied, in the background: the delete overlaps the next
   receive (one delete at most in flight), so a batch costs one SQS round trip, not two;
5. queue the follow-up work: stats refresh, discovery (loops.tasks.after_events).

An SQS or database error is logged and the thread waits before trying again; the
messages of a batch not applied come back after the queue's visibility timeout, and
those applied but not deleted come back as duplicates: none is lost. SIGTERM or
SIGINT: each thread finishes the batch in hand and stops (a receive that is waiting
returns within its 20 s). `--once`: one receive per queue, then exit (status 1 if a
queue could not be read or a batch not applied).
"""

from __future__ import annotations

import logging
import signal
import threading
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError, close_old_connections, connection

from loops import a2i, tasks
from loops.models import ReceivedEvent
from loops.services.event_parsing import InvalidEvent, parse_message
from loops.services.events import apply_events

log = logging.getLogger("loops.consume_events")

# Seconds a thread waits after an error before it tries again, doubling up to the maximum.
ERROR_BACKOFF = 2.0
ERROR_BACKOFF_MAX = 60.0


class QueueConsumer:
    """One queue's receive, parse, apply, delete cycle (the steps of the module docstring)."""

    def __init__(self, queue_url: str, stop: threading.Event):
        self.queue_url = queue_url
        self.stop = stop
        self.totals: Counter = Counter()
        self.failed = False
        self._deleter = ThreadPoolExecutor(max_workers=1, thread_name_prefix="consume-events-delete")
        self._deleting: Future | None = None

    def run(self, once: bool) -> None:
        backoff = ERROR_BACKOFF
        try:
            while not self.stop.is_set():
                ok = self.step()
                if once:
                    return
                if ok:
                    backoff = ERROR_BACKOFF
                else:
                    self.stop.wait(backoff)
                    backoff = min(backoff * 2, ERROR_BACKOFF_MAX)
        finally:
            self.close()

    def close(self) -> None:
        """Wait for the delete in flight, then release the thread and this thread's connection."""
        self.finish_delete()
        self._deleter.shutdown()
        connection.close()

    def step(self) -> bool:
        """One batch; False after an error (logged)."""
        try:
            messages = a2i.receive_event_messages(self.queue_url)
        except (a2i.ClientError, a2i.A2IUnavailable) as exc:
            self.failed = True
            log.error("%s: cannot receive: %s", self.queue_url, a2i.error_message(exc))
            return False
        events, handles = self.parse(messages)
        if not events:
            return True
        close_old_connections()  # a connection past CONN_MAX_AGE, or a broken one, is replaced
        try:
            report = apply_events(events, transport=ReceivedEvent.Transport.SQS)
        except DatabaseError:
            self.failed = True
            log.exception("%s: %d event(s) not applied; they stay in the queue", self.queue_url, len(events))
            return False
        self.totals.update(report.results)
        self.delete(handles)
        tasks.after_events(report)
        log.info("%s: %d message(s) applied: %s", self.queue_url, len(events),
                 ", ".join(f"{n} {result}" for result, n in sorted(report.counts().items())))
        return True

    def parse(self, messages: list[dict]) -> tuple[list, list[str]]:
        events, handles = [], []
        for message in messages:
            try:
                events.append(parse_message(message.get("Body", "")))
            except InvalidEvent as exc:
                self.totals["left in the queue"] += 1
                log.warning("%s: message %s left in the queue (its redrive policy decides its fate): %s",
                            self.queue_url, message.get("MessageId"), exc)
                continue
            handles.append(message["ReceiptHandle"])
        return events, handles

    def delete(self, handles: list[str]) -> None:
        """Delete these messages in the background, after the previous delete has finished."""
        self.finish_delete()
        self._deleting = self._deleter.submit(self._delete, handles)

    def finish_delete(self) -> None:
        if self._deleting is not None:
            self._deleting.result()
            self._deleting = None

    def _delete(self, handles: list[str]) -> None:
        """DeleteMessageBatch; never raises (a message not deleted comes back as a duplicate)."""
        try:
            failed = a2i.delete_event_messages(self.queue_url, handles)
        except (a2i.ClientError, a2i.A2IUnavailable) as exc:
            failed = handles
            log.error("%s: cannot delete: %s", self.queue_url, a2i.error_message(exc))
        except Exception:  # whatever it is, the consumer goes on: the messages come back
            failed = handles
            log.exception("%s: cannot delete", self.queue_url)
        if failed:
            # They come back after the visibility timeout, and are then duplicates.
            log.warning("%s: %d applied message(s) not deleted; they will be received again", self.queue_url, len(failed))


class Command(BaseCommand):
    help = "Apply A2I's EventBridge status-change events from SQS queues (A2I_EVENTS_QUEUE_URLS)."

    def add_arguments(self, parser):
        parser.add_argument("--queue-url", action="append", dest="queue_urls", metavar="URL",
                            help="an SQS queue URL (repeatable); default: A2I_EVENTS_QUEUE_URLS")
        parser.add_argument("--once", action="store_true", help="receive one batch from each queue, then exit")

    def handle(self, *args, queue_urls=None, once=False, **options):
        queue_urls = queue_urls or settings.A2I_EVENTS_QUEUE_URLS
        if not queue_urls:
            raise CommandError("no queue: set A2I_EVENTS_QUEUE_URLS or pass --queue-url")
        stop = threading.Event()
        previous = {signum: signal.signal(signum, lambda *_: stop.set()) for signum in (signal.SIGTERM, signal.SIGINT)}
        try:
            consumers = self.consume(queue_urls, stop, once)
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        for consumer in consumers:
            summary = ", ".join(f"{n} {what}" for what, n in sorted(consumer.totals.items())) or "no message"
            self.stdout.write(f"{consumer.queue_url}: {summary}")
        if once and any(consumer.failed for consumer in consumers):
            raise CommandError("a queue could not be read or a batch could not be applied (see the log)")

    def consume(self, queue_urls: list[str], stop: threading.Event, once: bool) -> list[QueueConsumer]:
        consumers = [QueueConsumer(url, stop) for url in queue_urls]
        threads = [
            threading.Thread(target=consumer.run, args=(once,), name=f"consume-events-{i}", daemon=True)
            for i, consumer in enumerate(consumers)
        ]
        if not once:
            self.stdout.write(f"consuming events from {', '.join(queue_urls)} (SIGTERM finishes the batch in hand and exits)")
        for thread in threads:
            thread.start()
        # The main thread only waits, so that it is free to run the signal handlers.
        while any(thread.is_alive() for thread in threads):
            for thread in threads:
                thread.join(timeout=0.2)
        return consumers
