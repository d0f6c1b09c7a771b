// Test processor: the `shape` transform of the fault workload in
// JavaScript. Keeps the fields named by the `fields` parameter
// (comma-separated), in that order, and writes them as compact JSON keyed
// like the input: what plugins/transform does with `fields: n,key`.

import { Processor, exportProcessor } from "./eddy-processor.js";

class Shape extends Processor {
  constructor(params) {
    super(params);
    this.fields = params.string("fields").split(",").filter((f) => f !== "");
  }

  process(record, out) {
    const value = record.json();
    const shaped = {};
    for (const name of this.fields) if (name in value) shaped[name] = value[name];
    out.push({ key: record.key, value: shaped });
  }
}

export const { init, process } = exportProcessor(Shape);
