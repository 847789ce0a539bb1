/**
 * The scheduler files for one format, from the config: what `schedule
 * export` writes into a folder and what `install` puts in place. Pure: the
 * caller supplies the binary and config paths and the machine's zone.
 */

import { dirname } from "node:path";
import type { Config } from "../config.ts";
import { parseCron } from "./cron.ts";
import { crontabEntry } from "./crontab.ts";
import { launchdPlist, PLIST_FILE } from "./launchd.ts";
import { SERVICE_NAME, systemdUnits, TIMER_NAME } from "./systemd.ts";
import { TASK_FILE, utf16leWithBom, windowsTaskXml } from "./windows.ts";

export const FORMATS = ["systemd", "cron", "windows", "launchd"] as const;
export type SchedulerFormat = typeof FORMATS[number];

export function isFormat(name: string): name is SchedulerFormat {
  return (FORMATS as readonly string[]).includes(name);
}

/** The config keys the scheduler files depend on (a `Config` fits). */
export interface ScheduleConfig {
  schedule: Config["schedule"];
  images: { root: string };
  state: { dir: string };
  backup: { target: string; local: { dir: string } };
  database: { driver: string; path?: string };
}

export interface ScheduleTarget {
  /** Absolute path of the image-agent binary on the target machine. */
  binary: string;
  /** Absolute path of the config file on the target machine. */
  configFile: string;
  config: ScheduleConfig;
  /** The target machine's local zone (cron, Windows and launchd use it). */
  machineZone: string;
  /** Cron: `/etc/cron.d` format with this user field (default: user crontab). */
  cronUser?: string;
  /** launchd: the log file for the run's output. */
  logFile?: string;
  now?: Date;
}

export interface SchedulerFile {
  /** File name, without folder. */
  name: string;
  /** The text, for display. */
  text: string;
  /** The bytes to write (UTF-16 LE for the Windows task). */
  bytes: Uint8Array;
  /** What the operator should know about this file. */
  warnings?: string[];
}

/** The folders a run writes, for systemd's ReadWritePaths=. */
export function writablePaths(config: ScheduleConfig): string[] {
  const paths = [config.images.root, config.state.dir];
  if (config.backup.target === "local" && config.backup.local.dir) {
    paths.push(config.backup.local.dir);
  }
  // The run clears the image column: SQLite writes its journal beside the file.
  if (config.database.driver === "sqlite" && config.database.path) {
    paths.push(dirname(config.database.path));
  }
  return [...new Set(paths)];
}

/** The files of one format. Throws `ScheduleFormatError` when it cannot. */
export function schedulerFiles(
  format: SchedulerFormat,
  target: ScheduleTarget,
): SchedulerFile[] {
  const { schedule: sc } = target.config;
  const schedule = parseCron(sc.cron);
  const common = {
    binary: target.binary,
    configFile: target.configFile,
    schedule,
    timeZone: sc.timezone,
    now: target.now,
  };
  switch (format) {
    case "systemd": {
      const units = systemdUnits({
        ...common,
        randomizedDelaySec: sc.randomizedDelaySec,
        writablePaths: writablePaths(target.config),
      });
      return [
        { ...textFile(SERVICE_NAME, units.service), warnings: units.warnings },
        textFile(TIMER_NAME, units.timer),
      ];
    }
    case "cron": {
      const text = crontabEntry({
        ...common,
        serverZone: target.machineZone,
        user: target.cronUser,
      });
      return [
        textFile(target.cronUser ? "image-agent" : "image-agent.cron", text),
      ];
    }
    case "windows": {
      const text = windowsTaskXml({
        ...common,
        machineZone: target.machineZone,
        randomizedDelaySec: sc.randomizedDelaySec,
      });
      // Windows line ends inside the UTF-16 file, as schtasks writes them.
      const crlf = text.replaceAll("\n", "\r\n");
      return [{ name: TASK_FILE, text, bytes: utf16leWithBom(crlf) }];
    }
    case "launchd": {
      const text = launchdPlist({
        ...common,
        machineZone: target.machineZone,
        logFile: target.logFile ?? "/var/log/image-agent.log",
      });
      return [textFile(PLIST_FILE, text)];
    }
  }
}

function textFile(name: string, text: string): SchedulerFile {
  return { name, text, bytes: new TextEncoder().encode(text) };
}
