/**
 * The Windows Task Scheduler definition, as `schtasks /Create /XML` reads
 * it: UTF-16 LE with a BOM, `version="1.3"` (the value Microsoft's published
 * schema fixes), running as SYSTEM (S-1-5-18), never two instances at once
 * (`IgnoreNew`), a time limit, and a missed start run when the machine is
 * back (`StartWhenAvailable`). Trigger children are written in the schema's
 * sequence order.
 *
 * Cron maps onto calendar triggers as follows. The times of day are the
 * product of the minute and hour fields: a single time is a plain start
 * time, an evenly spaced series is one start with a `Repetition`, anything
 * else is one trigger per time. The days are a daily, weekly, monthly or
 * monthly-by-weekday schedule; cron's day OR becomes two triggers. Task
 * Scheduler allows 48 triggers; what needs more, or needs a weekday AND a
 * date, is refused with a message instead of being approximated.
 *
 * Times are the Windows machine's local time (a StartBoundary without an
 * offset), so the machine's zone must be schedule.timezone.
 */

import type { CronSchedule } from "./cron.ts";
import { pad, zonesAgree } from "./cron.ts";
import { ScheduleFormatError } from "./crontab.ts";

/** The task's path in the Task Scheduler library. */
export const TASK_NAME = "\\image-agent\\nightly";
export const TASK_FILE = "image-agent.xml";
/** A run is stopped after this long (the next night starts afresh). */
export const EXECUTION_TIME_LIMIT = "PT12H";
const MAX_TRIGGERS = 48;

const DAY_ELEMENTS = [
  "Sunday",
  "Monday",
  "Tuesday",
  "Wednesday",
  "Thursday",
  "Friday",
  "Saturday",
];
const MONTH_ELEMENTS = [
  "January",
  "February",
  "March",
  "April",
  "May",
  "June",
  "July",
  "August",
  "September",
  "October",
  "November",
  "December",
];

export interface WindowsTaskOptions {
  /** Absolute path of image-agent.exe. */
  binary: string;
  configFile: string;
  schedule: CronSchedule;
  timeZone: string;
  /** The Windows machine's zone; refused when it differs from timeZone. */
  machineZone: string;
  randomizedDelaySec: number;
  now?: Date;
}

/** The task definition as text (encode it with `utf16leWithBom`). */
export function windowsTaskXml(options: WindowsTaskOptions): string {
  const s = options.schedule;
  if (!zonesAgree(options.timeZone, options.machineZone, options.now)) {
    throw new ScheduleFormatError(
      `Cannot write the Windows task: Task Scheduler runs in the machine's own time zone (${options.machineZone}), not in schedule.timezone "${options.timeZone}"`,
      `set schedule.timezone to "${options.machineZone}" with the times in that zone, or use 'image-agent daemon'`,
    );
  }
  const days = dayPatterns(s);
  const times = timePlan(s, days.length);
  const delay = options.randomizedDelaySec > 0
    ? `      <RandomDelay>${
      duration(options.randomizedDelaySec)
    }</RandomDelay>\n`
    : "";
  const triggers: string[] = [];
  for (const start of times.starts) {
    for (const day of days) {
      triggers.push(
        `    <CalendarTrigger>
      <Enabled>true</Enabled>
      <StartBoundary>2025-01-01T${pad(Math.floor(start / 60))}:${
          pad(start % 60)
        }:00</StartBoundary>
${times.repetition}${delay}${day}
    </CalendarTrigger>`,
      );
    }
  }
  const args =
    `/d /s /c "set IMAGE_AGENT_TRIGGER=timer&& "${options.binary}" run --config "${options.configFile}""`;
  return `<?xml version="1.0" encoding="UTF-16"?>
<Task version="1.3" xmlns="http://schemas.microsoft.com/windows/2004/02/mit/task">
  <RegistrationInfo>
    <Author>image-agent</Author>
    <Description>${
    xml(
      `Back up and clean up HD images of shipped orders (cron "${s.source}", ${options.timeZone}). Written by image-agent.`,
    )
  }</Description>
    <URI>${xml(TASK_NAME)}</URI>
  </RegistrationInfo>
  <Triggers>
${triggers.join("\n")}
  </Triggers>
  <Principals>
    <Principal id="LocalSystem">
      <UserId>S-1-5-18</UserId>
      <RunLevel>HighestAvailable</RunLevel>
    </Principal>
  </Principals>
  <Settings>
    <MultipleInstancesPolicy>IgnoreNew</MultipleInstancesPolicy>
    <DisallowStartIfOnBatteries>false</DisallowStartIfOnBatteries>
    <StopIfGoingOnBatteries>false</StopIfGoingOnBatteries>
    <AllowHardTerminate>true</AllowHardTerminate>
    <StartWhenAvailable>true</StartWhenAvailable>
    <RunOnlyIfNetworkAvailable>false</RunOnlyIfNetworkAvailable>
    <Enabled>true</Enabled>
    <ExecutionTimeLimit>${EXECUTION_TIME_LIMIT}</ExecutionTimeLimit>
  </Settings>
  <Actions Context="LocalSystem">
    <Exec>
      <Command>%SystemRoot%\\System32\\cmd.exe</Command>
      <Arguments>${xml(args)}</Arguments>
    </Exec>
  </Actions>
</Task>
`;
}

/** The schedule element(s) for the day fields: one, or two for day OR. */
function dayPatterns(s: CronSchedule): string[] {
  const allMonths = s.month.values.length === 12;
  const months = allMonths
    ? ""
    : `\n        <Months>${
      s.month.values.map((m) => `<${MONTH_ELEMENTS[m - 1]} />`).join("")
    }</Months>`;
  const byMonth = `      <ScheduleByMonth>
        <DaysOfMonth>${
    s.dayOfMonth.values.map((d) => `<Day>${d}</Day>`).join("")
  }</DaysOfMonth>${months}
      </ScheduleByMonth>`;
  const weekdays = `<DaysOfWeek>${
    s.dayOfWeek.values.map((d) => `<${DAY_ELEMENTS[d]} />`).join("")
  }</DaysOfWeek>`;
  const byWeekday = allMonths
    ? `      <ScheduleByWeek>
        <WeeksInterval>1</WeeksInterval>
        ${weekdays}
      </ScheduleByWeek>`
    : `      <ScheduleByMonthDayOfWeek>
        <Weeks><Week>1</Week><Week>2</Week><Week>3</Week><Week>4</Week><Week>Last</Week></Weeks>
        ${weekdays}${months}
      </ScheduleByMonthDayOfWeek>`;
  const everyDom = s.dayOfMonth.values.length === 31;
  const everyDow = s.dayOfWeek.values.length === 7;
  if (s.dayOr) return [byMonth, byWeekday];
  if (everyDom && everyDow) {
    return [
      allMonths
        ? `      <ScheduleByDay>
        <DaysInterval>1</DaysInterval>
      </ScheduleByDay>`
        : byMonth,
    ];
  }
  if (everyDow) return [byMonth];
  if (everyDom) return [byWeekday];
  throw new ScheduleFormatError(
    `Cannot write the Windows task: "${s.source}" asks for days that match both the day of month and the day of week, which Task Scheduler triggers cannot express`,
    "list the days of the month explicitly (so cron ORs the two fields), or use 'image-agent daemon'",
  );
}

interface TimePlan {
  /** Start times, minutes after midnight. */
  starts: number[];
  /** A `<Repetition>` block (with indentation and newline) or "". */
  repetition: string;
}

function timePlan(s: CronSchedule, dayTriggers: number): TimePlan {
  const times = s.hour.values.flatMap((h) =>
    s.minute.values.map((m) => h * 60 + m)
  );
  if (times.length === 1) return { starts: times, repetition: "" };
  const gap = times[1] - times[0];
  const even = times.every((t, i) => i === 0 || t - times[i - 1] === gap);
  if (even) {
    // Runs at first, first+gap, ... until the last time; the half minute
    // keeps the last time inside the repetition window.
    const span = (times[times.length - 1] - times[0]) * 60 + 30;
    return {
      starts: [times[0]],
      repetition: `      <Repetition>
        <Interval>${duration(gap * 60)}</Interval>
        <Duration>${duration(span)}</Duration>
        <StopAtDurationEnd>false</StopAtDurationEnd>
      </Repetition>
`,
    };
  }
  if (times.length * dayTriggers > MAX_TRIGGERS) {
    throw new ScheduleFormatError(
      `Cannot write the Windows task: "${s.source}" needs ${
        times.length * dayTriggers
      } triggers (${times.length} unevenly spaced times of day), and Task Scheduler allows ${MAX_TRIGGERS}`,
      "use evenly spaced times (such as */15) or fewer times a day, or use 'image-agent daemon'",
    );
  }
  return { starts: times, repetition: "" };
}

/** Seconds as an xs:duration such as `PT1H30M` or `PT8H45M30S`. */
export function duration(seconds: number): string {
  const h = Math.floor(seconds / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  const sec = seconds % 60;
  const text = (h ? `${h}H` : "") + (m ? `${m}M` : "") + (sec ? `${sec}S` : "");
  return `PT${text || "0S"}`;
}

function xml(text: string): string {
  return text.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(
    ">",
    "&gt;",
  );
}

/** UTF-16 LE bytes starting with the BOM FF FE, as schtasks expects. */
export function utf16leWithBom(text: string): Uint8Array {
  const out = new Uint8Array(2 + text.length * 2);
  const view = new DataView(out.buffer);
  view.setUint16(0, 0xfeff, true);
  for (let i = 0; i < text.length; i++) {
    view.setUint16(2 + 2 * i, text.charCodeAt(i), true);
  }
  return out;
}
