import assert from "node:assert/strict";
import {
  CronSyntaxError,
  formatLocal,
  instantsOf,
  nextFire,
  nextFires,
  nextRunTime,
  parseCron,
  zonesAgree,
} from "../src/schedule/cron.ts";

const iso = (dates: Date[]) => dates.map((d) => d.toISOString());

Deno.test("parseCron() reads lists, ranges, steps and names", () => {
  const s = parseCron("*/15 9-17 1,15 jan-MAR mon-fri");
  assert.deepEqual(s.minute.values, [0, 15, 30, 45]);
  assert.deepEqual(s.hour.values, [9, 10, 11, 12, 13, 14, 15, 16, 17]);
  assert.deepEqual(s.dayOfMonth.values, [1, 15]);
  assert.deepEqual(s.month.values, [1, 2, 3]);
  assert.deepEqual(s.dayOfWeek.values, [1, 2, 3, 4, 5]);
  assert.equal(s.dayOr, true);
});

Deno.test("parseCron() treats 0 and 7 as Sunday and expands A/S", () => {
  assert.deepEqual(parseCron("0 0 * * 7").dayOfWeek.values, [0]);
  assert.deepEqual(parseCron("0 0 * * 5-7").dayOfWeek.values, [0, 5, 6]);
  assert.deepEqual(parseCron("0 0 * * 0-7").dayOfWeek.values.length, 7);
  assert.deepEqual(parseCron("50/5 0 * * *").minute.values, [50, 55]);
  assert.deepEqual(parseCron("0 8-18/4 * * *").hour.values, [8, 12, 16]);
});

Deno.test("parseCron() expands macros the cron way (@weekly is Sunday)", () => {
  assert.deepEqual(parseCron("@weekly").dayOfWeek.values, [0]);
  assert.deepEqual(parseCron("@daily").hour.values, [0]);
  assert.equal(parseCron("@daily").source, "@daily");
});

Deno.test("parseCron() applies Vixie's star rule to the day fields", () => {
  assert.equal(parseCron("0 0 13 * 5").dayOr, true);
  assert.equal(parseCron("0 0 */2 * 1").dayOr, false);
  assert.equal(parseCron("0 0 13 * *").dayOr, false);
});

Deno.test("parseCron() rejects what cron rejects, naming the field", () => {
  const cases: [string, RegExp][] = [
    ["0 25 * * *", /hour field "25": 25 is outside 0-23/],
    ["0 2 * *", /expected 5 fields/],
    ["0 2 * * 8", /day of week field "8"/],
    ["0 2 * * *  *", /found 6/],
    ["0 2 0 * *", /day of month field "0"/],
    ["0 17-9 * * *", /runs backwards/],
    ["*/0 * * * *", /at least 1/],
    ["0 2 * foo *", /"foo" is not a number/],
    ["0 2 1,,2 * *", /empty list item/],
    ["@reboot", /unknown macro/],
  ];
  for (const [expr, message] of cases) {
    assert.throws(() => parseCron(expr), (err: unknown) => {
      assert.ok(err instanceof CronSyntaxError, expr);
      assert.match(err.message, message, expr);
      return true;
    });
  }
});

Deno.test("nextFire() finds the next local time in a zone", () => {
  // 2026-12-04 18:00 UTC is 2026-12-05 02:00 in Shanghai (UTC+8).
  assert.equal(
    nextFire("0 2 * * *", new Date("2026-12-04T12:00:00Z"), "Asia/Shanghai")
      .toISOString(),
    "2026-12-04T18:00:00.000Z",
  );
  // Strictly after: a fire time itself is not returned again.
  assert.equal(
    nextFire("0 2 * * *", new Date("2026-12-04T18:00:00Z"), "Asia/Shanghai")
      .toISOString(),
    "2026-12-05T18:00:00.000Z",
  );
});

Deno.test("nextFire() ORs the day fields when both are restricted", () => {
  // 2026-02-13 is a Friday; Fridays and the 13th both count.
  assert.deepEqual(
    iso(nextFires("0 0 13 * 5", new Date("2026-03-01T00:00:00Z"), "UTC", 4)),
    [
      "2026-03-06T00:00:00.000Z",
      "2026-03-13T00:00:00.000Z",
      "2026-03-20T00:00:00.000Z",
      "2026-03-27T00:00:00.000Z",
    ],
  );
  assert.deepEqual(
    iso(nextFires("0 0 1 * 1", new Date("2026-06-02T00:00:00Z"), "UTC", 2)),
    ["2026-06-08T00:00:00.000Z", "2026-06-15T00:00:00.000Z"],
  );
});

Deno.test("nextFire() skips a local time lost to the spring DST change", () => {
  // Europe/Berlin jumps from 02:00 to 03:00 on 2026-03-29.
  assert.deepEqual(
    iso(
      nextFires(
        "30 2 * * *",
        new Date("2026-03-28T12:00:00Z"),
        "Europe/Berlin",
        2,
      ),
    ),
    ["2026-03-30T00:30:00.000Z", "2026-03-31T00:30:00.000Z"],
  );
});

Deno.test("nextFire() fires once in the hour repeated in autumn", () => {
  // Europe/Berlin repeats 02:00-03:00 on 2026-10-25 (CEST, then CET).
  assert.deepEqual(
    iso(
      nextFires(
        "30 2 * * *",
        new Date("2026-10-24T12:00:00Z"),
        "Europe/Berlin",
        2,
      ),
    ),
    ["2026-10-25T00:30:00.000Z", "2026-10-26T01:30:00.000Z"],
  );
});

Deno.test("nextFire() takes the second of a repeated time only when starting between the two", () => {
  // New York repeats 01:00-02:00 on 2026-11-01: 01:45 is 05:45Z, then 06:45Z.
  const next = (after: string) =>
    nextFire("45 1 * * *", new Date(after), "America/New_York").toISOString();
  // Started after the first 01:45 but before the second: the second, as
  // systemd-analyze calendar --base-time='2026-11-01 06:30:00 UTC' says.
  assert.equal(next("2026-11-01T06:30:00Z"), "2026-11-01T06:45:00.000Z");
  // Chained from the first 01:45 itself: the wall clock shows 01:45 again an
  // hour later, which is not a new slot.
  assert.equal(next("2026-11-01T05:45:00Z"), "2026-11-02T06:45:00.000Z");
  assert.equal(next("2026-11-01T05:00:00Z"), "2026-11-01T05:45:00.000Z");
});

Deno.test("nextFire() refuses a schedule that never fires", () => {
  assert.throws(
    () => nextFire("0 0 31 2 *", new Date("2026-01-01T00:00:00Z"), "UTC"),
    /never fires/,
  );
  assert.equal(
    nextFire("0 0 29 2 *", new Date("2026-01-01T00:00:00Z"), "UTC")
      .toISOString(),
    "2028-02-29T00:00:00.000Z",
  );
});

Deno.test("instantsOf() returns none in a gap and two in an overlap", () => {
  const at = (month: number, day: number) => ({
    year: 2026,
    month,
    day,
    hour: 2,
    minute: 30,
    second: 0,
  });
  assert.deepEqual(instantsOf(at(3, 29), "Europe/Berlin"), []);
  assert.deepEqual(
    iso(instantsOf(at(10, 25), "Europe/Berlin")),
    ["2026-10-25T00:30:00.000Z", "2026-10-25T01:30:00.000Z"],
  );
  assert.deepEqual(
    iso(instantsOf(at(7, 1), "Europe/Berlin")),
    ["2026-07-01T00:30:00.000Z"],
  );
});

Deno.test("nextRunTime() reads the config and never throws", () => {
  const now = new Date("2026-12-04T12:00:00Z");
  const config = (cron: string) => ({
    schedule: { cron, timezone: "Asia/Shanghai", randomizedDelaySec: 0 },
  });
  assert.equal(
    nextRunTime(config("0 2 * * *"), now)?.toISOString(),
    "2026-12-04T18:00:00.000Z",
  );
  assert.equal(nextRunTime(config("0 2 * *"), now), null);
});

Deno.test("formatLocal() shows the local time and offset", () => {
  assert.equal(
    formatLocal(new Date("2026-12-04T18:00:00Z"), "Asia/Shanghai"),
    "2026-12-05 02:00 (Asia/Shanghai, UTC+08:00)",
  );
  assert.equal(
    formatLocal(new Date("2026-07-01T07:30:00Z"), "America/New_York"),
    "2026-07-01 03:30 (America/New_York, UTC-04:00)",
  );
});

Deno.test("zonesAgree() accepts aliases and rejects other zones", () => {
  assert.equal(zonesAgree("Asia/Shanghai", "Asia/Chongqing"), true);
  assert.equal(zonesAgree("UTC", "Etc/UTC"), true);
  assert.equal(zonesAgree("Europe/Berlin", "Europe/London"), false);
});
