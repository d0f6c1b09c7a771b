// Test processor: plugins/running-count in JavaScript. For each record
// with key K it outputs key K with the count of records with key K seen so
// far, kept in the host's keyed state.

import { Processor, exportProcessor, state } from "./eddy-processor.js";

class Count extends Processor {
  process(record, out) {
    const key = record.key ?? new Uint8Array();
    const n = Number(state.getText(key) ?? "0") + 1;
    state.put(key, String(n));
    out.push({ key, value: String(n) });
  }
}

export const { init, process } = exportProcessor(Count);
