"""{{name}}: an Eddy stream processor.

Keeps the readings hotter than the `threshold` parameter (default 30, in
degrees Celsius) and adds their temperature in Fahrenheit. Edit `process`
to make it yours; `eddy processor test .` runs it on sample.jsonl.
"""

import eddy_processor as eddy


class HotReadings(eddy.Processor):
    def __init__(self, params):
        # A bad parameter raises here, and the pipeline does not start.
        self.threshold = params.float("threshold", default=30.0)

    def process(self, record, out):
        # An exception fails this record alone (the pipeline's onError
        # policy decides what happens to it), with its message as the reason.
        reading = record.json()
        celsius = reading.get("celsius")
        if type(celsius) not in (int, float):
            raise ValueError("field `celsius` is missing or not a number")
        if celsius > self.threshold:
            reading["fahrenheit"] = celsius * 9 / 5 + 32
            out.push(reading, key=record.key)


WitWorld = eddy.export(HotReadings)
