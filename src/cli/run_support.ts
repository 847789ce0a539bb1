/**
 * Shared by the commands that change things: take the run lock, record the
 * run in the ledger, and always close the record, even when the run fails.
 */

import { acquireRunLock } from "../ledger/lock.ts";
import type { RunRow, RunSummary } from "../ledger/ledger.ts";
import type { EngineDeps } from "../engine/engine.ts";
import type { Context } from "./context.ts";
import type { Deps } from "./command.ts";
import { errorMessage } from "../errors.ts";

export function engineDeps(deps: Deps, ctx: Context): EngineDeps {
  return {
    config: ctx.config,
    shop: ctx.shop,
    ledger: ctx.ledger,
    storage: ctx.storage,
    clock: deps.clock,
    log: deps.log,
    io: ctx.io,
    progress: deps.interactive ? deps.log.progress : undefined,
    signal: deps.signal,
  };
}

export const EMPTY_SUMMARY: RunSummary = {
  eligible: 0,
  backedUp: 0,
  cleaned: 0,
  failed: 0,
  skipped: 0,
  freedBytes: 0,
  dryRun: false,
};

export interface RecordedRun<T> {
  value: T;
  runId: number;
}

/**
 * Runs `fn` holding the lock, with a `runs` row that is closed with the
 * summary `fn` reports (or as `error` when it throws).
 */
export async function recordedRun<T>(
  deps: Deps,
  ctx: Context,
  command: string,
  dryRun: boolean,
  fn: () => Promise<
    {
      value: T;
      summary: RunSummary;
      status: RunRow["status"];
      errors: string[];
    }
  >,
  waitMs = 0,
): Promise<RecordedRun<T>> {
  const lock = await acquireRunLock(ctx.config.state.dir, {
    command,
    waitMs,
    clock: deps.clock,
  });
  try {
    ctx.ledger.closeAbandonedRuns();
    const runId = ctx.ledger.startRun(command, deps.trigger, dryRun);
    try {
      const r = await fn();
      ctx.ledger.finishRun(runId, r.summary, r.status, r.errors);
      return { value: r.value, runId };
    } catch (err) {
      ctx.ledger.finishRun(runId, { ...EMPTY_SUMMARY, dryRun }, "error", [
        errorMessage(err),
      ]);
      throw err;
    }
  } finally {
    lock.release();
  }
}
