/**
 * install and uninstall against a temporary root folder, with a command
 * runner that records what it is asked to run and answers as told.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import type { Deps } from "../src/cli/command.ts";
import {
  makeInstallCommand,
  makeUninstallCommand,
  type SystemAccess,
} from "../src/cli/schedule.ts";
import { makeStatusCommand } from "../src/cli/status.ts";
import { ManualClock } from "../src/clock.ts";
import { AgentError } from "../src/errors.ts";
import { createLogger } from "../src/log.ts";
import { schedulerFiles } from "../src/schedule/files.ts";
import type { CommandResult } from "../src/schedule/install.ts";

const BINARY = "/usr/local/bin/image-agent";

interface Machine {
  root: string;
  configFile: string;
  system: SystemAccess;
  /** Every command run, as one string each. */
  ran: string[];
  stdout: string[];
  deps: Deps;
  /** Answers for commands, by their text; default exit 0. */
  answers: Map<string, CommandResult>;
  setRoot(isRoot: boolean): void;
}

async function withMachine(
  options: {
    os?: string;
    systemd?: boolean;
    zone?: string;
    /** The machine's own zone (default: the config's zone). */
    machineZone?: string;
  },
  fn: (m: Machine) => Promise<void>,
): Promise<void> {
  const root = await Deno.makeTempDir({ prefix: "ia-install-root-" });
  const site = await Deno.makeTempDir({ prefix: "ia-install-site-" });
  try {
    if (options.systemd) {
      await Deno.mkdir(join(root, "run/systemd/system"), { recursive: true });
    }
    for (const dir of ["hd", "backup"]) await Deno.mkdir(join(site, dir));
    await Deno.writeTextFile(join(site, "shop.db"), "");
    const zone = options.zone ?? "Europe/Berlin";
    const configFile = join(site, "config.json");
    await Deno.writeTextFile(
      configFile,
      JSON.stringify({
        database: { driver: "sqlite", path: "shop.db" },
        images: { root: "hd" },
        backup: { target: "local", local: { dir: "backup" } },
        state: { dir: "/var/lib/image-agent" },
        schedule: { cron: "0 2 * * *", timezone: zone },
      }),
    );
    let root_ = true;
    const ran: string[] = [];
    const answers = new Map<string, CommandResult>();
    const system: SystemAccess = {
      root,
      os: options.os ?? "linux",
      isRoot: () => options.os === "windows" ? null : root_,
      machineZone: () => options.machineZone ?? zone,
      run: (program, args) => {
        const line = [program, ...args].join(" ");
        ran.push(line);
        return Promise.resolve(
          answers.get(line) ?? { code: 0, stdout: "", stderr: "" },
        );
      },
    };
    const stdout: string[] = [];
    const deps: Deps = {
      clock: new ManualClock("2026-12-04T12:00:00Z"),
      log: createLogger({
        level: "error",
        sink: { write: () => {}, isTerminal: false },
      }),
      stdout: (t) => stdout.push(t),
      env: () => undefined,
      interactive: false,
      prompt: () => null,
      signal: new AbortController().signal,
      trigger: "manual",
      execPath: BINARY,
      fetch: () => Promise.reject(new Error("no network in this test")),
    };
    await fn({
      root,
      configFile,
      system,
      ran,
      stdout,
      deps,
      answers,
      setRoot: (v) => root_ = v,
    });
  } finally {
    await Deno.remove(root, { recursive: true });
    await Deno.remove(site, { recursive: true });
  }
}

async function mode(path: string): Promise<string> {
  return ((await Deno.stat(path)).mode! & 0o777).toString(8);
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch {
    return false;
  }
}

Deno.test("install picks systemd when it runs, writes the units and enables the timer", async () => {
  await withMachine({ systemd: true }, async (m) => {
    const install = makeInstallCommand(m.system);
    assert.equal(await install.run(m.deps, ["--config", m.configFile]), 0);

    const dir = join(m.root, "etc/systemd/system");
    const expected = schedulerFiles("systemd", {
      binary: BINARY,
      configFile: m.configFile,
      config: {
        schedule: {
          cron: "0 2 * * *",
          timezone: "Europe/Berlin",
          randomizedDelaySec: 0,
        },
        images: { root: join(m.configFile, "../hd") },
        state: { dir: "/var/lib/image-agent" },
        backup: {
          target: "local",
          local: { dir: join(m.configFile, "../backup") },
        },
        database: { driver: "sqlite", path: join(m.configFile, "../shop.db") },
      },
      machineZone: "Europe/Berlin",
    });
    for (const f of expected) {
      assert.equal(await Deno.readTextFile(join(dir, f.name)), f.text);
      assert.equal(await mode(join(dir, f.name)), "644");
    }
    assert.equal(await mode(join(m.root, "var/lib/image-agent")), "700");
    assert.deepEqual(m.ran, [
      "systemctl daemon-reload",
      "systemctl enable --now image-agent.timer",
    ]);
    const out = m.stdout.join("");
    assert.match(
      out,
      /installing the systemd entry for cron "0 2 \* \* \*" in Europe\/Berlin/,
    );
    assert.match(
      out,
      /next run: 2026-12-05 02:00 \(Europe\/Berlin, UTC\+01:00\)/,
    );

    // Again: the same files, unchanged, and the same idempotent commands.
    m.ran.length = 0;
    m.stdout.length = 0;
    assert.equal(await install.run(m.deps, ["--config", m.configFile]), 0);
    assert.match(m.stdout.join(""), /unchanged .*image-agent\.service/);
    assert.deepEqual(m.ran, [
      "systemctl daemon-reload",
      "systemctl enable --now image-agent.timer",
    ]);
    assert.deepEqual(
      [...Deno.readDirSync(dir)].map((e) => e.name).sort(),
      ["image-agent.service", "image-agent.timer"],
    );
  });
});

Deno.test("status says what runs the schedule, or that nothing does", async () => {
  await withMachine({ systemd: true }, async (m) => {
    const status = makeStatusCommand(m.root);
    const schedule = async () => {
      m.stdout.length = 0;
      assert.equal(await status.run(m.deps, ["--config", m.configFile]), 0);
      return m.stdout.join("").trimEnd().split("\n").at(-1);
    };
    assert.equal(
      await schedule(),
      `Schedule: "0 2 * * *" in Europe/Berlin, not registered: nothing runs it (register it with 'image-agent install', or run 'image-agent daemon'); it would next run 2026-12-05 02:00 (Europe/Berlin, UTC+01:00)`,
    );
    await makeInstallCommand(m.system).run(m.deps, ["--config", m.configFile]);
    assert.equal(
      await schedule(),
      `Schedule: "0 2 * * *" in Europe/Berlin, run by the systemd timer; next run 2026-12-05 02:00 (Europe/Berlin, UTC+01:00)`,
    );
    m.stdout.length = 0;
    await status.run(m.deps, ["--config", m.configFile, "--json"]);
    const json = JSON.parse(m.stdout.join("")).schedule;
    assert.deepEqual(json.registered, ["systemd"]);
    assert.equal(json.nextRun, "2026-12-05T01:00:00.000Z");
    assert.equal(json.daemon, null);
  });
});

Deno.test("install --dry-run prints files and commands and changes nothing", async () => {
  await withMachine({ systemd: true }, async (m) => {
    m.setRoot(false);
    const install = makeInstallCommand(m.system);
    assert.equal(
      await install.run(m.deps, ["--config", m.configFile, "--dry-run"]),
      0,
    );
    assert.deepEqual(m.ran, []);
    assert.equal(await exists(join(m.root, "etc")), false);
    assert.equal(await exists(join(m.root, "var")), false);
    const out = m.stdout.join("");
    assert.match(out, /^Dry run: installing the systemd entry/);
    assert.ok(
      out.includes(
        `note: this needs root; run it with sudo: sudo image-agent install --config ${m.configFile}\n`,
      ),
      out,
    );
    assert.match(
      out,
      /would create folder .*var\/lib\/image-agent \(mode 0700\)/,
    );
    assert.match(
      out,
      /would write .*etc\/systemd\/system\/image-agent\.timer \(mode 0644\):\n {4}# Written by/,
    );
    assert.match(out, /^ {4}OnCalendar=\*-\*-\* 02:00:00 Europe\/Berlin$/m);
    assert.match(out, /^would run: systemctl daemon-reload$/m);
    assert.match(
      out,
      /^would run: systemctl enable --now image-agent\.timer$/m,
    );
  });
});

Deno.test("install says it needs root, and writes nothing without it", async () => {
  await withMachine({ systemd: true }, async (m) => {
    m.setRoot(false);
    const install = makeInstallCommand(m.system);
    await assert.rejects(
      () =>
        install.run(m.deps, [
          "--scheduler",
          "systemd",
          "--config",
          `${m.configFile}/../config.json`,
        ]),
      (err: unknown) => {
        assert.ok(err instanceof AgentError);
        assert.match(
          err.message,
          /'install' needs root to register the systemd entry/,
        );
        // The same arguments, with the config sudo would not find by itself.
        assert.equal(
          err.hint,
          `run it again as root: sudo image-agent install --scheduler systemd --config ${m.configFile}`,
        );
        return true;
      },
    );
    assert.deepEqual(m.ran, []);
    assert.equal(await exists(join(m.root, "etc")), false);
  });
});

Deno.test("uninstall stops the timer, removes the units, and is idempotent", async () => {
  await withMachine({ systemd: true }, async (m) => {
    await makeInstallCommand(m.system).run(m.deps, ["--config", m.configFile]);
    m.ran.length = 0;
    const uninstall = makeUninstallCommand(m.system);
    assert.equal(await uninstall.run(m.deps, ["--config", m.configFile]), 0);
    assert.deepEqual(m.ran, [
      "systemctl disable --now image-agent.timer",
      "systemctl clean --what=state image-agent.timer",
      "systemctl daemon-reload",
    ]);
    const dir = join(m.root, "etc/systemd/system");
    assert.deepEqual([...Deno.readDirSync(dir)], []);

    m.ran.length = 0;
    m.stdout.length = 0;
    assert.equal(await uninstall.run(m.deps, ["--config", m.configFile]), 0);
    assert.deepEqual(m.ran, []);
    assert.match(m.stdout.join(""), /nothing to remove: no systemd entry/);
  });
});

Deno.test("uninstall without root succeeds when nothing is installed", async () => {
  await withMachine({ systemd: true }, async (m) => {
    m.setRoot(false);
    const uninstall = makeUninstallCommand(m.system);
    assert.equal(await uninstall.run(m.deps, ["--config", m.configFile]), 0);
    assert.match(m.stdout.join(""), /nothing to remove: no systemd entry/);
    assert.deepEqual(m.ran, []);

    // With something there, it still says it needs root and removes nothing.
    m.setRoot(true);
    await makeInstallCommand(m.system).run(m.deps, ["--config", m.configFile]);
    m.setRoot(false);
    m.ran.length = 0;
    await assert.rejects(
      () => uninstall.run(m.deps, ["--config", m.configFile]),
      /'uninstall' needs root to remove the systemd entry/,
    );
    assert.deepEqual(m.ran, []);
    assert.equal(
      await exists(join(m.root, "etc/systemd/system/image-agent.timer")),
      true,
    );
  });
});

Deno.test("install falls back to /etc/cron.d when systemd is not running", async () => {
  await withMachine({ systemd: false, zone: "UTC" }, async (m) => {
    assert.equal(
      await makeInstallCommand(m.system).run(m.deps, [
        "--config",
        m.configFile,
      ]),
      0,
    );
    const file = join(m.root, "etc/cron.d/image-agent");
    const text = await Deno.readTextFile(file);
    assert.match(text, /^# image-agent: scheduled run/);
    assert.equal(
      text.split("\n")[1],
      `0 2 * * * root IMAGE_AGENT_TRIGGER=timer ${BINARY} run --config ${m.configFile}`,
    );
    assert.equal(await mode(file), "644");
    assert.deepEqual(m.ran, []);

    assert.equal(
      await makeUninstallCommand(m.system).run(m.deps, [
        "--config",
        m.configFile,
      ]),
      0,
    );
    assert.equal(await exists(file), false);
  });
});

Deno.test("install --dry-run on a UTC server converts a Shanghai schedule for cron", async () => {
  await withMachine(
    { systemd: false, zone: "Asia/Shanghai", machineZone: "UTC" },
    async (m) => {
      const install = makeInstallCommand(m.system);
      assert.equal(
        await install.run(m.deps, ["--config", m.configFile, "--dry-run"]),
        0,
      );
      const out = m.stdout.join("");
      assert.match(out, /^ {4}0 18 \* \* \* root IMAGE_AGENT_TRIGGER=timer /m);
      assert.match(out, /next run: 2026-12-05 02:00 \(Asia\/Shanghai/);
    },
  );
});

Deno.test("install says why it picked cron, and warns when cron is not running", async () => {
  await withMachine({ systemd: false, zone: "UTC" }, async (m) => {
    // A /proc with one process that is not cron.
    await Deno.mkdir(join(m.root, "proc/1"), { recursive: true });
    await Deno.writeTextFile(join(m.root, "proc/1/comm"), "bash\n");
    await Deno.writeTextFile(join(m.root, "proc/cpuinfo"), "");
    const install = makeInstallCommand(m.system);
    const args = ["--config", m.configFile, "--dry-run", "--json"];
    assert.equal(await install.run(m.deps, args), 0);
    let steps: string[] = JSON.parse(m.stdout.join("")).steps;
    assert.ok(
      steps.includes(
        "systemd is not running (/run/systemd/system missing): using /etc/cron.d/image-agent",
      ),
      steps.join("\n"),
    );
    assert.ok(
      steps.some((l) =>
        /^warning: no cron daemon is running \(no cron or crond process found\)/
          .test(l)
      ),
      steps.join("\n"),
    );

    await Deno.mkdir(join(m.root, "proc/77"));
    await Deno.writeTextFile(join(m.root, "proc/77/comm"), "cron\n");
    m.stdout.length = 0;
    assert.equal(await install.run(m.deps, args), 0);
    steps = JSON.parse(m.stdout.join("")).steps;
    assert.ok(!steps.some((l) => l.startsWith("warning:")), steps.join("\n"));
  });
});

Deno.test("install on Windows imports the task with schtasks, uninstall deletes it", async () => {
  await withMachine({ os: "windows", zone: "Asia/Shanghai" }, async (m) => {
    assert.equal(
      await makeInstallCommand(m.system).run(m.deps, [
        "--config",
        m.configFile,
      ]),
      0,
    );
    const xml = join(m.root, m.configFile, "../image-agent.xml");
    const bytes = await Deno.readFile(xml);
    assert.deepEqual([...bytes.slice(0, 2)], [0xff, 0xfe]);
    assert.deepEqual(m.ran, [
      `schtasks /Create /XML ${xml} /TN \\image-agent\\nightly /F`,
    ]);

    m.ran.length = 0;
    assert.equal(
      await makeUninstallCommand(m.system).run(m.deps, [
        "--config",
        m.configFile,
      ]),
      0,
    );
    assert.deepEqual(m.ran, [
      "schtasks /Query /TN \\image-agent\\nightly",
      "schtasks /Delete /TN \\image-agent\\nightly /F",
    ]);
    assert.equal(await exists(xml), false);
  });
});

Deno.test("install --dry-run on Windows says it needs an elevated prompt", async () => {
  await withMachine({ os: "windows", zone: "UTC" }, async (m) => {
    const install = makeInstallCommand(m.system);
    assert.equal(
      await install.run(m.deps, ["--config", m.configFile, "--dry-run"]),
      0,
    );
    assert.match(
      m.stdout.join(""),
      /^note: this needs an elevated \(Administrator\) prompt/m,
    );
    assert.deepEqual(m.ran, []);
  });
});

Deno.test("install on Windows explains 'Access is denied'", async () => {
  await withMachine({ os: "windows", zone: "UTC" }, async (m) => {
    m.answers.set(
      `schtasks /Create /XML ${
        join(m.root, m.configFile, "../image-agent.xml")
      } /TN \\image-agent\\nightly /F`,
      { code: 1, stdout: "", stderr: "ERROR: Access is denied.\r\n" },
    );
    await assert.rejects(
      () =>
        makeInstallCommand(m.system).run(m.deps, ["--config", m.configFile]),
      (err: unknown) => {
        assert.ok(err instanceof AgentError);
        assert.match(
          err.message,
          /failed with exit code 1: ERROR: Access is denied\./,
        );
        assert.match(err.hint ?? "", /elevated \(Administrator\) prompt/);
        return true;
      },
    );
  });
});

Deno.test("install on macOS boots out a loaded job before bootstrapping", async () => {
  await withMachine({ os: "darwin", zone: "UTC" }, async (m) => {
    const plist = join(
      m.root,
      "Library/LaunchDaemons/com.image-agent.nightly.plist",
    );
    // First install: the job is not loaded yet (launchctl print fails).
    m.answers.set("launchctl print system/com.image-agent.nightly", {
      code: 113,
      stdout: "",
      stderr: "Could not find service",
    });
    const install = makeInstallCommand(m.system);
    assert.equal(await install.run(m.deps, ["--config", m.configFile]), 0);
    assert.deepEqual(m.ran, [
      "launchctl print system/com.image-agent.nightly",
      `launchctl bootstrap system ${plist}`,
    ]);
    assert.match(
      await Deno.readTextFile(plist),
      /<key>StartCalendarInterval<\/key>/,
    );

    // Second install: loaded, so it is booted out first.
    m.answers.clear();
    m.ran.length = 0;
    assert.equal(await install.run(m.deps, ["--config", m.configFile]), 0);
    assert.deepEqual(m.ran, [
      "launchctl print system/com.image-agent.nightly",
      "launchctl bootout system/com.image-agent.nightly",
      `launchctl bootstrap system ${plist}`,
    ]);
  });
});

Deno.test("install refuses to schedule the Deno runtime itself", async () => {
  await withMachine({ systemd: true }, async (m) => {
    const deps = { ...m.deps, execPath: "/usr/bin/deno" };
    await assert.rejects(
      () => makeInstallCommand(m.system).run(deps, ["--config", m.configFile]),
      /running under the Deno runtime/,
    );
    assert.equal(
      await makeInstallCommand(m.system).run(deps, [
        "--config",
        m.configFile,
        "--binary",
        "/opt/image-agent/bin/image-agent",
        "--dry-run",
      ]),
      0,
    );
    assert.match(
      m.stdout.join(""),
      /ExecStart=\/opt\/image-agent\/bin\/image-agent run/,
    );
  });
});
