/**
 * The systemd pair: `image-agent.service` (a hardened oneshot run) and
 * `image-agent.timer` (`OnCalendar=` converted from the cron expression,
 * in the configured zone). Pure functions returning file text.
 *
 * Conversion rules (systemd.time(7)): ranges `A-B` become `A..B`, `*\/S`
 * becomes the bounded range of the values it matches, `00..55/5` or
 * `01..29/7`, weekday numbers become names, and every value has two digits.
 * The open form `00/S` is not used: systemd 252 repeats it past the end of
 * the field and then skips the first slot after each rollover whenever S does
 * not divide the range (`*:00/7` loses 00:00 every day, `00/5:00` loses
 * midnight on the 1st, `*-*-01/7` loses 1 January). systemd ANDs a weekday with
 * a date while cron ORs them when both are restricted, so that case becomes
 * two `OnCalendar=` lines, whose union is cron's OR.
 */

import type { CronField, CronSchedule } from "./cron.ts";
import { pad } from "./cron.ts";

export const SERVICE_NAME = "image-agent.service";
export const TIMER_NAME = "image-agent.timer";

/** systemd's weekday names, indexed like cron (0 = Sunday). */
const DAY_NAMES = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];

/** The `OnCalendar=` values for a schedule: one, or two for cron's day OR. */
export function toOnCalendar(schedule: CronSchedule, zone: string): string[] {
  const time = `${calField(schedule.hour)}:${calField(schedule.minute)}:00`;
  const month = calField(schedule.month);
  const dom = calField(schedule.dayOfMonth);
  const dow = weekdayList(schedule.dayOfWeek);
  const suffix = zone ? ` ${zone}` : "";
  if (schedule.dayOr) {
    return [
      `*-${month}-${dom} ${time}${suffix}`,
      `${dow} *-${month}-* ${time}${suffix}`,
    ];
  }
  // A weekday field that allows all seven days adds nothing.
  const prefix = schedule.dayOfWeek.values.length === 7 ? "" : `${dow} `;
  return [`${prefix}*-${month}-${dom} ${time}${suffix}`];
}

/** One numeric field in systemd's syntax. */
function calField(field: CronField): string {
  if (field.items.some((i) => i.star && i.step === 1)) return "*";
  return field.items.map((i) => {
    if (i.star) {
      // Closed at the last value the step reaches (see the header).
      const last = i.end - (i.end - i.start) % i.step;
      return last === i.start
        ? pad(i.start)
        : `${pad(i.start)}..${pad(last)}/${i.step}`;
    }
    if (i.start === i.end) return pad(i.start);
    const range = `${pad(i.start)}..${pad(i.end)}`;
    return i.step === 1 ? range : `${range}/${i.step}`;
  }).join(",");
}

/** Weekdays as names, runs of three or more as `Mon..Fri` (Monday first). */
function weekdayList(field: CronField): string {
  const mondayFirst = [1, 2, 3, 4, 5, 6, 0].filter((d) =>
    field.values.includes(d)
  );
  const order = (d: number) => (d + 6) % 7;
  const parts: string[] = [];
  let run: number[] = [];
  const flush = () => {
    if (run.length >= 3) {
      parts.push(`${DAY_NAMES[run[0]]}..${DAY_NAMES[run[run.length - 1]]}`);
    } else parts.push(...run.map((d) => DAY_NAMES[d]));
    run = [];
  };
  for (const d of mondayFirst) {
    if (run.length > 0 && order(d) !== order(run[run.length - 1]) + 1) flush();
    run.push(d);
  }
  flush();
  return parts.join(",");
}

/** Quotes one word for `ExecStart=` or a path list; `%` is doubled. */
export function systemdQuote(word: string): string {
  const escaped = word.replaceAll("%", "%%");
  if (!/[\s"'\\;]/.test(escaped) && escaped !== "") return escaped;
  return `"${escaped.replaceAll("\\", "\\\\").replaceAll('"', '\\"')}"`;
}

export interface SystemdUnitsOptions {
  /** Absolute path of the image-agent binary. */
  binary: string;
  /** Absolute path of the config file. */
  configFile: string;
  schedule: CronSchedule;
  timeZone: string;
  randomizedDelaySec: number;
  /** Folders the run writes: images.root, state.dir, backup.local.dir... */
  writablePaths: string[];
}

export interface SystemdUnits {
  service: string;
  timer: string;
  /** What the operator should know about these units. */
  warnings: string[];
}

/** Paths a private /tmp (PrivateTmp=true) would hide from the run. */
export function underTmp(paths: string[]): string[] {
  return paths.filter((p) => /^\/(var\/)?tmp(\/|$)/.test(p));
}

/** The text of `image-agent.service` and `image-agent.timer`. */
export function systemdUnits(options: SystemdUnitsOptions): SystemdUnits {
  const exec = [options.binary, "run", "--config", options.configFile]
    .map(systemdQuote).join(" ");
  const paths = [...new Set(options.writablePaths)];
  const writable = paths.map(systemdQuote).join(" ");
  const hidden = underTmp([options.binary, options.configFile, ...paths]);
  const warnings = hidden.length === 0 ? [] : [
    `PrivateTmp= is off in ${SERVICE_NAME}: ${
      hidden.join(", ")
    } is under /tmp or /var/tmp, which a private /tmp would hide from the run (and which may be emptied at boot); move it elsewhere to keep the protection`,
  ];
  const privateTmp = hidden.length === 0
    ? "PrivateTmp=true"
    : `# PrivateTmp= is off: ${
      hidden.join(" ")
    } is under /tmp or /var/tmp,\n# which a private /tmp would hide.\nPrivateTmp=false`;
  const service =
    `# Written by 'image-agent install' / 'image-agent schedule export'.
# One backup-and-cleanup pass; started by ${TIMER_NAME}.
[Unit]
Description=image-agent: back up and clean up HD images of shipped orders
Wants=network-online.target
After=network-online.target
# Wait for the file systems of these folders (a NAS mount at boot, when
# Persistent= starts a missed run), and do not start without them.
RequiresMountsFor=${writable}

[Service]
Type=oneshot
Environment=IMAGE_AGENT_TRIGGER=timer
ExecStart=${exec}
# Hardening: the whole file system is read-only except the folders below
# (images, state, local backup, shop database folder).
ProtectSystem=strict
ReadWritePaths=${writable}
ProtectHome=read-only
${privateTmp}
PrivateDevices=true
NoNewPrivileges=true
ProtectKernelTunables=true
ProtectKernelModules=true
ProtectKernelLogs=true
ProtectControlGroups=true
ProtectClock=true
ProtectHostname=true
RestrictSUIDSGID=true
RestrictRealtime=true
RestrictNamespaces=true
LockPersonality=true
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6
SystemCallArchitectures=native
# MemoryDenyWriteExecute= stays off: the V8 JIT needs writable code pages.
UMask=0077
`;
  const calendars = toOnCalendar(options.schedule, options.timeZone)
    .map((c) => `OnCalendar=${c}`).join("\n");
  const delay = options.randomizedDelaySec > 0
    ? `RandomizedDelaySec=${options.randomizedDelaySec}\n`
    : "";
  const timer =
    `# Written by 'image-agent install' / 'image-agent schedule export'.
# cron "${options.schedule.source}" in ${options.timeZone}.
[Unit]
Description=image-agent scheduled run (cron "${options.schedule.source}", ${options.timeZone})

[Timer]
${calendars}
Persistent=true
AccuracySec=1s
${delay}Unit=${SERVICE_NAME}

[Install]
WantedBy=timers.target
`;
  return { service, timer, warnings };
}
