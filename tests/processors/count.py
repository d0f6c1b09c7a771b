# Test processor: plugins/running-count in Python. For each record with
# key K it outputs key K with the count of records with key K seen so far,
# kept in the host's keyed state.

import eddy_processor as eddy


class Count(eddy.Processor):
    def process(self, record, out):
        key = record.key or b""
        n = int(eddy.state.get(key) or b"0") + 1
        eddy.state.put(key, str(n))
        out.push(str(n), key=key)


WitWorld = eddy.export(Count)
