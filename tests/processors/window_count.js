// Test processor: plugins/window-count in JavaScript. Counts records per
// key in event-time windows (`window_ms`, `advance_ms`) kept in the state,
// and emits {"key","start","end","count"} when a window closes.

import { Processor, Windows, exportProcessor } from "./eddy-processor.js";

const decoder = new TextDecoder();

function count(bytes) {
  return bytes === undefined ? 0 : Number(new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0));
}

function bytesOf(n) {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, BigInt(n));
  return b;
}

class WindowCount extends Processor {
  constructor(params) {
    super(params);
    const size = params.integer("window_ms", 300000);
    this.windows = new Windows(size, params.integer("advance_ms", size));
  }

  process(record, out) {
    const key = record.key ?? new Uint8Array();
    if (!this.windows.add(key, record.timestamp, (n) => bytesOf(count(n) + 1))) {
      throw new Error("late: its window closed");
    }
  }

  onTimer(timer, out) {
    const w = this.windows.close(timer);
    if (w === null) return;
    const value = { key: decoder.decode(w.key), start: w.start, end: w.end, count: count(w.aggregate) };
    out.push({ key: w.key, value, timestamp: w.end - 1 });
  }
}

export const { init, process } = exportProcessor(WindowCount);
