/**
 * A few worker threads that copy and hash files (jobs.ts), so that the file
 * work of several images runs on several cores while the JavaScript thread
 * keeps the ledger and the shop database. Workers start on the first job,
 * not before: a run with nothing to do starts none. `close()` stops them.
 *
 * When a worker cannot be started (a build that left the worker module
 * out), the pool says so once and runs the jobs on the calling thread: the
 * same code, slower, nothing skipped.
 */

import {
  fromWire,
  type Job,
  type JobResult,
  runJob,
  type WireError,
} from "./jobs.ts";

export interface IoPoolOptions {
  /** Worker threads; 0 runs every job on the calling thread. */
  workers: number;
  /** Told once when the pool falls back to the calling thread. */
  warn?: (message: string) => void;
  /** The worker module; tests point it at one that cannot load. */
  workerUrl?: string;
}

interface Pending {
  job: Job;
  resolve: (value: unknown) => void;
  reject: (err: Error) => void;
  onProgress?: (bytes: number) => void;
}

interface Slot {
  worker: Worker;
  /** Jobs sent to this worker and not answered yet, by id. */
  inFlight: Map<number, Pending>;
  /** Set once the worker answered a job: its module loaded. */
  answered: boolean;
}

interface Answer {
  id: number;
  progress: number;
  result?: unknown;
  error?: WireError;
}

/**
 * Jobs sent ahead to each worker: the next one is waiting in its queue when
 * it finishes one, so it never idles for a round trip to this thread.
 */
const AHEAD = 2;

export class IoPool {
  readonly size: number;
  #warn?: (message: string) => void;
  #workerUrl: string;
  #slots: Slot[] = [];
  #queue: Pending[] = [];
  #nextId = 1;
  #inline = false;
  #closed = false;

  constructor(options: IoPoolOptions) {
    this.size = Math.max(0, Math.floor(options.workers));
    this.#warn = options.warn;
    this.#workerUrl = options.workerUrl ??
      new URL("./worker.ts", import.meta.url).href;
    this.#inline = this.size === 0;
  }

  /** Runs a job on a worker; progress arrives in pieces of a few MiB. */
  run<J extends Job>(
    job: J,
    onProgress?: (bytes: number) => void,
  ): Promise<JobResult<J>> {
    if (this.#closed) {
      return Promise.reject(new Error("the I/O pool is closed"));
    }
    if (!this.#inline && this.#slots.length === 0) this.#start();
    return new Promise<JobResult<J>>((resolve, reject) => {
      const p: Pending = {
        job,
        resolve: resolve as (value: unknown) => void,
        reject,
        onProgress,
      };
      if (this.#inline) return runInline(p);
      this.#queue.push(p);
      this.#dispatch();
    });
  }

  /** Stops the workers; jobs still running are failed. */
  close(): Promise<void> {
    this.#closed = true;
    for (const slot of this.#slots) {
      slot.worker.terminate();
      for (const p of slot.inFlight.values()) {
        p.reject(new Error("the I/O pool was closed"));
      }
    }
    for (const p of this.#queue) p.reject(new Error("the I/O pool was closed"));
    this.#slots = [];
    this.#queue = [];
    return Promise.resolve();
  }

  #start(): void {
    try {
      while (this.#slots.length < this.size) this.#spawn();
    } catch (err) {
      this.#goInline(err instanceof Error ? err.message : String(err));
    }
  }

  #spawn(): void {
    const worker = new Worker(this.#workerUrl, {
      type: "module",
      name: `image-agent-io-${this.#slots.length + 1}`,
    });
    const slot: Slot = { worker, inFlight: new Map(), answered: false };
    worker.onmessage = (e: MessageEvent<Answer>) => this.#answer(slot, e.data);
    worker.onerror = (e: ErrorEvent) => {
      e.preventDefault();
      this.#lost(slot, e.message);
    };
    this.#slots.push(slot);
  }

  /** No worker can run here: every job, waiting or sent, runs inline. */
  #goInline(reason: string): void {
    const jobs = [
      ...this.#slots.flatMap((s) => [...s.inFlight.values()]),
      ...this.#queue,
    ];
    for (const s of this.#slots) s.worker.terminate();
    this.#slots = [];
    this.#queue = [];
    this.#inline = true;
    this.#warn?.(
      `File copies and hashes run on the main thread: no I/O worker could be started (${reason})`,
    );
    // A job a worker had begun left at most a temp file, which the job
    // itself removes when it runs again.
    for (const p of jobs) runInline(p);
  }

  #dispatch(): void {
    while (this.#queue.length > 0) {
      let best: Slot | undefined;
      for (const s of this.#slots) {
        if (
          s.inFlight.size < AHEAD &&
          (!best || s.inFlight.size < best.inFlight.size)
        ) {
          best = s;
        }
      }
      if (!best) return;
      const p = this.#queue.shift()!;
      const id = this.#nextId++;
      best.inFlight.set(id, p);
      best.worker.postMessage({ id, job: p.job });
    }
  }

  #answer(slot: Slot, a: Answer): void {
    slot.answered = true;
    const p = slot.inFlight.get(a.id);
    if (!p) return;
    if (a.progress > 0) p.onProgress?.(a.progress);
    if (a.result === undefined && a.error === undefined) return;
    slot.inFlight.delete(a.id);
    if (a.error) p.reject(fromWire(a.error));
    else p.resolve(a.result);
    this.#dispatch();
  }

  /**
   * A worker died. One that never answered could not load its module: the
   * pool goes inline. Any other died of a bug, not of a file error: its
   * jobs fail (the orders are tried again next run) and a new one starts.
   */
  #lost(slot: Slot, message: string): void {
    if (this.#closed) return;
    if (!slot.answered) return this.#goInline(message);
    for (const p of slot.inFlight.values()) {
      p.reject(new Error(`an I/O worker failed: ${message}`));
    }
    slot.inFlight.clear();
    slot.worker.terminate();
    this.#slots = this.#slots.filter((s) => s !== slot);
    this.#spawn();
    this.#dispatch();
  }
}

function runInline(p: Pending): void {
  try {
    p.resolve(runJob(p.job, p.onProgress));
  } catch (err) {
    p.reject(err instanceof Error ? err : new Error(String(err)));
  }
}
