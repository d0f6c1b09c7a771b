// {{name}}: an Eddy stream processor.
//
// Keeps the readings hotter than the `threshold` parameter (default 30, in
// degrees Celsius) and adds their temperature in Fahrenheit. Edit `process`
// to make it yours; `eddy processor test .` runs it on sample.jsonl.

import { Processor, exportProcessor } from "./eddy-processor.js";

class HotReadings extends Processor {
  constructor(params) {
    super(params);
    // A bad parameter throws here, and the pipeline does not start.
    this.threshold = params.number("threshold", 30);
  }

  process(record, out) {
    // A throw fails this record alone (the pipeline's onError policy
    // decides what happens to it), with its message as the reason.
    const reading = record.json();
    if (typeof reading.celsius !== "number") {
      throw new Error("field `celsius` is missing or not a number");
    }
    if (reading.celsius > this.threshold) {
      reading.fahrenheit = (reading.celsius * 9) / 5 + 32;
      out.push({ key: record.key, value: reading });
    }
  }
}

export const { init, process } = exportProcessor(HotReadings);
