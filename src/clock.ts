/**
 * Time as the engine sees it. Logic takes `now` as a value; code that waits
 * takes a `Clock`, so tests can run retries and schedules without sleeping.
 */

export interface Clock {
  now(): Date;
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

export const systemClock: Clock = {
  now: () => new Date(),
  sleep: (ms, signal) =>
    new Promise((resolve, reject) => {
      if (signal?.aborted) return reject(signal.reason);
      const timer = setTimeout(() => {
        signal?.removeEventListener("abort", onAbort);
        resolve();
      }, ms);
      const onAbort = () => {
        clearTimeout(timer);
        reject(signal!.reason);
      };
      signal?.addEventListener("abort", onAbort, { once: true });
    }),
};

/** A clock whose time only moves when told to; sleeping advances it. */
export class ManualClock implements Clock {
  #now: number;
  constructor(start: Date | string) {
    this.#now = new Date(start).getTime();
  }
  now(): Date {
    return new Date(this.#now);
  }
  advance(ms: number): void {
    this.#now += ms;
  }
  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    if (signal?.aborted) return Promise.reject(signal.reason);
    this.#now += ms;
    return Promise.resolve();
  }
}

/** `YYYY-MM-DD HH:MM:SS` in UTC: the form `shipped_at` and the ledger use. */
export function sqlTime(date: Date): string {
  return date.toISOString().slice(0, 19).replace("T", " ");
}

/** Parses `YYYY-MM-DD HH:MM:SS` (UTC) or any ISO-8601 string. */
export function parseSqlTime(text: string): Date {
  const iso = /^\d{4}-\d{2}-\d{2} \d{2}:\d{2}(:\d{2})?$/.test(text)
    ? text.replace(" ", "T") + "Z"
    : text;
  return new Date(iso);
}

export const DAY_MS = 24 * 60 * 60 * 1000;
