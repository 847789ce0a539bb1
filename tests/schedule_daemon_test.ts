/**
 * The daemon loop on a manual clock: it fires at the configured local time
 * across a DST change, never runs two passes at once, and stops cleanly.
 */

import assert from "node:assert/strict";
import { type Clock, ManualClock } from "../src/clock.ts";
import { wallTime } from "../src/schedule/cron.ts";
import { runDaemon, type RunOnce } from "../src/schedule/daemon.ts";

function memoryLog() {
  const lines: string[] = [];
  return {
    lines,
    info: (m: string) => lines.push(`info ${m}`),
    warn: (m: string) => lines.push(`warn ${m}`),
    error: (m: string) => lines.push(`error ${m}`),
  };
}

Deno.test("runDaemon() fires at the local time across the spring DST change", async () => {
  const clock = new ManualClock("2026-03-27T12:00:00Z");
  const starts: Date[] = [];
  const runOnce: RunOnce = () => {
    starts.push(clock.now());
    clock.advance(10 * 60 * 1000); // a ten-minute pass
    return Promise.resolve(0);
  };
  const result = await runDaemon({
    cron: "30 3 * * *",
    timeZone: "Europe/Berlin",
    clock,
    runOnce,
    signal: new AbortController().signal,
    log: memoryLog(),
    maxRuns: 4,
  });
  assert.equal(result.runs, 4);
  // 03:30 local every day: UTC+1 before 29 March, UTC+2 from then on.
  assert.deepEqual(starts.map((d) => d.toISOString()), [
    "2026-03-28T02:30:00.000Z",
    "2026-03-29T01:30:00.000Z",
    "2026-03-30T01:30:00.000Z",
    "2026-03-31T01:30:00.000Z",
  ]);
  for (const d of starts) {
    const w = wallTime(d, "Europe/Berlin");
    assert.equal(`${w.hour}:${w.minute}`, "3:30");
  }
});

Deno.test("runDaemon() fires once in the repeated autumn hour", async () => {
  const clock = new ManualClock("2026-10-24T12:00:00Z");
  const starts: string[] = [];
  await runDaemon({
    cron: "30 2 * * *",
    timeZone: "Europe/Berlin",
    clock,
    runOnce: () => {
      starts.push(clock.now().toISOString());
      return Promise.resolve(0);
    },
    signal: new AbortController().signal,
    log: memoryLog(),
    maxRuns: 2,
  });
  assert.deepEqual(starts, [
    "2026-10-25T00:30:00.000Z",
    "2026-10-26T01:30:00.000Z",
  ]);
});

Deno.test("runDaemon() never overlaps runs and skips slots passed during one", async () => {
  const clock = new ManualClock("2026-06-01T00:00:30Z");
  let active = 0;
  let maxActive = 0;
  const spans: [string, string][] = [];
  const runOnce: RunOnce = async () => {
    active++;
    maxActive = Math.max(maxActive, active);
    const start = clock.now().toISOString();
    // A pass of 50 minutes on a schedule of every 15 minutes.
    await clock.sleep(50 * 60 * 1000);
    spans.push([start, clock.now().toISOString()]);
    active--;
    return 0;
  };
  await runDaemon({
    cron: "*/15 * * * *",
    timeZone: "UTC",
    clock,
    runOnce,
    signal: new AbortController().signal,
    log: memoryLog(),
    maxRuns: 3,
  });
  assert.equal(maxActive, 1);
  assert.deepEqual(spans, [
    ["2026-06-01T00:15:00.000Z", "2026-06-01T01:05:00.000Z"],
    ["2026-06-01T01:15:00.000Z", "2026-06-01T02:05:00.000Z"],
    ["2026-06-01T02:15:00.000Z", "2026-06-01T03:05:00.000Z"],
  ]);
});

Deno.test("runDaemon() keeps going when a run is locked out or throws", async () => {
  const clock = new ManualClock("2026-06-01T00:00:00Z");
  const log = memoryLog();
  const codes = [3, -1, 0];
  let i = 0;
  const result = await runDaemon({
    cron: "0 * * * *",
    timeZone: "UTC",
    clock,
    runOnce: () => {
      const code = codes[i++];
      return code < 0
        ? Promise.reject(new Error("boom"))
        : Promise.resolve(code);
    },
    signal: new AbortController().signal,
    log,
    maxRuns: 3,
  });
  assert.equal(result.runs, 3);
  assert.ok(
    log.lines.includes("warn run 1 skipped: another run holds the lock"),
  );
  assert.ok(log.lines.includes("error run 2 failed: boom"));
  assert.ok(
    log.lines.some((l) => l.startsWith("info run 3 ended with exit code 0")),
  );
});

Deno.test("runDaemon() lets the run in hand finish on SIGTERM, then stops", async () => {
  const clock = new ManualClock("2026-06-01T00:00:00Z");
  const controller = new AbortController();
  let sawAbort = false;
  const result = await runDaemon({
    cron: "0 * * * *",
    timeZone: "UTC",
    clock,
    runOnce: (signal) => {
      controller.abort(new Error("SIGTERM")); // arrives mid-run
      sawAbort = signal.aborted; // the engine stops after the order in hand
      return Promise.resolve(0);
    },
    signal: controller.signal,
    log: memoryLog(),
  });
  assert.equal(sawAbort, true);
  assert.deepEqual(result, { runs: 1, exitCode: 0 });
});

Deno.test("runDaemon() stops at once when the signal comes while it waits", async () => {
  const controller = new AbortController();
  // A clock whose sleep only ends when aborted, as a real wait would.
  const clock: Clock = {
    now: () => new Date("2026-06-01T00:00:00Z"),
    sleep: (_ms, signal) =>
      new Promise((_resolve, reject) => {
        signal?.addEventListener("abort", () => reject(signal.reason), {
          once: true,
        });
      }),
  };
  let runs = 0;
  const done = runDaemon({
    cron: "0 2 * * *",
    timeZone: "Asia/Shanghai",
    clock,
    runOnce: () => {
      runs++;
      return Promise.resolve(0);
    },
    signal: controller.signal,
    log: memoryLog(),
  });
  await Promise.resolve();
  controller.abort(new Error("SIGINT"));
  assert.deepEqual(await done, { runs: 0, exitCode: 0 });
  assert.equal(runs, 0);
});

Deno.test("runDaemon() wakes at least every maxSleepMs to re-read the clock", async () => {
  const sleeps: number[] = [];
  const clock = new ManualClock("2026-06-01T00:00:00Z");
  const recording: Clock = {
    now: () => clock.now(),
    sleep: (ms, signal) => {
      sleeps.push(ms);
      return clock.sleep(ms, signal);
    },
  };
  await runDaemon({
    cron: "0 3 * * *",
    timeZone: "UTC",
    clock: recording,
    runOnce: () => Promise.resolve(0),
    signal: new AbortController().signal,
    log: memoryLog(),
    maxRuns: 1,
  });
  assert.deepEqual(sleeps, [3600000, 3600000, 3600000]);
});
