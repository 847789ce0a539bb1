/**
 * The cron entry: one line, preceded by a marker comment so `install` and
 * `uninstall` can find it again. Pure functions returning text.
 *
 * Debian's cron runs every job in the daemon's single local zone and does
 * not support `CRON_TZ`. A schedule meant for another zone is therefore
 * converted into the server's zone when the two zones keep the same whole-hour
 * difference all year and no hour crosses midnight; otherwise it is refused
 * with a message that names the way out.
 */

import type { CronField, CronSchedule } from "./cron.ts";
import { zoneOffsetMinutes } from "./cron.ts";
import { AgentError, EXIT_USAGE } from "../errors.ts";

export const CRON_MARKER = "# image-agent: nightly run";
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
    ? options.timeZone
    : `${options.serverZone}, converted from ${options.timeZone}`;
  return `${CRON_MARKER} (cron "${options.schedule.source}" in ${zoneNote}; managed by image-agent)\n` +
    `${fields}${user} ${command.replaceAll("%", "\\%")}\n`;
}

/** Removes our marker and the line after it from a crontab's text. */
export function removeCrontabEntry(crontab: string): string {
  const lines = crontab.split("\n");
  const out: string[] = [];
  for (let i = 0; i < lines.length; i++) {
    if (lines[i].startsWith(CRON_MARKER)) {
      i++; // the job line
      continue;
    }
    out.push(lines[i]);
  }
  return out.join("\n");
}

/** The five fields, in numbers, shifted into the server's zone if needed. */
export function cronFieldsInZone(options: CrontabOptions): string {
  const s = options.schedule;
  const shift = zoneShiftHours(
    options.timeZone,
    options.serverZone,
    options.now ?? new Date(),
  );
  let hour = fieldText(s.hour);
  if (shift !== 0) {
    const shifted = s.hour.values.map((h) => h - shift);
    if (shifted.some((h) => h < 0 || h > 23)) {
      throw new ScheduleFormatError(
        `Cannot write the cron line: "${s.source}" in ${options.timeZone} falls on another day in the server's zone ${options.serverZone}, and Debian cron has no per-job time zone (CRON_TZ)`,
        `set schedule.timezone to "${options.serverZone}" with the hours in that zone, or use the systemd timer or 'image-agent daemon'`,
      );
    }
    hour = shifted.join(",");
  }
  return [
    fieldText(s.minute),
    hour,
    fieldText(s.dayOfMonth),
    fieldText(s.month),
    fieldText(s.dayOfWeek),
  ].join(" ");
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
