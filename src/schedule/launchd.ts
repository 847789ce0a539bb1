/**
 * The macOS LaunchDaemon plist. `StartCalendarInterval` has no lists,
 * ranges or steps: a missing key is a wildcard and every other combination
 * is one dict, so restricted fields are expanded into an array of dicts.
 * Day of month and day of week never share a dict: cron's day OR becomes
 * dicts with `Day` plus dicts with `Weekday`, and a day-AND schedule is
 * refused. launchd runs in the Mac's local zone, so another
 * schedule.timezone is refused too.
 */

import type { CronField, CronSchedule } from "./cron.ts";
import { zonesAgree } from "./cron.ts";
import { ScheduleFormatError } from "./crontab.ts";

export const LAUNCHD_LABEL = "com.image-agent.nightly";
export const PLIST_FILE = `${LAUNCHD_LABEL}.plist`;
/** Beyond this many dicts the plist stops being something a person can read. */
export const MAX_INTERVALS = 500;

export interface LaunchdPlistOptions {
  binary: string;
  configFile: string;
  schedule: CronSchedule;
  timeZone: string;
  /** The Mac's zone; refused when it differs from timeZone. */
  machineZone: string;
  /** Where launchd writes the run's stdout and stderr. */
  logFile: string;
  now?: Date;
}

type Interval = Record<string, number>;

/** The `StartCalendarInterval` dicts for a schedule. */
export function calendarIntervals(s: CronSchedule): Interval[] {
  const everyDom = s.dayOfMonth.values.length === 31;
  const everyDow = s.dayOfWeek.values.length === 7;
  const base = product([
    ["Minute", s.minute],
    ["Hour", s.hour],
    ["Month", s.month],
  ]);
  let days: Interval[];
  if (s.dayOr) {
    days = [
      ...keyed("Day", s.dayOfMonth.values),
      ...keyed("Weekday", s.dayOfWeek.values),
    ];
  } else if (everyDom && everyDow) days = [{}];
  else if (everyDow) days = keyed("Day", s.dayOfMonth.values);
  else if (everyDom) days = keyed("Weekday", s.dayOfWeek.values);
  else {
    throw new ScheduleFormatError(
      `Cannot write the launchd plist: "${s.source}" asks for days that match both the day of month and the day of week, which StartCalendarInterval cannot express`,
      "list the days of the month explicitly (so cron ORs the two fields), or use 'image-agent daemon'",
    );
  }
  const count = base.length * days.length;
  if (count > MAX_INTERVALS) {
    throw new ScheduleFormatError(
      `Cannot write the launchd plist: "${s.source}" expands into ${count} StartCalendarInterval entries (at most ${MAX_INTERVALS} are written)`,
      "use fewer times (launchd has no ranges or steps), or use 'image-agent daemon'",
    );
  }
  return base.flatMap((b) => days.map((d) => ({ ...b, ...d })));
}

function keyed(key: string, values: number[]): Interval[] {
  return values.map((v) => ({ [key]: v }));
}

/** Every combination of the restricted fields; unrestricted ones are left out. */
function product(fields: [string, CronField][]): Interval[] {
  let out: Interval[] = [{}];
  const full: Record<string, number> = { Minute: 60, Hour: 24, Month: 12 };
  for (const [key, field] of fields) {
    if (field.values.length === full[key]) continue;
    out = out.flatMap((o) => field.values.map((v) => ({ ...o, [key]: v })));
  }
  return out;
}

/** The plist text. */
export function launchdPlist(options: LaunchdPlistOptions): string {
  if (!zonesAgree(options.timeZone, options.machineZone, options.now)) {
    throw new ScheduleFormatError(
      `Cannot write the launchd plist: launchd runs in the Mac's own time zone (${options.machineZone}), not in schedule.timezone "${options.timeZone}"`,
      `set schedule.timezone to "${options.machineZone}" with the times in that zone, or use 'image-agent daemon'`,
    );
  }
  const intervals = calendarIntervals(options.schedule).map((i) =>
    `    <dict>\n${
      Object.entries(i).map(([k, v]) =>
        `      <key>${k}</key>\n      <integer>${v}</integer>\n`
      ).join("")
    }    </dict>`
  );
  const args = [options.binary, "run", "--config", options.configFile]
    .map((a) => `    <string>${xml(a)}</string>`).join("\n");
  return `<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
  <key>Label</key>
  <string>${LAUNCHD_LABEL}</string>
  <key>ProgramArguments</key>
  <array>
${args}
  </array>
  <key>EnvironmentVariables</key>
  <dict>
    <key>IMAGE_AGENT_TRIGGER</key>
    <string>timer</string>
  </dict>
  <key>StartCalendarInterval</key>
  <array>
${intervals.join("\n")}
  </array>
  <key>StandardOutPath</key>
  <string>${xml(options.logFile)}</string>
  <key>StandardErrorPath</key>
  <string>${xml(options.logFile)}</string>
  <key>Umask</key>
  <integer>63</integer>
</dict>
</plist>
`;
}

function xml(text: string): string {
  return text.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(
    ">",
    "&gt;",
  );
}
