/**
 * Five-field cron expressions as Debian (Vixie) cron reads them, and the next
 * time one fires in a given IANA time zone.
 *
 * Fields: minute 0-59, hour 0-23, day of month 1-31, month 1-12 or JAN-DEC,
 * day of week 0-7 or SUN-SAT (0 and 7 are Sunday). Each field is a list of
 * `*`, `N`, `A-B`, `*\/S`, `A-B/S` or `A/S` (= `A-max/S`; Debian's crontab
 * refuses `A/S`, cronie and Deno.cron take it, and the cron line written for
 * it says `A-max/S`). The macros
 * `@yearly`, `@annually`, `@monthly`, `@weekly`, `@daily`, `@midnight` and
 * `@hourly` are expanded to their five fields.
 *
 * When both day fields are restricted a day matches if either matches (OR),
 * as in Vixie cron. As in Vixie cron, a day field that starts with `*`
 * (including `*\/2`) counts as unrestricted for that rule, so
 * `0 0 *\/2 * 1` means "odd days that are Mondays".
 *
 * Next-fire semantics across daylight-saving changes follow systemd timers
 * (checked against `systemd-analyze calendar`): the search runs over local
 * wall-clock times later than the wall-clock time of `after`; a local time
 * that does not exist (the hour skipped in spring) is skipped, and a local
 * time that exists twice (the hour repeated in autumn) fires once, at its
 * first occurrence, or at the second when the search starts between the two.
 */

import type { Config } from "../config.ts";

/** One comma-separated item of a field, with names already turned to numbers. */
export interface CronItem {
  /** The item was `*` or `*\/S`. */
  star: boolean;
  start: number;
  end: number;
  step: number;
}

export interface CronField {
  items: CronItem[];
  /** Every value the field matches, ascending (day of week: 0-6). */
  values: number[];
  /** The text started with `*` (Vixie's rule for day OR). */
  star: boolean;
}

export interface CronSchedule {
  /** The expression as written in the config. */
  source: string;
  minute: CronField;
  hour: CronField;
  dayOfMonth: CronField;
  month: CronField;
  dayOfWeek: CronField;
  /** Both day fields restricted: a day matches if either matches. */
  dayOr: boolean;
}

const MACROS: Record<string, string> = {
  "@yearly": "0 0 1 1 *",
  "@annually": "0 0 1 1 *",
  "@monthly": "0 0 1 * *",
  "@weekly": "0 0 * * 0",
  "@daily": "0 0 * * *",
  "@midnight": "0 0 * * *",
  "@hourly": "0 * * * *",
};

const MONTHS = [
  "jan",
  "feb",
  "mar",
  "apr",
  "may",
  "jun",
  "jul",
  "aug",
  "sep",
  "oct",
  "nov",
  "dec",
];
const WEEKDAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

interface FieldSpec {
  name: string;
  min: number;
  max: number;
  names?: string[];
  /** Value of the first name (month: 1, weekday: 0). */
  nameBase?: number;
}

const FIELDS: FieldSpec[] = [
  { name: "minute", min: 0, max: 59 },
  { name: "hour", min: 0, max: 23 },
  { name: "day of month", min: 1, max: 31 },
  { name: "month", min: 1, max: 12, names: MONTHS, nameBase: 1 },
  { name: "day of week", min: 0, max: 7, names: WEEKDAYS, nameBase: 0 },
];

/** Thrown for an expression cron would not accept. */
export class CronSyntaxError extends SyntaxError {
  constructor(expr: string, detail: string) {
    super(`Invalid cron expression "${expr}": ${detail}`);
    this.name = "CronSyntaxError";
  }
}

/** Parses a five-field cron expression or one of the `@` macros. */
export function parseCron(expr: string): CronSchedule {
  const trimmed = expr.trim();
  let text = trimmed;
  if (text.startsWith("@")) {
    const expanded = MACROS[text.toLowerCase()];
    if (!expanded) {
      throw new CronSyntaxError(
        expr,
        `unknown macro (known: ${Object.keys(MACROS).join(", ")})`,
      );
    }
    text = expanded;
  }
  const parts = text.split(/\s+/).filter((p) => p !== "");
  if (parts.length !== 5) {
    throw new CronSyntaxError(
      expr,
      `expected 5 fields (minute hour day-of-month month day-of-week), found ${parts.length}`,
    );
  }
  const fields = parts.map((p, i) => parseField(expr, p, FIELDS[i]));
  const [minute, hour, dayOfMonth, month, dayOfWeek] = fields;
  dayOfWeek.values = [...new Set(dayOfWeek.values.map((v) => v % 7))].sort(
    (a, b) => a - b,
  );
  return {
    source: trimmed,
    minute,
    hour,
    dayOfMonth,
    month,
    dayOfWeek,
    dayOr: !dayOfMonth.star && !dayOfWeek.star,
  };
}

function parseField(expr: string, text: string, spec: FieldSpec): CronField {
  const items: CronItem[] = [];
  const values = new Set<number>();
  for (const raw of text.split(",")) {
    const item = parseItem(expr, raw, spec);
    items.push(item);
    for (let v = item.start; v <= item.end; v += item.step) values.add(v);
  }
  return {
    items,
    values: [...values].sort((a, b) => a - b),
    star: text.startsWith("*"),
  };
}

function parseItem(expr: string, raw: string, spec: FieldSpec): CronItem {
  const bad = (why: string) =>
    new CronSyntaxError(expr, `${spec.name} field "${raw}": ${why}`);
  if (raw === "") throw bad("empty list item");
  const [range, stepText, ...extra] = raw.split("/");
  if (extra.length > 0) throw bad("more than one '/'");
  let step = 1;
  if (stepText !== undefined) {
    if (!/^\d+$/.test(stepText)) throw bad("the step must be a number");
    step = Number(stepText);
    if (step < 1) throw bad("the step must be at least 1");
  }
  if (range === "*") {
    return { star: true, start: spec.min, end: maxOf(spec), step };
  }
  const ends = range.split("-");
  if (ends.length > 2) throw bad("a range has one '-'");
  const start = value(ends[0]);
  let end = ends.length === 2 ? value(ends[1]) : start;
  if (ends.length === 1 && stepText !== undefined) end = maxOf(spec);
  if (end < start) throw bad(`the range runs backwards (${start} > ${end})`);
  return { star: false, start, end, step };

  function value(token: string): number {
    if (/^\d+$/.test(token)) {
      const n = Number(token);
      if (n < spec.min || n > spec.max) {
        throw bad(`${n} is outside ${spec.min}-${spec.max}`);
      }
      return n;
    }
    const index = spec.names?.indexOf(token.toLowerCase()) ?? -1;
    if (index < 0) throw bad(`"${token}" is not a number or a known name`);
    return index + (spec.nameBase ?? 0);
  }
}

/** `*` in day of week stops at 6 so Sunday is not listed twice. */
function maxOf(spec: FieldSpec): number {
  return spec.name === "day of week" ? 6 : spec.max;
}

// ---------------------------------------------------------------------------
// Wall-clock time in a zone

/** A local date and time, as numbers; month 1-12. */
export interface WallTime {
  year: number;
  month: number;
  day: number;
  hour: number;
  minute: number;
  second: number;
}

const formatters = new Map<string, Intl.DateTimeFormat>();

function formatter(zone: string): Intl.DateTimeFormat {
  let f = formatters.get(zone);
  if (!f) {
    f = new Intl.DateTimeFormat("en-US", {
      timeZone: zone,
      hourCycle: "h23",
      year: "numeric",
      month: "numeric",
      day: "numeric",
      hour: "numeric",
      minute: "numeric",
      second: "numeric",
    });
    formatters.set(zone, f);
  }
  return f;
}

/** The local wall-clock time of an instant in a zone. */
export function wallTime(instant: Date, zone: string): WallTime {
  const out: Record<string, number> = {};
  for (const p of formatter(zone).formatToParts(instant)) {
    if (p.type !== "literal") out[p.type] = Number(p.value);
  }
  return {
    year: out.year,
    month: out.month,
    day: out.day,
    hour: out.hour === 24 ? 0 : out.hour,
    minute: out.minute,
    second: out.second,
  };
}

/** Offset of the zone from UTC at an instant, in seconds (east positive). */
function zoneOffsetSeconds(instant: Date, zone: string): number {
  const w = wallTime(instant, zone);
  const asUtc = Date.UTC(
    w.year,
    w.month - 1,
    w.day,
    w.hour,
    w.minute,
    w.second,
  );
  const whole = Math.floor(instant.getTime() / 1000) * 1000;
  return Math.round((asUtc - whole) / 1000);
}

/** Offset of the zone from UTC at an instant, in minutes (east positive). */
export function zoneOffsetMinutes(instant: Date, zone: string): number {
  return Math.round(zoneOffsetSeconds(instant, zone) / 60);
}

/**
 * The first day from `from` on which the zone's offset from UTC is not a
 * whole number of minutes (such as Africa/Monrovia's UTC-00:44:30 until
 * 1972), looking `days` ahead; null when there is none. No IANA zone has
 * such an offset now, but a clock built on UTC minutes could not follow one.
 */
export function subMinuteOffset(
  zone: string,
  from: Date,
  days = 366,
): { at: Date; offsetSeconds: number } | null {
  for (let d = 0; d <= days; d++) {
    const at = new Date(from.getTime() + d * 86400000);
    const offsetSeconds = zoneOffsetSeconds(at, zone);
    if (offsetSeconds % 60 !== 0) return { at, offsetSeconds };
  }
  return null;
}

/**
 * The instants at which a zone's clocks show a wall time: none in a
 * spring-forward gap, two in an autumn overlap, otherwise one.
 */
export function instantsOf(wall: WallTime, zone: string): Date[] {
  const naive = Date.UTC(
    wall.year,
    wall.month - 1,
    wall.day,
    wall.hour,
    wall.minute,
    wall.second,
  );
  const offsets = new Set<number>();
  for (const probe of [naive - 86400000, naive, naive + 86400000]) {
    offsets.add(zoneOffsetMinutes(new Date(probe), zone));
  }
  const found: number[] = [];
  for (const off of offsets) {
    const t = naive - off * 60000;
    const w = wallTime(new Date(t), zone);
    if (
      w.year === wall.year && w.month === wall.month && w.day === wall.day &&
      w.hour === wall.hour && w.minute === wall.minute
    ) {
      found.push(t);
    }
  }
  return [...new Set(found)].sort((a, b) => a - b).map((t) => new Date(t));
}

// ---------------------------------------------------------------------------
// Matching and next fire time

/** Does a local calendar day match the schedule's day fields and month? */
export function dayMatches(
  schedule: CronSchedule,
  year: number,
  month: number,
  day: number,
): boolean {
  if (!schedule.month.values.includes(month)) return false;
  const weekday = new Date(Date.UTC(year, month - 1, day)).getUTCDay();
  const domOk = schedule.dayOfMonth.values.includes(day);
  const dowOk = schedule.dayOfWeek.values.includes(weekday);
  return schedule.dayOr ? domOk || dowOk : domOk && dowOk;
}

/** How far ahead `nextFire` looks before deciding a schedule never fires. */
const SEARCH_YEARS = 30;

/**
 * The first instant strictly after `after` at which the schedule fires in
 * `timeZone`. Throws a `RangeError` for a schedule that never fires (such as
 * `0 0 31 2 *`).
 */
export function nextFire(
  expr: string | CronSchedule,
  after: Date,
  timeZone: string,
): Date {
  const s = typeof expr === "string" ? parseCron(expr) : expr;
  const start = wallTime(after, timeZone);
  // Day by day in local calendar terms, starting with the local day of `after`.
  let day = Date.UTC(start.year, start.month - 1, start.day);
  // Only local times later on the wall clock than `after` count, as in
  // systemd: once the first 01:45 of a repeated hour has fired, the clock
  // shows 01:45 again an hour later, and that is not a new slot.
  const afterWall = Date.UTC(
    start.year,
    start.month - 1,
    start.day,
    start.hour,
    start.minute,
    start.second,
  );
  const lastDay = day + SEARCH_YEARS * 366 * 86400000;
  for (; day <= lastDay; day += 86400000) {
    const d = new Date(day);
    const year = d.getUTCFullYear();
    const month = d.getUTCMonth() + 1;
    const date = d.getUTCDate();
    if (!dayMatches(s, year, month, date)) continue;
    for (const hour of s.hour.values) {
      for (const minute of s.minute.values) {
        if (day + (hour * 60 + minute) * 60000 <= afterWall) continue;
        const wall = { year, month, day: date, hour, minute, second: 0 };
        // A repeated wall time: its first occurrence after `after`. That is
        // the first one, unless `after` lies between the two (the clock was
        // already set back when the search started).
        const first = instantsOf(wall, timeZone).find((t) =>
          t.getTime() > after.getTime()
        );
        if (first) return first;
      }
    }
  }
  throw new RangeError(
    `The cron expression "${s.source}" never fires (no matching day within ${SEARCH_YEARS} years)`,
  );
}

/** The next `count` fire times after `after`. */
export function nextFires(
  expr: string | CronSchedule,
  after: Date,
  timeZone: string,
  count: number,
): Date[] {
  const s = typeof expr === "string" ? parseCron(expr) : expr;
  const out: Date[] = [];
  let t = after;
  for (let i = 0; i < count; i++) {
    t = nextFire(s, t, timeZone);
    out.push(t);
  }
  return out;
}

/**
 * When the configured schedule runs next, for `status`. Null when the
 * expression cannot be read or never fires, so `status` never fails on it.
 */
export function nextRunTime(
  config: Pick<Config, "schedule">,
  now: Date,
): Date | null {
  try {
    return nextFire(config.schedule.cron, now, config.schedule.timezone);
  } catch {
    return null;
  }
}

/** `2026-03-29 02:30 (Europe/Berlin, UTC+02:00)`: a fire time for people. */
export function formatLocal(instant: Date, zone: string): string {
  const w = wallTime(instant, zone);
  const off = zoneOffsetMinutes(instant, zone);
  const sign = off < 0 ? "-" : "+";
  const abs = Math.abs(off);
  return `${w.year}-${pad(w.month)}-${pad(w.day)} ${pad(w.hour)}:${
    pad(w.minute)
  } (${zone}, UTC${sign}${pad(Math.floor(abs / 60))}:${pad(abs % 60)})`;
}

export function pad(n: number): string {
  return String(n).padStart(2, "0");
}

/**
 * Do two zones show the same local time all year from `now`? True for the
 * same name and for aliases such as Asia/Shanghai and Asia/Chongqing.
 */
export function zonesAgree(a: string, b: string, now = new Date()): boolean {
  if (a === b) return true;
  for (let d = 0; d < 366; d++) {
    const t = new Date(now.getTime() + d * 86400000);
    if (zoneOffsetMinutes(t, a) !== zoneOffsetMinutes(t, b)) return false;
  }
  return true;
}
