// Types of eddy-processor.js, the Eddy processor SDK for JavaScript and
// TypeScript. See that file for what a processor looks like.

/** The pipeline's parameters, all given as text. */
export declare class Params {
  constructor(entries: Iterable<[string, string]>);
  has(name: string): boolean;
  /** The parameter's text, or `fallback` when it is not given. */
  get(name: string): string | undefined;
  get(name: string, fallback: string): string;
  /** The parameter's text; without a fallback, a missing one throws. */
  string(name: string, fallback?: string): string;
  /** The parameter as a number; throws naming it when it is not one. */
  number(name: string, fallback?: number): number;
  /** The parameter as an integer. */
  integer(name: string, fallback?: number): number;
  /** The parameter as `true` or `false` (also yes/no, 1/0). */
  boolean(name: string, fallback?: boolean): boolean;
}

/** One input record, a view into its batch. */
export declare class Record {
  /** The record's position in its batch (0 for the first). */
  readonly index: number;
  /** The key's bytes, or `null` without a key. */
  readonly key: Uint8Array | null;
  /** The value's bytes, or `null` for a tombstone. */
  readonly value: Uint8Array | null;
  /** The headers in order, as `[name, value]` pairs. */
  readonly headers: Array<[string, Uint8Array]>;
  /** Milliseconds since the Unix epoch. */
  readonly timestamp: number;
  /** The record's offset in its partition (exact up to 2^53). */
  readonly offset: number;
  /** The topic it was read from. */
  readonly topic: string;
  readonly partition: number;
  /** The value of the first header called `name`, or `null`. */
  header(name: string): Uint8Array | null;
  /** The key decoded as UTF-8, or `null` without a key. */
  keyText(): string | null;
  /** The value decoded as UTF-8, or `null` for a tombstone. */
  text(): string | null;
  /** The value parsed as JSON; throws for a tombstone or text that is not JSON. */
  json(): any;
}

/** Bytes, or text written as UTF-8. */
export type Bytes = Uint8Array | string;

/** A record to produce. */
export interface NewRecord {
  key?: Bytes | null;
  /** Bytes, text, or any other value, written as JSON. `null`: a tombstone. */
  value?: Bytes | object | number | boolean | null;
  /** An object of name → value, or `[name, value]` pairs in order. */
  headers?: { [name: string]: Bytes } | Array<[string, Bytes]> | null;
  /** Milliseconds since the Unix epoch; without one, the batch's last input timestamp. */
  timestamp?: number | null;
  /** One of the pipeline's output topics; without one, the first. */
  topic?: string | null;
}

/** The records one call produces, in order. */
export declare class Output {
  readonly length: number;
  /** Produces a new record. */
  push(record: NewRecord): void;
  /**
   * Produces an input record of this call unchanged, without copying its
   * bytes (the host already holds them).
   */
  forward(record: Record, options?: { topic?: string | null; timestamp?: number | null }): void;
}

/** Base class of processors. */
export declare class Processor {
  constructor(params: Params);
  readonly params: Params;
  /** Processes one record, pushing outputs into `out`; a throw fails the record. */
  process(record: Record, out: Output): void;
  /** Handles a timer that came due, right after the record that made it due. */
  onTimer(timer: Timer, out: Output): void;
  /** Processes a batch; by default calls `process` on each record, then `onTimer` on the timers it made due. */
  processBatch(records: Record[], out: Output): void;
}

/** Thrown to fail the record at `index` of the batch with `message`. */
export declare class RecordFailed extends Error {
  constructor(index: number, message: string);
  readonly index: number;
}

/** A thrown value as the one-line reason dead-letter headers carry. */
export declare function describe(error: unknown): string;

/** Writes `message` to the host's log (`console.log` also reaches it). */
export declare function log(level: "trace" | "debug" | "info" | "warn" | "error", message: string): void;

/** Adds `delta` (default 1) to the counter `name`, shown by `eddy pipeline describe`. */
export declare function counter(name: string, delta?: number): void;

/**
 * A state call the host refused: a key over 4 KiB, a value over 1 MiB, the
 * task's state over `spec.limits.stateDiskMiB`, a scan of more than 1,024
 * entries, or a pipeline without `spec.state`.
 */
export declare class StateError extends Error {}

/** Bytes, or a string taken as UTF-8. */
export type StateBytes = Uint8Array | string;

/**
 * The keyed state of the input partition the record comes from, kept by
 * the host for pipelines with `spec.state` and restored after a crash.
 * Changes made while processing a record that fails are dropped with its
 * outputs.
 */
export declare const state: {
  /** The value under `key`, or `undefined`. */
  get(key: StateBytes): Uint8Array | undefined;
  /** The value under `key` as UTF-8 text, or `undefined`. */
  getText(key: StateBytes): string | undefined;
  /** Stores `value` under `key`. */
  put(key: StateBytes, value: StateBytes): void;
  /** Removes `key`; removing an absent key is no error. */
  delete(key: StateBytes): void;
  /** Up to `limit` (at most 1,024) `[key, value]` pairs whose keys start with `prefix`, in key order. */
  scan(prefix?: StateBytes, startAfter?: StateBytes, limit?: number): Array<[Uint8Array, Uint8Array]>;
  /** Every `[key, value]` pair whose key starts with `prefix`. */
  scanAll(prefix?: StateBytes): Array<[Uint8Array, Uint8Array]>;
};

/** What the component exports: `export const { init, process } = exportProcessor(MyProcessor);` */
export interface Exports {
  init(params: Array<{ name: string; value: string }>): unknown;
  process(batch: unknown): unknown;
}

/** Makes `processor` the component's processor. */
export declare function exportProcessor(processor: new (params: Params) => Processor): Exports;

/** A timer that came due. */
export interface Timer {
  readonly key: Uint8Array;
  /** Milliseconds since the Unix epoch. */
  readonly at: number;
}

/**
 * Event-time timers of the input partition (kept in the state). The
 * watermark is the highest timestamp processed so far minus
 * `spec.eventTime.allowedLatenessMs`; a timer is due once the watermark
 * reaches it, and goes to `Processor.onTimer` right after the record that
 * moved the watermark there.
 */
export declare const timers: {
  /** The watermark now (a very negative number before any record). */
  watermark(): number;
  /** Registers a timer for `key` at `at`, after the watermark. */
  register(key: StateBytes, at: number): void;
  /** Cancels the timer for `key` at `at`, if registered. */
  cancel(key: StateBytes, at: number): void;
  /** Moves the watermark past record `index` and returns the timers now due (each removed). */
  dueAfter(index: number): Timer[];
};

/** A window that closed, with the aggregate folded from its records. */
export interface Closed {
  readonly key: Uint8Array;
  readonly start: number;
  /** Exclusive. */
  readonly end: number;
  readonly aggregate: Uint8Array;
}

/** Tumbling or hopping windows by event time, kept in the state. */
export declare class Windows {
  constructor(sizeMs: number, advanceMs?: number);
  static tumbling(sizeMs: number): Windows;
  static hopping(sizeMs: number, advanceMs: number): Windows;
  /** The `[start, end]` of every window containing `ts`. */
  of(ts: number): Array<[number, number]>;
  /** Folds a record at `ts` into `key`'s aggregate in each open window; false when the record is late. */
  add(key: StateBytes, ts: number, fold: (aggregate: Uint8Array | undefined) => StateBytes): boolean;
  /** The window `timer` closes (removed from the state), or null. */
  close(timer: Timer): Closed | null;
}

/** Session windows: a key's records less than `gapMs` apart make one session. */
export declare class Sessions {
  constructor(gapMs: number);
  /** Folds a record into `key`'s open session; `closed` is a session the record could not join. */
  add(
    key: StateBytes,
    ts: number,
    fold: (aggregate: Uint8Array | undefined) => StateBytes,
  ): { added: boolean; closed: Closed | null };
  /** The session `timer` closes (removed from the state), or null. */
  close(timer: Timer): Closed | null;
}
