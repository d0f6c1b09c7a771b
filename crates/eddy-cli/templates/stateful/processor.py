"""{{name}}: an Eddy stream processor that keeps state.

The average reading of each sensor per minute: every reading goes into its
sensor's (its key's) one-minute window, kept in the pipeline's keyed state,
and once event time passes the window's end the processor emits the
window's count and average. `window_ms` (default 60000) sets the window.
Edit `process` and `on_timer` to make it yours; `eddy processor test .`
runs it on sample.jsonl.
"""

import struct

import eddy_processor as eddy


def decode(aggregate):
    """A window's aggregate, as kept in the state: how many readings and
    their sum, two big-endian doubles."""
    return struct.unpack(">dd", aggregate) if aggregate else (0.0, 0.0)


class SensorAverages(eddy.Processor):
    def __init__(self, params):
        # A bad parameter raises here, and the pipeline does not start.
        window_ms = params.int("window_ms", default=60000)
        self.windows = eddy.Windows.tumbling(window_ms)

    def process(self, record, out):
        # An exception fails this record alone (the pipeline's onError
        # policy decides what happens to it), with its message as the reason.
        celsius = record.json().get("celsius")
        if type(celsius) not in (int, float):
            raise ValueError("field `celsius` is missing or not a number")
        if record.key is None:
            raise ValueError("a reading needs its sensor as its key")

        def fold(aggregate):
            n, total = decode(aggregate)
            return struct.pack(">dd", n + 1, total + celsius)

        if not self.windows.add(record.key, record.timestamp, fold):
            raise ValueError("late: its window closed")

    def on_timer(self, timer, out):
        # Called right after the record that makes a timer due, so a window
        # closes at the same place in the input on every run.
        window = self.windows.close(timer)
        if window is None:
            return
        n, total = decode(window.aggregate)
        value = {
            "sensor": window.key.decode(),
            "start": window.start,
            "end": window.end,
            "readings": int(n),
            "average": total / n,
        }
        out.push(value, key=window.key, timestamp=window.end - 1)


WitWorld = eddy.export(SensorAverages)
