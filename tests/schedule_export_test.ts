/**
 * Every generated scheduler file goes through the real validator, and the
 * converted OnCalendar values must elapse exactly when the cron expression
 * fires in its zone.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import {
  instantsOf,
  nextFires,
  parseCron,
  zoneOffsetMinutes,
} from "../src/schedule/cron.ts";
import { crontabEntry, crontabMergeCommand } from "../src/schedule/crontab.ts";
import {
  type ScheduleConfig,
  schedulerFiles,
  writablePaths,
} from "../src/schedule/files.ts";
import { calendarIntervals } from "../src/schedule/launchd.ts";
import { toOnCalendar } from "../src/schedule/systemd.ts";
import {
  calendarElapses,
  crontabCheck,
  plistlibLoad,
  verifyUnits,
  xmllintPlist,
  xmllintTask,
} from "./fakes/schedule_tools.ts";

const BINARY = "/usr/local/bin/image-agent";
const CONFIG_FILE = "/etc/image-agent/config.json";
const NOW = new Date("2026-12-04T12:00:00Z");

const CASES: { cron: string; zone: string }[] = [
  { cron: "0 2 * * *", zone: "Asia/Shanghai" },
  { cron: "*/15 9-17 * * 1-5", zone: "Europe/Berlin" },
  { cron: "30 3 1,15 * *", zone: "America/New_York" },
  { cron: "0 0 13 * 5", zone: "UTC" },
];

function config(cron: string, zone: string, delay = 0): ScheduleConfig {
  return {
    schedule: { cron, timezone: zone, randomizedDelaySec: delay },
    images: { root: "/srv/shop/hd images" },
    state: { dir: "/var/lib/image-agent" },
    backup: { target: "local", local: { dir: "/mnt/nas/backup" } },
    database: { driver: "sqlite", path: "/srv/shop/db/shop.db" },
  };
}

function target(cron: string, zone: string, delay = 0) {
  return {
    binary: BINARY,
    configFile: CONFIG_FILE,
    config: config(cron, zone, delay),
    machineZone: zone,
    now: NOW,
  };
}

async function inTempDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await Deno.makeTempDir({ prefix: "ia-export-" });
  try {
    return await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

// --- OnCalendar against systemd-analyze calendar ---------------------------

const CALENDAR_CASES = [
  ...CASES,
  { cron: "*/15 * * * *", zone: "Europe/Berlin" },
  { cron: "0 8-18/2 * * *", zone: "Asia/Shanghai" },
  { cron: "10-50/20 * * * *", zone: "UTC" },
  { cron: "5 4 * * 7", zone: "America/New_York" },
  { cron: "0 0 1 */3 *", zone: "Europe/Berlin" },
  { cron: "0 12 * jan-mar sat,sun", zone: "Australia/Sydney" },
  { cron: "30 2 * * *", zone: "Europe/Berlin" },
  { cron: "30 1 * * *", zone: "America/New_York" },
  { cron: "0 0 */2 * 1", zone: "UTC" },
  { cron: "@weekly", zone: "Asia/Kolkata" },
];
// Ordinary days, and the days before each DST change in Europe and the US.
const BASES = [
  "2026-12-04T12:00:00Z",
  "2026-03-07T00:00:00Z",
  "2026-03-28T00:00:00Z",
  "2026-10-24T00:00:00Z",
  "2026-10-31T00:00:00Z",
].map((t) => new Date(t));

Deno.test("toOnCalendar() elapses exactly when cron fires in its zone", async () => {
  for (const { cron, zone } of CALENDAR_CASES) {
    const calendars = toOnCalendar(parseCron(cron), zone);
    for (const base of BASES) {
      const expected = nextFires(cron, base, zone, 12).map((d) =>
        d.toISOString()
      );
      // Several OnCalendar lines fire on the union of their elapses.
      const union = new Set<string>();
      for (const cal of calendars) {
        for (const d of await calendarElapses(cal, base, 12)) {
          union.add(d.toISOString());
        }
      }
      const actual = [...union].sort().slice(0, 12);
      assert.deepEqual(
        actual,
        expected,
        `"${cron}" in ${zone} from ${base.toISOString()}: ${
          calendars.join(" | ")
        }`,
      );
    }
  }
});

// Steps that do not divide their range: systemd must not lose the first
// slot after a rollover (a new hour, day, month or year).
const UNEVEN_STEPS = [
  { cron: "0 */5 * * *", zone: "Asia/Shanghai" },
  { cron: "*/7 * * * *", zone: "Europe/Berlin" },
  { cron: "*/25 * * * *", zone: "America/New_York" },
  { cron: "0 3 */7 * *", zone: "UTC" },
];

Deno.test("schedulerFiles() systemd timer keeps every slot of a step that does not divide its range", async () => {
  for (const { cron, zone } of UNEVEN_STEPS) {
    const [service, timer] = schedulerFiles("systemd", target(cron, zone));
    const r = await verifyUnits(
      { [service.name]: service.text, [timer.name]: timer.text },
      BINARY,
    );
    assert.equal(r.output, "", `${cron}: ${r.output}`);
    const calendars = [...timer.text.matchAll(/^OnCalendar=(.*)$/gm)].map((
      m,
    ) => m[1]);
    assert.equal(calendars.length, 1, timer.text);
    // A few hours before local midnight of a new year, and an ordinary day:
    // 60 fires cross a new hour, day, month and year for these steps.
    const newYear = instantsOf(
      { year: 2027, month: 1, day: 1, hour: 0, minute: 0, second: 0 },
      zone,
    )[0];
    const bases = [
      new Date(newYear.getTime() - 3 * 3600000),
      new Date(newYear.getTime() - 40 * 86400000),
      NOW,
    ];
    for (const base of bases) {
      const expected = nextFires(cron, base, zone, 60).map((d) =>
        d.toISOString()
      );
      const actual = (await calendarElapses(calendars[0], base, 60)).map((d) =>
        d.toISOString()
      );
      assert.deepEqual(
        actual,
        expected,
        `"${cron}" in ${zone} from ${base.toISOString()}: ${calendars[0]}`,
      );
    }
  }
});

Deno.test("toOnCalendar() writes the documented forms", () => {
  const cal = (cron: string, zone = "UTC") =>
    toOnCalendar(parseCron(cron), zone);
  assert.deepEqual(cal("0 2 * * *", "Asia/Shanghai"), [
    "*-*-* 02:00:00 Asia/Shanghai",
  ]);
  assert.deepEqual(cal("*/15 9-17 * * 1-5", "Europe/Berlin"), [
    "Mon..Fri *-*-* 09..17:00..45/15:00 Europe/Berlin",
  ]);
  assert.deepEqual(cal("30 3 1,15 * *"), ["*-*-01,15 03:30:00 UTC"]);
  assert.deepEqual(cal("0 0 13 * 5"), [
    "*-*-13 00:00:00 UTC",
    "Fri *-*-* 00:00:00 UTC",
  ]);
  assert.deepEqual(cal("0 0 1 */3 *"), ["*-01..10/3-01 00:00:00 UTC"]);
  assert.deepEqual(cal("*/7 * * * *"), ["*-*-* *:00..56/7:00 UTC"]);
  assert.deepEqual(cal("0 */5 * * *"), ["*-*-* 00..20/5:00:00 UTC"]);
  assert.deepEqual(cal("0 3 */7 * *"), ["*-*-01..29/7 03:00:00 UTC"]);
  assert.deepEqual(cal("0 0 * * 5-7"), ["Fri..Sun *-*-* 00:00:00 UTC"]);
  assert.deepEqual(cal("0 0 * * 1,3"), ["Mon,Wed *-*-* 00:00:00 UTC"]);
});

// --- systemd units -----------------------------------------------------------

Deno.test("schedulerFiles() systemd units pass systemd-analyze verify", async () => {
  for (const { cron, zone } of CASES) {
    const files = schedulerFiles("systemd", target(cron, zone, 900));
    const units = Object.fromEntries(files.map((f) => [f.name, f.text]));
    assert.deepEqual(Object.keys(units), [
      "image-agent.service",
      "image-agent.timer",
    ]);
    const r = await verifyUnits(units, BINARY);
    assert.equal(r.output, "", `${cron} ${zone}: ${r.output}`);
    assert.equal(r.code, 0);
  }
});

Deno.test("systemd verify catches a broken unit (the check can fail)", async () => {
  const files = schedulerFiles("systemd", target("0 2 * * *", "UTC"));
  const units = Object.fromEntries(files.map((f) => [f.name, f.text]));
  units["image-agent.timer"] = units["image-agent.timer"].replace(
    "Persistent=true",
    "Persistant=true",
  );
  const r = await verifyUnits(units, BINARY);
  assert.match(r.output, /Persistant/);
});

Deno.test("schedulerFiles() systemd service is a hardened oneshot with write access", () => {
  const [service, timer] = schedulerFiles(
    "systemd",
    target("0 0 13 * 5", "UTC", 600),
  ).map((f) => f.text);
  assert.match(service, /^Type=oneshot$/m);
  assert.match(service, /^Environment=IMAGE_AGENT_TRIGGER=timer$/m);
  assert.match(
    service,
    /^ExecStart=\/usr\/local\/bin\/image-agent run --config \/etc\/image-agent\/config.json$/m,
  );
  assert.match(service, /^ProtectSystem=strict$/m);
  assert.match(service, /^NoNewPrivileges=true$/m);
  assert.match(service, /^PrivateTmp=true$/m);
  assert.match(
    service,
    /^ReadWritePaths="\/srv\/shop\/hd images" \/var\/lib\/image-agent \/mnt\/nas\/backup \/srv\/shop\/db$/m,
  );
  // A run started at boot waits for the NAS instead of failing without it.
  assert.match(
    service,
    /^\[Unit\][^[]*^RequiresMountsFor="\/srv\/shop\/hd images" \/var\/lib\/image-agent \/mnt\/nas\/backup \/srv\/shop\/db$/m,
  );
  assert.match(timer, /^OnCalendar=\*-\*-13 00:00:00 UTC$/m);
  assert.match(timer, /^OnCalendar=Fri \*-\*-\* 00:00:00 UTC$/m);
  assert.match(timer, /^Persistent=true$/m);
  assert.match(timer, /^RandomizedDelaySec=600$/m);
  assert.match(timer, /^Unit=image-agent.service$/m);
  assert.match(
    timer,
    /^Description=image-agent scheduled run \(cron "0 0 13 \* 5", UTC\)$/m,
  );
  assert.doesNotMatch(
    schedulerFiles("systemd", target("0 2 * * *", "UTC"))[1].text,
    /RandomizedDelaySec/,
  );
});

Deno.test("schedulerFiles() systemd service turns PrivateTmp off for folders under /tmp, and says so", async () => {
  const t = target("0 2 * * *", "UTC");
  t.config.images.root = "/tmp/shop/hd";
  t.config.backup.local.dir = "/var/tmp/backup";
  const [service, timer] = schedulerFiles("systemd", t);
  assert.match(service.text, /^PrivateTmp=false$/m);
  assert.doesNotMatch(service.text, /^PrivateTmp=true$/m);
  assert.deepEqual(service.warnings?.length, 1);
  assert.match(
    service.warnings![0],
    /^PrivateTmp= is off in image-agent.service: \/tmp\/shop\/hd, \/var\/tmp\/backup is under \/tmp or \/var\/tmp/,
  );
  const r = await verifyUnits(
    { [service.name]: service.text, [timer.name]: timer.text },
    BINARY,
  );
  assert.equal(r.output, "");
  // Nothing under /tmp: the protection stays, with nothing to say.
  const [plain] = schedulerFiles("systemd", target("0 2 * * *", "UTC"));
  assert.deepEqual(plain.warnings, []);
});

Deno.test("writablePaths() leaves out the local backup folder for Baidu", () => {
  const c = config("0 2 * * *", "UTC");
  c.backup.target = "baidu";
  assert.deepEqual(writablePaths(c), [
    "/srv/shop/hd images",
    "/var/lib/image-agent",
    "/srv/shop/db",
  ]);
});

// --- cron --------------------------------------------------------------------

Deno.test("schedulerFiles() cron lines pass crontab -n", async () => {
  await inTempDir(async (dir) => {
    for (const { cron, zone } of CASES) {
      const [file] = schedulerFiles("cron", target(cron, zone));
      assert.equal(file.name, "image-agent.cron");
      const path = join(dir, file.name);
      await Deno.writeFile(path, file.bytes);
      const r = await crontabCheck(path);
      assert.equal(r.code, 0, `${cron}: ${r.stdout}${r.stderr}`);
      const lines = file.text.trimEnd().split("\n");
      assert.equal(lines.length, 2);
      assert.match(lines[0], /^# image-agent: scheduled run \(cron "/);
    }
    // A/S, which Debian's crontab refuses, is written as A-max/S.
    const [stepped] = schedulerFiles("cron", target("0 5/6 * * *", "UTC"));
    assert.match(stepped.text, /^0 5-23\/6 \* \* \* /m);
    await Deno.writeFile(join(dir, "stepped.cron"), stepped.bytes);
    assert.equal((await crontabCheck(join(dir, "stepped.cron"))).code, 0);
    // And the check does fail on a bad line.
    const bad = join(dir, "bad.cron");
    await Deno.writeTextFile(bad, "0 25 * * * /bin/true\n");
    assert.notEqual((await crontabCheck(bad)).code, 0);
  });
});

Deno.test("crontabEntry() keeps the fields in numbers, with the trigger", () => {
  const text = crontabEntry({
    binary: "/opt/image agent/image-agent",
    configFile: CONFIG_FILE,
    schedule: parseCron("*/15 9-17 * jan-mar mon-fri"),
    timeZone: "Europe/Berlin",
    serverZone: "Europe/Berlin",
    user: "root",
  });
  assert.equal(
    text.split("\n")[1],
    "*/15 9-17 * 1-3 1-5 root IMAGE_AGENT_TRIGGER=timer '/opt/image agent/image-agent' run --config /etc/image-agent/config.json",
  );
});

Deno.test("crontabEntry() shifts hours between zones a fixed offset apart", () => {
  const line = (cron: string, zone: string, server: string) =>
    crontabEntry({
      binary: BINARY,
      configFile: CONFIG_FILE,
      schedule: parseCron(cron),
      timeZone: zone,
      serverZone: server,
      now: NOW,
    }).split("\n")[1];
  assert.match(line("0 10 * * *", "Asia/Shanghai", "UTC"), /^0 2 \* \* \* /);
  assert.match(
    line("0 10,12 * * 1", "Asia/Tokyo", "Asia/Shanghai"),
    /^0 9,11 \* \* 1 /,
  );
});

Deno.test("crontabEntry() says the zone it was written for and in", () => {
  const entry = (zone: string, server: string) =>
    crontabEntry({
      binary: BINARY,
      configFile: CONFIG_FILE,
      schedule: parseCron("0 10 * * *"),
      timeZone: zone,
      serverZone: server,
      now: NOW,
    }).split("\n");
  const [comment, line] = entry("Asia/Shanghai", "UTC");
  assert.equal(
    comment,
    '# image-agent: scheduled run (cron "0 10 * * *" in Asia/Shanghai, written as "0 2 * * *" in UTC; managed by image-agent)',
  );
  assert.match(line, /^0 2 \* \* \* /);
  assert.equal(
    entry("UTC", "UTC")[0],
    '# image-agent: scheduled run (cron "0 10 * * *" in UTC; managed by image-agent)',
  );
});

Deno.test("crontabMergeCommand() replaces the old entry and keeps other lines", async () => {
  await inTempDir(async (dir) => {
    const old = join(dir, "old crontab");
    const merged = join(dir, "merged");
    const exported = join(dir, "image agent.cron");
    await Deno.writeTextFile(
      old,
      "MAILTO=ops@example.com\n" +
        "15 3 * * * /usr/bin/backup-db\n" +
        '# image-agent: nightly run (cron "0 2 * * *" in UTC; managed by image-agent)\n' +
        "0 2 * * * IMAGE_AGENT_TRIGGER=timer /usr/local/bin/image-agent run --config /old.json\n",
    );
    const [file] = schedulerFiles("cron", target("30 4 * * *", "UTC"));
    await Deno.writeFile(exported, file.bytes);
    // The user's crontab is a file here: `crontab -l` prints it and
    // `crontab -` stores what it reads; the pipeline itself is real sh.
    const r = await new Deno.Command("sh", {
      args: [
        "-c",
        `crontab() { if [ "$1" = -l ]; then cat "$OLD"; else cat > "$NEW"; fi; }\n${
          crontabMergeCommand(exported)
        }`,
      ],
      env: { OLD: old, NEW: merged },
    }).output();
    assert.equal(r.code, 0, new TextDecoder().decode(r.stderr));
    const text = await Deno.readTextFile(merged);
    assert.equal(
      text,
      "MAILTO=ops@example.com\n15 3 * * * /usr/bin/backup-db\n" + file.text,
    );
    const check = await crontabCheck(merged);
    assert.equal(check.code, 0, check.stderr);
  });
});

Deno.test("crontabEntry() moves hours across midnight, and weekdays with them", async () => {
  // Each converted line, read in the server's zone, must fire exactly when
  // the schedule fires in its own zone, and pass crontab -n.
  const cases = [
    {
      cron: "0 2 * * *",
      zone: "Asia/Shanghai",
      server: "UTC",
      line: "0 18 * * *",
    },
    {
      cron: "*/15 * * * *",
      zone: "Asia/Shanghai",
      server: "UTC",
      line: "*/15 * * * *",
    },
    {
      cron: "0 */5 * * *",
      zone: "Asia/Shanghai",
      server: "UTC",
      line: "0 2,7,12,16,21 * * *",
    },
    {
      cron: "30 1,3 * * 1-5",
      zone: "Asia/Tokyo",
      server: "UTC",
      line: "30 16,18 * * 0-4",
    },
    {
      cron: "0 22 * * 0",
      zone: "UTC",
      server: "Asia/Shanghai",
      line: "0 6 * * 1",
    },
    {
      cron: "0 0 * * *",
      zone: "Europe/Berlin",
      server: "Europe/London",
      line: "0 23 * * *",
    },
  ];
  await inTempDir(async (dir) => {
    for (const c of cases) {
      const text = crontabEntry({
        binary: BINARY,
        configFile: CONFIG_FILE,
        schedule: parseCron(c.cron),
        timeZone: c.zone,
        serverZone: c.server,
        now: NOW,
      });
      const line = text.split("\n")[1];
      const fields = line.split(" ").slice(0, 5).join(" ");
      assert.equal(fields, c.line, `${c.cron} in ${c.zone}`);
      for (const base of [NOW, new Date("2026-03-28T00:00:00Z")]) {
        assert.deepEqual(
          nextFires(fields, base, c.server, 50),
          nextFires(c.cron, base, c.zone, 50),
          `"${c.cron}" in ${c.zone} as "${fields}" in ${c.server}`,
        );
      }
      const path = join(dir, "image-agent.cron");
      await Deno.writeTextFile(path, text);
      const r = await crontabCheck(path);
      assert.equal(r.code, 0, `${fields}: ${r.stdout}${r.stderr}`);
    }
  });
});

Deno.test("crontabEntry() refuses a zone it cannot convert, saying why", () => {
  const entry = (cron: string, zone: string) => () =>
    crontabEntry({
      binary: BINARY,
      configFile: CONFIG_FILE,
      schedule: parseCron(cron),
      timeZone: zone,
      serverZone: "UTC",
      now: NOW,
    });
  assert.throws(entry("0 2 * * *", "Europe/Berlin"), /CRON_TZ/);
  assert.throws(
    entry("0 2 1 * *", "Asia/Shanghai"),
    /falls on another day .* its day of month or month cannot move/,
  );
  assert.throws(
    entry("0 2,12 * * 1", "Asia/Shanghai"),
    /falls on two different days .* its day of week cannot move/,
  );
  assert.throws(entry("0 2 * * *", "Asia/Kolkata"), /whole hours/);
});

// --- Windows -----------------------------------------------------------------

Deno.test("schedulerFiles() Windows tasks pass the Task Scheduler schema", async () => {
  await inTempDir(async (dir) => {
    for (const { cron, zone } of CASES) {
      const [file] = schedulerFiles("windows", target(cron, zone, 900));
      assert.equal(file.name, "image-agent.xml");
      assert.deepEqual([...file.bytes.slice(0, 4)], [0xff, 0xfe, 0x3c, 0x00]);
      const path = join(dir, file.name);
      await Deno.writeFile(path, file.bytes);
      const r = await xmllintTask(path);
      assert.equal(r.code, 0, `${cron}: ${r.stderr}`);
      assert.match(file.text, /^<\?xml version="1.0" encoding="UTF-16"\?>/);
      assert.match(file.text, /<Task version="1.3"/);
      assert.match(file.text, /<UserId>S-1-5-18<\/UserId>/);
      assert.match(file.text, /IgnoreNew/);
      assert.match(file.text, /<StartWhenAvailable>true</);
      assert.match(file.text, /<ExecutionTimeLimit>PT12H</);
      assert.match(file.text, /<RandomDelay>PT15M<\/RandomDelay>/);
      // Every calendar trigger has its StartBoundary.
      const triggers = file.text.split("<CalendarTrigger>").length - 1;
      const boundaries = file.text.split("<StartBoundary>").length - 1;
      assert.equal(boundaries, triggers);
    }
    // And the schema does reject a broken task.
    const [file] = schedulerFiles("windows", target("0 2 * * *", "UTC"));
    const bad = join(dir, "bad.xml");
    await Deno.writeTextFile(
      bad,
      file.text.replace("IgnoreNew", "IgnoreNewer").replace(
        'encoding="UTF-16"',
        'encoding="UTF-8"',
      ),
    );
    assert.notEqual((await xmllintTask(bad)).code, 0);
  });
});

Deno.test("schedulerFiles() Windows triggers follow the cron fields", () => {
  const text = (cron: string) =>
    schedulerFiles("windows", target(cron, "UTC"))[0].text;
  const weekdays = text("*/15 9-17 * * 1-5");
  assert.match(weekdays, /<StartBoundary>2025-01-01T09:00:00</);
  assert.match(weekdays, /<Interval>PT15M<\/Interval>/);
  assert.match(weekdays, /<Duration>PT8H45M30S<\/Duration>/);
  assert.match(
    weekdays,
    /<DaysOfWeek><Monday \/><Tuesday \/><Wednesday \/><Thursday \/><Friday \/><\/DaysOfWeek>/,
  );
  const friday13 = text("0 0 13 * 5");
  assert.equal(friday13.split("<CalendarTrigger>").length - 1, 2);
  assert.match(friday13, /<DaysOfMonth><Day>13<\/Day><\/DaysOfMonth>/);
  assert.match(friday13, /<ScheduleByWeek>/);
  const uneven = text("0,20 2,3 * * *");
  assert.equal(uneven.split("<CalendarTrigger>").length - 1, 4);
  assert.match(
    text("0 2 * * *"),
    /set IMAGE_AGENT_TRIGGER=timer&amp;&amp; "\/usr\/local\/bin\/image-agent" run --config/,
  );
});

Deno.test("schedulerFiles() refuses what Windows triggers cannot express", () => {
  assert.throws(
    () => schedulerFiles("windows", target("0 0 */2 * 1", "UTC")),
    /both the day of month and the day of week/,
  );
  assert.throws(
    () => schedulerFiles("windows", target("0,7,30 * * * *", "UTC")),
    /needs 72 triggers/,
  );
  assert.throws(
    () =>
      schedulerFiles("windows", {
        ...target("0 2 * * *", "Asia/Shanghai"),
        machineZone: "UTC",
      }),
    /machine's own time zone \(UTC\)/,
  );
});

// --- launchd -----------------------------------------------------------------

Deno.test("schedulerFiles() launchd plists pass the DTD and plistlib", async () => {
  await inTempDir(async (dir) => {
    for (const { cron, zone } of CASES) {
      const [file] = schedulerFiles("launchd", target(cron, zone));
      assert.equal(file.name, "com.image-agent.nightly.plist");
      const path = join(dir, file.name);
      await Deno.writeFile(path, file.bytes);
      const r = await xmllintPlist(path);
      assert.equal(r.code, 0, `${cron}: ${r.stderr}`);
      assert.equal(r.stderr, "");
      const plist = await plistlibLoad(path) as Record<string, unknown>;
      assert.equal(plist.Label, "com.image-agent.nightly");
      assert.deepEqual(plist.ProgramArguments, [
        BINARY,
        "run",
        "--config",
        CONFIG_FILE,
      ]);
      assert.deepEqual(plist.EnvironmentVariables, {
        IMAGE_AGENT_TRIGGER: "timer",
      });
      assert.deepEqual(
        plist.StartCalendarInterval,
        calendarIntervals(parseCron(cron)),
      );
    }
    const bad = join(dir, "bad.plist");
    const [file] = schedulerFiles("launchd", target("0 2 * * *", "UTC"));
    await Deno.writeTextFile(
      bad,
      file.text.replace("<string>timer</string>", ""),
    );
    assert.notEqual((await xmllintPlist(bad)).code, 0);
  });
});

Deno.test("calendarIntervals() expands fields and keeps day OR apart", () => {
  const weekdays = calendarIntervals(parseCron("*/15 9-17 * * 1-5"));
  assert.equal(weekdays.length, 4 * 9 * 5);
  assert.deepEqual(weekdays[0], { Minute: 0, Hour: 9, Weekday: 1 });
  assert.deepEqual(calendarIntervals(parseCron("0 0 13 * 5")), [
    { Minute: 0, Hour: 0, Day: 13 },
    { Minute: 0, Hour: 0, Weekday: 5 },
  ]);
  assert.deepEqual(calendarIntervals(parseCron("30 3 1,15 * *")), [
    { Minute: 30, Hour: 3, Day: 1 },
    { Minute: 30, Hour: 3, Day: 15 },
  ]);
});

Deno.test("schedulerFiles() refuses what launchd cannot express", () => {
  assert.throws(
    () => schedulerFiles("launchd", target("0-58 9-17 1-20 * *", "UTC")),
    /expands into 10620/,
  );
  assert.throws(
    () => schedulerFiles("launchd", target("0 0 */2 * 1", "UTC")),
    /both the day of month and the day of week/,
  );
  assert.throws(
    () =>
      schedulerFiles("launchd", {
        ...target("0 2 * * *", "Europe/Berlin"),
        machineZone: "America/New_York",
      }),
    /Mac's own time zone/,
  );
});

// --- next fire times across DST changes, against systemd -------------------

/** The instants in 2026 at which a zone's offset changes. */
function offsetChanges(zone: string): Date[] {
  const out: Date[] = [];
  const start = Date.UTC(2026, 0, 1);
  let prev = zoneOffsetMinutes(new Date(start), zone);
  for (let t = start + 900000; t < Date.UTC(2027, 0, 1); t += 900000) {
    const off = zoneOffsetMinutes(new Date(t), zone);
    if (off !== prev) out.push(new Date(t));
    prev = off;
  }
  return out;
}

Deno.test("nextFire() agrees with systemd from any start around a DST change", async () => {
  const cases = [
    { zone: "America/New_York", crons: ["45 1 * * *", "*/15 1-2 * * *"] },
    { zone: "Europe/Berlin", crons: ["30 2 * * *", "*/20 1-3 * * *"] },
    // Lord Howe moves its clocks by half an hour.
    { zone: "Australia/Lord_Howe", crons: ["45 1 * * *", "*/10 1-2 * * *"] },
  ];
  const checks: { cron: string; zone: string; base: Date }[] = [];
  for (const { zone, crons } of cases) {
    const changes = offsetChanges(zone);
    assert.equal(changes.length, 2, zone);
    for (const change of changes) {
      // Every 5 minutes from 2 h before to 2 h after the change, so starts
      // fall on slots, between them and inside the repeated hour.
      for (let m = -120; m <= 120; m += 5) {
        const base = new Date(change.getTime() + m * 60000);
        for (const cron of crons) checks.push({ cron, zone, base });
      }
    }
  }
  const failures: string[] = [];
  for (let i = 0; i < checks.length; i += 16) {
    await Promise.all(
      checks.slice(i, i + 16).map(async (c) => {
        const [calendar] = toOnCalendar(parseCron(c.cron), c.zone);
        const want = (await calendarElapses(calendar, c.base, 6)).map((d) =>
          d.toISOString()
        );
        const got = nextFires(c.cron, c.base, c.zone, 6).map((d) =>
          d.toISOString()
        );
        if (want.join() !== got.join()) {
          failures.push(
            `"${c.cron}" in ${c.zone} from ${c.base.toISOString()}: systemd ${
              want[0]
            }, ${want[1]}; nextFires ${got[0]}, ${got[1]}`,
          );
        }
      }),
    );
  }
  assert.deepEqual(failures, []);
});
