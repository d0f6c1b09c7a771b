# Test processor: plugins/window-count in Python. Counts records per key
# in event-time windows (`window_ms`, `advance_ms`) kept in the state, and
# emits {"key","start","end","count"} when a window closes.

import eddy_processor as eddy


class WindowCount(eddy.Processor):
    def __init__(self, params):
        size = params.int("window_ms", default=300000)
        self.windows = eddy.Windows(size, params.int("advance_ms", default=size))

    def process(self, record, out):
        key = record.key or b""
        fold = lambda n: (int.from_bytes(n, "big") + 1 if n else 1).to_bytes(8, "big")
        if not self.windows.add(key, record.timestamp, fold):
            raise ValueError("late: its window closed")

    def on_timer(self, timer, out):
        w = self.windows.close(timer)
        if w is not None:
            count = int.from_bytes(w.aggregate, "big")
            value = {"key": w.key.decode(), "start": w.start, "end": w.end, "count": count}
            out.push(value, key=w.key, timestamp=w.end - 1)


WitWorld = eddy.export(WindowCount)
