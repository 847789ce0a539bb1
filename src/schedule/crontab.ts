/**
 * The cron entry: one line, preceded by a comment saying what it is and in
 * which zone it was written. `install` and `uninstall` find the entry by its
 * file, /etc/cron.d/image-agent; a user crontab is merged by hand with
 * `crontabMergeCommand`. Pure functions returning text.
 *
 * Debian's cron runs every job in the daemon's single local zone and does
 * not support `CRON_TZ`. A schedule meant for another zone is therefore
 * converted into the server's zone when the two zones keep the same whole-hour
 * difference all year (see `cronFieldsInZone` for hours that cross
 * midnight); otherwise it is refused with a message that names the way out.
 */

import type { CronField, CronSchedule } from "./cron.ts";
import { zoneOffsetMinutes } from "./cron.ts";
import { AgentError, EXIT_USAGE } from "../errors.ts";

export const CRON_MARKER = "# image-agent: scheduled run";
/** The file `install` writes under `/etc/cron.d` (no dot, or cron ignores it). */
export const CRON_D_NAME = "image-agent";

/** A schedule no scheduler format at hand can express. */
export class ScheduleFormatError extends AgentError {
  constructor(message: string, hint?: string) {
    super(message, EXIT_USAGE, { hint });
    this.name = "ScheduleFormatError";
  }
}

export interface CrontabOptions {
  binary: string;
  configFile: string;
  schedule: CronSchedule;
  /** The zone the schedule is meant in (schedule.timezone). */
  timeZone: string;
  /** The zone the cron daemon runs in (the server's local zone). */
  serverZone: string;
  /** `/etc/cron.d` format: a user name after the five fields. */
  user?: string;
  /** Reference instant for the zone comparison (default: now). */
  now?: Date;
}

/** The marker comment and the cron line, newline-terminated. */
export function crontabEntry(options: CrontabOptions): string {
  const fields = cronFieldsInZone(options);
  const command = [
    "IMAGE_AGENT_TRIGGER=timer",
    shellQuote(options.binary),
    "run",
    "--config",
    shellQuote(options.configFile),
  ].join(" ");
  const user = options.user ? ` ${options.user}` : "";
  const zoneNote = options.timeZone === options.serverZone
    ? `cron "${options.schedule.source}" in ${options.timeZone}`
    : `cron "${options.schedule.source}" in ${options.timeZone}, written as "${fields}" in ${options.serverZone}`;
  return `${CRON_MARKER} (${zoneNote}; managed by image-agent)\n` +
    `${fields}${user} ${command.replaceAll("%", "\\%")}\n`;
}

/**
 * A shell command that puts the exported entry into the current user's
 * crontab, replacing an earlier image-agent entry and keeping every other
 * line (`crontab FILE` alone would replace the whole crontab).
 */
export function crontabMergeCommand(file: string): string {
  return `(crontab -l 2>/dev/null | grep -v -e '^# image-agent:' -e 'IMAGE_AGENT_TRIGGER=timer'; cat ${
    shellQuote(file)
  }) | crontab -`;
}

/**
 * The five fields, in numbers, shifted into the server's zone if needed.
 *
 * With every day allowed (day of month, month and day of week all `*`) the
 * hours simply wrap around midnight: 02:00 in Asia/Shanghai is 18:00 UTC the
 * day before, every day. With only the weekdays restricted, every hour must
 * land on the same neighbouring day and the weekdays move with it
 * (`0 2 * * 1` in Shanghai is `0 18 * * 0` in UTC). A restricted day of
 * month or month cannot move that way (the 1st's eve is the 28th to 31st),
 * so such a schedule is refused once an hour crosses midnight.
 */
export function cronFieldsInZone(options: CrontabOptions): string {
  const s = options.schedule;
  const shift = zoneShiftHours(
    options.timeZone,
    options.serverZone,
    options.now ?? new Date(),
  );
  let hour = fieldText(s.hour);
  let dayOfWeek = fieldText(s.dayOfWeek);
  if (shift !== 0) {
    const shifted = s.hour.values.map((h) => h - shift);
    const dayMoves = new Set(shifted.map((h) => Math.floor(h / 24)));
    const everyDate = s.dayOfMonth.values.length === 31 &&
      s.month.values.length === 12;
    const everyWeekday = s.dayOfWeek.values.length === 7;
    const crosses = [...dayMoves].some((d) => d !== 0);
    if (crosses && !(everyDate && (everyWeekday || dayMoves.size === 1))) {
      throw new ScheduleFormatError(
        `Cannot write the cron line: "${s.source}" in ${options.timeZone} falls on ${
          dayMoves.size === 1 ? "another day" : "two different days"
        } in the server's zone ${options.serverZone}, and its ${
          everyDate ? "day of week" : "day of month or month"
        } cannot move with it (Debian cron has no per-job time zone, CRON_TZ)`,
        `set schedule.timezone to "${options.serverZone}" with the hours in that zone, or use the systemd timer or 'image-agent daemon'`,
      );
    }
    const hours = shifted.map((h) => (h % 24 + 24) % 24).sort((a, b) => a - b);
    hour = hours.length === 24 ? "*" : ranges(hours);
    if (crosses && !everyWeekday) {
      const move = [...dayMoves][0];
      dayOfWeek = ranges(
        s.dayOfWeek.values.map((d) => (d + move + 7) % 7).sort((a, b) => a - b),
      );
    }
  }
  return [
    fieldText(s.minute),
    hour,
    fieldText(s.dayOfMonth),
    fieldText(s.month),
    dayOfWeek,
  ].join(" ");
}

/** Ascending numbers as a cron list, runs of three or more as `A-B`. */
function ranges(values: number[]): string {
  const parts: string[] = [];
  for (let i = 0; i < values.length;) {
    let j = i;
    while (j + 1 < values.length && values[j + 1] === values[j] + 1) j++;
    if (j - i >= 2) parts.push(`${values[i]}-${values[j]}`);
    else for (let k = i; k <= j; k++) parts.push(String(values[k]));
    i = j + 1;
  }
  return parts.join(",");
}

/** A field in numbers only (crontab(5) forbids names in lists and ranges). */
function fieldText(field: CronField): string {
  return field.items.map((i) => {
    const step = i.step === 1 ? "" : `/${i.step}`;
    if (i.star) return `*${step}`;
    if (i.start === i.end && step === "") return String(i.start);
    return `${i.start}-${i.end}${step}`;
  }).join(",");
}

/**
 * Hours to subtract from a time in `from` to get the time in `to`, if that
 * difference is the same whole number of hours all year; else refuse.
 */
function zoneShiftHours(from: string, to: string, now: Date): number {
  if (from === to) return 0;
  const diffs = new Set<number>();
  // Every day for a year catches every DST change of both zones.
  for (let d = 0; d < 366; d++) {
    const t = new Date(now.getTime() + d * 86400000);
    diffs.add(zoneOffsetMinutes(t, from) - zoneOffsetMinutes(t, to));
  }
  const [diff] = diffs;
  if (diffs.size !== 1 || diff % 60 !== 0) {
    throw new ScheduleFormatError(
      `Cannot write the cron line: schedule.timezone "${from}" and the server's zone "${to}" are not a fixed number of whole hours apart all year, and Debian cron has no per-job time zone (CRON_TZ)`,
      `set schedule.timezone to "${to}", or use the systemd timer or 'image-agent daemon', which honour any zone`,
    );
  }
  return diff / 60;
}

/** Quotes a word for /bin/sh when it needs it. */
export function shellQuote(word: string): string {
  if (/^[A-Za-z0-9_@%+=:,./-]+$/.test(word)) return word;
  return `'${word.replaceAll("'", `'\\''`)}'`;
}
