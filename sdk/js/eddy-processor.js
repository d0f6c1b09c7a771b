// Eddy stream processors in JavaScript and TypeScript.
//
// A processor is a class: its constructor takes the pipeline's parameters,
// and `process` is called once per input record with an `Output` to push
// the records to produce into:
//
//     import { Processor, exportProcessor } from "./eddy-processor.js";
//
//     class Shout extends Processor {
//       constructor(params) {
//         super(params);
//         this.suffix = params.string("suffix", "!");
//       }
//       process(record, out) {
//         out.push({ key: record.key, value: record.text().toUpperCase() + this.suffix });
//       }
//     }
//
//     export const { init, process } = exportProcessor(Shout);
//
// `eddy processor build` turns the module into a WebAssembly component with
// componentize-js; `eddy processor test` runs it on sample records.
//
// An exception thrown by `process` fails that record alone: the host
// applies the pipeline's on-error policy to it (dead-letter, skip or stop)
// with the exception's message as the reason. An exception thrown by the
// constructor refuses the parameters, and the pipeline does not start.
//
// Exactly-once pipelines need outputs that depend only on the records
// given, in order: not on how they were cut into batches, and not on
// anything kept in the instance (a replay after a crash starts a fresh
// instance). What a processor remembers between records goes in `state`,
// the keyed store the host keeps per input partition and restores after a
// crash, for pipelines with `spec.state` in their manifest:
//
//     process(record, out) {
//       const n = Number(state.getText(record.key) ?? "0") + 1;
//       state.put(record.key, String(n));
//       out.push({ key: record.key, value: String(n) });
//     }
//
// The host makes `Date.now()` and `Math.random()` deterministic and offers
// no files or network.
//
// This module hides the batch layout of `wit/processor.wit`: records arrive
// as one buffer of bytes and a few lists of integers, and leave the same
// way. It is the only code that knows that layout. Types: eddy-processor.d.ts.

import { log as hostLog, counterAdd } from "eddy:processor/host@0.2.1";
import * as hostState from "eddy:processor/state@0.2.1";
import * as hostTimers from "eddy:processor/timers@0.2.1";

// `presence` bits of the WIT world.
const HAS_KEY = 1;
const HAS_VALUE = 2;
const HAS_TIMESTAMP = 4;
const HAS_TOPIC = 8;
const FORWARDED = 16;

// Entries per record in an input batch's `layout`, and in an output's.
const INPUT_LAYOUT = 8;
const OUTPUT_LAYOUT = 7;

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

function missing(name) {
  return `missing parameter \`${name}\`: pass it with --param ${name}=VALUE`;
}

/** The pipeline's parameters, all given as text. */
export class Params {
  constructor(entries) {
    this.values = new Map(entries);
  }

  has(name) {
    return this.values.has(name);
  }

  /** The parameter's text, or `fallback` when it is not given. */
  get(name, fallback) {
    return this.values.has(name) ? this.values.get(name) : fallback;
  }

  /** The parameter's text; without a fallback, a missing one is an error. */
  string(name, fallback) {
    if (this.values.has(name)) return this.values.get(name);
    if (fallback !== undefined) return fallback;
    throw new Error(missing(name));
  }

  /** The parameter as a number. */
  number(name, fallback) {
    return this.typed(name, fallback, "a number", (text) => {
      const n = Number(text);
      return text.trim() !== "" && Number.isFinite(n) ? n : undefined;
    });
  }

  /** The parameter as an integer. */
  integer(name, fallback) {
    return this.typed(name, fallback, "an integer", (text) => {
      const n = Number(text);
      return text.trim() !== "" && Number.isSafeInteger(n) ? n : undefined;
    });
  }

  /** The parameter as `true` or `false`. */
  boolean(name, fallback) {
    return this.typed(name, fallback, "true or false", (text) => {
      const t = text.trim().toLowerCase();
      if (t === "true" || t === "yes" || t === "1") return true;
      if (t === "false" || t === "no" || t === "0") return false;
      return undefined;
    });
  }

  typed(name, fallback, what, parse) {
    if (!this.values.has(name)) {
      if (fallback !== undefined) return fallback;
      throw new Error(missing(name));
    }
    const text = this.values.get(name);
    const value = parse(text);
    if (value === undefined) {
      throw new Error(`parameter \`${name}\` must be ${what}, not ${JSON.stringify(text)}`);
    }
    return value;
  }
}

/**
 * One input record, a view into its batch. `key` and `value` are
 * `Uint8Array`s (`null` when absent; a record without a value is a
 * tombstone); `timestamp` is in milliseconds since the Unix epoch.
 */
export class Record {
  constructor(batch, index) {
    this.batch = batch;
    /** The record's position in its batch (0 for the first). */
    this.index = index;
    this.row = index * INPUT_LAYOUT;
  }

  get key() {
    const b = this.batch;
    if (!(b.presence[this.index] & HAS_KEY)) return null;
    const start = b.layout[this.row];
    return b.data.subarray(start, start + b.layout[this.row + 1]);
  }

  get value() {
    const b = this.batch;
    if (!(b.presence[this.index] & HAS_VALUE)) return null;
    const start = b.layout[this.row + 2];
    return b.data.subarray(start, start + b.layout[this.row + 3]);
  }

  /** The headers in order, as `[name, value]` pairs. */
  get headers() {
    const b = this.batch;
    const first = b.layout[this.row + 4];
    const count = b.layout[this.row + 5];
    const pairs = [];
    for (let i = first; i < first + count; i++) {
      const h = b.headers[i];
      const name = decoder.decode(b.data.subarray(h.name.start, h.name.start + h.name.len));
      pairs.push([name, b.data.subarray(h.value.start, h.value.start + h.value.len)]);
    }
    return pairs;
  }

  /** The value of the first header called `name`, or `null`. */
  header(name) {
    for (const [n, v] of this.headers) if (n === name) return v;
    return null;
  }

  get timestamp() {
    return Number(this.batch.timestamps[this.index]);
  }

  /** The offset (exact up to 2^53). */
  get offset() {
    return Number(this.batch.offsets[this.index]);
  }

  get topic() {
    return this.batch.topics[this.batch.layout[this.row + 6]];
  }

  get partition() {
    return this.batch.layout[this.row + 7];
  }

  /** The key decoded as UTF-8, or `null` without a key. */
  keyText() {
    const key = this.key;
    return key === null ? null : decoder.decode(key);
  }

  /** The value decoded as UTF-8, or `null` for a tombstone. */
  text() {
    const value = this.value;
    return value === null ? null : decoder.decode(value);
  }

  /** The value parsed as JSON; a tombstone or text that is not JSON throws. */
  json() {
    const value = this.value;
    if (value === null) throw new Error("the record has no value (a tombstone), not JSON");
    let text;
    try {
      text = decoder.decode(value);
    } catch (e) {
      throw new Error("the value is not UTF-8, so not JSON");
    }
    try {
      return JSON.parse(text);
    } catch (e) {
      throw new Error(`the value is not JSON: ${e.message}`);
    }
  }
}

/** A growable typed array. */
class Column {
  constructor(Type, capacity) {
    this.Type = Type;
    this.array = new Type(capacity);
    this.length = 0;
  }

  reserve(extra) {
    const needed = this.length + extra;
    if (needed <= this.array.length) return;
    let capacity = this.array.length * 2;
    while (capacity < needed) capacity *= 2;
    const grown = new this.Type(capacity);
    grown.set(this.array.subarray(0, this.length));
    this.array = grown;
  }

  push(value) {
    if (this.length === this.array.length) this.reserve(1);
    this.array[this.length++] = value;
  }

  /** Appends `bytes` and returns where they start. */
  append(bytes) {
    const start = this.length;
    this.reserve(bytes.length);
    this.array.set(bytes, start);
    this.length += bytes.length;
    return start;
  }

  view() {
    return this.array.subarray(0, this.length);
  }
}

function asBytes(value, what) {
  if (value === null || value === undefined) return null;
  // Batches arrive as typed arrays of another realm: `instanceof` fails.
  if (ArrayBuffer.isView(value)) {
    return new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
  }
  if (typeof value === "string") return encoder.encode(value);
  if (what === "value") return encoder.encode(JSON.stringify(value));
  throw new TypeError(`a record's ${what} must be a Uint8Array, a string or null`);
}

/** The records one call produces, in order. */
export class Output {
  constructor(capacity) {
    this.data = new Column(Uint8Array, 4096);
    this.presence = new Column(Uint8Array, capacity);
    this.layout = new Column(Uint32Array, capacity * OUTPUT_LAYOUT);
    this.timestamps = new Column(BigInt64Array, capacity);
    this.headers = [];
    this.topics = [];
  }

  get length() {
    return this.presence.length;
  }

  /**
   * Produces a new record. `value` and `key` are `Uint8Array`s, strings
   * (written as UTF-8) or `null`; any other `value` (an object, an array,
   * a number) is written as JSON. `headers` is an object or a list of
   * `[name, value]` pairs. Without a `timestamp` the record takes the
   * batch's last input timestamp; without a `topic` it goes to the
   * pipeline's first output topic.
   */
  push({ key = null, value = null, headers = null, timestamp = null, topic = null } = {}) {
    let presence = 0;
    const keyBytes = asBytes(key, "key");
    let keyStart = 0;
    let keyLen = 0;
    if (keyBytes !== null) {
      presence |= HAS_KEY;
      keyStart = this.data.append(keyBytes);
      keyLen = keyBytes.length;
    }
    const valueBytes = asBytes(value, "value");
    let valueStart = 0;
    let valueLen = 0;
    if (valueBytes !== null) {
      presence |= HAS_VALUE;
      valueStart = this.data.append(valueBytes);
      valueLen = valueBytes.length;
    }
    const firstHeader = this.headers.length;
    if (headers !== null) {
      const pairs = Array.isArray(headers) ? headers : Object.entries(headers);
      for (const [name, headerValue] of pairs) {
        const nameBytes = encoder.encode(name);
        const valueBytesOfHeader = asBytes(headerValue, "header value") ?? new Uint8Array(0);
        const nameStart = this.data.append(nameBytes);
        const start = this.data.append(valueBytesOfHeader);
        this.headers.push({
          name: { start: nameStart, len: nameBytes.length },
          value: { start, len: valueBytesOfHeader.length },
        });
      }
    }
    if (timestamp !== null) presence |= HAS_TIMESTAMP;
    let topicIndex = 0;
    if (topic !== null) {
      presence |= HAS_TOPIC;
      topicIndex = this.topic(topic);
    }
    this.presence.push(presence);
    this.row(keyStart, keyLen, valueStart, valueLen, firstHeader, this.headers.length - firstHeader, topicIndex);
    this.timestamps.push(timestamp === null ? 0n : BigInt(timestamp));
  }

  /**
   * Produces an input record of this call unchanged (key, value, headers
   * and, without `timestamp`, its timestamp) without copying its bytes:
   * the host already holds them.
   */
  forward(record, { topic = null, timestamp = null } = {}) {
    let presence = FORWARDED;
    let topicIndex = 0;
    if (topic !== null) {
      presence |= HAS_TOPIC;
      topicIndex = this.topic(topic);
    }
    if (timestamp !== null) presence |= HAS_TIMESTAMP;
    this.presence.push(presence);
    this.row(record.index, 0, 0, 0, 0, 0, topicIndex);
    this.timestamps.push(timestamp === null ? 0n : BigInt(timestamp));
  }

  row(a, b, c, d, e, f, g) {
    const layout = this.layout;
    layout.reserve(OUTPUT_LAYOUT);
    const array = layout.array;
    let i = layout.length;
    array[i++] = a;
    array[i++] = b;
    array[i++] = c;
    array[i++] = d;
    array[i++] = e;
    array[i++] = f;
    array[i++] = g;
    layout.length = i;
  }

  topic(name) {
    for (let i = this.topics.length - 1; i >= 0; i--) if (this.topics[i] === name) return i;
    this.topics.push(name);
    return this.topics.length - 1;
  }

  batch() {
    return {
      data: this.data.view(),
      presence: this.presence.view(),
      layout: this.layout.view(),
      timestamps: this.timestamps.view(),
      headers: this.headers,
      topics: this.topics,
    };
  }
}

/**
 * Base class of processors. Override `process` (one record at a time) or
 * `processBatch` (the whole batch).
 */
export class Processor {
  constructor(params) {
    this.params = params;
  }

  process(record, out) {
    throw new Error("a processor must override process(record, out)");
  }

  /**
   * Handles a timer registered with `timers.register` that came due
   * (`{ key, at }`): called right after the record that moved the
   * watermark to it, before the next record (or in a call without
   * records, when the input went quiet). A throw fails that record.
   */
  onTimer(timer, out) {}

  /**
   * Processes a batch: `records` come from one input partition in offset
   * order. By default calls `process` on each, and after each record
   * `onTimer` on the timers it made due (when the class defines
   * `onTimer`); a throw fails the record being processed (throw a
   * `RecordFailed` to name another).
   */
  processBatch(records, out) {
    const fire = this.onTimer !== Processor.prototype.onTimer;
    for (const record of records) {
      try {
        this.process(record, out);
        if (fire) for (const timer of timers.dueAfter(record.index)) this.onTimer(timer, out);
      } catch (e) {
        if (e instanceof RecordFailed) throw e;
        throw new RecordFailed(record.index, describe(e));
      }
    }
    if (fire && records.length === 0) {
      // A call without records: the input went quiet and event time moved
      // on (spec.eventTime.idleTimeoutMs), or a restore found timers due.
      try {
        for (const timer of timers.dueAfter(0)) this.onTimer(timer, out);
      } catch (e) {
        if (e instanceof RecordFailed) throw e;
        throw new RecordFailed(0, describe(e));
      }
    }
  }
}

/** Fails the record at `index` of the batch with `message`. */
export class RecordFailed extends Error {
  constructor(index, message) {
    super(message);
    this.name = "RecordFailed";
    this.index = index;
  }
}

/** A thrown value as the one-line reason dead-letter headers carry. */
export function describe(error) {
  if (error instanceof Error) {
    return error.name && error.name !== "Error" ? `${error.name}: ${error.message}` : error.message;
  }
  return String(error);
}

const LEVELS = ["trace", "debug", "info", "warn", "error"];

/** Writes `message` to the host's log (`console.log` also reaches it). */
export function log(level, message) {
  if (!LEVELS.includes(level)) throw new Error(`unknown log level ${JSON.stringify(level)}`);
  hostLog(level, String(message));
}

/** Adds `delta` to the counter `name`, shown by `eddy pipeline describe`. */
export function counter(name, delta = 1) {
  counterAdd(name, BigInt(delta));
}

/**
 * A state call the host refused: a key over 4 KiB, a value over 1 MiB, the
 * task's state over `spec.limits.stateDiskMiB`, a scan of more than 1,024
 * entries, or a pipeline without `spec.state`. Thrown out of `process`, it
 * fails the record with the host's message.
 */
export class StateError extends Error {}

function stateBytes(value, what) {
  if (typeof value === "string") return encoder.encode(value);
  if (ArrayBuffer.isView(value)) return new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
  if (value instanceof ArrayBuffer) return new Uint8Array(value);
  const kind = value === null ? "null" : value === undefined ? "undefined" : value.constructor?.name ?? typeof value;
  throw new TypeError(`a state ${what} must be bytes (a Uint8Array) or a string, not ${kind}`);
}

function stateCall(f, ...args) {
  try {
    return f(...args);
  } catch (e) {
    // The bindings throw a result's error as an object carrying it.
    const message = e && e.payload !== undefined ? e.payload : e && e.message ? e.message : String(e);
    throw new StateError(String(message));
  }
}

const SCAN_LIMIT = 1024;

/**
 * The keyed state of the input partition the record comes from. Keys and
 * values are bytes (a string is taken as UTF-8); keys sort bytewise.
 * Changes made while processing a record that fails are dropped with its
 * outputs.
 */
export const state = {
  /** The value under `key`, or `undefined`. */
  get(key) {
    return stateCall(hostState.get, stateBytes(key, "key")) ?? undefined;
  },
  /** The value under `key` as UTF-8 text, or `undefined`. */
  getText(key) {
    const value = this.get(key);
    return value === undefined ? undefined : decoder.decode(value);
  },
  /** Stores `value` under `key`. */
  put(key, value) {
    stateCall(hostState.put, stateBytes(key, "key"), stateBytes(value, "value"));
  },
  /** Removes `key`; removing an absent key is no error. */
  delete(key) {
    stateCall(hostState.delete, stateBytes(key, "key"));
  },
  /**
   * Up to `limit` `[key, value]` pairs whose keys start with `prefix`, in
   * key order, after the key `startAfter` when given.
   */
  scan(prefix = "", startAfter = undefined, limit = SCAN_LIMIT) {
    const after = startAfter === undefined ? undefined : stateBytes(startAfter, "key");
    const entries = stateCall(hostState.scan, stateBytes(prefix, "key prefix"), after, limit);
    return entries.map((e) => [e.key, e.value]);
  },
  /** Every `[key, value]` pair whose key starts with `prefix`. */
  scanAll(prefix = "") {
    const found = [];
    for (;;) {
      const page = this.scan(prefix, found.length ? found[found.length - 1][0] : undefined);
      found.push(...page);
      if (page.length < SCAN_LIMIT) return found;
    }
  },
};

/**
 * A WIT `s64` as the bindings give it: componentize-js 0.23 hands negative
 * ones over as their unsigned 64-bit value.
 */
function s64(value) {
  return BigInt.asIntN(64, BigInt(value));
}

/**
 * Event-time timers of the input partition (kept in the state). The
 * watermark is the highest timestamp processed so far minus the manifest's
 * `spec.eventTime.allowedLatenessMs`; a timer at `at` is due once the
 * watermark reaches it, and goes to `onTimer` right after the record that
 * moved the watermark there. Times are numbers of milliseconds.
 */
export const timers = {
  /** The watermark now (a very negative number before any record). */
  watermark() {
    return Number(s64(hostTimers.watermark()));
  },
  /** Registers a timer for `key` at `at`, after the watermark. */
  register(key, at) {
    stateCall(hostTimers.register, stateBytes(key, "key"), BigInt(at));
  },
  /** Cancels the timer for `key` at `at`, if registered. */
  cancel(key, at) {
    stateCall(hostTimers.cancel, stateBytes(key, "key"), BigInt(at));
  },
  /** Moves the watermark past record `index` and returns the timers now due (each removed). */
  dueAfter(index) {
    const due = [];
    for (;;) {
      const page = stateCall(hostTimers.advance, index);
      if (page.length === 0) return due;
      for (const t of page) due.push({ key: t.key, at: Number(s64(t.at)) });
    }
  },
};

// Where windows keep their aggregates: keys starting with the byte 0xff.
const WINDOW_PREFIX = concat(Uint8Array.of(0xff), encoder.encode("eddy.window/"));
const SESSION_PREFIX = concat(Uint8Array.of(0xff), encoder.encode("eddy.session/"));

function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

function startsWith(bytes, prefix) {
  if (bytes.length < prefix.length) return false;
  for (let i = 0; i < prefix.length; i++) if (bytes[i] !== prefix[i]) return false;
  return true;
}

/** 8 bytes, big-endian; `flip` flips the sign bit so that times sort. */
function timeBytes(t, flip) {
  const b = new Uint8Array(8);
  const view = new DataView(b.buffer);
  view.setBigInt64(0, BigInt(t));
  if (flip) b[0] ^= 0x80;
  return b;
}

function timeOf(b, flip) {
  const copy = Uint8Array.from(b.subarray(0, 8));
  if (flip) copy[0] ^= 0x80;
  return Number(new DataView(copy.buffer).getBigInt64(0));
}

/**
 * Tumbling or hopping windows by event time, kept in the state: an
 * aggregate per key and window, folded from its records, handed back by
 * `close` once the watermark passes the window's end. The same layout as
 * the Rust SDK's `windows::Windows`.
 */
export class Windows {
  constructor(sizeMs, advanceMs = sizeMs) {
    if (!(sizeMs > 0 && advanceMs > 0 && advanceMs <= sizeMs)) {
      throw new RangeError(`windows of ${sizeMs} ms every ${advanceMs} ms: both must be positive, the advance at most the size`);
    }
    this.sizeMs = sizeMs;
    this.advanceMs = advanceMs;
  }

  static tumbling(sizeMs) {
    return new Windows(sizeMs);
  }

  static hopping(sizeMs, advanceMs) {
    return new Windows(sizeMs, advanceMs);
  }

  /** The `[start, end]` of every window containing `ts`. */
  of(ts) {
    const starts = [];
    for (let start = Math.floor(ts / this.advanceMs) * this.advanceMs; start > ts - this.sizeMs; start -= this.advanceMs) {
      starts.push(start);
    }
    return starts.reverse().map((s) => [s, s + this.sizeMs]);
  }

  /**
   * Folds a record at `ts` into `key`'s aggregate in each of its open
   * windows: `fold(aggregate or undefined)` returns the new one (bytes or
   * a string). Returns false when the record is late.
   */
  add(key, ts, fold) {
    key = stateBytes(key, "key");
    const watermark = timers.watermark();
    let added = false;
    for (const [start, end] of this.of(ts)) {
      if (end <= watermark) continue;
      const name = concat(WINDOW_PREFIX, timeBytes(start, true), key);
      const old = state.get(name);
      if (old === undefined) timers.register(name, end);
      state.put(name, fold(old));
      added = true;
    }
    return added;
  }

  /** The window `timer` closes, `{ key, start, end, aggregate }` (removed from the state), or null. */
  close(timer) {
    if (!startsWith(timer.key, WINDOW_PREFIX)) return null;
    const rest = timer.key.subarray(WINDOW_PREFIX.length);
    const aggregate = state.get(timer.key);
    if (rest.length < 8 || aggregate === undefined) return null;
    state.delete(timer.key);
    return { key: rest.subarray(8), start: timeOf(rest, true), end: timer.at, aggregate };
  }
}

/**
 * Session windows kept in the state: a key's records less than `gapMs`
 * apart make one session, closed once the watermark is `gapMs` past its
 * last record. One open session per key; a record more than the gap after
 * it closes it at once (`add` returns it), one more than the gap before
 * it is late. Same layout as the Rust SDK's.
 */
export class Sessions {
  constructor(gapMs) {
    if (!(gapMs > 0)) throw new RangeError(`a session gap of ${gapMs} ms must be positive`);
    this.gapMs = gapMs;
  }

  /** Folds a record at `ts` into `key`'s open session; returns `{ added, closed }`. */
  add(key, ts, fold) {
    key = stateBytes(key, "key");
    const gap = this.gapMs;
    if (ts + gap <= timers.watermark()) return { added: false, closed: null };
    const name = concat(SESSION_PREFIX, key);
    const stored = state.get(name);
    let closed = null;
    let session = null;
    if (stored !== undefined) {
      session = { start: timeOf(stored, false), end: timeOf(stored.subarray(8), false), aggregate: stored.subarray(16) };
      if (ts < session.start - gap) return { added: false, closed: null };
      if (ts > session.end + gap) {
        timers.cancel(name, session.end + gap);
        closed = { key, start: session.start, end: session.end + 1, aggregate: session.aggregate };
        session = null;
      }
    }
    let next;
    if (session === null) {
      next = { start: ts, end: ts, aggregate: fold(undefined) };
    } else {
      let end = session.end;
      if (ts > end) {
        timers.cancel(name, end + gap);
        end = ts;
      }
      next = { start: Math.min(session.start, ts), end, aggregate: fold(session.aggregate) };
    }
    timers.register(name, next.end + gap);
    state.put(name, concat(timeBytes(next.start, false), timeBytes(next.end, false), stateBytes(next.aggregate, "value")));
    return { added: true, closed };
  }

  /** The session `timer` closes (removed from the state), or null. */
  close(timer) {
    if (!startsWith(timer.key, SESSION_PREFIX)) return null;
    const stored = state.get(timer.key);
    if (stored === undefined) return null;
    const start = timeOf(stored, false);
    const end = timeOf(stored.subarray(8), false);
    if (end + this.gapMs !== timer.at) return null;
    state.delete(timer.key);
    return { key: timer.key.subarray(SESSION_PREFIX.length), start, end: end + 1, aggregate: stored.subarray(16) };
  }
}

/**
 * Makes `ProcessorClass` the component's processor. Export what it returns
 * from the module componentize-js builds:
 * `export const { init, process } = exportProcessor(MyProcessor);`
 */
export function exportProcessor(ProcessorClass) {
  let processor = null;
  return {
    init(params) {
      try {
        processor = new ProcessorClass(new Params(params.map((p) => [p.name, p.value])));
        return { tag: "ok", val: undefined };
      } catch (e) {
        return { tag: "err", val: describe(e) };
      }
    },
    process(raw) {
      if (processor === null) {
        return { tag: "err", val: { index: 0, message: "process was called before init" } };
      }
      const count = raw.presence.length;
      const records = new Array(count);
      for (let i = 0; i < count; i++) records[i] = new Record(raw, i);
      const out = new Output(Math.max(count, 16));
      try {
        processor.processBatch(records, out);
      } catch (e) {
        if (e instanceof RecordFailed) {
          return { tag: "err", val: { index: e.index, message: e.message } };
        }
        // A failure outside any one record: blame the first.
        return { tag: "err", val: { index: 0, message: describe(e) } };
      }
      return { tag: "ok", val: out.batch() };
    },
  };
}
