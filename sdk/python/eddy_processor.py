"""Eddy stream processors in Python.

A processor is a class: ``__init__`` takes the pipeline's parameters, and
``process`` is called once per input record with an ``Output`` to push the
records to produce into::

    import eddy_processor as eddy

    class Shout(eddy.Processor):
        def __init__(self, params):
            self.suffix = params.str("suffix", default="!")

        def process(self, record, out):
            out.push(record.text().upper() + self.suffix, key=record.key)

    WitWorld = eddy.export(Shout)

``eddy processor build`` turns the module into a WebAssembly component with
componentize-py; ``eddy processor test`` runs it on sample records.

An exception raised by ``process`` fails that record alone: the host applies
the pipeline's on-error policy to it (dead-letter, skip or stop), with the
exception's type and message as the reason. An exception raised by
``__init__`` refuses the parameters, and the pipeline does not start.

Exactly-once pipelines need outputs that depend only on the records given,
in order: not on how they were cut into batches, and not on anything kept
in the instance (a replay after a crash starts a fresh instance). What a
processor remembers between records (counts, records seen, windows) goes
in ``eddy.state``, the keyed store the host keeps per input partition and
restores after a crash, for pipelines with ``spec.state`` in their
manifest::

    class Count(eddy.Processor):
        def process(self, record, out):
            n = int(eddy.state.get(record.key) or b"0") + 1
            eddy.state.put(record.key, str(n))
            out.push(str(n), key=record.key)

The host makes the clock and randomness deterministic and offers no files
or network.

This module hides the batch layout of ``wit/processor.wit``: records arrive
as one buffer of bytes and a few lists of integers, and leave the same way.
It is the only code that knows that layout.
"""

import json as _json

__all__ = [
    "Processor",
    "Record",
    "Output",
    "Params",
    "export",
    "log",
    "counter_add",
    "dumps",
    "state",
    "StateError",
    "timers",
    "Timer",
    "Windows",
    "Sessions",
    "Closed",
]

# `presence` bits of the WIT world.
_HAS_KEY = 1
_HAS_VALUE = 2
_HAS_TIMESTAMP = 4
_HAS_TOPIC = 8
_FORWARDED = 16

# Entries per record in an input batch's `layout`, and in an output's.
_INPUT_LAYOUT = 8
_OUTPUT_LAYOUT = 7


def dumps(value):
    """``value`` as compact JSON text (no spaces), as Eddy's other SDKs
    write it."""
    return _json.dumps(value, separators=(",", ":"), ensure_ascii=False)


class Params:
    """The pipeline's parameters (manifest ``spec.processor.params``, or
    ``--param name=value``), all given as text. The typed getters raise
    ``ValueError`` naming the parameter, which refuses the parameters with
    that message."""

    __slots__ = ("_values",)

    def __init__(self, values):
        self._values = dict(values)

    def __contains__(self, name):
        return name in self._values

    def __iter__(self):
        return iter(self._values)

    def __repr__(self):
        return "Params(%r)" % (self._values,)

    def get(self, name, default=None):
        """The parameter's text, or ``default`` when it is not given."""
        return self._values.get(name, default)

    def str(self, name, default=None):
        """The parameter's text; without a default, a missing parameter is
        an error."""
        return self._typed(name, default, lambda text: text, "text")

    def float(self, name, default=None):
        """The parameter as a number."""
        return self._typed(name, default, float, "a number")

    def int(self, name, default=None):
        """The parameter as an integer."""
        return self._typed(name, default, int, "an integer")

    def bool(self, name, default=None):
        """The parameter as ``true`` or ``false``."""

        def parse(text):
            lowered = text.strip().lower()
            if lowered in ("true", "yes", "1"):
                return True
            if lowered in ("false", "no", "0"):
                return False
            raise ValueError(text)

        return self._typed(name, default, parse, "true or false")

    def _typed(self, name, default, parse, what):
        text = self._values.get(name)
        if text is None:
            if default is not None:
                return default
            raise ValueError(_missing(name))
        try:
            return parse(text)
        except ValueError:
            raise ValueError(
                "parameter `%s` must be %s, not %r" % (name, what, text)
            ) from None


def _missing(name):
    return "missing parameter `%s`: pass it with --param %s=VALUE" % (name, name)


class Record:
    """One input record, a view into its batch. ``key`` and ``value`` are
    ``bytes`` (``None`` when absent; a record without a value is a
    tombstone); ``headers`` is a list of ``(name, bytes)`` pairs in order;
    ``timestamp`` is in milliseconds since the Unix epoch."""

    __slots__ = ("_batch", "index", "_row")

    def __init__(self, batch, index):
        self._batch = batch
        #: The record's position in its batch (0 for the first).
        self.index = index
        self._row = index * _INPUT_LAYOUT

    def __repr__(self):
        return "Record(topic=%r, partition=%d, offset=%d, key=%r, value=%r)" % (
            self.topic,
            self.partition,
            self.offset,
            self.key,
            self.value,
        )

    @property
    def key(self):
        batch = self._batch
        if not batch.presence[self.index] & _HAS_KEY:
            return None
        row = self._row
        start = batch.layout[row]
        return batch.data[start : start + batch.layout[row + 1]]

    @property
    def value(self):
        batch = self._batch
        if not batch.presence[self.index] & _HAS_VALUE:
            return None
        row = self._row
        start = batch.layout[row + 2]
        return batch.data[start : start + batch.layout[row + 3]]

    @property
    def headers(self):
        batch = self._batch
        first = batch.layout[self._row + 4]
        count = batch.layout[self._row + 5]
        data = batch.data
        pairs = []
        for header in batch.headers[first : first + count]:
            name = data[header.name.start : header.name.start + header.name.len]
            value = data[header.value.start : header.value.start + header.value.len]
            pairs.append((name.decode("utf-8"), value))
        return pairs

    def header(self, name):
        """The value of the first header called ``name``, or ``None``."""
        for header_name, value in self.headers:
            if header_name == name:
                return value
        return None

    @property
    def timestamp(self):
        return self._batch.timestamps[self.index]

    @property
    def offset(self):
        return self._batch.offsets[self.index]

    @property
    def topic(self):
        return self._batch.topics[self._batch.layout[self._row + 6]]

    @property
    def partition(self):
        return self._batch.layout[self._row + 7]

    def key_text(self):
        """The key decoded as UTF-8, or ``None`` without a key."""
        key = self.key
        return None if key is None else key.decode("utf-8")

    def text(self):
        """The value decoded as UTF-8, or ``None`` for a tombstone."""
        value = self.value
        return None if value is None else value.decode("utf-8")

    def json(self):
        """The value parsed as JSON. A tombstone or a value that is not
        JSON raises ``ValueError`` saying so."""
        value = self.value
        if value is None:
            raise ValueError("the record has no value (a tombstone), not JSON")
        try:
            return _json.loads(value)
        except ValueError as e:
            raise ValueError("the value is not JSON: %s" % e) from None


def _as_bytes(value, what):
    if value is None or isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    if what == "value":
        return dumps(value).encode("utf-8")
    raise TypeError("a record's %s must be bytes, str or None, not %s" % (what, type(value).__name__))


class Output:
    """The records one call produces, in order."""

    __slots__ = ("_data", "_presence", "_layout", "_timestamps", "_headers", "_topics")

    def __init__(self):
        self._data = bytearray()
        self._presence = bytearray()
        self._layout = []
        self._timestamps = []
        self._headers = []
        self._topics = []

    def __len__(self):
        return len(self._presence)

    def push(self, value, *, key=None, headers=None, timestamp=None, topic=None):
        """Produces a new record. ``value`` and ``key`` are ``bytes`` or
        ``str`` (written as UTF-8) or ``None``; any other ``value`` (a dict,
        a list, a number) is written as compact JSON. ``headers`` is a dict
        or a list of ``(name, value)`` pairs. Without a ``timestamp`` the
        record takes the batch's last input timestamp; without a ``topic``
        it goes to the pipeline's first output topic (otherwise ``topic``
        must name one of the pipeline's outputs)."""
        presence = 0
        data = self._data
        key = _as_bytes(key, "key")
        key_start = len(data)
        if key is not None:
            presence |= _HAS_KEY
            data += key
        key_len = len(data) - key_start
        value = _as_bytes(value, "value")
        value_start = len(data)
        if value is not None:
            presence |= _HAS_VALUE
            data += value
        value_len = len(data) - value_start
        first_header = len(self._headers)
        if headers:
            items = headers.items() if isinstance(headers, dict) else headers
            for name, header_value in items:
                self._header(name, _as_bytes(header_value, "header value") or b"")
        if timestamp is not None:
            presence |= _HAS_TIMESTAMP
        else:
            timestamp = 0
        topic_index = 0
        if topic is not None:
            presence |= _HAS_TOPIC
            topic_index = self._topic(topic)
        self._presence.append(presence)
        self._layout += (
            key_start,
            key_len,
            value_start,
            value_len,
            first_header,
            len(self._headers) - first_header,
            topic_index,
        )
        self._timestamps.append(timestamp)

    def forward(self, record, *, topic=None, timestamp=None):
        """Produces an input record of this call unchanged (key, value,
        headers and, without ``timestamp``, its timestamp) without copying
        its bytes: the host already holds them."""
        presence = _FORWARDED
        topic_index = 0
        if topic is not None:
            presence |= _HAS_TOPIC
            topic_index = self._topic(topic)
        if timestamp is not None:
            presence |= _HAS_TIMESTAMP
        else:
            timestamp = 0
        self._presence.append(presence)
        self._layout += (record.index, 0, 0, 0, 0, 0, topic_index)
        self._timestamps.append(timestamp)

    def _header(self, name, value):
        data = self._data
        name_bytes = name.encode("utf-8")
        name_start = len(data)
        data += name_bytes
        value_start = len(data)
        data += value
        self._headers.append((name_start, len(name_bytes), value_start, len(value)))

    def _topic(self, name):
        topics = self._topics
        for i in range(len(topics) - 1, -1, -1):
            if topics[i] == name:
                return i
        topics.append(name)
        return len(topics) - 1


class Processor:
    """Base class of processors. Override ``process`` (one record at a
    time) or ``process_batch`` (the whole batch, e.g. to look at several
    records together)."""

    def __init__(self, params):
        pass

    def process(self, record, out):
        """Processes one record, pushing outputs into ``out``."""
        raise NotImplementedError("a processor must override process(self, record, out)")

    def on_timer(self, timer, out):
        """Handles a ``Timer`` registered with ``eddy.timers.register`` that
        came due: called right after the record that moved the watermark
        to it, before the next record (or in a call without records, when
        the input went quiet). An exception fails that record."""

    def process_batch(self, records, out):
        """Processes a batch: ``records`` is a list of ``Record`` from one
        input partition in offset order. By default calls ``process`` on
        each, and after each record ``on_timer`` on the timers it made due
        (when the class defines ``on_timer``). An exception fails the
        record being processed (set ``RecordFailed`` to name another)."""
        process = self.process
        fire = type(self).on_timer is not Processor.on_timer
        for record in records:
            try:
                process(record, out)
                if fire:
                    for timer in timers.due_after(record.index):
                        self.on_timer(timer, out)
            except Exception as e:
                raise RecordFailed(record.index, describe(e)) from None
        if fire and not records:
            # A call without records: the input went quiet and event time
            # moved on (spec.eventTime.idleTimeoutMs), or a restore found
            # timers due.
            try:
                for timer in timers.due_after(0):
                    self.on_timer(timer, out)
            except Exception as e:
                raise RecordFailed(0, describe(e)) from None


class RecordFailed(Exception):
    """Raised by ``process_batch`` to fail the record at ``index`` with
    ``message``; the outputs of the whole call are then discarded."""

    def __init__(self, index, message):
        super().__init__(message)
        self.index = index
        self.message = message


def describe(error):
    """An exception as the one-line reason dead-letter headers carry."""
    text = str(error)
    name = type(error).__name__
    if isinstance(error, KeyError) and error.args:
        text = "missing key %r" % (error.args[0],)
    return "%s: %s" % (name, text) if text else name


class _Batch:
    """The input columns of one call, as the bindings lift them."""

    __slots__ = ("data", "presence", "layout", "timestamps", "offsets", "headers", "topics")

    def __init__(self, raw):
        self.data = raw.data
        self.presence = raw.presence
        self.layout = raw.layout
        self.timestamps = raw.timestamps
        self.offsets = raw.offsets
        self.headers = raw.headers
        self.topics = raw.topics


def log(level, message):
    """Writes ``message`` to the host's log; ``level`` is one of "trace",
    "debug", "info", "warn", "error". (``print`` also reaches the log.)"""
    _host().log(_levels()[level], str(message))


def counter_add(name, delta=1):
    """Adds ``delta`` to the counter ``name``, reported with the pipeline's
    status (``eddy pipeline describe``)."""
    _host().counter_add(name, delta)


def _host():
    from wit_world.imports import host

    return host


class StateError(Exception):
    """A state call the host refused: a key over 4 KiB, a value over 1 MiB,
    the task's state over ``spec.limits.stateDiskMiB``, a scan of more than
    1,024 entries, or a pipeline without ``spec.state``. Raised out of
    ``process``, it fails the record with the host's message."""


class _State:
    """The keyed state of the input partition the record comes from. Keys
    and values are ``bytes`` (a ``str`` is taken as UTF-8); keys sort
    bytewise. Changes made while processing a record that fails are
    dropped with its outputs."""

    SCAN_LIMIT = 1024

    def get(self, key):
        """The value under ``key`` (``bytes``), or ``None``."""
        value = self._call("get", _state_bytes(key, "key"))
        return None if value is None else bytes(value)

    def put(self, key, value):
        """Stores ``value`` under ``key``."""
        self._call("put", _state_bytes(key, "key"), _state_bytes(value, "value"))

    def delete(self, key):
        """Removes ``key``; removing an absent key is no error."""
        self._call("delete", _state_bytes(key, "key"))

    def scan(self, prefix=b"", start_after=None, limit=SCAN_LIMIT):
        """Up to ``limit`` ``(key, value)`` pairs whose keys start with
        ``prefix``, in key order, after the key ``start_after`` if given."""
        after = None if start_after is None else _state_bytes(start_after, "key")
        entries = self._call("scan", _state_bytes(prefix, "key prefix"), after, limit)
        return [(bytes(e.key), bytes(e.value)) for e in entries]

    def scan_all(self, prefix=b""):
        """Every ``(key, value)`` pair whose key starts with ``prefix``,
        fetched a page at a time."""
        found = []
        while True:
            page = self.scan(prefix, found[-1][0] if found else None)
            found.extend(page)
            if len(page) < self.SCAN_LIMIT:
                return found

    def _call(self, name, *args):
        from componentize_py_types import Err
        from wit_world.imports import state as host_state

        try:
            return getattr(host_state, name)(*args)
        except Err as e:
            raise StateError(e.value) from None

    def _call_timers(self, name, *args):
        from componentize_py_types import Err
        from wit_world.imports import timers as host_timers

        try:
            return getattr(host_timers, name)(*args)
        except Err as e:
            raise StateError(e.value) from None


state = _State()


class Timer:
    """A timer that came due: its ``key`` (bytes) and time ``at`` (ms)."""

    __slots__ = ("key", "at")

    def __init__(self, key, at):
        self.key = key
        self.at = at

    def __repr__(self):
        return "Timer(%r, %d)" % (self.key, self.at)


class _Timers:
    """Event-time timers of the input partition (kept in the state). The
    watermark is the highest timestamp processed so far minus the
    manifest's ``spec.eventTime.allowedLatenessMs``; a timer at ``at`` is
    due once the watermark reaches it, and goes to ``on_timer`` right after
    the record that moved the watermark there."""

    def watermark(self):
        """The watermark now (a very negative number before any record)."""
        from wit_world.imports import timers as host_timers

        return host_timers.watermark()

    def register(self, key, at):
        """Registers a timer for ``key`` at ``at``, after the watermark."""
        state._call_timers("register", _state_bytes(key, "key"), int(at))

    def cancel(self, key, at):
        """Cancels the timer for ``key`` at ``at``, if registered."""
        state._call_timers("cancel", _state_bytes(key, "key"), int(at))

    def due_after(self, index):
        """Moves the watermark past record ``index`` of the batch and
        returns the timers now due, earliest first (each removed)."""
        due = []
        while True:
            page = state._call_timers("advance", index)
            if not page:
                return due
            due.extend(Timer(bytes(t.key), t.at) for t in page)


timers = _Timers()

_WINDOW_PREFIX = b"\xffeddy.window/"
_SESSION_PREFIX = b"\xffeddy.session/"
_SIGN = 1 << 63


def _time_bytes(t):
    return ((t + (1 << 64)) % (1 << 64) ^ _SIGN).to_bytes(8, "big")


def _time_of(b):
    u = int.from_bytes(b, "big") ^ _SIGN
    return u - (1 << 64) if u >= _SIGN else u


class Closed:
    """A window that closed: ``key``, ``start``, ``end`` (exclusive, ms)
    and the ``aggregate`` (bytes) folded from its records."""

    __slots__ = ("key", "start", "end", "aggregate")

    def __init__(self, key, start, end, aggregate):
        self.key = key
        self.start = start
        self.end = end
        self.aggregate = aggregate

    def __repr__(self):
        return "Closed(%r, %d, %d, %r)" % (self.key, self.start, self.end, self.aggregate)


class Windows:
    """Tumbling or hopping windows by event time, kept in the state: an
    aggregate per key and window, folded from its records, handed back by
    ``close`` once the watermark passes the window's end. The same layout
    as the Rust SDK's ``windows::Windows``."""

    def __init__(self, size_ms, advance_ms=None):
        advance_ms = size_ms if advance_ms is None else advance_ms
        if size_ms <= 0 or advance_ms <= 0 or advance_ms > size_ms:
            raise ValueError("windows of %d ms every %d ms: both must be positive, the advance at most the size" % (size_ms, advance_ms))
        self.size_ms = size_ms
        self.advance_ms = advance_ms

    @classmethod
    def tumbling(cls, size_ms):
        return cls(size_ms)

    @classmethod
    def hopping(cls, size_ms, advance_ms):
        return cls(size_ms, advance_ms)

    def of(self, ts):
        """The ``(start, end)`` of every window containing ``ts``."""
        start = ts // self.advance_ms * self.advance_ms
        starts = []
        while start > ts - self.size_ms:
            starts.append(start)
            start -= self.advance_ms
        return [(s, s + self.size_ms) for s in reversed(starts)]

    def add(self, key, ts, fold):
        """Folds a record at ``ts`` into ``key``'s aggregate in each of its
        open windows: ``fold(aggregate or None)`` returns the new one
        (bytes or str). Returns False when the record is late (all its
        windows have closed), True otherwise."""
        key = _state_bytes(key, "key")
        watermark = timers.watermark()
        added = False
        for start, end in self.of(ts):
            if end <= watermark:
                continue
            name = _WINDOW_PREFIX + _time_bytes(start) + key
            old = state.get(name)
            if old is None:
                timers.register(name, end)
            state.put(name, fold(old))
            added = True
        return added

    def close(self, timer):
        """The window ``timer`` closes (a ``Closed``, removed from the
        state), or None when the timer is not a window's."""
        if not timer.key.startswith(_WINDOW_PREFIX):
            return None
        rest = timer.key[len(_WINDOW_PREFIX):]
        aggregate = state.get(timer.key)
        if len(rest) < 8 or aggregate is None:
            return None
        state.delete(timer.key)
        return Closed(rest[8:], _time_of(rest[:8]), timer.at, aggregate)


class Sessions:
    """Session windows kept in the state: a key's records less than
    ``gap_ms`` apart make one session, closed once the watermark is
    ``gap_ms`` past its last record. One open session per key; a record
    more than the gap after it closes it at once (``add`` returns it), one
    more than the gap before it is late. Same layout as the Rust SDK's."""

    def __init__(self, gap_ms):
        if gap_ms <= 0:
            raise ValueError("a session gap of %d ms must be positive" % gap_ms)
        self.gap_ms = gap_ms

    def add(self, key, ts, fold):
        """Folds a record at ``ts`` into ``key``'s open session. Returns
        ``(added, closed)``: ``added`` is False for a late record, and
        ``closed`` a ``Closed`` session the record could not join."""
        key = _state_bytes(key, "key")
        gap = self.gap_ms
        if ts + gap <= timers.watermark():
            return False, None
        name = _SESSION_PREFIX + key
        stored = state.get(name)
        closed = None
        session = None
        if stored is not None:
            session = (_signed(stored[0:8]), _signed(stored[8:16]), stored[16:])
            start, end, aggregate = session
            if ts < start - gap:
                return False, None
            if ts > end + gap:
                timers.cancel(name, end + gap)
                closed = Closed(key, start, end + 1, aggregate)
                session = None
        if session is None:
            start, end, aggregate = ts, ts, fold(None)
        else:
            start, end, old = session
            if ts > end:
                timers.cancel(name, end + gap)
                end = ts
            start = min(start, ts)
            aggregate = fold(old)
        timers.register(name, end + gap)
        state.put(name, _signed_bytes(start) + _signed_bytes(end) + _state_bytes(aggregate, "value"))
        return True, closed

    def close(self, timer):
        """The session ``timer`` closes (removed from the state), or None."""
        if not timer.key.startswith(_SESSION_PREFIX):
            return None
        stored = state.get(timer.key)
        if stored is None:
            return None
        start, end = _signed(stored[0:8]), _signed(stored[8:16])
        if end + self.gap_ms != timer.at:
            return None
        state.delete(timer.key)
        return Closed(timer.key[len(_SESSION_PREFIX):], start, end + 1, stored[16:])


def _signed(b):
    return int.from_bytes(b, "big", signed=True)


def _signed_bytes(n):
    return int(n).to_bytes(8, "big", signed=True)


def _state_bytes(value, what):
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    raise TypeError("a state %s must be bytes or str, not %s" % (what, type(value).__name__))


def _levels():
    from wit_world.imports.host import Level

    return {
        "trace": Level.TRACE,
        "debug": Level.DEBUG,
        "info": Level.INFO,
        "warn": Level.WARN,
        "error": Level.ERROR,
    }


def export(processor_class):
    """Makes ``processor_class`` the component's processor. Assign the
    result to ``WitWorld`` at the top of the module componentize-py builds:
    ``WitWorld = eddy.export(MyProcessor)``."""
    from componentize_py_types import Err
    from wit_world import WitWorld as World
    from wit_world.imports import types

    state = {}

    class Exported(World):
        def init(self, params):
            try:
                state["processor"] = processor_class(Params((p.name, p.value) for p in params))
            except Exception as e:
                raise Err(describe(e)) from None

        def process(self, raw):
            processor = state.get("processor")
            if processor is None:
                raise Err(types.RecordError(0, "process was called before init"))
            batch = _Batch(raw)
            records = [Record(batch, i) for i in range(len(raw.presence))]
            out = Output()
            try:
                processor.process_batch(records, out)
            except RecordFailed as failed:
                raise Err(types.RecordError(failed.index, failed.message)) from None
            except Exception as e:
                # A failure outside any one record: blame the first.
                raise Err(types.RecordError(0, describe(e))) from None
            data = bytes(out._data)
            headers = [
                types.Header(types.Span(n, nl), types.Span(v, vl))
                for (n, nl, v, vl) in out._headers
            ]
            return types.OutputBatch(
                data,
                bytes(out._presence),
                out._layout,
                out._timestamps,
                headers,
                out._topics,
            )

    Exported.__name__ = "WitWorld"
    Exported.__qualname__ = "WitWorld"
    return Exported
