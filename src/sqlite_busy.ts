/**
 * Patience with a busy SQLite file. The shop's application keeps writing
 * while the agent runs; SQLite's own busy timeout waits for each lock, and
 * `withBusyRetry` retries a statement that still found the file locked, with
 * a growing pause, until `patienceMs` has passed. Only then is it reported,
 * as a `DatabaseBusyError` that says what to do; never as corruption.
 */

import { DatabaseBusyError } from "./errors.ts";

export function isBusyError(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  const e = err as Error & { errcode?: number; errstr?: string };
  if (e.errcode !== undefined && (e.errcode & 0xff) === 5) return true;
  if (e.errcode !== undefined && (e.errcode & 0xff) === 6) return true;
  return /database is locked|database table is locked|SQLITE_BUSY/i.test(
    e.message,
  );
}

export interface BusyRetryOptions {
  /** What the database is, for the message: "the shop database". */
  what: string;
  patienceMs: number;
  sleepSync?: (ms: number) => void;
}

const sab = new Int32Array(new SharedArrayBuffer(4));
function defaultSleepSync(ms: number): void {
  Atomics.wait(sab, 0, 0, ms);
}

/** Runs `fn`, retrying while the database is locked, up to the patience. */
export function withBusyRetry<T>(fn: () => T, options: BusyRetryOptions): T {
  const sleep = options.sleepSync ?? defaultSleepSync;
  const start = Date.now();
  let pause = 50;
  for (;;) {
    try {
      return fn();
    } catch (err) {
      if (!isBusyError(err)) throw err;
      if (Date.now() - start >= options.patienceMs) {
        throw new DatabaseBusyError(
          `${options.what} stayed locked by another writer for more than ${
            Math.round(options.patienceMs / 1000)
          } s; nothing was changed by this step`,
          {
            cause: err,
            hint:
              "try again later, or raise database.busyTimeoutMs; the next run picks up where this one stopped",
          },
        );
      }
      sleep(pause);
      pause = Math.min(pause * 2, 1000);
    }
  }
}
