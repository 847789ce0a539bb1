/**
 * The daemon's timer: a tick at the start of every UTC minute, from
 * `Deno.cron`. Tests give the daemon another `TickSource` driven by a manual
 * clock.
 *
 * What Deno.cron does here (Deno 2.9.6, checked by running it): the handler
 * is called about a millisecond after each UTC minute starts; while a call
 * is still running the next ticks are dropped, not queued, and ticking goes
 * on at the first minute after it returns; the `signal` option unregisters
 * it, and the promise `Deno.cron` returns resolves then, while a call in
 * progress goes on to its end; the registered cron keeps the process alive
 * until then. A handler that throws is called again after 100 ms unless
 * `backoffSchedule` is empty. Deno.cron exists only with `--unstable-cron`
 * (or `"unstable": ["cron"]` in deno.json), which `deno task compile`
 * passes.
 */

import { AgentError, EXIT_FAILED } from "../errors.ts";

export interface TickSource {
  /** How the ticks are made, for the log. */
  readonly description: string;
  /**
   * Registers `onTick` and returns at once: from then on `onTick` is called
   * at the start of every UTC minute, never while an earlier call is still
   * running, until `signal` is aborted. The promise resolves once the ticks
   * have stopped. Throws (at once) when no ticks can be had.
   */
  start(onTick: () => Promise<void>, signal: AbortSignal): Promise<void>;
}

/** The name the daemon registers under (one per process). */
export const DAEMON_CRON_NAME = "image-agent daemon";

/** Deno.cron's own schedule: every minute, read in UTC. */
export const EVERY_MINUTE = "* * * * *";

/** Ticks from `Deno.cron(DAEMON_CRON_NAME, "* * * * *")`. */
export function denoCronTicks(): TickSource {
  return {
    description:
      `Deno.cron("${DAEMON_CRON_NAME}", "${EVERY_MINUTE}"), a tick every UTC minute`,
    start(onTick, signal) {
      if (typeof Deno.cron !== "function") {
        throw new AgentError(
          "Cannot start the daemon: Deno.cron is not available in this build",
          EXIT_FAILED,
          {
            hint:
              "build it with 'deno task compile' (it passes --unstable-cron), or run it with 'deno run --unstable-cron'",
          },
        );
      }
      // No retries: the daemon's handler never throws, and a retry would be
      // a second tick for the same minute.
      return Deno.cron(
        DAEMON_CRON_NAME,
        EVERY_MINUTE,
        { signal, backoffSchedule: [] },
        onTick,
      );
    },
  };
}
