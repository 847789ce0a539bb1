/**
 * `image-agent daemon`: stay up and run the pass on `schedule.cron` in
 * `schedule.timezone`.
 *
 * Why not `Deno.cron` itself: Deno.cron reads its expression in UTC, numbers
 * weekdays 1 = Sunday (denoland/deno#21555) and has no time-zone option. A
 * UTC expression is exact only for zones that never change their offset,
 * and even then the hours, days and weekdays would have to be rewritten
 * across midnight. So the daemon computes each next fire time itself with
 * the same cron matcher the OS scheduler files are checked against
 * (`nextFire`, DST-aware in any IANA zone), sleeps on the injected clock
 * until then, runs, and computes the next time again from the end of the
 * run. That honours DST changes, gives the same times as the systemd timer,
 * and is testable with a manual clock.
 *
 * Runs never overlap: one run at a time in this loop, and the run itself
 * takes the engine's run lock, so a manual run or a timer run at the same
 * moment makes this one end with "locked" (exit 3) and the daemon waits for
 * the next slot. Slots that pass while a run is going on are skipped, not
 * queued. When the signal is aborted (SIGTERM, Ctrl-C) a sleeping daemon
 * exits at once, and a running one lets the run finish the order in hand
 * (the run sees the same signal) and then exits.
 */

import type { Clock } from "../clock.ts";
import { formatLocal, nextFire, parseCron } from "./cron.ts";

/** One pass of the engine, recorded with trigger "daemon"; its exit code. */
export type RunOnce = (signal: AbortSignal) => Promise<number>;

export interface DaemonLog {
  info(message: string): void;
  warn(message: string): void;
  error(message: string): void;
}

export interface DaemonOptions {
  cron: string;
  timeZone: string;
  clock: Clock;
  runOnce: RunOnce;
  signal: AbortSignal;
  log: DaemonLog;
  /**
   * Longest single sleep. The daemon wakes at least this often to look at
   * the clock again, so a clock step (NTP, suspend) delays a run by at most
   * this long.
   */
  maxSleepMs?: number;
  /** Stop after this many runs (tests); unlimited by default. */
  maxRuns?: number;
}

export interface DaemonResult {
  runs: number;
  /** Exit code for the process: 0 after a clean stop. */
  exitCode: number;
}

const EXIT_LOCKED = 3;

/** Runs the schedule until the signal is aborted (or maxRuns is reached). */
export async function runDaemon(options: DaemonOptions): Promise<DaemonResult> {
  const { clock, signal, log, timeZone } = options;
  const schedule = parseCron(options.cron);
  const maxSleep = options.maxSleepMs ?? 60 * 60 * 1000;
  let runs = 0;
  let after = clock.now();
  log.info(
    `daemon: cron "${schedule.source}" in ${timeZone}; stop with Ctrl-C or SIGTERM`,
  );
  while (!signal.aborted) {
    if (options.maxRuns !== undefined && runs >= options.maxRuns) break;
    const next = nextFire(schedule, after, timeZone);
    log.info(`next run at ${formatLocal(next, timeZone)}`);
    if (!await sleepUntil(clock, next, maxSleep, signal)) break;

    runs++;
    const started = clock.now();
    log.info(`run ${runs} started (due ${formatLocal(next, timeZone)})`);
    let code: number;
    try {
      code = await options.runOnce(signal);
    } catch (err) {
      // A bug in one run must not end the daemon; the next slot tries again.
      log.error(
        `run ${runs} failed: ${err instanceof Error ? err.message : err}`,
      );
      code = 1;
    }
    if (code === EXIT_LOCKED) {
      log.warn(`run ${runs} skipped: another run holds the lock`);
    } else {
      log.info(
        `run ${runs} ended with exit code ${code} after ${
          Math.round((clock.now().getTime() - started.getTime()) / 1000)
        } s`,
      );
    }
    // From the end of the run: slots that passed meanwhile are skipped, and
    // the slot just run is never run twice even if the clock went back.
    const now = clock.now();
    after = now.getTime() > next.getTime() ? now : next;
  }
  log.info(`daemon stopped after ${runs} run(s)`);
  return { runs, exitCode: 0 };
}

/** Sleeps until `due`; false when the signal ended the wait. */
async function sleepUntil(
  clock: Clock,
  due: Date,
  maxSleep: number,
  signal: AbortSignal,
): Promise<boolean> {
  for (;;) {
    if (signal.aborted) return false;
    const left = due.getTime() - clock.now().getTime();
    if (left <= 0) return true;
    try {
      await clock.sleep(Math.min(left, maxSleep), signal);
    } catch {
      if (signal.aborted) return false;
      throw new Error("the clock failed to sleep");
    }
  }
}
