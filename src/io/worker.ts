/**
 * Entry of an I/O worker thread (see pool.ts): runs each job it is sent,
 * one at a time, and answers with the result or the error. Progress of a
 * long job is sent every few MiB.
 */

/// <reference lib="deno.worker" />

import { type Job, runJob, toWire } from "./jobs.ts";

/** Bytes between two progress messages of one job. */
const PROGRESS_STEP = 8 * 1024 * 1024;

self.onmessage = (e: MessageEvent<{ id: number; job: Job }>) => {
  const { id, job } = e.data;
  let unsent = 0;
  try {
    const result = runJob(job, (n) => {
      unsent += n;
      if (unsent >= PROGRESS_STEP) {
        self.postMessage({ id, progress: unsent });
        unsent = 0;
      }
    });
    self.postMessage({ id, progress: unsent, result });
  } catch (err) {
    self.postMessage({ id, progress: unsent, error: toWire(err) });
  }
};
