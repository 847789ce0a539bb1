/**
 * `image-agent daemon`: stay up and run the pass on `schedule.cron` in
 * `schedule.timezone`, with `Deno.cron` as the timer.
 *
 * Deno.cron reads its expression in UTC, has no time-zone option and numbers
 * weekdays 1 = Sunday, so `schedule.cron` is not handed to it: a UTC
 * expression matches a local time only in a zone that never changes its
 * offset, and even then hours, days and weekdays would have to be rewritten
 * across midnight. Instead the daemon registers one Deno.cron job that ticks
 * every minute (`* * * * *`). Every local minute is a UTC minute in every
 * zone whose offset is a whole number of minutes, which all IANA zones have
 * had since 1972 (a zone that has not is refused). On each tick the daemon
 * asks the same zone-aware `nextFire` that the systemd, cron, Task Scheduler
 * and launchd files are checked against whether a slot of the schedule has
 * come, so runs happen at the configured local time across daylight-saving
 * changes, exactly when the systemd timer fires.
 *
 * The slots are followed as a chain, each found with `nextFire` from the one
 * before (from the start time for the first), as a systemd timer does. A
 * test of each minute on its own would see 01:45 twice in an autumn night
 * whose clocks go back, and run twice; the chain runs it once.
 *
 * - A slot runs when a tick comes at or after it, up to `LATE_TICK_MS` late
 *   (a tick a few seconds late still counts; so does one delayed by a
 *   stalled process). A slot left further behind is logged and skipped.
 * - Runs never overlap: the tick handler awaits the run, Deno.cron does not
 *   call it again meanwhile, and the run takes the engine's run lock, so a
 *   manual or timer run at the same moment makes this one end "locked"
 *   (exit 3). Slots that pass during a run are skipped, not queued, and no
 *   slot runs twice, even if the clock is set back.
 * - When the signal is aborted (SIGTERM, Ctrl-C) an idle daemon stops at
 *   once; a running one lets the run finish the order in hand (the run sees
 *   the same signal) and then stops.
 */

import type { Clock } from "../clock.ts";
import { ConfigError } from "../errors.ts";
import {
  type CronSchedule,
  formatLocal,
  nextFire,
  parseCron,
  subMinuteOffset,
} from "./cron.ts";
import type { TickSource } from "./ticks.ts";

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
  /** The timer: Deno.cron in production, a manual clock in tests. */
  ticks: TickSource;
  runOnce: RunOnce;
  signal: AbortSignal;
  log: DaemonLog;
  /** Told each next run time once it is known, for `status`. */
  onNext?: (next: Date) => void;
  /** Stop after this many runs (tests); unlimited by default. */
  maxRuns?: number;
}

export interface DaemonResult {
  runs: number;
  /** Exit code for the process: 0 after a clean stop. */
  exitCode: number;
}

/** How late a tick may come and still start its slot's run. */
export const LATE_TICK_MS = 5 * 60 * 1000;

const EXIT_LOCKED = 3;

/** Throws a ConfigError for a zone the minute ticks cannot follow. */
export function checkDaemonZone(timeZone: string, now: Date): void {
  const odd = subMinuteOffset(timeZone, now);
  if (!odd) return;
  const abs = Math.abs(odd.offsetSeconds);
  const text = `UTC${odd.offsetSeconds < 0 ? "-" : "+"}${
    [Math.floor(abs / 3600), Math.floor(abs / 60) % 60, abs % 60]
      .map((n) => String(n).padStart(2, "0")).join(":")
  }`;
  throw new ConfigError(
    `Cannot run the daemon in schedule.timezone "${timeZone}": its offset on ${
      odd.at.toISOString().slice(0, 10)
    } is ${text}, not a whole number of minutes, and the daemon's timer ticks on whole UTC minutes`,
    "schedule.timezone",
    {
      hint:
        "use the systemd timer ('image-agent install'), which takes any zone",
    },
  );
}

/** Runs the schedule until the signal is aborted (or maxRuns is reached). */
export async function runDaemon(options: DaemonOptions): Promise<DaemonResult> {
  const { clock, signal, log, timeZone } = options;
  const schedule = parseCron(options.cron);
  checkDaemonZone(timeZone, clock.now());
  // Stops the ticks: on the signal, or after maxRuns.
  const stop = new AbortController();
  const onAbort = () => stop.abort(signal.reason);
  signal.addEventListener("abort", onAbort, { once: true });

  const chain = new SlotChain(schedule, timeZone, clock.now());
  let runs = 0;
  let running = false;
  const onStopRequest = () => {
    log.info(
      running
        ? `daemon: run ${runs} finishes the order in hand, then the daemon exits`
        : "daemon: no run in progress; exiting",
    );
  };
  signal.addEventListener("abort", onStopRequest, { once: true });

  const announce = () => {
    log.info(`next run at ${formatLocal(chain.next, timeZone)}`);
    options.onNext?.(chain.next);
  };

  const tick = async () => {
    if (stop.signal.aborted) return;
    const now = clock.now();
    const due = chain.take(now);
    if (due.missed.length > 0) {
      log.warn(
        `skipped ${due.missed.length} run(s) due from ${
          formatLocal(due.missed[0], timeZone)
        }: the timer tick came more than ${
          LATE_TICK_MS / 60000
        } minutes late (the process was stopped or the clock was set forward)`,
      );
    }
    if (!due.slot) {
      if (due.missed.length > 0) announce();
      return;
    }
    runs++;
    running = true;
    const started = clock.now();
    log.info(`run ${runs} started (due ${formatLocal(due.slot, timeZone)})`);
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
    running = false;
    const secs = Math.round(
      (clock.now().getTime() - started.getTime()) / 1000,
    );
    if (code === EXIT_LOCKED) {
      log.warn(`run ${runs} skipped: another run holds the lock`);
    } else if (signal.aborted) {
      log.info(
        `run ${runs} stopped on request after ${secs} s; the next run continues where it stopped`,
      );
    } else {
      log.info(`run ${runs} ended with exit code ${code} after ${secs} s`);
    }
    // Slots that passed during the run are skipped, not queued.
    const passed = chain.skipTo(clock.now());
    if (passed > 0) {
      log.info(`skipped ${passed} run(s) due while run ${runs} was going on`);
    }
    if (options.maxRuns !== undefined && runs >= options.maxRuns) {
      stop.abort();
    }
    if (!signal.aborted) announce();
  };

  // Deno.cron must never see an error: it would call the handler again.
  let inFlight: Promise<void> = Promise.resolve();
  const handler = () => {
    inFlight = tick().catch((err) => {
      log.error(`daemon: ${err instanceof Error ? err.message : err}`);
    });
    return inFlight;
  };

  try {
    const stopped = options.ticks.start(handler, stop.signal);
    log.info(
      `daemon: cron "${schedule.source}" in ${timeZone}; registered with ${options.ticks.description}; stop with Ctrl-C or SIGTERM`,
    );
    announce();
    await stopped;
    // The ticks stop at once; a run in progress goes on to its end.
    await inFlight;
  } finally {
    signal.removeEventListener("abort", onAbort);
    signal.removeEventListener("abort", onStopRequest);
  }
  log.info(`daemon stopped after ${runs} run(s)`);
  return { runs, exitCode: 0 };
}

/**
 * The schedule's slots in order. `next` is the first one not yet run or
 * skipped; each is found from the one before, never from "now", so a local
 * time repeated in autumn is one slot, as for the systemd timer.
 */
class SlotChain {
  next: Date;
  constructor(
    private readonly schedule: CronSchedule,
    private readonly zone: string,
    start: Date,
  ) {
    this.next = nextFire(schedule, start, zone);
  }

  /**
   * The slot a tick at `now` runs, if any: the latest slot not after `now`,
   * when it is at most LATE_TICK_MS old. Every slot before it, and the slot
   * itself when it is older, is passed over and listed as missed.
   */
  take(now: Date): { slot: Date | null; missed: Date[] } {
    const missed: Date[] = [];
    let slot: Date | null = null;
    for (let steps = 0; this.next.getTime() <= now.getTime(); steps++) {
      if (slot) missed.push(slot);
      slot = this.next;
      this.advance(now, steps);
    }
    if (slot && now.getTime() - slot.getTime() > LATE_TICK_MS) {
      missed.push(slot);
      slot = null;
    }
    return { slot, missed };
  }

  /** Passes over every slot not after `now`; returns how many. */
  skipTo(now: Date): number {
    let n = 0;
    while (this.next.getTime() <= now.getTime()) this.advance(now, n++);
    return n;
  }

  private advance(now: Date, steps: number): void {
    // Following the chain through weeks of every-minute slots (a machine
    // that slept, a clock set far forward) would take long: after many
    // steps in one go, jump to the first slot after `now`. Those slots are
    // all long missed anyway.
    this.next = steps < 10_000
      ? nextFire(this.schedule, this.next, this.zone)
      : nextFire(this.schedule, now, this.zone);
  }
}
