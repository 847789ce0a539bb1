/**
 * Minute ticks on a manual clock, behaving as Deno.cron's do: one at the
 * start of every UTC minute (optionally a little late), never while the
 * previous call runs (a run that moves the clock on drops the ticks it
 * covers), until the signal is aborted or the clock reaches `until`.
 */

import type { ManualClock } from "../../src/clock.ts";
import type { TickSource } from "../../src/schedule/ticks.ts";

export interface ManualTicksOptions {
  /** The ticks stop (as if unregistered) at this time. */
  until: Date;
  /** How late after the minute each tick comes, in ms (default 1). */
  lateMs?: number;
  /** Called just before each tick, with the clock already moved. */
  beforeTick?: (at: Date) => void;
}

export class ManualTicks implements TickSource {
  readonly description = "manual ticks";
  /** Every instant a tick was delivered. */
  readonly delivered: Date[] = [];

  constructor(
    private readonly clock: ManualClock,
    private readonly options: ManualTicksOptions,
  ) {}

  start(onTick: () => Promise<void>, signal: AbortSignal): Promise<void> {
    const late = this.options.lateMs ?? 1;
    const until = this.options.until.getTime();
    return (async () => {
      // Registration returns first, as with Deno.cron.
      await Promise.resolve();
      while (!signal.aborted) {
        const now = this.clock.now().getTime();
        const next = (Math.floor((now - late) / 60000) + 1) * 60000 + late;
        if (next > until) return;
        this.clock.advance(next - now);
        this.options.beforeTick?.(this.clock.now());
        if (signal.aborted) return;
        this.delivered.push(this.clock.now());
        await onTick();
      }
    })();
  }
}

/** Ticks that never come; the promise ends when the signal is aborted. */
export const noTicks: TickSource = {
  description: "no ticks",
  start(_onTick, signal) {
    return new Promise((resolve) => {
      if (signal.aborted) return resolve();
      signal.addEventListener("abort", () => resolve(), { once: true });
    });
  },
};
