/**
 * `image-agent schedule export` as an operator runs it: the real CLI as a
 * subprocess, its exit code and what it prints.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import type { Deps } from "../src/cli/command.ts";
import { makeScheduleCommand, type SystemAccess } from "../src/cli/schedule.ts";
import { ManualClock } from "../src/clock.ts";
import { memoryLogger } from "../src/log.ts";
import { shopBackends } from "./fakes/shop_fixture.ts";
import { xmllintTask } from "./fakes/schedule_tools.ts";
import { makeShop, runCli } from "./helpers.ts";

/** A machine of the given OS in the config's zone; runs no commands. */
function machine(os: string): SystemAccess {
  return {
    root: "/",
    os,
    isRoot: () => true,
    machineZone: () => "Asia/Shanghai",
    run: () => Promise.reject(new Error("export runs no command")),
  };
}

function deps(execPath: string) {
  const log = memoryLogger();
  const out: string[] = [];
  const d: Deps = {
    clock: new ManualClock("2026-12-04T12:00:00Z"),
    log,
    stdout: (t) => out.push(t),
    env: () => undefined,
    interactive: false,
    prompt: () => null,
    signal: new AbortController().signal,
    trigger: "manual",
    execPath,
    fetch: () => Promise.reject(new Error("no network in this test")),
  };
  return { deps: d, log, out };
}

Deno.test("schedule export refuses an unknown --machine-zone with exit 2 and no stack", async () => {
  const shop = await makeShop(shopBackends()[0], { orders: [] });
  try {
    const r = await runCli([
      "schedule",
      "export",
      "--format",
      "cron",
      "--out",
      join(shop.dir, "out"),
      "--machine-zone",
      "Foo/Bar",
      "--config",
      shop.configPath,
    ]);
    assert.equal(r.code, 2, r.stderr);
    assert.match(
      r.stderr,
      /Unknown --machine-zone "Foo\/Bar": not an IANA time zone/,
    );
    assert.doesNotMatch(r.stderr, /internal error|^ +at /m);
  } finally {
    await shop.close();
  }
});

Deno.test("schedule export --format cron prints how to merge it into a crontab", async () => {
  const shop = await makeShop(shopBackends()[0], { orders: [] });
  try {
    const out = join(shop.dir, "out");
    const r = await runCli([
      "schedule",
      "export",
      "--format",
      "cron",
      "--out",
      out,
      "--machine-zone",
      "Asia/Shanghai",
      "--config",
      shop.configPath,
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(
      r.stdout,
      /keeping the other lines:\n {2}\(crontab -l .*\| crontab -\n/,
    );
    assert.ok(r.stdout.includes(join(out, "image-agent.cron")), r.stdout);
  } finally {
    await shop.close();
  }
});

Deno.test("schedule export --format windows on Linux points at Windows paths", async () => {
  const shop = await makeShop(shopBackends()[0], { orders: [] });
  try {
    const out = join(shop.dir, "out");
    const d = deps("/usr/local/bin/image-agent");
    const cmd = makeScheduleCommand(machine("linux"));
    const args = ["export", "--format", "windows", "--out", out, "--config"];
    assert.equal(await cmd.run(d.deps, [...args, shop.configPath]), 0);
    const xml = join(out, "image-agent.xml");
    let text = new TextDecoder("utf-16le").decode(await Deno.readFile(xml));
    assert.match(
      text,
      /&amp;&amp; "C:\\Program Files\\image-agent\\image-agent.exe" run --config "C:\\ProgramData\\image-agent\\config.json""/,
    );
    assert.ok(!text.includes(shop.configPath), "no path of this machine");
    assert.ok(
      d.log.lines.some((l) => l.includes("set --config-path to change it")),
      d.log.lines.join("\n"),
    );
    assert.equal((await xmllintTask(xml)).code, 0);

    // --config-path and --binary name the target machine's files.
    assert.equal(
      await cmd.run(d.deps, [
        ...args,
        shop.configPath,
        "--config-path",
        "D:\\shop\\image-agent.json",
        "--binary",
        "D:\\tools\\image-agent.exe",
      ]),
      0,
    );
    text = new TextDecoder("utf-16le").decode(await Deno.readFile(xml));
    assert.match(
      text,
      /"D:\\tools\\image-agent.exe" run --config "D:\\shop\\image-agent.json"/,
    );

    // A POSIX path cannot be the config of a Windows task.
    await assert.rejects(
      () =>
        cmd.run(d.deps, [
          ...args,
          shop.configPath,
          "--config-path",
          "/etc/image-agent/config.json",
        ]),
      /--config-path must be an absolute Windows path for the windows files, not "\/etc\/image-agent\/config.json"/,
    );
  } finally {
    await shop.close();
  }
});

Deno.test("schedule export --config-path sets the config the systemd unit reads", async () => {
  const shop = await makeShop(shopBackends()[0], { orders: [] });
  try {
    const out = join(shop.dir, "units");
    const d = deps("/usr/local/bin/image-agent");
    const cmd = makeScheduleCommand(machine("linux"));
    assert.equal(
      await cmd.run(d.deps, [
        "export",
        "--format",
        "systemd",
        "--out",
        out,
        "--config",
        shop.configPath,
        "--config-path",
        "/etc/image-agent/config.json",
      ]),
      0,
    );
    assert.match(
      await Deno.readTextFile(join(out, "image-agent.service")),
      /^ExecStart=\/usr\/local\/bin\/image-agent run --config \/etc\/image-agent\/config.json$/m,
    );
    // Without it, the files read the config this machine read.
    assert.equal(
      await cmd.run(d.deps, [
        "export",
        "--format",
        "systemd",
        "--out",
        out,
        "--config",
        shop.configPath,
      ]),
      0,
    );
    assert.ok(
      (await Deno.readTextFile(join(out, "image-agent.service"))).includes(
        shop.configPath,
      ),
    );
  } finally {
    await shop.close();
  }
});
