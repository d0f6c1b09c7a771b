// {{name}}: an Eddy stream processor that keeps state.
//
// The average reading of each sensor per minute: every reading goes into
// its sensor's (its key's) one-minute window, kept in the pipeline's keyed
// state, and once event time passes the window's end the processor emits
// the window's count and average. `window_ms` (default 60000) sets the
// window. Edit `process` and `onTimer` to make it yours; `eddy processor
// test .` runs it on sample.jsonl.

import { Processor, Windows, exportProcessor } from "./eddy-processor.js";

const decoder = new TextDecoder();

// A window's aggregate, as kept in the state: how many readings and their
// sum, two big-endian doubles.
function decode(aggregate) {
  if (aggregate === undefined || aggregate.length !== 16) return [0, 0];
  const view = new DataView(aggregate.buffer, aggregate.byteOffset, 16);
  return [view.getFloat64(0), view.getFloat64(8)];
}

function encode(n, sum) {
  const bytes = new Uint8Array(16);
  const view = new DataView(bytes.buffer);
  view.setFloat64(0, n);
  view.setFloat64(8, sum);
  return bytes;
}

class SensorAverages extends Processor {
  constructor(params) {
    super(params);
    // A bad parameter throws here, and the pipeline does not start.
    this.windows = Windows.tumbling(params.integer("window_ms", 60000));
  }

  process(record, out) {
    // A throw fails this record alone (the pipeline's onError policy
    // decides what happens to it), with its message as the reason.
    const celsius = record.json().celsius;
    if (typeof celsius !== "number") {
      throw new Error("field `celsius` is missing or not a number");
    }
    if (record.key == null) throw new Error("a reading needs its sensor as its key");
    const fold = (aggregate) => {
      const [n, sum] = decode(aggregate);
      return encode(n + 1, sum + celsius);
    };
    if (!this.windows.add(record.key, record.timestamp, fold)) {
      throw new Error("late: its window closed");
    }
  }

  onTimer(timer, out) {
    // Called right after the record that makes a timer due, so a window
    // closes at the same place in the input on every run.
    const window = this.windows.close(timer);
    if (window === null) return;
    const [n, sum] = decode(window.aggregate);
    const value = {
      sensor: decoder.decode(window.key),
      start: window.start,
      end: window.end,
      readings: n,
      average: sum / n,
    };
    out.push({ key: window.key, value, timestamp: window.end - 1 });
  }
}

export const { init, process } = exportProcessor(SensorAverages);
