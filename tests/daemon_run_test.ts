/**
 * `image-agent daemon` driving the real run command, recorded as "daemon":
 * in process on manual minute ticks, and as the real program on Deno.cron,
 * stopped with SIGTERM.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { makeDaemonCommand } from "../src/cli/daemon.ts";
import type { Deps } from "../src/cli/command.ts";
import { ManualClock } from "../src/clock.ts";
import { Ledger } from "../src/ledger/ledger.ts";
import { memoryLogger } from "../src/log.ts";
import { ManualTicks } from "./fakes/manual_ticks.ts";
import { shopBackends } from "./fakes/shop_fixture.ts";
import { exists, MAIN, makeShop, noise, runCli } from "./helpers.ts";

Deno.test("daemon runs the pass at the configured local time and records it with trigger daemon", async () => {
  const shop = await makeShop(shopBackends()[0], {
    orders: [{
      key: 1,
      orderNo: "D-1",
      status: "shipped",
      image: "d.png",
      shippedAt: "2026-01-01 00:00:00",
      content: noise(1000, 3),
    }],
  });
  try {
    // 02:00 in Asia/Shanghai (the test config's zone) is 18:00 UTC.
    const clock = new ManualClock("2026-06-01T17:55:30Z");
    const controller = new AbortController();
    const ticks = new ManualTicks(clock, {
      until: new Date("2026-06-01T18:30:00Z"),
      lateMs: 2000,
      // Stop once the first run is recorded.
      beforeTick: () => {
        const ledger = Ledger.open(shop.stateDir);
        const runs = ledger.runs().length;
        ledger.close();
        if (runs > 0) controller.abort(new Error("SIGTERM"));
      },
    });
    const log = memoryLogger();
    const deps: Deps = {
      clock,
      log,
      stdout: () => {},
      env: (n) => Deno.env.get(n),
      interactive: false,
      prompt: () => null,
      signal: controller.signal,
      trigger: "manual",
      execPath: Deno.execPath(),
      fetch: globalThis.fetch,
    };
    const daemon = makeDaemonCommand(() => ticks);
    const code = await daemon.run(deps, ["--config", shop.configPath]);
    assert.equal(code, 0, log.lines.join("\n"));
    const ledger = Ledger.open(shop.stateDir);
    const runs = ledger.runs();
    ledger.close();
    assert.equal(runs.length, 1);
    assert.equal(runs[0].trigger, "daemon");
    assert.equal(runs[0].command, "run");
    assert.equal(runs[0].cleaned, 1);
    assert.equal(runs[0].startedAt, "2026-06-01 18:00:02");
    assert.equal(await exists(join(shop.root, "d.png")), false);
    assert.ok(
      log.lines.includes(
        "info next run at 2026-06-02 02:00 (Asia/Shanghai, UTC+08:00)",
      ),
      log.lines.join("\n"),
    );
    // The daemon's lock and status file are gone after a clean stop.
    assert.equal(await exists(join(shop.stateDir, "daemon.json")), false);
  } finally {
    await shop.close();
  }
});

/** Reads a child's stderr until a line matches; returns all read so far. */
async function readUntil(
  reader: ReadableStreamDefaultReader<string>,
  seen: string[],
  pattern: RegExp,
): Promise<string> {
  const deadline = Date.now() + 30_000;
  while (!pattern.test(seen.join(""))) {
    if (Date.now() > deadline) {
      throw new Error(`timed out waiting for ${pattern}:\n${seen.join("")}`);
    }
    const { value, done } = await reader.read();
    if (done) {
      throw new Error(`stderr ended before ${pattern}:\n${seen.join("")}`);
    }
    seen.push(value);
  }
  return seen.join("");
}

Deno.test("image-agent daemon registers with Deno.cron, shows in status and exits 0 on SIGTERM", async () => {
  // 29 February: no run can come due while the test runs.
  const shop = await makeShop(shopBackends()[0], {
    orders: [],
    config: { schedule: { cron: "0 0 29 2 *", timezone: "Asia/Shanghai" } },
  });
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "--unstable-cron",
      MAIN,
      "daemon",
      "--config",
      shop.configPath,
    ],
    env: { NO_COLOR: "1" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const reader = child.stderr.pipeThrough(new TextDecoderStream())
    .getReader();
  const seen: string[] = [];
  try {
    const started = await readUntil(reader, seen, /next run at .*\n/);
    assert.match(
      started,
      /daemon: cron "0 0 29 2 \*" in Asia\/Shanghai; registered with Deno\.cron\("image-agent daemon", "\* \* \* \* \*"\), a tick every UTC minute; stop with Ctrl-C or SIGTERM/,
    );
    assert.match(
      started,
      /next run at 2028-02-29 00:00 \(Asia\/Shanghai, UTC\+08:00\)/,
    );

    const status = await runCli(["status", "--config", shop.configPath]);
    assert.equal(status.code, 0, status.stderr);
    assert.match(
      status.stdout,
      new RegExp(
        `^Schedule: "0 0 29 2 \\*" in Asia/Shanghai, run by the daemon \\(process ${child.pid} on .*\\); next run 2028-02-29 00:00 \\(Asia/Shanghai, UTC\\+08:00\\)$`,
        "m",
      ),
    );
    const json = await runCli([
      "status",
      "--json",
      "--config",
      shop.configPath,
    ]);
    const schedule = JSON.parse(json.stdout).schedule;
    assert.deepEqual(schedule.registered, ["daemon"]);
    assert.equal(schedule.nextRun, "2028-02-28T16:00:00.000Z");
    assert.equal(schedule.daemon.pid, child.pid);

    // A second daemon on the same state folder is refused.
    const second = await runCli(["daemon", "--config", shop.configPath]);
    assert.equal(second.code, 3, second.stderr);
    assert.match(
      second.stderr,
      new RegExp(`Another image-agent daemon is running: process ${child.pid}`),
    );

    child.kill("SIGTERM");
    const rest = await readUntil(reader, seen, /daemon stopped after/);
    const { code } = await child.status;
    assert.equal(code, 0, rest);
    assert.match(rest, /Stopping the daemon \(press Ctrl-C again/);
    assert.match(rest, /daemon: no run in progress; exiting/);
    assert.match(rest, /daemon stopped after 0 run\(s\)/);
    assert.doesNotMatch(rest, /finishing the order in hand/);

    // Stopped: status says nothing runs the schedule.
    const after = await runCli(["status", "--config", shop.configPath]);
    assert.match(after.stdout, /not registered: nothing runs it/);
  } finally {
    try {
      child.kill("SIGKILL");
    } catch { /* already gone */ }
    await child.status;
    await reader.cancel().catch(() => {});
    await child.stdout.cancel().catch(() => {});
    await shop.close();
  }
});
