"""Test processor: the `shape` transform of the fault workload in Python.

Keeps the fields named by the `fields` parameter (comma-separated), in
that order, and writes them as compact JSON keyed like the input: what
plugins/transform does with `fields: n,key`.
"""

import eddy_processor as eddy


class Shape(eddy.Processor):
    def __init__(self, params):
        self.fields = [f for f in params.str("fields").split(",") if f]

    def process(self, record, out):
        value = record.json()
        shaped = {name: value[name] for name in self.fields if name in value}
        out.push(shaped, key=record.key)


WitWorld = eddy.export(Shape)
