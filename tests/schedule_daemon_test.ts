/**
 * The daemon on minute ticks from a manual clock, as Deno.cron would give
 * them: it runs at the configured local time across DST changes, once per
 * slot, never two passes at once, and stops cleanly.
 */

import assert from "node:assert/strict";
import { ManualClock } from "../src/clock.ts";
import { ConfigError } from "../src/errors.ts";
import { wallTime } from "../src/schedule/cron.ts";
import { runDaemon, type RunOnce } from "../src/schedule/daemon.ts";
import { ManualTicks, noTicks } from "./fakes/manual_ticks.ts";

function memoryLog() {
  const lines: string[] = [];
  return {
    lines,
    info: (m: string) => lines.push(`info ${m}`),
    warn: (m: string) => lines.push(`warn ${m}`),
    error: (m: string) => lines.push(`error ${m}`),
  };
}

/** Runs the daemon from `start` until `until`, recording each run's start. */
async function daemonBetween(
  start: string,
  until: string,
  options: {
    cron: string;
    timeZone: string;
    runMs?: number;
    lateMs?: number;
    beforeTick?: (clock: ManualClock, at: Date) => void;
  },
) {
  const clock = new ManualClock(start);
  const starts: string[] = [];
  const log = memoryLog();
  const ticks = new ManualTicks(clock, {
    until: new Date(until),
    lateMs: options.lateMs ?? 0,
    beforeTick: (at) => options.beforeTick?.(clock, at),
  });
  const result = await runDaemon({
    cron: options.cron,
    timeZone: options.timeZone,
    clock,
    ticks,
    runOnce: () => {
      starts.push(clock.now().toISOString());
      clock.advance(options.runMs ?? 60_000);
      return Promise.resolve(0);
    },
    signal: new AbortController().signal,
    log,
  });
  return { result, starts, log, ticks };
}

Deno.test("runDaemon() runs at the local time across the spring DST change", async () => {
  const { starts } = await daemonBetween(
    "2026-03-27T12:00:00Z",
    "2026-03-31T12:00:00Z",
    { cron: "30 3 * * *", timeZone: "Europe/Berlin" },
  );
  // 03:30 local every day: UTC+1 before 29 March, UTC+2 from then on.
  assert.deepEqual(starts, [
    "2026-03-28T02:30:00.000Z",
    "2026-03-29T01:30:00.000Z",
    "2026-03-30T01:30:00.000Z",
    "2026-03-31T01:30:00.000Z",
  ]);
  for (const d of starts) {
    const w = wallTime(new Date(d), "Europe/Berlin");
    assert.equal(`${w.hour}:${w.minute}`, "3:30");
  }
});

Deno.test("runDaemon() skips a local time that does not exist that night", async () => {
  const { starts } = await daemonBetween(
    "2026-03-28T12:00:00Z",
    "2026-03-30T12:00:00Z",
    { cron: "30 2 * * *", timeZone: "Europe/Berlin" },
  );
  // 02:30 does not exist on 29 March in Berlin.
  assert.deepEqual(starts, ["2026-03-30T00:30:00.000Z"]);
});

Deno.test("runDaemon() runs once in the hour repeated in autumn", async () => {
  const berlin = await daemonBetween(
    "2026-10-24T12:00:00Z",
    "2026-10-26T12:00:00Z",
    { cron: "30 2 * * *", timeZone: "Europe/Berlin" },
  );
  assert.deepEqual(berlin.starts, [
    "2026-10-25T00:30:00.000Z",
    "2026-10-26T01:30:00.000Z",
  ]);
  // Every quarter of New York's 01:00-01:59, which happens twice on
  // 1 November: each local time once, at its first occurrence.
  const ny = await daemonBetween(
    "2026-11-01T03:00:00Z",
    "2026-11-01T09:00:00Z",
    { cron: "*/15 1 * * *", timeZone: "America/New_York" },
  );
  assert.deepEqual(ny.starts, [
    "2026-11-01T05:00:00.000Z",
    "2026-11-01T05:15:00.000Z",
    "2026-11-01T05:30:00.000Z",
    "2026-11-01T05:45:00.000Z",
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
    await Promise.resolve();
    clock.advance(50 * 60 * 1000);
    spans.push([start, clock.now().toISOString()]);
    active--;
    return 0;
  };
  const log = memoryLog();
  await runDaemon({
    cron: "*/15 * * * *",
    timeZone: "UTC",
    clock,
    ticks: new ManualTicks(clock, {
      until: new Date("2026-06-01T03:00:00Z"),
      lateMs: 0,
    }),
    runOnce,
    signal: new AbortController().signal,
    log,
    maxRuns: 3,
  });
  assert.equal(maxActive, 1);
  assert.deepEqual(spans, [
    ["2026-06-01T00:15:00.000Z", "2026-06-01T01:05:00.000Z"],
    ["2026-06-01T01:15:00.000Z", "2026-06-01T02:05:00.000Z"],
    ["2026-06-01T02:15:00.000Z", "2026-06-01T03:05:00.000Z"],
  ]);
  assert.ok(
    log.lines.includes("info skipped 3 run(s) due while run 1 was going on"),
    log.lines.join("\n"),
  );
});

Deno.test("runDaemon() counts a tick a few seconds late for its minute, and skips one far too late", async () => {
  const late = await daemonBetween(
    "2026-06-01T00:00:30Z",
    "2026-06-01T02:30:00Z",
    { cron: "0 * * * *", timeZone: "UTC", lateMs: 3000 },
  );
  assert.deepEqual(late.starts, [
    "2026-06-01T01:00:03.000Z",
    "2026-06-01T02:00:03.000Z",
  ]);
  // The process stalls (or the clock is set forward) from 00:59 to 01:07.
  let jumped = false;
  const stalled = await daemonBetween(
    "2026-06-01T00:00:30Z",
    "2026-06-01T02:30:00Z",
    {
      cron: "0 * * * *",
      timeZone: "UTC",
      beforeTick: (clock, at) => {
        if (!jumped && at.toISOString() === "2026-06-01T00:59:00.000Z") {
          jumped = true;
          clock.advance(8 * 60 * 1000);
        }
      },
    },
  );
  assert.deepEqual(stalled.starts, ["2026-06-01T02:00:00.000Z"]);
  assert.ok(
    stalled.log.lines.some((l) =>
      l.startsWith("warn skipped 1 run(s) due from 2026-06-01 01:00 (UTC") &&
      l.includes("more than 5 minutes late")
    ),
    stalled.log.lines.join("\n"),
  );
});

Deno.test("runDaemon() never runs a slot twice when the clock is set back", async () => {
  let setBack = false;
  const { starts } = await daemonBetween(
    "2026-06-01T01:00:30Z",
    "2026-06-02T02:30:00Z",
    {
      cron: "0 2 * * *",
      timeZone: "UTC",
      beforeTick: (clock, at) => {
        if (!setBack && at.toISOString() === "2026-06-01T02:10:00.000Z") {
          setBack = true;
          clock.advance(-60 * 60 * 1000);
        }
      },
    },
  );
  assert.deepEqual(starts, [
    "2026-06-01T02:00:00.000Z",
    "2026-06-02T02:00:00.000Z",
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
    ticks: new ManualTicks(clock, { until: new Date("2026-06-02T00:00:00Z") }),
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
  const log = memoryLog();
  let sawAbort = false;
  const result = await runDaemon({
    cron: "0 * * * *",
    timeZone: "UTC",
    clock,
    ticks: new ManualTicks(clock, { until: new Date("2026-06-02T00:00:00Z") }),
    runOnce: (signal) => {
      controller.abort(new Error("SIGTERM")); // arrives mid-run
      sawAbort = signal.aborted; // the engine stops after the order in hand
      return Promise.resolve(1);
    },
    signal: controller.signal,
    log,
  });
  assert.equal(sawAbort, true);
  assert.deepEqual(result, { runs: 1, exitCode: 0 });
  assert.ok(
    log.lines.includes(
      "info daemon: run 1 finishes the order in hand, then the daemon exits",
    ),
    log.lines.join("\n"),
  );
  assert.ok(
    log.lines.some((l) =>
      /^info run 1 stopped on request after \d+ s; the next run continues where it stopped$/
        .test(l)
    ),
    log.lines.join("\n"),
  );
  assert.ok(!log.lines.some((l) => l.includes("ended with exit code")));
});

Deno.test("runDaemon() stops at once when the signal comes while it is idle", async () => {
  const controller = new AbortController();
  const log = memoryLog();
  const nexts: string[] = [];
  let runs = 0;
  const done = runDaemon({
    cron: "0 2 * * *",
    timeZone: "Asia/Shanghai",
    clock: new ManualClock("2026-06-01T00:00:00Z"),
    ticks: noTicks,
    runOnce: () => {
      runs++;
      return Promise.resolve(0);
    },
    signal: controller.signal,
    log,
    onNext: (d) => nexts.push(d.toISOString()),
  });
  await new Promise((r) => setTimeout(r, 10));
  controller.abort(new Error("SIGINT"));
  assert.deepEqual(await done, { runs: 0, exitCode: 0 });
  assert.equal(runs, 0);
  assert.deepEqual(nexts, ["2026-06-01T18:00:00.000Z"]);
  assert.deepEqual(log.lines, [
    'info daemon: cron "0 2 * * *" in Asia/Shanghai; registered with no ticks; stop with Ctrl-C or SIGTERM',
    "info next run at 2026-06-02 02:00 (Asia/Shanghai, UTC+08:00)",
    "info daemon: no run in progress; exiting",
    "info daemon stopped after 0 run(s)",
  ]);
});

Deno.test("runDaemon() refuses a zone whose offset is not whole minutes", async () => {
  // Liberia kept UTC-00:44:30 until 1972.
  await assert.rejects(
    () =>
      runDaemon({
        cron: "0 2 * * *",
        timeZone: "Africa/Monrovia",
        clock: new ManualClock("1971-06-01T00:00:00Z"),
        ticks: noTicks,
        runOnce: () => Promise.resolve(0),
        signal: new AbortController().signal,
        log: memoryLog(),
      }),
    (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.equal(err.key, "schedule.timezone");
      assert.match(
        err.message,
        /^Cannot run the daemon in schedule.timezone "Africa\/Monrovia": its offset on 1971-06-01 is UTC-00:44:30, not a whole number of minutes/,
      );
      return true;
    },
  );
});
